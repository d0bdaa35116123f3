"""Events: creation, invitations (consent-checked), registrations, attendance and transfers of value.

Attendance follows one rule: one event is one current ``event.attended`` interaction carrying every
attendee. When attendance grows or shrinks, a new item with the new attendee list supersedes the old
one, so each attendee's timeline shows the event once. A no-show is the HCP's own ``event.no_show``
item. Services flush and audit; the request (or the import command) commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import render_template
from sqlalchemy import extract, func, select
from sqlalchemy.exc import IntegrityError

from crm.access.policy import Viewer, require_write
from crm.access.reads import Redaction, Shape, Sight, read_records
from crm.audit import services as audit
from crm.db import DbSession, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.events.currencies import CURRENCIES, amount_problem
from crm.events.models import (
    ATTENDANCE_STATUSES,
    CAP_ACTIONS,
    EVENT_SENSITIVITIES,
    EVENT_TYPES,
    INVITATION_CHANNELS,
    INVITED,
    TRANSFER_KINDS,
    Attendance,
    DisclosureConsent,
    Event,
    Invitation,
    Registration,
    TransferCap,
    TransferOfValue,
)
from crm.hcps.models import HCP
from crm.timeline.models import Interaction
from crm.timeline.services import record_interaction

TYPE_LABELS = {
    "congress": "Congress",
    "webinar": "Webinar",
    "speaker_programme": "Speaker programme",
    "round_table": "Round table",
}
KIND_LABELS = {
    "meal": "Meal",
    "travel": "Travel",
    "accommodation": "Accommodation",
    "speaker_fee": "Speaker fee",
    "registration_fee": "Registration fee",
}
# Where no cap is configured, a country still reports in one currency: Open Payments is in USD.
DEFAULT_REPORTING_CURRENCY = {"US": "USD"}


# -- events ----------------------------------------------------------------------------------------

def get_event(session: DbSession, event_id: int, *, lock: bool = False) -> Event:
    stmt = select(Event).where(Event.id == event_id)
    if lock:
        # Attendance rebuilds the event's one "attended" item; writers of one event take turns.
        stmt = stmt.with_for_update()
    event = session.scalar(stmt)
    if event is None:
        raise NotFound(f"There is no event with id {event_id}.")
    return event


def create_event(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> tuple[Event, bool]:
    """Create an event (marketer, medical). A repeated ``external_id`` returns the existing event."""
    require_write(viewer, "event.write")
    external_id = (data.get("external_id") or "").strip() or None
    if external_id is not None:
        existing = session.scalar(select(Event).where(Event.external_id == external_id))
        if existing is not None:
            return existing, False
    errors: dict[str, list[str]] = {}
    name = (data.get("name") or "").strip()
    if not name:
        errors["name"] = ["must not be empty"]
    if data.get("type") not in EVENT_TYPES:
        errors["type"] = [f"must be one of {', '.join(EVENT_TYPES)}"]
    sensitivity = data.get("sensitivity") or "standard"
    if sensitivity not in EVENT_SENSITIVITIES:
        errors["sensitivity"] = [f"must be one of {', '.join(EVENT_SENSITIVITIES)}"]
    starts_at, ends_at = data.get("starts_at"), data.get("ends_at")
    if starts_at is None or starts_at.tzinfo is None:
        errors["starts_at"] = ["required, with an offset or Z"]
    if ends_at is None or ends_at.tzinfo is None:
        errors["ends_at"] = ["required, with an offset or Z"]
    elif starts_at is not None and starts_at.tzinfo is not None and ends_at <= starts_at:
        errors["ends_at"] = ["must be after starts_at"]
    venue = (data.get("venue") or "").strip() or None
    url = (data.get("url") or "").strip() or None
    if venue is None and url is None:
        errors["venue"] = ["give a venue or a url"]
    if url is not None and not url.lower().startswith(("https://", "http://")):
        errors["url"] = ["must be an http(s) address"]
    organiser = (data.get("organiser") or "").strip()
    if not organiser:
        errors["organiser"] = ["must not be empty"]
    country = (data.get("country") or "US").strip().upper()
    if len(country) != 2 or not country.isalpha():
        errors["country"] = ["must be an ISO 3166 two-letter code"]
    if errors:
        raise Invalid("The event cannot be created.", errors=errors)
    event = Event(
        name=name, type=data["type"], starts_at=starts_at, ends_at=ends_at, venue=venue, url=url,
        products=list(dict.fromkeys(p.strip() for p in data.get("products") or [] if p and p.strip())),
        organiser=organiser, sensitivity=sensitivity, country=country, external_id=external_id,
        created_by_id=getattr(actor, "id", None),
    )
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except IntegrityError:
        winner = session.scalar(select(Event).where(Event.external_id == external_id)) if external_id else None
        if winner is None:
            raise
        return winner, False
    audit.record(session, actor, "event.create", "event", event.id,
                 audit.created({"name": name, "type": event.type, "starts_at": starts_at, "ends_at": ends_at,
                                "venue": venue, "url": url, "products": event.products, "organiser": organiser,
                                "sensitivity": sensitivity, "country": country, "external_id": external_id}))
    return event, True


def event_page(session: DbSession, limit: int, cursor_values: tuple[datetime, int] | None,
               upcoming_only: bool = False) -> tuple[list[Event], tuple[datetime, int] | None]:
    """Events newest start first, keyset on (starts_at, id)."""
    stmt = select(Event)
    if upcoming_only:
        stmt = stmt.where(Event.ends_at >= utcnow())
    if cursor_values is not None:
        at, last_id = cursor_values
        stmt = stmt.where((Event.starts_at < at) | ((Event.starts_at == at) & (Event.id < last_id)))
    rows = list(session.scalars(stmt.order_by(Event.starts_at.desc(), Event.id.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, (rows[-1].starts_at, rows[-1].id)


def _owner_role(session: DbSession, actor: Any, event: Event) -> str:
    """The department the event's items belong to: the actor's, or for imports the organiser's."""
    role = getattr(actor, "role", None)
    if role:
        return str(role)
    if event.created_by_id is not None:
        from crm.auth.models import User

        creator = session.get(User, event.created_by_id)
        if creator is not None:
            return creator.role
    return "marketer"


