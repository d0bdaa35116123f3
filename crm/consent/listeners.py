"""Consent gaps: an interaction that was a promotional contact without a granted consent at its
instant is marked ``consent_gap`` (logging what happened is always allowed) and listed for compliance.

The table below is data: kind -> how to tell the consent (channel, purpose) the contact needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import object_session

from crm import signals
from crm.consent.models import PURPOSES
from crm.timeline.models import Interaction

Needed = tuple[str, str] | None


def _visit(item: Interaction) -> Needed:
    # Medical-affairs visits (sensitivity medical) are scientific exchange, not promotion.
    if item.sensitivity != "standard":
        return None
    mode = (item.details or {}).get("mode", "in_person")
    return ("remote_meeting", "promotional") if mode == "remote" else ("visit", "promotional")


def _email(item: Interaction) -> Needed:
    purpose = (item.details or {}).get("purpose") or "promotional"
    return ("email", purpose) if purpose in PURPOSES else ("email", "promotional")


def _call(item: Interaction) -> Needed:
    details = item.details or {}
    reason = details.get("reason") or item.kind.partition(".")[2]
    if details.get("direction") == "outbound" and reason == "product_information":
        return ("phone", "promotional")
    return None


def _survey_answer(item: Interaction) -> Needed:
    # An answer given in a conversation (phone, visit) was a market-research contact on that channel; one
    # given through the HCP's own link followed a mail already checked against consent when it was sent.
    medium = (item.details or {}).get("medium")
    return (medium, "market_research") if medium in ("phone", "visit", "remote_meeting") else None


# kind (exact) or channel prefix ("call_centre.") -> rule
PROMOTIONAL_CONTACTS: dict[str, Callable[[Interaction], Needed]] = {
    "visit.submitted": _visit,
    "email.sent": _email,
    "call_centre.": _call,
    "survey.answered": _survey_answer,
}


def needed_consent(item: Interaction) -> Needed:
    """The (channel, purpose) consent the interaction needed, or None when it was not a promotional contact."""
    rule = PROMOTIONAL_CONTACTS.get(item.kind) or PROMOTIONAL_CONTACTS.get(f"{item.channel}.")
    return rule(item) if rule else None


def mark_consent_gap(item: Interaction, actor: Any = None, created: bool = True, **_: Any) -> None:
    if not created or item.channel == "consent" or item.consent_gap:
        return
    needed = needed_consent(item)
    if needed is None:
        return
    session = object_session(item)
    if session is None:
        return
    from crm.consent.services import can_contact_many

    decisions = can_contact_many(session, [p.hcp_id for p in item.participants], *needed, at=item.occurred_at)
    if any(not d.allowed for d in decisions.values()):
        item.consent_gap = True
        session.flush()


def _maybe_promotional(channel: str, kind: str) -> bool:
    """Kinds ``needed_consent`` may find promotional (it decides on the item itself)."""
    return channel != "consent" and (kind in PROMOTIONAL_CONTACTS or f"{channel}." in PROMOTIONAL_CONTACTS)


signals.listen_to_interactions(mark_consent_gap, wants=_maybe_promotional)


def recheck_gaps_after_backdated_event(event: Any, session: Any = None, **_: Any) -> None:
    """A ledger event that took effect in the past (a paper form entered late, a withdrawal reported
    afterwards) changes what was allowed from then on: decide `consent_gap` again, both ways, for that
    HCP's promotional contacts since the event's instant. Events that take effect now change nothing."""
    from datetime import timedelta

    from sqlalchemy import or_, select
    from sqlalchemy.orm import lazyload

    from crm.consent.services import can_contact_many
    from crm.db import utcnow
    from crm.timeline.models import InteractionParticipant

    if session is None or event.occurred_at >= utcnow() - timedelta(minutes=5):
        return
    # Only kinds that may be promotional contacts are read (one query when there are none).
    kinds = [k for k in PROMOTIONAL_CONTACTS if not k.endswith(".")]
    channels = [k[:-1] for k in PROMOTIONAL_CONTACTS if k.endswith(".")]
    items = session.scalars(
        select(Interaction).join(InteractionParticipant, InteractionParticipant.interaction_id == Interaction.id)
        .where(InteractionParticipant.hcp_id == event.hcp_id, InteractionParticipant.occurred_at >= event.occurred_at,
               Interaction.channel != "consent", or_(Interaction.kind.in_(kinds), Interaction.channel.in_(channels)))
        .options(lazyload(Interaction.products))
    ).all()
    for item in items:
        needed = needed_consent(item)
        if needed is None:
            continue
        decisions = can_contact_many(session, [p.hcp_id for p in item.participants], *needed, at=item.occurred_at)
        gap = any(not d.allowed for d in decisions.values())
        if item.consent_gap != gap:
            item.consent_gap = gap
    session.flush()


signals.consent_changed.connect(recheck_gaps_after_backdated_event)


def recheck_gaps_after_backdated_events(events: Any, session: Any = None, **_: Any) -> None:
    """``recheck_gaps_after_backdated_event`` for a batch of ledger events (``consent_changed_many``) in a
    fixed number of queries: the promotional contacts of the HCPs concerned since each one's earliest
    back-dated event, their participants, and one fold of the ledgers involved at each contact's instant."""
    from datetime import timedelta

    from sqlalchemy import or_, select
    from sqlalchemy.orm import lazyload, selectinload

    from crm.consent.services import allowed_at_many
    from crm.db import among, utcnow
    from crm.timeline.models import InteractionParticipant

    if session is None:
        return
    cutoff = utcnow() - timedelta(minutes=5)
    since: dict[int, Any] = {}
    for event in events:
        if event.occurred_at < cutoff:
            since[event.hcp_id] = min(since.get(event.hcp_id, event.occurred_at), event.occurred_at)
    if not since:
        return
    kinds = [k for k in PROMOTIONAL_CONTACTS if not k.endswith(".")]
    channels = [k[:-1] for k in PROMOTIONAL_CONTACTS if k.endswith(".")]
    found: dict[int, Interaction] = {}
    for item, hcp_id, occurred_at in session.execute(
            select(Interaction, InteractionParticipant.hcp_id, InteractionParticipant.occurred_at)
            .join(InteractionParticipant, InteractionParticipant.interaction_id == Interaction.id)
            .where(among(session, InteractionParticipant.hcp_id, sorted(since)),
                   InteractionParticipant.occurred_at >= min(since.values()), Interaction.channel != "consent",
                   or_(Interaction.kind.in_(kinds), Interaction.channel.in_(channels)))
            .options(lazyload(Interaction.products), selectinload(Interaction.participants))):
        if occurred_at >= since[hcp_id]:
            found[item.id] = item
    checks: list[tuple[Interaction, list[int]]] = []
    requests: list[tuple[int, str, str, Any]] = []
    for item in found.values():
        needed = needed_consent(item)
        if needed is None:
            continue
        ids = [p.hcp_id for p in item.participants]
        checks.append((item, ids))
        requests.extend((h, needed[0], needed[1], item.occurred_at) for h in ids)
    allowed = iter(allowed_at_many(session, requests))
    for item, ids in checks:
        gap = not all([next(allowed) for _ in ids])
        if item.consent_gap != gap:
            item.consent_gap = gap
    session.flush()


signals.consent_changed_many.connect(recheck_gaps_after_backdated_events)


def _register_merge_handlers() -> None:
    # The ledger is append-only: a merge copies the loser's events to the survivor instead of
    # re-pointing them, and rebuilds the survivor's derived state (least-permissive across both).
    from crm.consent.services import merge_consent_states, merge_consents
    from crm.hcps.merge import register_merge_handler

    register_merge_handler("consent_events", merge_consents)
    register_merge_handler("consent_states", merge_consent_states)


_register_merge_handlers()
