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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import select

from crm.audit import services as audit
from crm.campaigns.models import Campaign, EmailEvent, EmailTemplate
from crm.db import DbSession, among, driver_time, dump_json, insert_driver_rows, utcnow
from crm.hcps.models import HCP
from crm.security.crypto import EncryptedString, blind_indexes
from crm.timeline.services import NO_DETAILS, Fact, record_interactions

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


class IncomingEmailEvent(NamedTuple):
    """One platform event, checked and stripped of personal data except the address (kept apart). A named
    tuple: a webhook batch makes a thousand of them."""

    sg_event_id: str
    platform_type: str
    occurred_at: datetime
    email: str | None = None
    hcp_id: int | None = None
    campaign_id: int | None = None
    reason: str | None = None
    bounce_type: str | None = None
    url: str | None = None
    raw: Mapping[str, Any] = NO_DETAILS

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


def _hcp_rows(session: DbSession, column: Any, values: set[int] | set[str],
              rows: dict[int, tuple[str | None, str, int | None]]) -> None:
    """HCPs whose ``column`` is among ``values`` into ``rows`` (id -> (email_bidx, status, merged_into_id)),
    plain tuples: a batch reads a thousand of them, through the connection (a Core statement: no ORM
    loading; the session was flushed by the ingest's first read)."""
    rows.update((hcp_id, (bidx, status, merged_into)) for hcp_id, bidx, status, merged_into in session.connection(
    ).execute(select(HCP.id, HCP.email_bidx, HCP.status, HCP.merged_into_id).where(
        among(session, column, sorted(values)))))


def _resolve_hcps(session: DbSession, ids: set[int], bidx_wanted: Callable[[dict[int, int]], set[str]]
                  ) -> tuple[dict[int, int], dict[str, int]]:
    """``({custom-arg hcp id: HCP id}, {blind index: HCP id})``, merged records followed to the survivor.
    The blind indexes looked up are ``bidx_wanted(by_id)``: those of the events that the custom argument
    did not tie (most of a batch carries it; PostgreSQL answers a long list of addresses with a full scan)."""
    rows: dict[int, tuple[str | None, str, int | None]] = {}
    # Two lookups, not one with OR: PostgreSQL answers an OR of two long lists with a full scan.
    # Both always run (one may be empty), so a batch takes the same number of queries whatever it holds.
    _hcp_rows(session, HCP.id, ids, rows)
    by_id_rows = dict(rows)

    def final(hcp_id: int, known: dict[int, tuple[str | None, str, int | None]]) -> int:
        seen = 0
        while (nxt := known[hcp_id][2]) and nxt in known and seen < 5:
            hcp_id = nxt
            seen += 1
        return hcp_id

    def follow_merges() -> None:
        for _ in range(5):  # merge chains are short; each hop is one query for the whole batch
            missing = {r[2] for r in rows.values() if r[2] and r[2] not in rows}
            if not missing:
                break
            _hcp_rows(session, HCP.id, missing, rows)

    if any(r[2] for r in by_id_rows.values()):
        follow_merges()
    by_id = {i: final(i, rows) for i in ids if i in rows}
    bidxs = bidx_wanted(by_id)
    _hcp_rows(session, HCP.email_bidx, bidxs, rows)
    follow_merges()
    by_bidx: dict[str, int] = {}
    # Several records with one address: the active one, else the lowest id (merged ones lead to the survivor).
    candidates = [(status != "active", hcp_id, bidx) for hcp_id, (bidx, status, _m) in rows.items() if bidx in bidxs]
    for _inactive, hcp_id, bidx in sorted(candidates):
        if bidx not in by_bidx:
            by_bidx[bidx] = final(hcp_id, rows)
    return by_id, by_bidx


def _campaigns(session: DbSession, ids: set[int]) -> dict[int, Any]:
    return {row.id: row for row in session.execute(
        select(Campaign.id, Campaign.name, EmailTemplate.purpose, EmailTemplate.products)
        .join(EmailTemplate, EmailTemplate.id == Campaign.template_id).where(among(session, Campaign.id, sorted(ids))))}


_EVENT_KEYS = ("sg_event_id", "event_type", "platform_type", "occurred_at", "received_at", "hcp_id", "campaign_id",
               "matched_by", "email_bidx", "email", "raw")