def _existing_hcps(session: DbSession, hcp_ids: Iterable[int], field_name: str = "hcp_ids") -> dict[int, HCP]:
    ids = list(dict.fromkeys(hcp_ids))
    found = {h.id: h for h in session.scalars(select(HCP).where(HCP.id.in_(ids)))} if ids else {}
    missing = [i for i in ids if i not in found]
    if missing:
        raise Invalid(errors={field_name: [f"unknown HCP id(s): {', '.join(map(str, missing))}"]})
    return found


# -- invitations -----------------------------------------------------------------------------------

@dataclass
class InvitationResult:
    sent: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    cap_warnings: list[dict[str, Any]] = field(default_factory=list)


def invite(session: DbSession, actor: Any, viewer: Viewer, event: Event, hcp_ids: Iterable[int],
           channel: str = "email") -> InvitationResult:
    """Invite HCPs to an event. By email, consent (email, events) is checked per HCP at this instant and
    HCPs without it are skipped with the reason; the mails leave only after the commit.

    Already-invited HCPs are skipped (no second mail). Each HCP's running annual transfer total is
    checked against the cap of their country; an HCP over it is reported, not refused (the cap
    applies to transfers, and the invitation screen shows it before anyone is invited).
    """
    require_write(viewer, "event.write")
    if channel not in INVITATION_CHANNELS:
        raise Invalid(errors={"channel": [f"must be one of {', '.join(INVITATION_CHANNELS)}"]})
    ids = list(dict.fromkeys(hcp_ids))
    if not ids:
        raise Invalid(errors={"hcp_ids": ["choose at least one HCP"]})
    hcps = _existing_hcps(session, ids)
    now = utcnow()
    result = InvitationResult()
    existing = {inv.hcp_id: inv for inv in session.scalars(
        select(Invitation).where(Invitation.event_id == event.id, Invitation.hcp_id.in_(ids)))}
    decisions: dict[int, Any] = {}
    if channel == "email":
        from crm.consent.services import can_contact_many

        decisions = can_contact_many(session, ids, "email", "events", now)
    for status in cap_statuses(session, [hcps[i] for i in ids], now.year).values():
        if status["over_cap"] or status["warning"]:
            result.cap_warnings.append({"hcp_id": status["hcp_id"], "warning": status["warning"]})
    mails: list[tuple[HCP, Invitation]] = []
    for hcp_id in ids:
        hcp = hcps[hcp_id]
        inv = existing.get(hcp_id)
        if inv is not None and inv.status in INVITED:
            result.skipped.append({"hcp_id": hcp_id, "reason": f"already invited on {inv.invited_at:%Y-%m-%d}",
                                   "rule": "already-invited"})
            continue
        reason, rule = _skip_reason(hcp, channel, decisions.get(hcp_id))
        if inv is None:
            inv = Invitation(event_id=event.id, hcp_id=hcp_id, channel=channel)
            session.add(inv)
        inv.channel, inv.invited_by_id, inv.invited_at = channel, getattr(actor, "id", None), now
        if reason is not None:
            inv.status, inv.reason, inv.rule = "skipped", reason, rule
            result.skipped.append({"hcp_id": hcp_id, "reason": reason, "rule": rule})
            continue
        # By email the invitation is queued until its mail has left (the outbox moves it to sent or failed).
        inv.status, inv.reason = ("queued" if channel == "email" else "sent"), None
        inv.rule = decisions[hcp_id].rule if hcp_id in decisions else "invitation-recorded"
        item, _ = record_interaction(
            session, actor, hcp_ids=[hcp_id], occurred_at=now, channel="event", kind="event.invited",
            summary=f"Invited to {event.name}", safe_summary=f"Invited to a {TYPE_LABELS[event.type].lower()}",
            details={"event_id": event.id, "event_name": event.name, "channel": channel,
                     "consent_rule": inv.rule},
            sensitivity=event.sensitivity, products=event.products, owner_role=_owner_role(session, actor, event),
            audit_changes=False,
        )
        inv.interaction_id = item.id
        result.sent.append(hcp_id)
        if channel == "email":
            mails.append((hcp, inv))
    session.flush()
    audit.record(session, actor, "event.invite", "event", event.id,
                 audit.created({"channel": channel, "sent": result.sent,
                                "skipped": [{"hcp_id": s["hcp_id"], "rule": s["rule"]} for s in result.skipped]}))
    if mails:
        _send_invitations(session, event, mails)
    return result


