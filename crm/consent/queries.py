"""Consent reads: serialisation with evidence visibility, compliance lists, CSV exports.

Everyone sees state, channel, purpose, date and source; evidence only compliance and admin, and
each read of it is logged as a ``SensitiveRead`` (what ``consent_evidence``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from crm.access.policy import Viewer, can_see_consent_evidence
from crm.auth.models import User
from crm.consent.listeners import needed_consent
from crm.consent.models import ConsentEvent, ConsentReview, ConsentState
from crm.consent.services import (
    LEGACY_EVIDENCE_HASH_SCHEME,
    PAIRS,
    ContactDecision,
    PairState,
    read_evidence,
    verify_evidence,
)
from crm.db import DbSession, insert_after_reads, utcnow
from crm.hcps.models import HCP, Territory
from crm.reports import csv_safe, to_csv  # noqa: F401  (used by the consent views)
from crm.schemas import keyset_page
from crm.timeline.models import Interaction, SensitiveRead


def log_evidence_read(session: DbSession, viewer: Viewer, hcp_id: int) -> None:
    """A read of consent evidence on the compliance read log (kept back to the end of a read-only
    request on SQLite, like every sensitive read: ``crm.db.insert_after_reads``)."""
    insert_after_reads(session, SensitiveRead.__table__, [
        {"viewer_id": viewer.user_id, "what": "consent_evidence", "interaction_id": None, "hcp_id": hcp_id,
         "sensitivity": None, "occurred_at": utcnow()}])


def _users(session: DbSession, ids: Iterable[int | None]) -> dict[int, User]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(wanted)))}


def serialize_events(session: DbSession, viewer: Viewer, events: Sequence[ConsentEvent]) -> list[dict[str, Any]]:
    """Ledger events for ``viewer``; evidence decrypted only when the policy allows it, and then logged."""
    decision = can_see_consent_evidence(viewer)
    users = _users(session, (e.captured_by_id for e in events))
    if decision.allowed and any(e.evidence for e in events):
        for hcp_id in sorted({e.hcp_id for e in events}):
            log_evidence_read(session, viewer, hcp_id)
    out = []
    for e in events:
        evidence = read_evidence(e) if e.evidence else {}
        user = users.get(e.captured_by_id) if e.captured_by_id else None
        out.append({
            "id": e.id, "hcp_id": e.hcp_id, "channel": e.channel, "purpose": e.purpose, "event": e.event_type,
            "occurred_at": e.occurred_at, "recorded_at": e.recorded_at, "source": e.source,
            "captured_by": ({"id": user.id, "name": user.name, "role": user.role} if user
                            else {"id": None, "name": None, "role": e.captured_by_role}),
            "notice_version": e.notice_version, "notice_text_hash": e.notice_text_hash,
            "valid_until": e.valid_until, "refers_to_event_id": e.refers_to_event_id,
            "merged_from_event_id": e.merged_from_event_id, "origin_hcp_id": e.origin_hcp_id,
            "evidence_fields": sorted(evidence),
            # The digest is proof for those who may see what it proves: shown, with its scheme and whether
            # the evidence still matches it, only where the evidence is shown (an unkeyed digest of a
            # short form id would otherwise give the id away to anyone who hashes guesses).
            "evidence_hash": e.evidence_hash if decision.allowed else None,
            "evidence_hash_scheme": (e.evidence_hash_scheme or LEGACY_EVIDENCE_HASH_SCHEME)
            if decision.allowed and e.evidence_hash else None,
            "evidence_verified": verify_evidence(e) if decision.allowed else None,
            "evidence": evidence if decision.allowed else None,
            "evidence_visible": decision.allowed, "evidence_rule": decision.rule,
        })
    return out


def serialize_state(ps: PairState) -> dict[str, Any]:
    return {"channel": ps.channel, "purpose": ps.purpose, "state": ps.state, "since": ps.since,
            "valid_until": ps.valid_until, "source": ps.source, "event_ids": list(ps.event_ids)}


def serialize_decision(hcp_id: int, channel: str, purpose: str, d: ContactDecision) -> dict[str, Any]:
    return {"hcp_id": hcp_id, "channel": channel, "purpose": purpose, "at": d.at, "allowed": d.allowed,
            "rule": d.rule, "reason": d.reason, "state": d.state, "valid_until": d.valid_until,
            "evidence_event_ids": list(d.evidence_event_ids)}


def ledger_page(session: DbSession, hcp_id: int, *, channel: str | None, purpose: str | None, limit: int,
                cursor: str | None) -> tuple[list[ConsentEvent], str | None]:
    """The ledger newest first, keyset-paged on (occurred_at, id)."""
    q = select(ConsentEvent).where(ConsentEvent.hcp_id == hcp_id)
    if channel:
        q = q.where(ConsentEvent.channel == channel)
    if purpose:
        q = q.where(ConsentEvent.purpose == purpose)
    return keyset_page(session, q, ConsentEvent.occurred_at, ConsentEvent.id, limit, cursor)


def serialize_reviews(session: DbSession, reviews: Sequence[ConsentReview]) -> list[dict[str, Any]]:
    users = _users(session, (r.reviewer_id for r in reviews))
    return [{"id": r.id, "hcp_id": r.hcp_id, "event_id": r.event_id, "outcome": r.outcome, "note": r.note,
             "reviewer": {"id": r.reviewer_id, "name": users[r.reviewer_id].name if r.reviewer_id in users else None},
             "created_at": r.created_at} for r in reviews]


# -- compliance lists --------------------------------------------------------------------------------

def gaps_page(session: DbSession, *, limit: int, cursor: str | None, since: datetime | None = None,
              until: datetime | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Interactions marked ``consent_gap``, newest first (keyset on occurred_at, id)."""
    q = select(Interaction).where(Interaction.consent_gap.is_(True))
    if since is not None:
        q = q.where(Interaction.occurred_at >= since)
    if until is not None:
        q = q.where(Interaction.occurred_at < until)
    rows, next_cursor = keyset_page(session, q, Interaction.occurred_at, Interaction.id, limit, cursor)
    items = []
    for item in rows:
        needed = needed_consent(item)
        items.append({"interaction_id": item.id, "occurred_at": item.occurred_at, "channel": item.channel,
                      "kind": item.kind, "owner_role": item.owner_role,
                      "hcp_ids": sorted(p.hcp_id for p in item.participants),
                      "needed": {"channel": needed[0], "purpose": needed[1]} if needed else None})
    return items, next_cursor


