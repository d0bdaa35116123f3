"""Call-centre contacts, medical inquiries and adverse-event cases. Services flush, audit, never commit.

Every contact is one ``call_centre`` interaction (kind ``call_centre.<reason>``) written in the same
transaction. ``medical_inquiry`` makes it `medical` and opens a ``MedicalInquiry``; ``adverse_event``
makes it `pv` and opens an ``AdverseEventCase`` due 24 hours after receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from crm.access.policy import Viewer, require_write
from crm.access.reads import Redaction, Shape, Sight, interaction_sensitivities, read_records, strictest
from crm.audit import services as audit
from crm.callcentre.models import (
    AE_DUE_HOURS,
    DIRECTIONS,
    MEDIA,
    REASONS,
    AdverseEventCase,
    Contact,
    MedicalInquiry,
    sensitivity_for,
)
from crm.db import DbSession, iso_z, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.guardrails import services as guardrails
from crm.hcps.models import HCP
from crm.schemas import keyset_page
from crm.timeline.models import Interaction
from crm.timeline.services import record_interaction

REASON_LABELS = {
    "product_information": "Product information",
    "medical_inquiry": "Medical inquiry",
    "adverse_event": "Adverse event",
    "complaint": "Complaint",
    "sample_request": "Sample request",
    "other": "Other",
}
# Answers later than this are flagged on the queue; the clock is the service level, not a rule.
ANSWER_TARGET_HOURS = 72
# A forwarding time may be a little ahead of the server clock (another system's clock), not more.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class ContactResult:
    contact: Contact
    created: bool
    hits: list[guardrails.Hit] = field(default_factory=list)

    @property
    def ae_case_offer(self) -> bool:
        """Adverse-event wording in a contact that is not (yet) an adverse-event report."""
        return self.contact.reason != "adverse_event" and any(h.category == "adverse_event" for h in self.hits)


def resolve_hcp(session: DbSession, hcp_id: int, field_name: str = "hcp_id") -> HCP:
    """The HCP a new record is about; a merged HCP stands for its survivor. Unknown: 422 on the field."""
    hcp = session.get(HCP, hcp_id)
    if hcp is None:
        raise Invalid(errors={field_name: [f"There is no HCP with id {hcp_id}."]})
    seen = {hcp.id}
    while hcp.merged_into_id is not None and hcp.merged_into_id not in seen:
        survivor = session.get(HCP, hcp.merged_into_id)
        if survivor is None:
            break
        seen.add(survivor.id)
        hcp = survivor
    if hcp.status == "erased":
        raise Invalid(errors={field_name: ["The HCP's data was erased; nothing can be recorded for it."]})
    return hcp


def _check_choice(errors: dict[str, list[str]], name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        errors.setdefault(name, []).append(f"must be one of {', '.join(choices)}")


def find_contact_by_external_id(session: DbSession, external_id: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.external_id == external_id))


def create_contact(
    session: DbSession,
    actor: Any,
    viewer: Viewer | None,
    *,
    hcp_id: int,
    occurred_at: datetime,
    direction: str,
    medium: str,
    reason: str,
    summary: str,
    details: str = "",
    products: list[str] | None = None,
    follow_up_date: date | None = None,
    follow_up_text: str | None = None,
    external_id: str | None = None,
    source: str | None = None,
    adverse_event: dict[str, Any] | None = None,
) -> ContactResult:
    """Log one call-centre contact; a repeat of an ``external_id`` returns the existing contact.

    ``viewer`` is None only for the import command (the system acting for the call-centre system).
    Guardrail hits are recorded on the contact and its interaction; adverse-event wording in a contact
    that is not an adverse-event report makes ``ae_case_offer`` true.
    """
    if viewer is not None:
        require_write(viewer, "call_centre.contact")
    external_id = (external_id or "").strip() or None
    if external_id is not None:
        existing = find_contact_by_external_id(session, external_id)
        if existing is not None:
            return ContactResult(existing, False, _stored_hits(existing))
    errors: dict[str, list[str]] = {}
    _check_choice(errors, "direction", direction, DIRECTIONS)
    _check_choice(errors, "medium", medium, MEDIA)
    _check_choice(errors, "reason", reason, REASONS)
    summary = (summary or "").strip()
    if not summary:
        errors["summary"] = ["must not be empty"]
    if occurred_at.tzinfo is None:
        errors["occurred_at"] = ["Naive datetime refused: include an offset or Z."]
    elif occurred_at > utcnow() + CLOCK_SKEW:
        errors["occurred_at"] = ["must not be in the future"]
    if follow_up_text and follow_up_date is None:
        errors["follow_up.date"] = ["a follow-up needs a date"]
    if adverse_event and reason != "adverse_event":
        errors["adverse_event"] = ["only for reason adverse_event"]
    if errors:
        raise Invalid("The contact cannot be recorded.", errors=errors)
    hcp = resolve_hcp(session, hcp_id)
    details = (details or "").strip()
    products = list(dict.fromkeys(p.strip() for p in (products or []) if p and p.strip()))
    hits = guardrails.check_text(session, f"{summary}\n{details}", "call_centre")
    source = source or ("call_centre_system" if external_id else "crm")
    contact = Contact(
        hcp_id=hcp.id, occurred_at=occurred_at, direction=direction, medium=medium, reason=reason,
        sensitivity=sensitivity_for(reason), summary=summary, details=details, products=products,
        follow_up_date=follow_up_date, follow_up_text=(follow_up_text or "").strip() or None,
        source=source, external_id=external_id, agent_id=getattr(actor, "id", None),
        guardrail_hits=guardrails.hits_json(hits),
    )
    try:
        with session.begin_nested():
            session.add(contact)
            session.flush()
    except IntegrityError:
        # Two deliveries of the same external id at once: the unique constraint picked the winner.
        winner = find_contact_by_external_id(session, external_id) if external_id else None
        if winner is None:
            raise
        return ContactResult(winner, False, _stored_hits(winner))
    item, _ = record_interaction(
        session, actor, hcp_ids=[hcp.id], occurred_at=occurred_at, channel="call_centre",
        kind=f"call_centre.{reason}", source=source, external_id=external_id, summary=summary,
        safe_summary=f"Call centre: {REASON_LABELS[reason].lower()} ({medium}, {direction})",
        details=_interaction_details(contact), sensitivity=contact.sensitivity, products=products,
        owner_role="call_centre", audit_changes=False,
    )
    contact.interaction_id = item.id
    audit.record(session, actor, "call_centre.contact.create", "call_centre_contact", contact.id,
                 audit.created({"hcp_id": hcp.id, "reason": reason, "direction": direction, "medium": medium,
                                "source": source, "external_id": external_id, "interaction_id": item.id,
                                "guardrail_hits": [h.phrase for h in hits]}))
    if reason == "medical_inquiry":
        _open_inquiry(session, actor, contact, item)
    elif reason == "adverse_event":
        ae = adverse_event or {}
        _open_case(session, actor, hcp_id=hcp.id, source="call_centre", received_at=occurred_at,
                   reporter=ae.get("reporter") or f"HCP {hcp.full_name} (by {medium})",
                   product=ae.get("product") or (products[0] if products else None),
                   description=ae.get("description") or details or summary,
                   contact_id=contact.id, interaction_id=item.id)
    session.flush()
    return ContactResult(contact, True, hits)


def _interaction_details(contact: Contact) -> dict[str, Any]:
    return {
        "contact_id": contact.id,
        "direction": contact.direction,
        "medium": contact.medium,
        "reason": contact.reason,
        "details": contact.details,
        "follow_up": ({"date": contact.follow_up_date.isoformat(), "text": contact.follow_up_text}
                      if contact.follow_up_date else None),
        "guardrail_hits": list(contact.guardrail_hits or []),
    }


def _stored_hits(contact: Contact) -> list[guardrails.Hit]:
    return [guardrails.Hit(**h) for h in (contact.guardrail_hits or [])]


def get_contact(session: DbSession, contact_id: int) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"There is no call-centre contact with id {contact_id}.")
    return contact


# -- medical inquiries -----------------------------------------------------------------------------

def _open_inquiry(session: DbSession, actor: Any, contact: Contact, item: Interaction) -> MedicalInquiry:
    question = contact.summary if not contact.details else f"{contact.summary}\n\n{contact.details}"
    inquiry = MedicalInquiry(hcp_id=contact.hcp_id, source="call_centre", contact_id=contact.id, question=question,
                             products=list(contact.products), received_at=contact.occurred_at, status="open",
                             interaction_id=item.id)
    session.add(inquiry)
    session.flush()
    audit.record(session, actor, "medical_inquiry.open", "medical_inquiry", inquiry.id,
                 audit.created({"hcp_id": inquiry.hcp_id, "source": "call_centre", "contact_id": contact.id}))
    return inquiry


def open_inquiry_from_visit(session: DbSession, actor: Any, *, visit: Any, question: str,
                            hits: list[guardrails.Hit]) -> MedicalInquiry | None:
    """A medical question found in a rep's visit goes to Medical Affairs (once per visit)."""
    if session.scalar(select(MedicalInquiry.id).where(MedicalInquiry.visit_id == visit.id)):
        return None
    inquiry = MedicalInquiry(
        hcp_id=visit.hcp_id, source="visit", visit_id=visit.id, question=question,
        products=list(visit.products or []), received_at=visit.submitted_at or utcnow(), status="open",
        interaction_id=visit.interaction_id,
    )
    session.add(inquiry)
    session.flush()
    audit.record(session, actor, "medical_inquiry.open", "medical_inquiry", inquiry.id,
                 audit.created({"hcp_id": inquiry.hcp_id, "source": "visit", "visit_id": visit.id,
                                "guardrail_hits": [h.phrase for h in hits]}))
    return inquiry