def _skip_reason(hcp: HCP, channel: str, decision: Any) -> tuple[str | None, str | None]:
    if hcp.merged_into_id is not None or hcp.status in ("merged", "erased"):
        return f"the HCP record is {hcp.status}", f"hcp-{hcp.status}"
    if channel != "email":
        return None, None
    if decision is None or not decision.allowed:
        rule = decision.rule if decision is not None else "consent-unknown"
        why = decision.reason if decision is not None and decision.reason else "no granted consent"
        return f"no consent for email/events: {why}", rule
    if not hcp.email:
        return "no email address on record", "no-email-address"
    return None, None


def _send_invitations(session: DbSession, event: Event, mails: list[tuple[HCP, Invitation]]) -> None:
    """Build each mail now (inside the request, with its unsubscribe link) and put it in the mail outbox;
    it is handed over after the commit and the invitation follows its mail (queued -> sent | failed)."""
    from crm.consent.services import unsubscribe_headers
    from crm.integrations.email import EmailMessage
    from crm.mail.services import OutgoingMail, enqueue_many

    outgoing = []
    for hcp, inv in mails:
        context = {"hcp": hcp, "event": event, "type_label": TYPE_LABELS[event.type]}
        message = EmailMessage(
            to=hcp.email or "",
            subject=f"Invitation: {event.name}",
            text=render_template("events/mail/invitation.txt", **context),
            html=render_template("events/mail/invitation.html", **context),
            headers=unsubscribe_headers(session, hcp.id, "events", f"event-invitation:{inv.id}"),
        )
        outgoing.append(OutgoingMail(message, f"invitation:{inv.id}", hcp_id=hcp.id, invitation_id=inv.id))
    enqueue_many(session, outgoing, kind="invitation")


# -- registrations ---------------------------------------------------------------------------------

