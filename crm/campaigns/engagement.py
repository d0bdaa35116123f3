"""The email platform's events, recorded exactly once and put where they belong.

``ingest_events`` takes a batch already parsed and checked by the adapter (``crm.integrations.sendgrid``)
and, in a number of queries that does not grow with the batch:

- keeps each event once: ``sg_event_id`` is unique, inserts skip what exists (a replay, or the same
  batch on another worker at the same moment, adds nothing);
- ties it to an HCP by the ``hcp_id`` custom argument, else by the blind index of the address (a merged
  HCP's events go to the record it was merged into); an event that matches no HCP is kept, unmatched;
- puts an ``email.*`` item on the HCP's timeline (source ``esp``, external id ``sg_event_id``);
- withdraws consent for ``unsubscribe``, ``group_unsubscribe`` and ``spamreport`` (source ``esp``), and
  marks the address invalid for a hard ``bounce`` or a ``dropped`` for a bounced/invalid address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from crm.audit import services as audit
from crm.campaigns.models import Campaign, EmailEvent, EmailTemplate
from crm.db import DbSession, among, insert_ignoring_conflicts, utcnow
from crm.hcps.models import HCP
from crm.security.crypto import blind_index
from crm.timeline.services import Fact, record_interactions

# platform event type -> timeline kind (``processed`` and unknown types are kept but not on the timeline)
KINDS = {
    "delivered": "email.delivered", "open": "email.opened", "click": "email.clicked", "bounce": "email.bounced",
    "dropped": "email.dropped", "deferred": "email.deferred", "spamreport": "email.spamreport",
    "unsubscribe": "email.unsubscribed", "group_unsubscribe": "email.unsubscribed",
}
KNOWN_TYPES = frozenset({"processed", *KINDS})
WITHDRAWING = frozenset({"unsubscribe", "group_unsubscribe", "spamreport"})
LABELS = {"delivered": "delivered", "open": "opened", "click": "link clicked", "bounce": "bounced",
          "dropped": "dropped", "deferred": "deferred", "spamreport": "reported as spam",
          "unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed from the group"}
# ``dropped`` reasons that mean the address itself does not work (others: unsubscribed, spam reported...).
_DEAD_ADDRESS_DROPS = ("bounced address", "invalid")


@dataclass(frozen=True)
class IncomingEmailEvent:
    """One platform event, checked and stripped of personal data except the address (kept apart)."""

    sg_event_id: str
    platform_type: str
    occurred_at: datetime
    email: str | None = None
    hcp_id: int | None = None
    campaign_id: int | None = None
    reason: str | None = None
    bounce_type: str | None = None
    url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def event_type(self) -> str:
        return self.platform_type if self.platform_type in KNOWN_TYPES else "unknown"


@dataclass
class IngestResult:
    received: int = 0
    recorded: int = 0
    duplicates: int = 0
    unmatched: int = 0
    timeline_items: int = 0
    consent_withdrawals: int = 0
    emails_invalid: int = 0


def _resolve_hcps(session: DbSession, ids: set[int], bidxs: set[str]) -> tuple[dict[int, int], dict[str, int]]:
    """``({custom-arg hcp id: HCP id}, {blind index: HCP id})``, merged records followed to the survivor."""
    # id -> (email_bidx, status, merged_into_id), plain tuples: a batch reads a few thousand of them
    rows: dict[int, tuple[str | None, str, int | None]] = {}
    columns = (HCP.id, HCP.email_bidx, HCP.status, HCP.merged_into_id)
    # Two lookups, not one with OR: PostgreSQL answers an OR of two long lists with a full scan.
    # Both always run (one may be empty), so a batch takes the same number of queries whatever it holds.
    for column, values in ((HCP.id, ids), (HCP.email_bidx, bidxs)):
        for hcp_id, bidx, status, merged_into in session.execute(
                select(*columns).where(among(session, column, sorted(values)))):
            rows[hcp_id] = (bidx, status, merged_into)
    for _ in range(5):  # merge chains are short; each hop is one query for the whole batch
        missing = {r[2] for r in rows.values() if r[2] and r[2] not in rows}
        if not missing:
            break
        for hcp_id, bidx, status, merged_into in session.execute(
                select(*columns).where(among(session, HCP.id, sorted(missing)))):
            rows[hcp_id] = (bidx, status, merged_into)

    def final(hcp_id: int) -> int:
        seen = 0
        while (nxt := rows[hcp_id][2]) and nxt in rows and seen < 5:
            hcp_id = nxt
            seen += 1
        return hcp_id

    by_id = {i: final(i) for i in ids if i in rows}
    by_bidx: dict[str, int] = {}
    # Several records with one address: the active one, else the lowest id (merged ones lead to the survivor).
    candidates = [(status != "active", hcp_id, bidx) for hcp_id, (bidx, status, _m) in rows.items() if bidx in bidxs]
    for _inactive, hcp_id, bidx in sorted(candidates):
        if bidx not in by_bidx:
            by_bidx[bidx] = final(hcp_id)
    return by_id, by_bidx


def _campaigns(session: DbSession, ids: set[int]) -> dict[int, Any]:
    return {row.id: row for row in session.execute(
        select(Campaign.id, Campaign.name, EmailTemplate.purpose, EmailTemplate.products)
        .join(EmailTemplate, EmailTemplate.id == Campaign.template_id).where(among(session, Campaign.id, sorted(ids))))}


def ingest_events(session: DbSession, events: Sequence[IncomingEmailEvent]) -> IngestResult:
    """Record a batch of platform events; see the module docstring. Runs in the caller's transaction."""
    result = IngestResult(received=len(events))
    unique: dict[str, IncomingEmailEvent] = {}
    for e in events:
        unique.setdefault(e.sg_event_id, e)
    keys = list(unique)
    seen = set(session.scalars(select(EmailEvent.sg_event_id).where(among(session, EmailEvent.sg_event_id, keys))))
    fresh = [e for k, e in unique.items() if k not in seen]
    result.duplicates = len(events) - len(fresh)
    if not fresh:
        return result

    bidx_of: dict[str, str | None] = {}
    for e in fresh:
        if e.email and e.email not in bidx_of:
            bidx_of[e.email] = blind_index(e.email)
    by_id, by_bidx = _resolve_hcps(session, {e.hcp_id for e in fresh if e.hcp_id is not None},
                                   {b for b in bidx_of.values() if b})
    campaigns = _campaigns(session, {e.campaign_id for e in fresh if e.campaign_id is not None})

    now = utcnow()
    rows: list[dict[str, Any]] = []
    tied: dict[str, tuple[int | None, str | None]] = {}
    for e in fresh:
        bidx = bidx_of.get(e.email) if e.email else None
        hcp_id, matched_by = None, None
        if e.hcp_id is not None and e.hcp_id in by_id:
            hcp_id, matched_by = by_id[e.hcp_id], "hcp_id"
        elif bidx and bidx in by_bidx:
            hcp_id, matched_by = by_bidx[bidx], "email"
        tied[e.sg_event_id] = (hcp_id, matched_by)
        rows.append({
            "sg_event_id": e.sg_event_id, "event_type": e.event_type, "platform_type": e.platform_type[:60],
            "occurred_at": e.occurred_at, "received_at": now, "hcp_id": hcp_id,
            "campaign_id": e.campaign_id if e.campaign_id in campaigns else None, "matched_by": matched_by,
            "email_bidx": bidx,
            # The address is kept (encrypted) only while nobody is found for it.
            "email": e.email if hcp_id is None else None, "raw": e.raw,
        })
    inserted = {r[0] for r in insert_ignoring_conflicts(session, EmailEvent.__table__, rows, ["sg_event_id"],
                                                        ["sg_event_id"])}
    result.recorded = len(inserted)
    result.duplicates = len(events) - len(inserted)
    mine = [e for e in fresh if e.sg_event_id in inserted]
    result.unmatched = sum(1 for e in mine if tied[e.sg_event_id][0] is None)
    if not mine:  # another worker recorded the whole batch a moment ago
        return result

    facts = []
    withdrawals: list[tuple[IncomingEmailEvent, int]] = []
    invalid: dict[int, tuple[str, datetime]] = {}
    for e in mine:
        hcp_id = tied[e.sg_event_id][0]
        kind = KINDS.get(e.event_type)
        if hcp_id is None or kind is None:
            continue
        campaign = campaigns.get(e.campaign_id) if e.campaign_id is not None else None
        facts.append(_fact(e, hcp_id, kind, campaign))
        if e.event_type in WITHDRAWING:
            withdrawals.append((e, hcp_id))
        if _dead_address(e):
            invalid[hcp_id] = (f"{e.event_type}: {e.reason or e.bounce_type or 'address rejected'}", e.occurred_at)
    result.timeline_items = len(facts)
    record_interactions(session, None, facts, channel="email", source="esp")
    result.consent_withdrawals = _withdraw(session, withdrawals, campaigns)
    if invalid:
        from crm.hcps.services import mark_emails_invalid

        result.emails_invalid = mark_emails_invalid(session, None, invalid)
    audit.record(session, None, "email_events.ingest", "email_events", mine[0].sg_event_id,
                 audit.created({"received": result.received, "recorded": result.recorded,
                                "duplicates": result.duplicates, "unmatched": result.unmatched,
                                "timeline_items": result.timeline_items,
                                "consent_withdrawals": result.consent_withdrawals,
                                "emails_invalid": result.emails_invalid}))
    return result


