"""Field visits: draft -> submitted, locked after submit, corrected only by an amendment with a reason.

Services take the actor and the policy viewer, ask ``crm.access.policy`` for every decision, audit every
write, flush and never commit. A submitted visit becomes ONE timeline interaction (external id
``visit:<id>``, source ``crm``), written in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from crm import signals
from crm.access.policy import Viewer, require_owner, require_write
from crm.access.reads import Redaction, Shape, Sight, interaction_sensitivities, read_records, strictest
from crm.audit import services as audit
from crm.db import DbSession, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.hcps.models import HCP
from crm.products.models import Product
from crm.products.services import sample_problems
from crm.samples.services import disburse_for_visit
from crm.schemas import keyset_page
from crm.timeline.models import Interaction
from crm.timeline.services import record_interaction
from crm.visits.models import VISIT_MODES, Visit, VisitAttendee, VisitSample
from crm.visits.schemas import MAX_SIGNATURE_CHARS
from crm.visits.signature import MIN_INK_PIXELS, SignatureImageError, ink_pixels

SIGNATURE_PREFIX = "data:image/png;base64,"
MAX_MEETING_URL_CHARS = 500
# A visit is logged after it happened; allow for a phone clock that runs a little fast.
_FUTURE_TOLERANCE = timedelta(minutes=10)
LOCKED = "submitted visits are locked; amend instead"


# -- validation helpers ---------------------------------------------------------------------------

def check_signature(value: str) -> str:
    """A PNG data URL of bounded size whose payload is valid base64 of a PNG with a signature on it (not a
    blank pad, not a dot: ``crm.visits.signature``); else 422 on ``signature``."""
    problem = None
    if not isinstance(value, str) or not value.startswith(SIGNATURE_PREFIX):
        problem = f"must be a PNG data URL ({SIGNATURE_PREFIX}...)"
    elif len(value) > MAX_SIGNATURE_CHARS:
        problem = f"is too large (at most {MAX_SIGNATURE_CHARS} characters)"
    else:
        try:
            raw = base64.b64decode(value[len(SIGNATURE_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            problem = "is not valid base64"
        else:
            try:
                if ink_pixels(raw) < MIN_INK_PIXELS:
                    problem = "is blank: the HCP has not signed (too little ink on the pad)"
            except SignatureImageError as exc:
                problem = str(exc)
    if problem:
        raise Invalid("The signature is not usable.", errors={"signature": [problem]})
    return value


def meeting_url_problem(value: str) -> str | None:
    """Why ``value`` is not a usable meeting link (an absolute https URL with a host), or None."""
    if len(value) > MAX_MEETING_URL_CHARS:
        return f"is too long (at most {MAX_MEETING_URL_CHARS} characters)"
    if any(c.isspace() or not c.isprintable() for c in value):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https":
        return "must be an https:// link"
    if not parts.hostname or "." not in parts.hostname or parts.username or parts.password:
        return "must name the meeting host (https://meet.example.com/...), without a user name or password"
    return None


def _participants(session: DbSession, hcp_id: int, attendee_ids: Iterable[int]) -> tuple[HCP, list[HCP]]:
    """The visited HCP (404 when unknown) and the other HCPs present (422 when unknown)."""
    hcp = session.get(HCP, hcp_id)
    if hcp is None:
        raise NotFound(f"HCP {hcp_id} does not exist.")
    errors: dict[str, list[str]] = {}
    _check_visitable(hcp, "hcp_id", errors)
    ids = list(dict.fromkeys(attendee_ids))
    attendees: list[HCP] = []
    if hcp.id in ids:
        errors.setdefault("attendee_hcp_ids", []).append(
            "list only the other HCPs present; the visited HCP is already a participant")
    elif ids:
        found = {h.id: h for h in session.scalars(select(HCP).where(HCP.id.in_(ids)))}
        for i in ids:
            if i not in found:
                errors.setdefault("attendee_hcp_ids", []).append(f"HCP {i} does not exist")
            else:
                _check_visitable(found[i], "attendee_hcp_ids", errors)
                attendees.append(found[i])
    if errors:
        raise Invalid("The visit names HCPs it cannot be logged for.", errors=errors)
    return hcp, attendees


def _check_visitable(hcp: HCP, field: str, errors: dict[str, list[str]]) -> None:
    if hcp.status == "merged":
        errors.setdefault(field, []).append(
            f"HCP {hcp.id} was merged into HCP {hcp.merged_into_id}; log the visit there")
    elif hcp.status == "erased":
        errors.setdefault(field, []).append(f"HCP {hcp.id} was erased")


def _territories(hcp: HCP, attendees: list[HCP]) -> list[int | None]:
    return [hcp.territory_id, *(a.territory_id for a in attendees)]


def _check_skus(session: DbSession, skus: Iterable[str]) -> dict[str, str]:
    """``{sku: problem}`` for skus that are not an active Product."""
    wanted = set(skus)
    if not wanted:
        return {}
    rows = session.execute(select(Product.sku, Product.active).where(Product.sku.in_(wanted))).all()
    active = {sku: is_active for sku, is_active in rows}
    return {
        sku: ("unknown sku" if sku not in active else "product is no longer active")
        for sku in sorted(wanted) if not active.get(sku)
    }


def _sample_tuples(samples: Iterable[Any]) -> list[tuple[str, int, str]]:
    out = []
    for s in samples:
        if isinstance(s, dict):
            out.append((s["sku"], s["quantity"], s["lot"]))
        else:
            out.append((s.sku, s.quantity, s.lot))
    return out


def _apply_content(session: DbSession, visit: Visit, data: dict[str, Any]) -> None:
    """Validate and set the content fields present in ``data`` (all errors at once, as one 422).

    Participants (hcp_id, attendees) are set by the callers, after the territory check.
    """
    errors: dict[str, list[str]] = {}
    if "occurred_at" in data:
        occurred_at = data["occurred_at"]
        if occurred_at is None or occurred_at.tzinfo is None:
            errors["occurred_at"] = ["Naive datetime refused: include an offset or Z (times are UTC)."]
    if "mode" in data and data["mode"] not in VISIT_MODES:
        errors["mode"] = [f"must be one of {', '.join(VISIT_MODES)}"]
    mode = data.get("mode", visit.mode)
    if data.get("meeting_url") is not None:
        problem = meeting_url_problem(data["meeting_url"])
        if problem:
            errors["meeting_url"] = [problem]
        elif mode != "remote":
            errors["meeting_url"] = ["only a remote visit has a meeting link; set mode to remote or leave it out"]
    if "products" in data:
        for sku, problem in _check_skus(session, data["products"]).items():
            errors.setdefault("products", []).append(f"{sku}: {problem}")
    # Samples are checked against the visit's date (a lot must not be expired then): the new one when it
    # changes, so moving a visit with samples re-checks them too.
    samples = data["samples"] if "samples" in data else (visit.samples if "occurred_at" in data else [])
    occurred_at = data.get("occurred_at") or visit.occurred_at
    if samples and occurred_at is not None and occurred_at.tzinfo is not None:
        errors.update(sample_problems(session, _sample_tuples(samples), _visit_date(occurred_at)))
    if data.get("signature") is not None:
        try:
            check_signature(data["signature"])
        except Invalid as exc:
            errors.update(exc.errors)
    if errors:
        raise Invalid("The visit has invalid fields.", errors=errors)

    for key in ("occurred_at", "duration_minutes", "mode", "notes", "meeting_url"):
        if key in data:
            setattr(visit, key, data[key])
    if visit.mode != "remote":
        visit.meeting_url = None  # an in-person visit keeps no meeting link (it was remote before)
    if "products" in data:
        visit.products = list(dict.fromkeys(data["products"]))
    if "key_messages" in data:
        visit.key_messages = list(data["key_messages"])
    if "samples" in data and _sample_tuples(data["samples"]) != _sample_tuples(visit.samples):
        visit.samples = [VisitSample(sku=sku, quantity=qty, lot=lot) for sku, qty, lot in
                         _sample_tuples(data["samples"])]
        if "signature" not in data:
            # The stored signature attested the old list of samples; the HCP signs the new one.
            visit.signature = None
            visit.signed_at = None
    if "follow_up" in data:
        follow_up = data["follow_up"]
        visit.follow_up_date = follow_up["date"] if follow_up else None
        visit.follow_up_text = (follow_up.get("text") or None) if follow_up else None
    if "signature" in data:
        visit.signature = data["signature"]
        visit.signed_at = utcnow() if data["signature"] is not None else None


def _set_participants(visit: Visit, hcp: HCP, attendees: list[HCP]) -> None:
    visit.hcp = hcp
    visit.hcp_id = hcp.id
    wanted = [a.id for a in attendees]
    # Keep rows that stay, so the composite key is never deleted and re-inserted in one flush.
    visit.attendees = [a for a in visit.attendees if a.hcp_id in wanted] + [
        VisitAttendee(hcp_id=i) for i in wanted if i not in {a.hcp_id for a in visit.attendees}
    ]


def _snapshot(visit: Visit) -> dict[str, Any]:
    """The audited values of a visit; ``signature`` is personal data and never leaves audit in clear."""
    return {
        "status": visit.status,
        "hcp_id": visit.hcp_id,
        "attendee_hcp_ids": sorted(a.hcp_id for a in visit.attendees),
        "occurred_at": visit.occurred_at,
        "duration_minutes": visit.duration_minutes,
        "mode": visit.mode,
        "meeting_url": visit.meeting_url,
        "sensitivity": visit.sensitivity,
        "products": list(visit.products),
        "key_messages": list(visit.key_messages),
        "samples": [{"sku": s, "quantity": q, "lot": lot} for s, q, lot in _sample_tuples(visit.samples)],
        "notes": visit.notes,
        "follow_up_date": visit.follow_up_date,
        "follow_up_text": visit.follow_up_text,
        "signature": visit.signature,
        "amends_id": visit.amends_id,
    }


def _visit_date(occurred_at: datetime) -> date:
    """The day a visit took place, for lot expiry: its UTC date."""
    return occurred_at.astimezone(UTC).date()


def _submit_errors(visit: Visit, signed: bool) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if visit.samples and not signed:
        errors["signature"] = ["Samples were given: the HCP's signature is required to submit."]
    if visit.occurred_at > utcnow() + _FUTURE_TOLERANCE:
        errors["occurred_at"] = ["A visit is submitted after it happened: this time is in the future."]
    return errors


# -- writes -----------------------------------------------------------------------------------------

def create_visit(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any], *,
                 idempotency_key: str | None = None, request_hash: str | None = None) -> Visit:
    """Create a draft visit owned by ``actor``.

    Field force may log visits for HCPs in their own territories (the visited HCP and every attendee);
    Medical Affairs anywhere, and their visits are ``medical`` (restricted to Medical Affairs on the
    timeline). Everyone else: 403 with the rule. ``idempotency_key`` and ``request_hash`` are stored
    as given; ``create_visit_once`` is the idempotent entry point.
    """
    require_write(viewer, "visit.create")
    hcp, attendees = _participants(session, data["hcp_id"], data.get("attendee_hcp_ids", ()))
    require_write(viewer, "visit.create", _territories(hcp, attendees))
    visit = Visit(
        owner_id=actor.id,
        status="draft",
        sensitivity="medical" if viewer.role == "medical" else "standard",
        mode="in_person",
        products=[],
        key_messages=[],
        notes="",
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    _set_participants(visit, hcp, attendees)
    _apply_content(session, visit, {k: v for k, v in data.items() if k not in ("hcp_id", "attendee_hcp_ids")})
    session.add(visit)
    session.flush()
    audit.record(session, actor, "visit.create", "visit", visit.id, audit.created(_snapshot(visit)))
    return visit


def visit_by_idempotency_key(session: DbSession, owner_id: int, key: str) -> Visit | None:
    return session.scalar(select(Visit).where(Visit.owner_id == owner_id, Visit.idempotency_key == key))


def create_visit_once(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any], *,
                      idempotency_key: str, request_hash: str) -> tuple[Visit, bool]:
    """``create_visit`` for an outside tool that may send the same request twice. Returns ``(visit, replayed)``.

    Keys are per user. A key ``actor`` used before with the same ``request_hash`` (the fingerprint of the
    body) returns the visit it created (``replayed``), as it is now, and writes nothing; with another
    ``request_hash`` it is 422 on ``Idempotency-Key``. Two requests with one key at once: the unique
    constraint on (owner, key) lets one insert; the other's savepoint rolls back and it answers with the
    winner's visit.
    """
    require_write(viewer, "visit.create")

    def replay(earlier: Visit) -> tuple[Visit, bool]:
        if earlier.request_hash != request_hash:
            raise Invalid("This Idempotency-Key was used with another request.",
                          errors={"Idempotency-Key": [f"already used for visit {earlier.id} with another body"]})
        return earlier, True

    earlier = visit_by_idempotency_key(session, actor.id, idempotency_key)
    if earlier is not None:
        return replay(earlier)
    try:
        with session.begin_nested():
            visit = create_visit(session, actor, viewer, data, idempotency_key=idempotency_key,
                                 request_hash=request_hash)
    except IntegrityError:
        winner = visit_by_idempotency_key(session, actor.id, idempotency_key)
        if winner is None:
            raise
        return replay(winner)
    return visit, False


def update_visit(
    session: DbSession,
    actor: Any,
    viewer: Viewer,
    visit: Visit,
    data: dict[str, Any],
    expected_version: int | None = None,
) -> Visit:
    """Edit a draft. Owner only (403 ``visit.edit:owner``); a submitted visit is 409 (amend it instead);
    ``expected_version`` other than the stored one is 409. Changing the samples drops a stored signature
    unless a new one comes with the change. Changing the HCP or attendees re-checks territories."""
    require_owner(viewer, visit.owner_id, "visit.edit")
    if visit.status != "draft":
        raise Conflict(LOCKED)
    if expected_version is not None and expected_version != visit.version:
        raise Conflict("Someone else changed this visit; reload it and apply your change again.")
    before = _snapshot(visit)
    if "hcp_id" in data or "attendee_hcp_ids" in data:
        hcp, attendees = _participants(
            session, data.get("hcp_id", visit.hcp_id),
            data.get("attendee_hcp_ids", [a.hcp_id for a in visit.attendees]),
        )
        require_write(viewer, "visit.create", _territories(hcp, attendees))
        _set_participants(visit, hcp, attendees)
    _apply_content(session, visit, {k: v for k, v in data.items() if k not in ("hcp_id", "attendee_hcp_ids")})
    changes = audit.diff(before, _snapshot(visit))
    if changes:
        # Touch the row so its version moves even when only samples or attendees changed.
        visit.updated_at = utcnow()
        session.flush()
        audit.record(session, actor, "visit.update", "visit", visit.id, changes)
    return visit


def _visit_summary(visit: Visit) -> str:
    parts = [_safe_head(visit)]
    if visit.products:
        parts.append("products: " + ", ".join(visit.products))
    if visit.key_messages:
        parts.append("key messages: " + "; ".join(visit.key_messages))
    if visit.samples:
        parts.append(f"{sum(s.quantity for s in visit.samples)} sample unit(s)")
    if visit.amends_id is not None:
        parts.append(f"amends visit {visit.amends_id}")
    return " · ".join(parts)


def _safe_head(visit: Visit) -> str:
    head = "In-person visit" if visit.mode == "in_person" else "Remote visit"
    if visit.duration_minutes:
        head += f" ({visit.duration_minutes} min)"
    if visit.attendees:
        head += f" with {len(visit.attendees)} other HCP(s)"
    return head


def _visit_safe_summary(visit: Visit) -> str:
    """No free text (no key messages, notes or reasons): structured facts only."""
    parts = [_safe_head(visit)]
    if visit.products:
        parts.append("products: " + ", ".join(visit.products))
    if visit.samples:
        parts.append("samples given")
    if visit.amends_id is not None:
        parts.append("amended")
    return " · ".join(parts)[:300]


def _record_on_timeline(session: DbSession, actor: Any, visit: Visit, supersedes: Interaction | None) -> Interaction:
    item, created = record_interaction(
        session,
        actor,
        hcp_ids=[visit.hcp_id, *(a.hcp_id for a in visit.attendees)],
        occurred_at=visit.occurred_at,
        channel="visit",
        kind="visit.submitted",
        source="crm",
        external_id=f"visit:{visit.id}",
        summary=_visit_summary(visit),
        safe_summary=_visit_safe_summary(visit),
        details=visit.as_details(),
        sensitivity=visit.sensitivity,
        products=visit.products,
        supersedes=supersedes,
    )
    if not created:
        raise Conflict("This visit is already on the timeline.")
    return item


def submit_visit(session: DbSession, actor: Any, viewer: Viewer, visit: Visit, signature: str | None = None) -> Visit:
    """Lock a draft and put it on the timeline of the HCP and every attendee, as one interaction.

    Owner only. Samples need the HCP's signature (stored on the draft or given now): else 422 on
    ``signature``. A second submit is 409, and the timeline's ``(crm, visit:<id>)`` key makes sure
    a race cannot write the interaction twice.
    """
    require_owner(viewer, visit.owner_id, "visit.submit")
    if visit.status != "draft":
        raise Conflict("This visit is already submitted; amend it instead.")
    had_signature = visit.signature is not None
    if signature is not None:
        check_signature(signature)
    errors = _submit_errors(visit, signed=had_signature or signature is not None)
    # Checked again now: since the draft was saved, a product may have stopped being a sample product.
    errors.update(sample_problems(session, _sample_tuples(visit.samples), _visit_date(visit.occurred_at)))
    if errors:
        raise Invalid("The visit cannot be submitted yet.", errors=errors)
    # Sample accountability: the units leave the owner's inventory in this transaction, or nothing does
    # (422 on samples.N.quantity when the owner does not hold enough).
    disburse_for_visit(session, actor, owner_id=visit.owner_id, visit_id=visit.id, occurred_at=visit.occurred_at,
                       samples=_sample_tuples(visit.samples))
    if signature is not None:
        visit.signature = signature
        visit.signed_at = utcnow()
    visit.status = "submitted"
    visit.submitted_at = utcnow()
    # The version check happens here: of two racing submits, the second gets StaleDataError (409).
    session.flush()
    item = _record_on_timeline(session, actor, visit, supersedes=None)
    visit.interaction_id = item.id
    session.flush()
    audit.record(
        session, actor, "visit.submit", "visit", visit.id,
        audit.diff({"status": "draft", "interaction_id": None, "signed": had_signature},
                   {"status": "submitted", "interaction_id": item.id, "signed": visit.signature is not None}),
    )
    signals.visit_submitted.send(visit, actor=actor)
    return visit


def amend_delegates(visit: Visit) -> frozenset[str]:
    """Who besides the owner may amend ``visit``: Medical Affairs, for a medical visit."""
    return frozenset({"medical"}) if visit.sensitivity == "medical" else frozenset()


def amend_visit(
    session: DbSession, actor: Any, viewer: Viewer, visit: Visit, changes: dict[str, Any], reason: str
) -> Visit:
    """Correct a submitted visit: a NEW submitted visit with ``changes`` applied, whose interaction
    supersedes the old one (both kept). Owner, or Medical Affairs for a medical visit. The reason is
    required and kept in the audit trail with the before/after values. Only the latest version of a
    visit can be amended (409 otherwise)."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("An amendment needs a reason.", errors={"reason": ["Say why the visit is amended."]})
    require_owner(viewer, visit.owner_id, "visit.amend", amend_delegates(visit))
    if visit.status != "submitted":
        raise Conflict("Only submitted visits are amended; edit the draft instead.")
    later = session.scalar(select(Visit.id).where(Visit.amends_id == visit.id))
    if later is not None:
        raise Conflict(f"This visit was already amended by visit {later}; amend that one instead.")

    new = Visit(
        owner_id=visit.owner_id,
        status="draft",
        sensitivity=visit.sensitivity,
        occurred_at=visit.occurred_at,
        duration_minutes=visit.duration_minutes,
        mode=visit.mode,
        meeting_url=visit.meeting_url,
        products=list(visit.products),
        key_messages=list(visit.key_messages),
        notes=visit.notes,
        follow_up_date=visit.follow_up_date,
        follow_up_text=visit.follow_up_text,
        signature=visit.signature,
        signed_at=visit.signed_at,
        amends_id=visit.id,
        amendment_reason=reason,
    )
    new.samples = [VisitSample(sku=s.sku, quantity=s.quantity, lot=s.lot) for s in visit.samples]
    hcp_id = changes.get("hcp_id", visit.hcp_id)
    attendee_ids = changes.get("attendee_hcp_ids", [a.hcp_id for a in visit.attendees])
    hcp, attendees = _participants(session, hcp_id, attendee_ids)
    if "hcp_id" in changes or "attendee_hcp_ids" in changes:
        require_write(viewer, "visit.create", _territories(hcp, attendees))
    _set_participants(new, hcp, attendees)
    _apply_content(session, new, {k: v for k, v in changes.items() if k not in ("hcp_id", "attendee_hcp_ids")})

    before, after = _snapshot(visit), _snapshot(new)
    after["status"] = "submitted"
    changed = {k: v for k, v in audit.diff(before, after).items() if k != "amends_id"}
    if not changed:
        raise Invalid("The amendment changes nothing.", errors={"changes": ["Nothing would change."]})
    errors = _submit_errors(new, signed=new.signature is not None)
    if errors:
        raise Invalid("The amended visit cannot be submitted.", errors=errors)
    new.status = "submitted"
    new.submitted_at = utcnow()
    old_item = session.get(Interaction, visit.interaction_id) if visit.interaction_id else None
    try:
        with session.begin_nested():
            session.add(new)
            session.flush()
            # Samples the amendment adds leave the owner's inventory; samples it removes go back (422 and
            # nothing written when the owner does not hold the extra units).
            disburse_for_visit(session, actor, owner_id=new.owner_id, visit_id=new.id, occurred_at=new.occurred_at,
                               samples=_sample_tuples(new.samples), given_before=_sample_tuples(visit.samples))
    except IntegrityError as exc:  # a concurrent amendment of the same visit won
        raise Conflict("This visit was amended by someone else just now; reload it.") from exc
    item = _record_on_timeline(session, actor, new, supersedes=old_item)
    new.interaction_id = item.id
    session.flush()
    audit.record(session, actor, "visit.amend", "visit", visit.id,
                 {**changed, "amended_by_id": {"before": None, "after": new.id}}, reason=reason)
    audit.record(session, actor, "visit.create", "visit", new.id,
                 audit.created({**_snapshot(new), "interaction_id": item.id}), reason=reason)
    return new


