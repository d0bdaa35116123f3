"""KOL profiles, speaker qualifications and event speakers.

An event refuses (422) a speaker who has no qualification covering the topic they speak on, valid over the
event's dates (trained on or before its first day, valid through its last), and a speaker whose fee would
take them over the annual cap on transfers of value of their country (``transfer_caps``, the cap the events
module keeps; for speakers the cap always refuses, whether the country's cap warns or blocks other
transfers). Services take the actor and the policy viewer, audit every write, flush and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from sqlalchemy import extract, func, select
from sqlalchemy.exc import IntegrityError

from crm.access.policy import Viewer, require_write
from crm.audit import services as audit
from crm.db import DbSession, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.events.currencies import CURRENCIES, amount_problem
from crm.events.models import Event, TransferCap
from crm.events.services import annual_totals, reporting_currency
from crm.hcps.models import HCP
from crm.speakers.models import INFLUENCE_TIERS, EventSpeaker, SpeakerQualification

TIER_LABELS = {"international": "International", "national": "National", "regional": "Regional", "local": "Local"}
MAX_TOPICS = 20
MAX_TOPIC_CHARS = 200


def _topics(values: Sequence[str], field: str) -> list[str]:
    """Trimmed, de-duplicated (case-insensitively) topics; blank or too long is 422."""
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        topic = " ".join((value or "").split())
        if not topic:
            raise Invalid(errors={field: ["a topic must not be blank"]})
        if len(topic) > MAX_TOPIC_CHARS:
            raise Invalid(errors={field: [f"a topic has at most {MAX_TOPIC_CHARS} characters"]})
        if topic.casefold() not in seen:
            seen.add(topic.casefold())
            out.append(topic)
    if len(out) > MAX_TOPICS:
        raise Invalid(errors={field: [f"at most {MAX_TOPICS} topics"]})
    return out


def _hcp(session: DbSession, hcp_id: int) -> HCP:
    hcp = session.get(HCP, hcp_id)
    if hcp is None:
        raise NotFound(f"HCP {hcp_id} does not exist.")
    return hcp


def _writable(hcp: HCP, field: str = "hcp_id") -> None:
    if hcp.status == "merged":
        raise Invalid(errors={field: [f"HCP {hcp.id} was merged into HCP {hcp.merged_into_id}; use that record"]})
    if hcp.status == "erased":
        raise Invalid(errors={field: [f"HCP {hcp.id} was erased"]})


# -- KOL profile --------------------------------------------------------------------------------------

def set_kol_profile(session: DbSession, actor: Any, viewer: Viewer, hcp: HCP, *, influence_tier: str | None,
                    expertise: Sequence[str]) -> HCP:
    """Set the HCP's influence tier (or none) and areas of expertise (Medical Affairs, administrators)."""
    require_write(viewer, "kol.write")
    _writable(hcp)
    if influence_tier is not None and influence_tier not in INFLUENCE_TIERS:
        raise Invalid(errors={"influence_tier": [f"must be one of {', '.join(INFLUENCE_TIERS)}"]})
    areas = _topics(expertise, "expertise")
    before = {"influence_tier": hcp.influence_tier, "expertise": list(hcp.expertise or [])}
    after = {"influence_tier": influence_tier, "expertise": areas}
    changes = audit.diff(before, after)
    if changes:
        hcp.influence_tier, hcp.expertise = influence_tier, areas
        session.flush()
        audit.record(session, actor, "hcp.kol_profile", "hcp", hcp.id, changes)
    return hcp


# -- qualifications -----------------------------------------------------------------------------------

def add_qualification(session: DbSession, actor: Any, viewer: Viewer, hcp: HCP, *, topics: Sequence[str],
                      trained_on: date, valid_until: date, note: str | None = None) -> SpeakerQualification:
    """Record that ``hcp`` was trained to speak on ``topics`` (Medical Affairs, administrators).

    ``valid_until`` before ``trained_on``, no topic, or a training in the future: 422.
    """
    require_write(viewer, "speaker.qualify")
    _writable(hcp)
    errors: dict[str, list[str]] = {}
    cleaned = _topics(topics, "topics")
    if not cleaned:
        errors["topics"] = ["name at least one topic"]
    if valid_until < trained_on:
        errors["valid_until"] = ["must be on or after the training date"]
    if trained_on > utcnow().date():
        errors["trained_on"] = ["a training is recorded after it took place: this date is in the future"]
    if errors:
        raise Invalid("The qualification cannot be recorded.", errors=errors)
    qualification = SpeakerQualification(hcp_id=hcp.id, topics=cleaned, trained_on=trained_on,
                                         valid_until=valid_until, note=(note or "").strip() or None,
                                         recorded_by_id=getattr(actor, "id", None))
    session.add(qualification)
    session.flush()
    audit.record(session, actor, "speaker_qualification.create", "speaker_qualification", qualification.id,
                 audit.created({"hcp_id": hcp.id, "topics": cleaned, "trained_on": trained_on.isoformat(),
                                "valid_until": valid_until.isoformat()}))
    return qualification


def qualifications(session: DbSession, hcp_id: int) -> list[SpeakerQualification]:
    """The HCP's qualifications, latest validity first."""
    return list(session.scalars(select(SpeakerQualification).where(SpeakerQualification.hcp_id == hcp_id)
                                .order_by(SpeakerQualification.valid_until.desc(), SpeakerQualification.id.desc())))


def covering(quals: Sequence[SpeakerQualification], topic: str, first_day: date,
             last_day: date) -> SpeakerQualification | None:
    """The qualification that covers ``topic`` (case-insensitively) from ``first_day`` through ``last_day``."""
    wanted = topic.casefold()
    for q in quals:
        if q.trained_on <= first_day and last_day <= q.valid_until and wanted in {t.casefold() for t in q.topics}:
            return q
    return None