def get_inquiry(session: DbSession, inquiry_id: int) -> MedicalInquiry:
    inquiry = session.get(MedicalInquiry, inquiry_id)
    if inquiry is None:
        raise NotFound(f"There is no medical inquiry with id {inquiry_id}.")
    return inquiry


def answer_inquiry(session: DbSession, actor: Any, viewer: Viewer, inquiry: MedicalInquiry, *, answer: str,
                   medium: str, answered_at: datetime | None = None) -> MedicalInquiry:
    """Medical Affairs records the answer; the answer is itself a `medical` item on the timeline."""
    require_write(viewer, "medical_inquiry.answer")
    if inquiry.status != "open":
        raise Conflict(f"Medical inquiry {inquiry.id} is already {inquiry.status}.")
    answered_at = answered_at or utcnow()
    errors: dict[str, list[str]] = {}
    if not (answer or "").strip():
        errors["answer"] = ["must not be empty"]
    _check_choice(errors, "medium", medium, MEDIA + ("letter", "in_person"))
    if answered_at < inquiry.received_at:
        errors["answered_at"] = ["must not be before the inquiry was received"]
    elif answered_at > utcnow() + CLOCK_SKEW:
        errors["answered_at"] = ["must not be in the future"]
    if errors:
        raise Invalid("The answer cannot be recorded.", errors=errors)
    inquiry.answer = answer.strip()
    inquiry.answer_medium = medium
    inquiry.answered_at = answered_at
    inquiry.answered_by = actor
    inquiry.status = "answered"
    item, _ = record_interaction(
        session, actor, hcp_ids=[inquiry.hcp_id], occurred_at=answered_at, channel="call_centre",
        kind="call_centre.medical_answer", summary=f"Answer to medical inquiry #{inquiry.id}",
        safe_summary="Medical Affairs answered a medical inquiry",
        details={"inquiry_id": inquiry.id, "answer": inquiry.answer, "medium": medium,
                 "response_hours": response_hours(inquiry)},
        sensitivity="medical", products=list(inquiry.products or []), audit_changes=False,
    )
    inquiry.answer_interaction_id = item.id
    session.flush()
    audit.record(session, actor, "medical_inquiry.answer", "medical_inquiry", inquiry.id,
                 audit.diff({"status": "open"}, {"status": "answered", "answered_at": answered_at,
                                                 "interaction_id": item.id}))
    return inquiry