def expiring(session: DbSession, *, within_days: int, territory_ids: Sequence[int] | None = None,
             include_expired: bool = True, now: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Granted consents lapsing within ``within_days`` (and, for re-consent, those already lapsed or
    expired), soonest first."""
    now = now or utcnow()
    horizon = now + timedelta(days=within_days)
    lapsing = and_(ConsentState.state == "granted", ConsentState.valid_until <= horizon)
    if not include_expired:
        lapsing = and_(lapsing, ConsentState.valid_until > now)
    cond = or_(lapsing, ConsentState.state == "expired") if include_expired else lapsing
    q = (select(ConsentState, HCP, Territory.code)
         .join(HCP, HCP.id == ConsentState.hcp_id)
         .outerjoin(Territory, Territory.id == HCP.territory_id)
         .where(cond, HCP.status.notin_(["erased", "merged"])))
    if territory_ids is not None:
        q = q.where(HCP.territory_id.in_(list(territory_ids)))
    q = q.order_by(ConsentState.valid_until, ConsentState.hcp_id, ConsentState.channel, ConsentState.purpose)
    out = []
    for state, hcp, code in session.execute(q.limit(limit)):
        effective = "expired" if state.state == "expired" or (state.valid_until and state.valid_until <= now) \
            else "granted"
        out.append({"hcp_id": hcp.id, "hcp_name": hcp.full_name, "territory": code, "channel": state.channel,
                    "purpose": state.purpose, "state": effective, "valid_until": state.valid_until})
    return out


def coverage(session: DbSession, now: datetime | None = None, hcp_where: Any = None
             ) -> tuple[int, list[dict[str, Any]]]:
    """HCPs per (channel, purpose) and state, for the HCPs that can be contacted at all; ``hcp_where``
    (a condition on ``HCP``, e.g. a segment's) narrows them (insights use it per segment)."""
    now = now or utcnow()
    among_hcps = [HCP.status.notin_(["erased", "merged"])] + ([hcp_where] if hcp_where is not None else [])
    total = session.scalar(select(func.count()).select_from(HCP).where(*among_hcps)) or 0
    effective = case(
        (and_(ConsentState.state == "granted", ConsentState.valid_until <= now), "expired"),
        else_=ConsentState.state,
    )
    rows = session.execute(
        select(ConsentState.channel, ConsentState.purpose, effective.label("state"), func.count())
        .join(HCP, HCP.id == ConsentState.hcp_id)
        .where(*among_hcps)
        .group_by(ConsentState.channel, ConsentState.purpose, effective)
    ).all()
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for channel, purpose, state, n in rows:
        counts.setdefault((channel, purpose), {})[state] = n
    items = []
    for channel, purpose in PAIRS:
        c = counts.get((channel, purpose), {})
        known = sum(c.values())
        row: dict[str, Any] = {
            "channel": channel, "purpose": purpose, "granted": c.get("granted", 0), "pending": c.get("pending", 0),
            "withdrawn": c.get("withdrawn", 0), "expired": c.get("expired", 0), "none": max(total - known, 0)}
        row["coverage_pct"] = round(100 * row["granted"] / total, 1) if total else 0.0
        items.append(row)
    return total, items