def register(session: DbSession, actor: Any, viewer: Viewer | None, event: Event, hcp_id: int, *,
             external_id: str | None = None, registered_at: datetime | None = None,
             source: str = "crm") -> tuple[Registration, bool]:
    """Register an HCP for an event; registering twice returns the first registration."""
    if viewer is not None:
        require_write(viewer, "event.write")
    hcp = _existing_hcps(session, [hcp_id], "hcp_id")[hcp_id]
    existing = session.scalar(select(Registration).where(Registration.event_id == event.id,
                                                         Registration.hcp_id == hcp.id))
    if existing is not None:
        return existing, False
    when = registered_at or utcnow()
    reg = Registration(event_id=event.id, hcp_id=hcp.id, registered_at=when, source=source,
                       external_id=(external_id or "").strip() or None, recorded_by_id=getattr(actor, "id", None))
    session.add(reg)
    session.flush()
    item, _ = record_interaction(
        session, actor, hcp_ids=[hcp.id], occurred_at=when, channel="event", kind="event.registered",
        source="event_platform" if source == "event_platform" else "crm",
        summary=f"Registered for {event.name}", safe_summary=f"Registered for a {TYPE_LABELS[event.type].lower()}",
        details={"event_id": event.id, "event_name": event.name}, sensitivity=event.sensitivity,
        products=event.products, owner_role=_owner_role(session, actor, event), audit_changes=False,
    )
    reg.interaction_id = item.id
    audit.record(session, actor, "event.register", "event", event.id,
                 audit.created({"hcp_id": hcp.id, "registration_id": reg.id, "source": source}))
    return reg, True


# -- attendance ------------------------------------------------------------------------------------

@dataclass
class AttendanceResult:
    attendance: Attendance
    created: bool
    changed: bool


def record_attendance(session: DbSession, actor: Any, viewer: Viewer | None, event: Event, hcp_id: int,
                      status: str, *, external_id: str | None = None, source: str = "crm") -> AttendanceResult:
    """Mark an HCP attended or no-show. Idempotent on (event, HCP) and on (event, external id).

    The same mark again changes nothing. A changed mark corrects the timeline: a no-show who did come
    joins the event's attended item (their no-show item is superseded by it); an attendee marked
    no-show leaves it and gets a no-show item.
    """
    if viewer is not None:
        require_write(viewer, "event.write")
    if status not in ATTENDANCE_STATUSES:
        raise Invalid(errors={"status": [f"must be one of {', '.join(ATTENDANCE_STATUSES)}"]})
    hcp = _existing_hcps(session, [hcp_id], "hcp_id")[hcp_id]
    if hcp.merged_into_id is not None:
        raise Invalid(errors={"hcp_id": [f"HCP {hcp.id} was merged into HCP {hcp.merged_into_id}; use that one"]})
    event = get_event(session, event.id, lock=True)
    external_id = (external_id or "").strip() or None
    by_hcp = session.scalar(select(Attendance).where(Attendance.event_id == event.id, Attendance.hcp_id == hcp_id))
    if external_id is not None:
        by_ext = session.scalar(select(Attendance).where(Attendance.event_id == event.id,
                                                         Attendance.external_id == external_id))
        if by_ext is not None and by_ext.hcp_id != hcp_id:
            raise Conflict(f"External id {external_id!r} is already the attendance of HCP {by_ext.hcp_id} "
                           f"at this event.")
        if by_hcp is not None and by_hcp.external_id not in (None, external_id):
            raise Conflict(f"HCP {hcp_id}'s attendance at this event came with external id "
                           f"{by_hcp.external_id!r}, not {external_id!r}.")
    if by_hcp is not None and by_hcp.status == status:
        if external_id is not None and by_hcp.external_id is None:
            by_hcp.external_id = external_id
            session.flush()
        return AttendanceResult(by_hcp, False, False)
    previous = by_hcp.status if by_hcp is not None else None
    if by_hcp is None:
        by_hcp = Attendance(event_id=event.id, hcp_id=hcp_id, status=status, source=source, external_id=external_id,
                            recorded_by_id=getattr(actor, "id", None), recorded_at=utcnow())
        session.add(by_hcp)
    else:
        by_hcp.status, by_hcp.recorded_at = status, utcnow()
        by_hcp.recorded_by_id = getattr(actor, "id", None)
        by_hcp.external_id = by_hcp.external_id or external_id
    session.flush()
    item_source = "event_platform" if source == "event_platform" else "crm"
    owner_role = _owner_role(session, actor, event)
    if status == "attended":
        group = _rebuild_attended_item(session, actor, event, item_source, owner_role)
        old_no_show = session.get(Interaction, by_hcp.no_show_interaction_id) if by_hcp.no_show_interaction_id else None
        if old_no_show is not None and old_no_show.superseded_by_id is None and group is not None:
            # They came after all: the attended item is the correction of their no-show item.
            old_no_show.superseded_by_id = group.id
        by_hcp.no_show_interaction_id = None
    else:
        item, _ = record_interaction(
            session, actor, hcp_ids=[hcp_id], occurred_at=event.starts_at, channel="event", kind="event.no_show",
            source=item_source, summary=f"Did not attend {event.name}",
            safe_summary=f"Did not attend a {TYPE_LABELS[event.type].lower()}",
            details={"event_id": event.id, "event_name": event.name, "event_type": event.type},
            sensitivity=event.sensitivity, products=event.products, owner_role=owner_role, audit_changes=False,
        )
        by_hcp.no_show_interaction_id = item.id
        if previous == "attended":
            current = _current_attended_item(session, event)
            group = _rebuild_attended_item(session, actor, event, item_source, owner_role)
            if group is None and current is not None:
                # The last attendee was a mistake: their no-show item corrects the attended item.
                current.superseded_by_id = item.id
    session.flush()
    audit.record(session, actor, "event.attendance", "event", event.id,
                 audit.diff({"hcp_id": hcp_id, "status": previous} if previous else {},
                            {"hcp_id": hcp_id, "status": status, "source": source, "external_id": external_id}))
    return AttendanceResult(by_hcp, previous is None, True)