def response_hours(inquiry: MedicalInquiry) -> float | None:
    if inquiry.answered_at is None:
        return None
    return round((inquiry.answered_at - inquiry.received_at).total_seconds() / 3600, 1)


# -- adverse-event cases ---------------------------------------------------------------------------

def _open_case(session: DbSession, actor: Any, *, hcp_id: int, source: str, received_at: datetime, reporter: str,
               product: str | None, description: str, contact_id: int | None = None, visit_id: int | None = None,
               interaction_id: int | None = None) -> AdverseEventCase:
    case = AdverseEventCase(
        hcp_id=hcp_id, source=source, contact_id=contact_id, visit_id=visit_id, received_at=received_at,
        due_at=received_at + timedelta(hours=AE_DUE_HOURS), reporter=reporter.strip()[:300],
        product=(product or "").strip()[:200] or None, description=description.strip() or "(no description)",
        status="open", opened_by_id=getattr(actor, "id", None), interaction_id=interaction_id,
    )
    session.add(case)
    session.flush()
    audit.record(session, actor, "adverse_event.open", "adverse_event_case", case.id,
                 audit.created({"hcp_id": hcp_id, "source": source, "contact_id": contact_id, "visit_id": visit_id,
                                "due_at": case.due_at}))
    return case


def open_case_from_contact(session: DbSession, actor: Any, viewer: Viewer, contact: Contact, *,
                           reporter: str | None = None, product: str | None = None,
                           description: str | None = None) -> AdverseEventCase:
    """Accept the guardrail's offer: the contact becomes an adverse-event report.

    Its timeline item is corrected by a `pv` item that supersedes it (the original stays for compliance),
    and a case opens with its 24-hour clock running from the contact's time.
    """
    require_write(viewer, "adverse_event.open")
    if session.scalar(select(AdverseEventCase.id).where(AdverseEventCase.contact_id == contact.id)):
        raise Conflict(f"Contact {contact.id} already has an adverse-event case.")
    hcp = session.get(HCP, contact.hcp_id)
    old = session.get(Interaction, contact.interaction_id) if contact.interaction_id else None
    while old is not None and old.superseded_by_id is not None:
        old = session.get(Interaction, old.superseded_by_id)
    before = {"reason": contact.reason, "sensitivity": contact.sensitivity}
    contact.reason = "adverse_event"
    contact.sensitivity = "pv"
    item, _ = record_interaction(
        session, actor, hcp_ids=[contact.hcp_id], occurred_at=contact.occurred_at, channel="call_centre",
        kind="call_centre.adverse_event", summary=contact.summary,
        safe_summary=f"Call centre: adverse event ({contact.medium}, {contact.direction})",
        details=_interaction_details(contact), sensitivity="pv", products=list(contact.products),
        supersedes=old, owner_role="call_centre", audit_changes=False,
    )
    contact.interaction_id = item.id
    session.execute(
        update(MedicalInquiry).where(MedicalInquiry.contact_id == contact.id).values(interaction_id=item.id)
    )
    audit.record(session, actor, "call_centre.contact.reclassify", "call_centre_contact", contact.id,
                 audit.diff(before, {"reason": "adverse_event", "sensitivity": "pv"}),
                 reason="Adverse-event wording: case opened from the guardrail offer")
    return _open_case(
        session, actor, hcp_id=contact.hcp_id, source="call_centre", received_at=contact.occurred_at,
        reporter=(reporter or "").strip() or f"HCP {hcp.full_name if hcp else contact.hcp_id} (by {contact.medium})",
        product=product or (contact.products[0] if contact.products else None),
        description=(description or "").strip() or contact.details or contact.summary,
        contact_id=contact.id, interaction_id=item.id,
    )