# -- reads ------------------------------------------------------------------------------------------

def get_visit(session: DbSession, visit_id: int) -> Visit:
    visit = session.get(Visit, visit_id)
    if visit is None:
        raise NotFound(f"Visit {visit_id} does not exist.")
    return visit


def amended_by(session: DbSession, visit_ids: Iterable[int]) -> dict[int, int]:
    """``{visit id: id of the visit that amends it}`` for the given visits."""
    ids = list(visit_ids)
    if not ids:
        return {}
    rows = session.execute(select(Visit.amends_id, Visit.id).where(Visit.amends_id.in_(ids))).all()
    return {old: new for old, new in rows if old is not None}


def _dump_visit(visit: Visit, seen: Sight, sensitivity: str, amended_by_id: int | None) -> dict[str, Any]:
    """The visit in full (but for the signature image); ``_VISIT_REDACTION`` withholds the rest."""
    return {
        "id": visit.id,
        "status": visit.status,
        "hcp_id": visit.hcp_id,
        "owner": {"id": visit.owner.id, "name": visit.owner.name, "role": visit.owner.role},
        "occurred_at": visit.occurred_at,
        "duration_minutes": visit.duration_minutes,
        "mode": visit.mode,
        "meeting_url": visit.meeting_url,
        "sensitivity": sensitivity,
        "products": list(visit.products),
        "key_messages": list(visit.key_messages),
        "samples": [{"sku": s.sku, "quantity": s.quantity, "lot": s.lot} for s in visit.samples],
        "notes": visit.notes,
        "follow_up": ({"date": visit.follow_up_date, "text": visit.follow_up_text or ""}
                      if visit.follow_up_date else None),
        "attendee_hcp_ids": [a.hcp_id for a in visit.attendees],
        "signed": visit.signature is not None,
        "signed_at": visit.signed_at,
        "submitted_at": visit.submitted_at,
        "interaction_id": visit.interaction_id,
        "amends_id": visit.amends_id,
        "amended_by_id": amended_by_id,
        "amendment_reason": visit.amendment_reason,
        "version": visit.version,
        "created_at": visit.created_at,
        "updated_at": visit.updated_at,
        "rule": seen.rule,
        "why": seen.reason,
    }