def _current_attended_item(session: DbSession, event: Event) -> Interaction | None:
    return session.get(Interaction, event.attendance_interaction_id) if event.attendance_interaction_id else None


def _rebuild_attended_item(session: DbSession, actor: Any, event: Event, source: str,
                           owner_role: str) -> Interaction | None:
    """Make the event's one current attended item carry exactly the HCPs marked attended."""
    attendees = list(session.scalars(
        select(Attendance.hcp_id).where(Attendance.event_id == event.id, Attendance.status == "attended")
        .order_by(Attendance.hcp_id)))
    current = _current_attended_item(session, event)
    if current is not None and sorted(p.hcp_id for p in current.participants) == attendees:
        return current
    if not attendees:
        event.attendance_interaction_id = None
        return None
    item, _ = record_interaction(
        session, actor, hcp_ids=attendees, occurred_at=event.starts_at, channel="event", kind="event.attended",
        source=source, summary=f"Attended {event.name}",
        safe_summary=f"Attended a {TYPE_LABELS[event.type].lower()}",
        details={"event_id": event.id, "event_name": event.name, "event_type": event.type, "venue": event.venue,
                 "url": event.url, "attendee_count": len(attendees)},
        sensitivity=event.sensitivity, products=event.products, supersedes=current, owner_role=owner_role,
        audit_changes=False,
    )
    event.attendance_interaction_id = item.id
    return item


def attendance_list(session: DbSession, event: Event) -> list[Attendance]:
    return list(session.scalars(select(Attendance).where(Attendance.event_id == event.id).order_by(Attendance.id)))


def tick_list(session: DbSession, event: Event) -> list[dict[str, Any]]:
    """Everyone expected at the event (invited and sent, registered, or already marked), by name."""
    invited = select(Invitation.hcp_id).where(Invitation.event_id == event.id, Invitation.status.in_(INVITED))
    registered = select(Registration.hcp_id).where(Registration.event_id == event.id)
    marked = {a.hcp_id: a.status for a in attendance_list(session, event)}
    ids = set(session.scalars(invited)) | set(session.scalars(registered)) | set(marked)
    hcps: Any = session.scalars(select(HCP).where(HCP.id.in_(ids)).order_by(HCP.last_name, HCP.first_name, HCP.id)) \
        if ids else []
    return [{"hcp": h, "status": marked.get(h.id)} for h in hcps]


# -- transfers of value ----------------------------------------------------------------------------

def reporting_currency(session: DbSession, country: str) -> str | None:
    cap = session.get(TransferCap, country)
    if cap is not None:
        return cap.currency
    return DEFAULT_REPORTING_CURRENCY.get(country)


def annual_totals(session: DbSession, hcp_ids: Iterable[int], year: int) -> dict[int, dict[str, Decimal]]:
    """Running totals per HCP per currency for one calendar year, in one grouped query."""
    ids = list(dict.fromkeys(hcp_ids))
    out: dict[int, dict[str, Decimal]] = defaultdict(dict)
    if not ids:
        return out
    rows = session.execute(
        select(TransferOfValue.hcp_id, TransferOfValue.currency, func.sum(TransferOfValue.amount))
        .where(TransferOfValue.hcp_id.in_(ids), extract("year", TransferOfValue.paid_on) == year)
        .group_by(TransferOfValue.hcp_id, TransferOfValue.currency)
    )
    for hcp_id, currency, total in rows:
        out[hcp_id][currency] = Decimal(total or 0)
    return out