def open_case_from_survey(session: DbSession, actor: Any, *, hcp_id: int, received_at: datetime, reporter: str,
                          description: str, interaction_id: int | None) -> AdverseEventCase:
    """Adverse-event wording in a survey comment opens a case, its 24-hour clock running from the answer.

    The survey response's timeline item is `pv` from the start (``crm.surveys`` screens the comment before
    it writes the item), so nothing needs reclassifying here."""
    return _open_case(session, actor, hcp_id=hcp_id, source="survey", received_at=received_at, reporter=reporter,
                      product=None, description=description, interaction_id=interaction_id)


def open_case_from_visit(session: DbSession, actor: Any, *, visit: Any,
                         hits: list[guardrails.Hit]) -> AdverseEventCase | None:
    """Adverse-event wording in a submitted visit opens a case (once per visit).

    Like a call-centre contact that turns out to be an adverse event, the visit becomes `pv`: its
    timeline item is corrected by a `pv` item that supersedes it (the original stays for compliance),
    so the adverse-event text is seen by the roles SPEC section 4 allows and its reads are logged.
    """
    if session.scalar(select(AdverseEventCase.id).where(AdverseEventCase.visit_id == visit.id)):
        return None
    item_id = _reclassify_visit_as_pv(session, actor, visit)
    owner = getattr(visit, "owner", None)
    reporter = f"{owner.name} ({owner.role}) during a visit" if owner is not None else "Field visit"
    products = list(visit.products or [])
    return _open_case(
        session, actor, hcp_id=visit.hcp_id, source="visit", received_at=visit.submitted_at or utcnow(),
        reporter=reporter, product=products[0] if products else None,
        description=f"{visit.notes}\n\nFlagged: {', '.join(sorted({h.phrase for h in hits}))}",
        visit_id=visit.id, interaction_id=item_id,
    )