# ``summary``: no free text. ``existence``: who, when, which HCPs, and why the rest is withheld.
_VISIT_REDACTION = Redaction(
    below_full={"key_messages": lambda v: [], "notes": None, "amendment_reason": None, "follow_up.text": "",
                "meeting_url": None},
    below_summary={"duration_minutes": None, "mode": None, "products": lambda v: [], "samples": lambda v: [],
                   "follow_up": None},
)


def visit_sensitivities(session: DbSession, visits: Sequence[Visit]) -> dict[int, str]:
    """Each visit's sensitivity as it is read: the strictest of the visit's own and its timeline item's
    (an item is raised when a stricter correction supersedes it, e.g. adverse-event wording)."""
    items = interaction_sensitivities(session, (v.interaction_id for v in visits))
    return {v.id: strictest(v.sensitivity, items.get(v.interaction_id) if v.interaction_id else None)
            for v in visits}


def visible_visits(session: DbSession, viewer: Viewer, visits: Sequence[Visit], amended_by: dict[int, int],
                   *, is_read: bool = True) -> list[dict[str, Any]]:
    """The visits as ``viewer`` may see them, through the one read path (``crm.access.reads``).

    ``full``: everything but the signature image. ``summary``: no free text. ``existence``: who, when,
    which HCPs, and why the rest is withheld. Full reads of medical/pv visits are logged for compliance,
    one insert per page; ``is_read=False`` for the echo of a write (the audit trail already holds it).
    """
    sensitivities = visit_sensitivities(session, visits)
    shape: Shape[Visit] = Shape(
        what="visit",
        sensitivity=lambda v: sensitivities[v.id],
        dump=lambda v, seen: _dump_visit(v, seen, sensitivities[v.id], amended_by.get(v.id)),
        redaction=_VISIT_REDACTION,
        logged=lambda v: ((v.interaction_id, v.hcp_id),),
    )
    return read_records(session, viewer, visits, shape, log=is_read)