def _fmt(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount:,.2f}"


def cap_statuses(session: DbSession, hcps: list[HCP], year: int) -> dict[int, dict[str, Any]]:
    """Per HCP: the year's totals, the cap of their country, and a warning when at or over it."""
    totals = annual_totals(session, [h.id for h in hcps], year)
    countries = {h.country for h in hcps}
    caps = {c.country: c for c in session.scalars(select(TransferCap).where(TransferCap.country.in_(countries)))} \
        if countries else {}
    out: dict[int, dict[str, Any]] = {}
    for h in hcps:
        per_currency = totals.get(h.id, {})
        cap = caps.get(h.country)
        status: dict[str, Any] = {
            "hcp_id": h.id, "year": year,
            "totals": [{"currency": c, "amount": str(a)} for c, a in sorted(per_currency.items())],
            "cap": None, "over_cap": False, "warning": None,
        }
        if cap is not None:
            spent = per_currency.get(cap.currency, Decimal(0))
            status["cap"] = {"country": cap.country, "currency": cap.currency, "annual_cap": str(cap.annual_cap),
                             "action": cap.action, "remaining": str(max(cap.annual_cap - spent, Decimal(0)))}
            if spent >= cap.annual_cap:
                status["over_cap"] = spent > cap.annual_cap
                status["warning"] = (f"{_fmt(spent, cap.currency)} received in {year}: at or over the "
                                     f"{h.country} annual cap of {_fmt(cap.annual_cap, cap.currency)}")
            elif spent >= cap.annual_cap * Decimal("0.8"):
                status["warning"] = (f"{_fmt(spent, cap.currency)} received in {year}: close to the "
                                     f"{h.country} annual cap of {_fmt(cap.annual_cap, cap.currency)}")
        out[h.id] = status
    return out


@dataclass
class TransferResult:
    transfer: TransferOfValue
    warning: str | None
    status: dict[str, Any]


def record_transfer(session: DbSession, actor: Any, viewer: Viewer, event: Event, *, hcp_id: int, kind: str,
                    amount: Decimal, currency: str, paid_on: date,
                    description: str | None = None) -> TransferResult:
    """Record a transfer of value to an HCP for an event and check the annual cap of their country.

    A currency outside ISO 4217, a zero or negative amount, or more decimals than the currency has are
    422. Where the HCP's country reports in one currency (its cap's, or USD for the US), the transfer
    must be in it. Over the cap, ``block`` refuses (422) and ``warn`` records with a warning.
    """
    require_write(viewer, "transfer.write")
    errors: dict[str, list[str]] = {}
    currency = (currency or "").strip().upper()
    if kind not in TRANSFER_KINDS:
        errors["kind"] = [f"must be one of {', '.join(TRANSFER_KINDS)}"]
    if currency not in CURRENCIES:
        errors["currency"] = [f"{currency or 'empty'} is not a known ISO 4217 currency code"]
    else:
        problem = amount_problem(amount, currency)
        if problem:
            errors["amount"] = [problem]
    if paid_on > datetime.now(UTC).date():
        errors["date"] = ["must not be in the future"]
    if errors:
        raise Invalid("The transfer of value cannot be recorded.", errors=errors)
    hcp = _existing_hcps(session, [hcp_id], "hcp_id")[hcp_id]
    # Two transfers to one HCP at once must not both slip under the cap.
    session.execute(select(HCP.id).where(HCP.id == hcp.id).with_for_update())
    expected = reporting_currency(session, hcp.country)
    if expected is not None and currency != expected:
        raise Invalid(errors={"currency": [f"transfers to HCPs in {hcp.country} are recorded in {expected}; "
                                           f"convert at the rate of the payment date"]})
    year = paid_on.year
    cap = session.get(TransferCap, hcp.country)
    warning = None
    if cap is not None:
        spent = annual_totals(session, [hcp.id], year).get(hcp.id, {}).get(cap.currency, Decimal(0))
        after = spent + amount
        if after > cap.annual_cap:
            text = (f"brings {hcp.full_name}'s {year} total to {_fmt(after, cap.currency)}, over the "
                    f"{hcp.country} annual cap of {_fmt(cap.annual_cap, cap.currency)}")
            if cap.action == "block":
                raise Invalid("The annual cap for transfers of value would be exceeded.",
                              errors={"amount": [f"refused: {text}"]})
            warning = f"Recorded, but it {text}."
    transfer = TransferOfValue(event_id=event.id, hcp_id=hcp.id, kind=kind, amount=amount, currency=currency,
                               paid_on=paid_on, description=(description or "").strip() or None,
                               recorded_by_id=getattr(actor, "id", None))
    session.add(transfer)
    session.flush()
    audit.record(session, actor, "transfer.create", "transfer_of_value", transfer.id,
                 audit.created({"event_id": event.id, "hcp_id": hcp.id, "kind": kind, "amount": str(amount),
                                "currency": currency, "paid_on": paid_on, "cap_warning": warning}))
    status = cap_statuses(session, [hcp], year)[hcp.id]
    return TransferResult(transfer, warning, status)