def _reclassify_visit_as_pv(session: DbSession, actor: Any, visit: Any) -> int | None:
    """The visit and its timeline item become `pv`; returns the id of the item that now stands for it."""
    before = visit.sensitivity
    old = session.get(Interaction, visit.interaction_id) if visit.interaction_id else None
    while old is not None and old.superseded_by_id is not None:
        old = session.get(Interaction, old.superseded_by_id)
    visit.sensitivity = "pv"
    if old is not None and old.sensitivity != "pv":
        item, _ = record_interaction(
            session, actor, hcp_ids=[p.hcp_id for p in old.participants], occurred_at=old.occurred_at,
            channel=old.channel, kind=old.kind, source=old.source, summary=old.summary,
            safe_summary=old.safe_summary, details=dict(old.details or {}), sensitivity="pv",
            products=[p.sku for p in old.products], supersedes=old, consent_gap=old.consent_gap,
            owner_role=old.owner_role, audit_changes=False,
        )
        item.owner_id = old.owner_id
        visit.interaction_id = item.id
    audit.record(session, actor, "visit.reclassify", "visit", visit.id,
                 audit.diff({"sensitivity": before}, {"sensitivity": "pv"}),
                 reason="Adverse-event wording in the visit notes: pharmacovigilance content")
    return visit.interaction_id


def get_case(session: DbSession, case_id: int) -> AdverseEventCase:
    case = session.get(AdverseEventCase, case_id)
    if case is None:
        raise NotFound(f"There is no adverse-event case with id {case_id}.")
    return case


def close_case(session: DbSession, actor: Any, viewer: Viewer, case: AdverseEventCase, *, forwarded_by: str | None,
               forwarded_at: datetime | None, pv_reference: str | None = None) -> AdverseEventCase:
    """Close a case with its forwarding record: who sent it to pharmacovigilance, and when (422 without)."""
    require_write(viewer, "adverse_event.close")
    if case.status != "open":
        raise Conflict(f"Adverse-event case {case.id} is already closed.")
    errors: dict[str, list[str]] = {}
    if not (forwarded_by or "").strip():
        errors["forwarded_by"] = ["Closing needs the forwarding record: who forwarded it to pharmacovigilance."]
    if forwarded_at is None:
        errors["forwarded_at"] = ["Closing needs the forwarding record: when it was forwarded to pharmacovigilance."]
    elif forwarded_at.tzinfo is None:
        errors["forwarded_at"] = ["Naive datetime refused: include an offset or Z."]
    elif forwarded_at < case.received_at:
        errors["forwarded_at"] = ["must not be before the report was received"]
    elif forwarded_at > utcnow() + CLOCK_SKEW:
        errors["forwarded_at"] = ["must not be in the future"]
    if errors:
        raise Invalid("The case cannot be closed without its forwarding record.", errors=errors)
    case.forwarded_by = (forwarded_by or "").strip()[:200]
    case.forwarded_at = forwarded_at
    case.pv_reference = (pv_reference or "").strip()[:120] or None
    case.status = "closed"
    case.closed_at = utcnow()
    case.closed_by_id = getattr(actor, "id", None)
    session.flush()
    audit.record(session, actor, "adverse_event.close", "adverse_event_case", case.id,
                 audit.diff({"status": "open"}, {"status": "closed", "forwarded_by": case.forwarded_by,
                                                 "forwarded_at": forwarded_at, "pv_reference": case.pv_reference,
                                                 "late": case.is_overdue()}))
    return case