# -- event speakers -----------------------------------------------------------------------------------

def _fmt(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount:,.2f}"


def add_speaker(session: DbSession, actor: Any, viewer: Viewer, event: Event, *, hcp_id: int, topic: str,
                fee_amount: Decimal | None = None, fee_currency: str | None = None) -> EventSpeaker:
    """Engage ``hcp_id`` to speak at ``event`` on ``topic`` (marketer, medical: ``event.write``).

    Refused with 422 and the reason: no qualification covering the topic over the event's dates
    (``hcp_id``), a fee that is not a valid amount in the HCP's reporting currency (``fee``), or a fee that
    takes the HCP's transfers of value in the event's year over their country's annual cap (``fee``). The
    same HCP twice: 409. Two engagements of one HCP at once are serialised on the HCP row, so they cannot
    both slip under the cap.
    """
    require_write(viewer, "event.write")
    hcp = _hcp(session, hcp_id)
    _writable(hcp)
    cleaned = _topics([topic], "topic")
    if not cleaned:
        raise Invalid(errors={"topic": ["name the topic the speaker speaks on"]})
    topic = cleaned[0]
    first_day, last_day = event.starts_at.astimezone(UTC).date(), event.ends_at.astimezone(UTC).date()
    qualification = covering(qualifications(session, hcp.id), topic, first_day, last_day)
    if qualification is None:
        held = qualifications(session, hcp.id)
        why = ("has no speaker qualification" if not held else
               f"has no speaker qualification for “{topic}” valid from {first_day.isoformat()} through "
               f"{last_day.isoformat()}")
        raise Invalid("The speaker is not qualified.", errors={"hcp_id": [f"{hcp.full_name} {why}"]})
    # Serialise engagements and transfers of one HCP (record_transfer locks the same row).
    session.execute(select(HCP.id).where(HCP.id == hcp.id).with_for_update())
    if session.scalar(select(EventSpeaker.id).where(EventSpeaker.event_id == event.id,
                                                    EventSpeaker.hcp_id == hcp.id)) is not None:
        raise Conflict(f"{hcp.full_name} already speaks at this event.")
    amount = fee_amount if fee_amount is not None else Decimal(0)
    currency = (fee_currency or "").strip().upper() or None
    if fee_amount is not None:
        expected = reporting_currency(session, hcp.country)
        currency = currency or expected
        if currency is None or currency not in CURRENCIES:
            raise Invalid(errors={"fee": [f"{currency or 'no currency'}: give the fee's ISO 4217 currency"]})
        if expected is not None and currency != expected:
            raise Invalid(errors={"fee": [f"fees to HCPs in {hcp.country} are agreed in {expected}"]})
        problem = amount_problem(fee_amount, currency) if fee_amount != 0 else None
        if problem:
            raise Invalid(errors={"fee": [problem]})
    year = first_day.year
    cap = session.get(TransferCap, hcp.country)
    if cap is not None:
        spent = annual_totals(session, [hcp.id], year).get(hcp.id, {}).get(cap.currency, Decimal(0))
        # Fees agreed for the HCP's engagements at events of that year still to come count too; once an
        # event is over its fee is paid and recorded as a transfer of value (kind speaker_fee), so it is in
        # ``spent`` instead.
        planned = Decimal(session.scalar(
            select(func.coalesce(func.sum(EventSpeaker.fee_amount), 0))
            .join(Event, Event.id == EventSpeaker.event_id)
            .where(EventSpeaker.hcp_id == hcp.id, EventSpeaker.fee_currency == cap.currency,
                   extract("year", Event.starts_at) == year, Event.ends_at >= utcnow())) or 0)
        after = spent + planned + amount
        if after > cap.annual_cap:
            raise Invalid("The speaker is over the annual cap.", errors={"fee": [
                f"refused: {hcp.full_name} has received {_fmt(spent, cap.currency)} in {year}"
                + (f" and has {_fmt(planned, cap.currency)} in agreed speaker fees" if planned else "")
                + f"; this engagement brings it to {_fmt(after, cap.currency)}, over the {hcp.country} annual cap "
                f"of {_fmt(cap.annual_cap, cap.currency)}"]})
    speaker = EventSpeaker(event_id=event.id, hcp_id=hcp.id, topic=topic, qualification_id=qualification.id,
                           fee_amount=fee_amount, fee_currency=currency if fee_amount is not None else None,
                           added_by_id=getattr(actor, "id", None))
    try:
        with session.begin_nested():
            session.add(speaker)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{hcp.full_name} already speaks at this event.") from exc
    audit.record(session, actor, "event_speaker.add", "event_speaker", speaker.id, audit.created({
        "event_id": event.id, "hcp_id": hcp.id, "topic": topic, "qualification_id": qualification.id,
        "fee": str(fee_amount) if fee_amount is not None else None, "currency": speaker.fee_currency}))
    return speaker


def speakers(session: DbSession, event: Event) -> list[EventSpeaker]:
    return list(session.scalars(select(EventSpeaker).where(EventSpeaker.event_id == event.id)
                                .order_by(EventSpeaker.id)))


def speaking_engagements(session: DbSession, hcp_id: int) -> list[tuple[EventSpeaker, Event]]:
    """The events ``hcp_id`` speaks at, latest first (the HCP page)."""
    return [(s, e) for s, e in session.execute(
        select(EventSpeaker, Event).join(Event, Event.id == EventSpeaker.event_id)
        .where(EventSpeaker.hcp_id == hcp_id).order_by(Event.starts_at.desc(), EventSpeaker.id.desc())).all()]