def visible_visit(
    session: DbSession, viewer: Viewer, visit: Visit, amended_by_id: int | None = None, *, is_read: bool = True
) -> dict[str, Any]:
    """``visible_visits`` for one visit."""
    amended = {visit.id: amended_by_id} if amended_by_id is not None else {}
    return visible_visits(session, viewer, [visit], amended, is_read=is_read)[0]


def list_visits(
    session: DbSession,
    *,
    owner_id: int | None = None,
    status: str | None = None,
    hcp_id: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Visit], str | None]:
    """Visits newest first (occurred_at, then id), keyset-paged; ``hcp_id`` matches attendees too."""
    query = select(Visit)
    if owner_id is not None:
        query = query.where(Visit.owner_id == owner_id)
    if status is not None:
        query = query.where(Visit.status == status)
    if hcp_id is not None:
        attended = exists().where(VisitAttendee.visit_id == Visit.id, VisitAttendee.hcp_id == hcp_id)
        query = query.where(or_(Visit.hcp_id == hcp_id, attended))
    return keyset_page(session, query, Visit.occurred_at, Visit.id, limit, cursor)


def follow_ups_due(session: DbSession, user: Any, until_date: date) -> list[Visit]:
    """The submitted visits of ``user`` whose follow-up date is on or before ``until_date``, oldest first.

    Left out: visits corrected by an amendment (the amendment carries the follow-up) and follow-ups
    already done, i.e. the same owner has since submitted a later visit to the same HCP.
    """
    amended = select(Visit.amends_id).where(Visit.amends_id.is_not(None))
    later = aliased(Visit)
    done = exists().where(
        later.owner_id == Visit.owner_id,
        later.hcp_id == Visit.hcp_id,
        later.status == "submitted",
        later.occurred_at > Visit.occurred_at,
        later.id.not_in(amended),
    )
    query = (
        select(Visit)
        .where(
            Visit.owner_id == user.id,
            Visit.status == "submitted",
            Visit.follow_up_date.is_not(None),
            Visit.follow_up_date <= until_date,
            Visit.id.not_in(amended),
            ~done,
        )
        .order_by(Visit.follow_up_date, Visit.id)
    )
    return list(session.scalars(query))


def follow_ups_shown(session: DbSession, viewer: Viewer, visits: Sequence[Visit]) -> list[dict[str, Any]]:
    """Follow-ups (``follow_ups_due``) for a list: date, HCP, and the text only where the viewer may read
    the visit in full (a visit that turned out to be an adverse-event report is `pv`, also for its owner).
    """
    shown = visible_visits(session, viewer, visits, {})
    return [{"id": v.id, "hcp_id": v.hcp_id, "hcp": v.hcp, "follow_up_date": v.follow_up_date,
             "follow_up_text": (s["follow_up"] or {}).get("text") or None, "redacted": s["redacted"]}
            for v, s in zip(visits, shown, strict=True)]