def transfers_for_event(session: DbSession, event: Event) -> list[TransferOfValue]:
    return list(session.scalars(select(TransferOfValue).where(TransferOfValue.event_id == event.id)
                                .order_by(TransferOfValue.paid_on, TransferOfValue.id)))


def transfers_for_hcp(session: DbSession, hcp_id: int, year: int) -> list[TransferOfValue]:
    return list(session.scalars(select(TransferOfValue).where(
        TransferOfValue.hcp_id == hcp_id, extract("year", TransferOfValue.paid_on) == year)
        .order_by(TransferOfValue.paid_on, TransferOfValue.id)))


def set_transfer_cap(session: DbSession, actor: Any, viewer: Viewer, country: str, *, currency: str,
                     annual_cap: Decimal, action: str) -> TransferCap:
    """Configure a country's annual cap (admin): amount, its currency, and whether it warns or blocks."""
    require_write(viewer, "transfer_cap.manage")
    country = (country or "").strip().upper()
    currency = (currency or "").strip().upper()
    errors: dict[str, list[str]] = {}
    if len(country) != 2 or not country.isalpha():
        errors["country"] = ["must be an ISO 3166 two-letter code"]
    if currency not in CURRENCIES:
        errors["currency"] = [f"{currency or 'empty'} is not a known ISO 4217 currency code"]
    elif amount_problem(annual_cap, currency):
        errors["annual_cap"] = [amount_problem(annual_cap, currency) or ""]
    if action not in CAP_ACTIONS:
        errors["action"] = [f"must be one of {', '.join(CAP_ACTIONS)}"]
    if errors:
        raise Invalid("The cap cannot be saved.", errors=errors)
    cap = session.get(TransferCap, country)
    before = {"currency": cap.currency, "annual_cap": str(cap.annual_cap), "action": cap.action} if cap else {}
    if cap is None:
        cap = TransferCap(country=country, currency=currency, annual_cap=annual_cap, action=action)
        session.add(cap)
    else:
        cap.currency, cap.annual_cap, cap.action = currency, annual_cap, action
    session.flush()
    audit.record(session, actor, "transfer_cap.set", "transfer_cap", country,
                 audit.diff(before, {"currency": currency, "annual_cap": str(annual_cap), "action": action}))
    return cap


# -- consent to named disclosure (EFPIA) -----------------------------------------------------------

def record_disclosure_consent(session: DbSession, actor: Any, viewer: Viewer, hcp_id: int, granted: bool,
                              occurred_at: datetime | None = None) -> DisclosureConsent:
    """Append whether the HCP agreed to be named in the transparency report (never updated in place)."""
    require_write(viewer, "transfer.write")
    hcp = _existing_hcps(session, [hcp_id], "hcp_id")[hcp_id]
    when = occurred_at or utcnow()
    if when.tzinfo is None:
        raise Invalid(errors={"occurred_at": ["Naive datetime refused: include an offset or Z."]})
    row = DisclosureConsent(hcp_id=hcp.id, granted=granted, occurred_at=when, recorded_by_id=getattr(actor, "id", None))
    session.add(row)
    session.flush()
    audit.record(session, actor, "disclosure_consent.record", "hcp", hcp.id,
                 audit.created({"granted": granted, "occurred_at": when}))
    return row