# -- queues and their redaction ---------------------------------------------------------------------

def inquiry_page(session: DbSession, status: str | None, limit: int,
                 cursor: str | None) -> tuple[list[MedicalInquiry], str | None]:
    stmt = select(MedicalInquiry)
    if status:
        stmt = stmt.where(MedicalInquiry.status == status)
    return keyset_page(session, stmt, MedicalInquiry.received_at, MedicalInquiry.id, limit, cursor,
                       newest_first=False)  # a queue: oldest first


def case_page(session: DbSession, status: str | None, overdue: bool | None, limit: int,
              cursor: str | None) -> tuple[list[AdverseEventCase], str | None]:
    stmt = select(AdverseEventCase)
    if status:
        stmt = stmt.where(AdverseEventCase.status == status)
    if overdue:
        stmt = stmt.where(AdverseEventCase.status == "open", AdverseEventCase.due_at < utcnow())
    return keyset_page(session, stmt, AdverseEventCase.due_at, AdverseEventCase.id, limit, cursor,
                       newest_first=False)  # a queue: the most urgent first


# -- reads: through the one read path (crm.access.reads) ------------------------------------------

def _dump_contact(contact: Contact, seen: Sight, sensitivity: str) -> dict[str, Any]:
    return {
        "id": contact.id, "hcp_id": contact.hcp_id, "occurred_at": iso_z(contact.occurred_at),
        "direction": contact.direction, "medium": contact.medium, "reason": contact.reason,
        "sensitivity": sensitivity, "source": contact.source, "external_id": contact.external_id,
        "interaction_id": contact.interaction_id, "summary": contact.summary, "details": contact.details,
        "products": list(contact.products),
        "follow_up": ({"date": contact.follow_up_date.isoformat(), "text": contact.follow_up_text}
                      if contact.follow_up_date else None),
        "guardrail_hits": list(contact.guardrail_hits or []),
    }


# Content only at full level, else the facts every user shares.
_CONTACT_REDACTION = Redaction(below_full={"summary": "", "details": "", "products": lambda c: [], "follow_up": None,
                                           "guardrail_hits": lambda c: []})


def contact_dicts(session: DbSession, viewer: Viewer, contacts: Sequence[Contact], *,
                  log: bool = True) -> list[dict[str, Any]]:
    """Contacts for ``viewer``; the sensitivity read is the strictest of the contact's and its item's."""
    items = interaction_sensitivities(session, (c.interaction_id for c in contacts))
    sensitivities = {c.id: strictest(c.sensitivity, items.get(c.interaction_id) if c.interaction_id else None)
                     for c in contacts}
    shape: Shape[Contact] = Shape(
        what="interaction", sensitivity=lambda c: sensitivities[c.id],
        dump=lambda c, seen: _dump_contact(c, seen, sensitivities[c.id]), redaction=_CONTACT_REDACTION,
        logged=lambda c: ((c.interaction_id, c.hcp_id),),
    )
    return read_records(session, viewer, contacts, shape, log=log)


def contact_dict(session: DbSession, viewer: Viewer, contact: Contact, *, log: bool = True) -> dict[str, Any]:
    """One contact through ``contact_dicts``."""
    return contact_dicts(session, viewer, [contact], log=log)[0]