def _fact(e: IncomingEmailEvent, hcp_id: int, kind: str, campaign: Any) -> Fact:
    label = LABELS[e.event_type]
    details: dict[str, Any] = {"sg_event_id": e.sg_event_id, "event": e.event_type}
    if campaign is not None:
        details.update(campaign_id=campaign.id, campaign_name=campaign.name, purpose=campaign.purpose)
    for name in ("reason", "bounce_type", "url"):
        value = getattr(e, name)
        if value:
            details[name] = value
    what = f": {campaign.name}" if campaign is not None else ""
    return Fact(hcp_id=hcp_id, occurred_at=e.occurred_at, kind=kind, external_id=e.sg_event_id,
                summary=f"Email {label}{what}", safe_summary=f"Email {label}{what}", details=details,
                products=tuple(campaign.products or ()) if campaign is not None else (),
                owner_role="marketer" if campaign is not None else "system")


def _dead_address(e: IncomingEmailEvent) -> bool:
    if e.event_type == "bounce":
        return (e.bounce_type or "bounce") != "blocked"  # "blocked" is a temporary refusal, not a dead address
    if e.event_type == "dropped":
        reason = (e.reason or "").lower()
        return any(marker in reason for marker in _DEAD_ADDRESS_DROPS)
    return False


def _withdraw(session: DbSession, withdrawals: list[tuple[IncomingEmailEvent, int]], campaigns: dict[int, Any]) -> int:
    """One ledger withdrawal per unsubscribe/spam report (idempotent on the event id), for the whole batch
    at once (``withdraw_many``). The purpose is the campaign's; without a known campaign, and for spam
    reports (the platform then stops all mail to the address), every purpose."""
    if not withdrawals:
        return 0
    from crm.consent.services import Withdrawal, withdraw_many

    now = utcnow()
    batch = []
    for e, hcp_id in withdrawals:
        campaign = campaigns.get(e.campaign_id) if e.campaign_id is not None else None
        purpose = campaign.purpose if campaign is not None and e.event_type != "spamreport" else "all"
        batch.append(Withdrawal(hcp_id, "email", purpose, min(e.occurred_at, now), e.sg_event_id,
                                {"event_id": e.sg_event_id}))
    return len(withdraw_many(session, None, "esp", batch))