def named_disclosure(session: DbSession, hcp_ids: Iterable[int], at: datetime) -> dict[int, bool]:
    """Per HCP, whether the latest disclosure decision at ``at`` allows naming them (default: no)."""
    ids = list(dict.fromkeys(hcp_ids))
    out = dict.fromkeys(ids, False)
    if not ids:
        return out
    rows = session.execute(
        select(DisclosureConsent.hcp_id, DisclosureConsent.granted)
        .where(DisclosureConsent.hcp_id.in_(ids), DisclosureConsent.occurred_at <= at)
        .order_by(DisclosureConsent.hcp_id, DisclosureConsent.occurred_at, DisclosureConsent.id)
    )
    for hcp_id, granted in rows:
        out[hcp_id] = bool(granted)
    return out


# -- reads: through the one read path (crm.access.reads) ------------------------------------------

def _dump_event(event: Event, seen: Sight) -> dict[str, Any]:
    """The event's columns as they are (times stay datetimes: pages format them, schemas dump them)."""
    return {
        "id": event.id, "name": event.name, "type": event.type, "starts_at": event.starts_at,
        "ends_at": event.ends_at, "venue": event.venue, "url": event.url, "products": list(event.products),
        "organiser": event.organiser, "sensitivity": event.sensitivity, "country": event.country,
        "external_id": event.external_id, "attendance_interaction_id": event.attendance_interaction_id,
    }


# A medical event keeps, for those who may not read it, what every internal user shares about a contact:
# its type, its dates, its country and that it is restricted. Its name, place, organiser and products
# are its content.
_EVENT_REDACTION = Redaction(
    below_full={"name": lambda e: f"{TYPE_LABELS[e.type]} ({e.sensitivity}, details restricted)", "venue": None,
                "url": None, "organiser": ""},
    below_summary={"products": lambda e: []},
)
EVENT_SHAPE: Shape[Event] = Shape(
    what="event", sensitivity=lambda e: e.sensitivity, dump=_dump_event, redaction=_EVENT_REDACTION,
    logged=lambda e: ((e.attendance_interaction_id, None),),
)


def visible_events(session: DbSession, viewer: Viewer, events: Sequence[Event], *,
                   log: bool = True) -> list[dict[str, Any]]:
    """Events as ``viewer`` may see them (a `medical` event: type and dates only for field force and
    marketing); full reads of medical events are logged."""
    return read_records(session, viewer, events, EVENT_SHAPE, log=log)


def visible_event(session: DbSession, viewer: Viewer, event: Event, *, log: bool = True) -> dict[str, Any]:
    """One event through ``visible_events``."""
    return visible_events(session, viewer, [event], log=log)[0]


def visible_attendance(session: DbSession, viewer: Viewer, event: Event,
                       rows: Sequence[Attendance]) -> list[dict[str, Any]]:
    """An event's attendance marks: who was marked, how and when is shared like the timeline items they
    are; the platform's attendee ids only with the event's content. Full reads of a medical event's
    attendance are logged per attendee."""
    def dump(row: Attendance, seen: Sight) -> dict[str, Any]:
        return {"id": row.id, "event_id": row.event_id, "hcp_id": row.hcp_id, "status": row.status,
                "source": row.source, "external_id": row.external_id, "recorded_at": row.recorded_at,
                "no_show_interaction_id": row.no_show_interaction_id,
                "attended_interaction_id": event.attendance_interaction_id if row.status == "attended" else None}

    shape: Shape[Attendance] = Shape(
        what="event", sensitivity=lambda row: event.sensitivity, dump=dump,
        redaction=Redaction(below_full={"external_id": None}),
        logged=lambda row: ((event.attendance_interaction_id if row.status == "attended"
                             else row.no_show_interaction_id, row.hcp_id),),
    )
    return read_records(session, viewer, rows, shape)


def visible_transfers(session: DbSession, viewer: Viewer, transfers: Sequence[TransferOfValue]) -> list[dict[str, Any]]:
    """Transfers of value: amounts are transparency data everyone shares; the note of a transfer made at
    a medical event is its content."""
    def dump(t: TransferOfValue, seen: Sight) -> dict[str, Any]:
        return {"id": t.id, "event_id": t.event_id, "hcp_id": t.hcp_id, "kind": t.kind, "amount": t.amount,
                "currency": t.currency, "paid_on": t.paid_on, "description": t.description,
                "recorded_at": t.recorded_at}

    shape: Shape[TransferOfValue] = Shape(
        what="event", sensitivity=lambda t: t.event.sensitivity, dump=dump,
        redaction=Redaction(below_full={"description": None}),
        logged=lambda t: ((t.event.attendance_interaction_id, t.hcp_id),),
    )
    return read_records(session, viewer, transfers, shape)