def _dump_inquiry(inquiry: MedicalInquiry, seen: Sight, now: datetime) -> dict[str, Any]:
    waited = (inquiry.answered_at or now) - inquiry.received_at
    return {
        "id": inquiry.id, "hcp_id": inquiry.hcp_id, "source": inquiry.source, "received_at": iso_z(inquiry.received_at),
        "status": inquiry.status, "answered_at": iso_z(inquiry.answered_at),
        "response_hours": response_hours(inquiry),
        "late": waited > timedelta(hours=ANSWER_TARGET_HOURS),
        "contact_id": inquiry.contact_id, "visit_id": inquiry.visit_id,
        "question": inquiry.question, "answer": inquiry.answer, "answer_medium": inquiry.answer_medium,
        "products": list(inquiry.products or []),
        "answered_by": inquiry.answered_by.name if inquiry.answered_by is not None else None,
    }


_INQUIRY_REDACTION = Redaction(below_full={"question": "", "answer": None, "answer_medium": None,
                                           "products": lambda i: [], "answered_by": None})


def inquiry_dicts(session: DbSession, viewer: Viewer, inquiries: Sequence[MedicalInquiry], *,
                  log: bool = True) -> list[dict[str, Any]]:
    """Medical inquiries for ``viewer``: `medical`, or stricter when the item they came from is (a visit
    whose notes also reported an adverse event is `pv`)."""
    items = interaction_sensitivities(session, (i.interaction_id for i in inquiries))
    sensitivities = {i.id: strictest("medical", items.get(i.interaction_id) if i.interaction_id else None)
                     for i in inquiries}
    now = utcnow()
    shape: Shape[MedicalInquiry] = Shape(
        what="interaction", sensitivity=lambda i: sensitivities[i.id],
        dump=lambda i, seen: _dump_inquiry(i, seen, now), redaction=_INQUIRY_REDACTION,
        logged=lambda i: ((i.interaction_id, i.hcp_id),),
    )
    return read_records(session, viewer, inquiries, shape, log=log)


def inquiry_dict(session: DbSession, viewer: Viewer, inquiry: MedicalInquiry, *, log: bool = True) -> dict[str, Any]:
    """One medical inquiry through ``inquiry_dicts``."""
    return inquiry_dicts(session, viewer, [inquiry], log=log)[0]


def _dump_case(case: AdverseEventCase, seen: Sight, now: datetime) -> dict[str, Any]:
    remaining = (case.due_at - now).total_seconds() / 3600 if case.status == "open" else None
    return {
        "id": case.id, "hcp_id": case.hcp_id, "source": case.source, "received_at": iso_z(case.received_at),
        "due_at": iso_z(case.due_at), "status": case.status, "overdue": case.is_overdue(now),
        "hours_left": round(remaining, 1) if remaining is not None else None,
        "contact_id": case.contact_id, "visit_id": case.visit_id, "closed_at": iso_z(case.closed_at),
        "reporter": case.reporter, "product": case.product, "description": case.description,
        "forwarded_by": case.forwarded_by, "forwarded_at": iso_z(case.forwarded_at),
        "pv_reference": case.pv_reference,
    }


_CASE_REDACTION = Redaction(below_full={"reporter": None, "product": None, "description": "", "forwarded_by": None,
                                        "forwarded_at": None, "pv_reference": None})


def case_dicts(session: DbSession, viewer: Viewer, cases: Sequence[AdverseEventCase], *,
               log: bool = True) -> list[dict[str, Any]]:
    """Adverse-event cases for ``viewer``: always `pv`."""
    now = utcnow()
    shape: Shape[AdverseEventCase] = Shape(
        what="interaction", sensitivity=lambda c: "pv", dump=lambda c, seen: _dump_case(c, seen, now),
        redaction=_CASE_REDACTION, logged=lambda c: ((c.interaction_id, c.hcp_id),),
    )
    return read_records(session, viewer, cases, shape, log=log)


def case_dict(session: DbSession, viewer: Viewer, case: AdverseEventCase, *, log: bool = True) -> dict[str, Any]:
    """One adverse-event case through ``case_dicts``."""
    return case_dicts(session, viewer, [case], log=log)[0]