def ingest_events(session: DbSession, events: Sequence[IncomingEmailEvent]) -> IngestResult:
    """Record a batch of platform events; see the module docstring. Runs in the caller's transaction.

    Built for batches of thousands: plain tuples from the parsed events straight to the driver, the blind
    index computed once per address, side effects (timeline, consent, contact points) set-based."""
    result = IngestResult(received=len(events))
    unique: dict[str, IncomingEmailEvent] = {}
    for e in events:
        if e.sg_event_id not in unique:
            unique[e.sg_event_id] = e
    # Replays are common (the platform retries): one indexed read spares them the lookups and inserts.
    seen = set(session.scalars(select(EmailEvent.sg_event_id).where(
        among(session, EmailEvent.sg_event_id, list(unique)))))
    fresh = [e for k, e in unique.items() if k not in seen] if seen else list(unique.values())
    result.duplicates = len(events) - len(fresh)
    if not fresh:
        return result

    bidx_of = blind_indexes({e.email for e in fresh if e.email})

    def unmatched_addresses(by_id: dict[int, int]) -> set[str]:
        out = set()
        for e in fresh:
            if e.email and (e.hcp_id is None or e.hcp_id not in by_id):
                b = bidx_of.get(e.email)
                if b:
                    out.add(b)
        return out

    by_id, by_bidx = _resolve_hcps(session, {e.hcp_id for e in fresh if e.hcp_id is not None}, unmatched_addresses)
    campaigns = _campaigns(session, {e.campaign_id for e in fresh if e.campaign_id is not None})

    dialect = session.get_bind().dialect.name
    to_time = driver_time(dialect)
    now = to_time(utcnow())
    times: dict[datetime, Any] = {}
    encrypt = None
    rows: list[tuple[Any, ...]] = []
    unmatched: list[str] = []
    # The timeline items and side effects are built in the same pass, for the events this insert records;
    # another worker's (rare: the same batch at the same moment) are dropped below.
    facts: list[Fact] = []
    effects: list[tuple[IncomingEmailEvent, int]] = []  # unsubscribes, spam reports, dead addresses
    details_of: dict[int | None, dict[str, Any]] = {}
    for e in fresh:
        bidx = bidx_of.get(e.email) if e.email else None
        hcp_id, matched_by = None, None
        if e.hcp_id is not None and e.hcp_id in by_id:
            hcp_id, matched_by = by_id[e.hcp_id], "hcp_id"
        elif bidx and bidx in by_bidx:
            hcp_id, matched_by = by_bidx[bidx], "email"
        email = None
        if hcp_id is None:
            unmatched.append(e.sg_event_id)
            if e.email is not None:  # the address is kept (encrypted) only while nobody is found
                if encrypt is None:
                    encrypt = cast(EncryptedString, EmailEvent.__table__.c.email.type).batch_encryptor()
                email = encrypt(e.email)
        at = times.get(e.occurred_at)
        if at is None:
            at = times[e.occurred_at] = to_time(e.occurred_at)
        event_type = e.platform_type
        campaign = campaigns.get(e.campaign_id) if e.campaign_id is not None else None
        rows.append((e.sg_event_id, event_type if event_type in KNOWN_TYPES else "unknown", event_type[:60],
                     at, now, hcp_id, campaign.id if campaign is not None else None, matched_by, bidx, email,
                     dump_json(e.raw)))
        kind = KINDS.get(event_type)
        if hcp_id is None or kind is None:
            continue
        campaign_id = campaign.id if campaign is not None else None
        # The details: the campaign's part is the same for all its events (built once), then the event's.
        base = details_of.get(campaign_id)
        if base is None:
            base = details_of[campaign_id] = (
                {} if campaign is None else
                {"campaign_id": campaign.id, "campaign_name": campaign.name, "purpose": campaign.purpose})
        details = {"sg_event_id": e.sg_event_id, "event": event_type, **base}
        if e.reason:
            details["reason"] = e.reason
        if e.bounce_type:
            details["bounce_type"] = e.bounce_type
        if e.url:
            details["url"] = e.url
        summary = _summary(event_type, campaign)
        facts.append(Fact(hcp_id, e.occurred_at, kind, e.sg_event_id, summary, summary, details,
                          tuple(campaign.products or ()) if campaign is not None else (),
                          None, "marketer" if campaign is not None else "system"))
        if event_type in WITHDRAWING or event_type == "bounce" or event_type == "dropped":
            effects.append((e, hcp_id))
    inserted = {r[0] for r in insert_driver_rows(session, EmailEvent.__table__, _EVENT_KEYS, rows, ["sg_event_id"],
                                                 ["sg_event_id"], json_keys=("raw",))}
    result.recorded = len(inserted)
    result.duplicates = len(events) - len(inserted)
    if not inserted:  # another worker recorded the whole batch a moment ago
        return result
    first = fresh[0].sg_event_id
    if len(inserted) < len(fresh):  # theirs are not ours to put on the timeline
        unmatched = [k for k in unmatched if k in inserted]
        facts = [f for f in facts if f.external_id in inserted]
        effects = [(e, h) for e, h in effects if e.sg_event_id in inserted]
        first = next(e.sg_event_id for e in fresh if e.sg_event_id in inserted)
    result.unmatched = len(unmatched)
    withdrawals = [(e, hcp_id) for e, hcp_id in effects if e.platform_type in WITHDRAWING]
    invalid: dict[int, tuple[str, datetime]] = {}
    for e, hcp_id in effects:
        if _dead_address(e):
            invalid[hcp_id] = (f"{e.platform_type}: {e.reason or e.bounce_type or 'address rejected'}", e.occurred_at)
    result.timeline_items = len(facts)
    record_interactions(session, None, facts, channel="email", source="esp", hcps_checked=True)
    result.consent_withdrawals = _withdraw(session, withdrawals, campaigns)
    if invalid:
        from crm.hcps.services import mark_emails_invalid

        result.emails_invalid = mark_emails_invalid(session, None, invalid)
    audit.record(session, None, "email_events.ingest", "email_events", first,
                 audit.created({"received": result.received, "recorded": result.recorded,
                                "duplicates": result.duplicates, "unmatched": result.unmatched,
                                "timeline_items": result.timeline_items,
                                "consent_withdrawals": result.consent_withdrawals,
                                "emails_invalid": result.emails_invalid}))
    return result


@lru_cache(maxsize=512)
def _summary_text(event_type: str, campaign_name: str | None) -> str:
    what = f": {campaign_name}" if campaign_name is not None else ""
    return f"Email {LABELS[event_type]}{what}"


def _summary(event_type: str, campaign: Any) -> str:
    return _summary_text(event_type, campaign.name if campaign is not None else None)


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
