"""Consent as evidence: capture, withdrawal, double opt-in, expiry, and the one decision function.

Rules (SPEC section 7):
- The ledger is append-only. The state per (channel, purpose) is derived from it: events of one
  HCP record are folded in ``(occurred_at, id)`` order (the later event wins; at the same instant the
  least permissive event wins, whatever the entry order); a withdrawal may cover
  ``all`` channels and/or ``all`` purposes. When records conflict (an HCP merged from duplicates),
  the least permissive state wins.
- A granted consent lapses at its ``valid_until`` (validity per purpose, default 24 months); reads treat
  it as expired from that instant, whether or not ``crm consent expire`` has written the event yet.
- Email x promotional needs double opt-in (``CRM_DOUBLE_OPT_IN``): a grant records ``requested`` and
  sends a confirmation mail; the consent holds only once the HCP confirms through the link.
- ``can_contact`` / ``can_contact_many`` (``can_contact_many_with`` reads a send point's own columns of the
  HCP along) are the only answer to "may we contact this HCP?".
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import ipaddress
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased

from crm import signals
from crm.access.policy import require_write
from crm.audit import services as audit
from crm.consent import tokens
from crm.consent.models import (
    ALL,
    CONSENT_CHANNELS,
    LEDGER_SOURCES,
    PURPOSES,
    SYSTEM_SOURCE,
    ConsentEvent,
    ConsentReview,
    ConsentState,
    ConsentToken,
    Notice,
)
from crm.db import DbSession, among, insert_ignoring_conflicts, utcnow
from crm.errors import Conflict, Forbidden, Invalid, NotFound
from crm.hcps.models import HCP
from crm.timeline.services import Fact, record_interaction, record_interactions

PAIRS: tuple[tuple[str, str], ...] = tuple((c, p) for c in CONSENT_CHANNELS for p in PURPOSES)

# What each capture source must bring as evidence (a grant without it is refused with 422).
REQUIRED_EVIDENCE: dict[str, tuple[str, ...]] = {
    "visit": ("signature",),
    "paper_form": ("form_id",),
    "call_centre": ("recording_id",),
    "web_form": ("ip_address", "user_agent"),
    "email_link": ("ip_address", "user_agent"),
    "import": ("reference",),
    "esp": ("event_id",),
}
EVIDENCE_FIELDS = ("signature", "form_id", "recording_id", "ip_address", "user_agent", "reference", "event_id",
                   "note")

# Which sources a person of each role may capture; the HCP's own links and outside systems act as
# ``actor=None`` and may use any source.
ROLE_SOURCES: dict[str, frozenset[str]] = {
    "field_rep": frozenset({"visit"}),
    "call_centre": frozenset({"call_centre"}),
    "admin": frozenset({"visit", "call_centre", "paper_form", "import"}),
}

# Ledger sources are not all timeline sources: what was captured here is a `crm` fact.
TIMELINE_SOURCE = {"visit": "crm", "web_form": "crm", "email_link": "crm", "call_centre": "crm",
                   "paper_form": "crm", "import": "import", "esp": "esp", SYSTEM_SOURCE: "crm"}

# Conflicting records: the least permissive wins (lower rank).
_RANK = {"withdrawn": 0, "expired": 1, "pending": 2, "granted": 3}

RULES = {
    "granted": ("consent-granted", "A granted consent holds at that instant"),
    "none": ("no-consent", "No consent was ever given for this channel and purpose"),
    "pending": ("double-opt-in-pending", "The HCP has not yet confirmed the double opt-in"),
    "withdrawn": ("consent-withdrawn", "The HCP withdrew consent"),
    "expired": ("consent-expired", "The consent had expired (past its validity)"),
}

_MAX_SIGNATURE_BYTES = 512 * 1024
_CLOCK_SKEW = timedelta(minutes=5)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PairState:
    """The consent state of one (channel, purpose) pair, and the ledger events it rests on."""

    channel: str
    purpose: str
    state: str = "none"
    since: datetime | None = None
    valid_until: datetime | None = None
    source: str | None = None
    event_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ContactDecision:
    """The answer to "may we contact this HCP on this channel for this purpose at that instant?"."""

    allowed: bool
    rule: str
    evidence_event_ids: tuple[int, ...]
    state: str
    reason: str = ""
    at: datetime | None = None
    valid_until: datetime | None = None


@dataclass
class _Fold:
    state: str = "none"
    since: datetime | None = None
    valid_until: datetime | None = None
    source: str | None = None
    event_ids: list[int] = field(default_factory=list)


# -- small helpers -----------------------------------------------------------------------------------

def add_months(value: datetime, months: int) -> datetime:
    """``value`` plus calendar months; the 31st becomes the last day of a shorter month."""
    month0 = value.month - 1 + months
    year, month = value.year + month0 // 12, month0 % 12 + 1
    day = min(value.day, calendar.monthrange(year, month)[1])
    return value.replace(year=year, month=month, day=day)


def validity_end(start: datetime, purpose: str) -> datetime:
    months = int(current_app.config["CRM_CONSENT_VALIDITY_MONTHS"].get(purpose, 24))
    return add_months(start, months)


def double_opt_in_applies(channel: str, purpose: str) -> bool:
    return channel == "email" and purpose == "promotional" and bool(current_app.config["CRM_DOUBLE_OPT_IN"])


def public_url(endpoint: str, **values: Any) -> str:
    """An absolute link for a mail. Built from ``CRM_PUBLIC_URL``, never from the request's Host
    header (which a client chooses, and which would then end up in a mail to an HCP)."""
    base = current_app.config["CRM_PUBLIC_URL"].rstrip("/")
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return f"{base}{path}"


def _actor_role(actor: Any) -> str:
    return getattr(actor, "role", None) or "system"


def _authorize_capture(session: DbSession, actor: Any, hcp: HCP, source: str) -> None:
    """Role, territory and capture-source rules for a person capturing consent (``actor=None``: the
    HCP through a link, or an outside system)."""
    if actor is None:
        return
    from crm.auth.services import viewer_for

    require_write(viewer_for(session, actor), "consent.capture", [hcp.territory_id])
    allowed = ROLE_SOURCES.get(actor.role, frozenset())
    if source not in allowed:
        raise Forbidden(
            f"A {actor.role} may capture consent with source {', '.join(sorted(allowed)) or '(none)'}, "
            f"not {source}", rule="consent.capture:source")


def _check_pair(channel: str, purpose: str, *, allow_all: bool) -> None:
    errors: dict[str, list[str]] = {}
    channels = CONSENT_CHANNELS + ((ALL,) if allow_all else ())
    purposes = PURPOSES + ((ALL,) if allow_all else ())
    if channel not in channels:
        errors["channel"] = [f"must be one of {', '.join(channels)}"]
    if purpose not in purposes:
        errors["purpose"] = [f"must be one of {', '.join(purposes)}"]
    if errors:
        raise Invalid("Unknown channel or purpose.", errors=errors)


def _check_source(source: str) -> None:
    if source not in LEDGER_SOURCES:
        raise Invalid(errors={"source": [f"must be one of {', '.join(LEDGER_SOURCES)}"]})


def _check_hcp_open(hcp: HCP) -> None:
    if hcp.status == "erased":
        raise Conflict("This HCP has been erased; no consent can be recorded for it.")
    if hcp.status == "merged" or hcp.merged_into_id is not None:
        raise Conflict(f"This HCP was merged into HCP {hcp.merged_into_id}; record consent there.")


def _valid_signature(value: str) -> bool:
    prefix = "data:image/png;base64,"
    if not value.startswith(prefix):
        return False
    try:
        raw = base64.b64decode(value[len(prefix):], validate=True)
    except (binascii.Error, ValueError):
        return False
    return raw.startswith(_PNG_MAGIC) and len(raw) <= _MAX_SIGNATURE_BYTES


def clean_evidence(source: str, evidence: dict[str, Any] | None, *, required: bool) -> dict[str, str]:
    """Evidence as stored: known fields only, non-empty strings, the source's required fields present."""
    evidence = evidence or {}
    errors: dict[str, list[str]] = {}
    out: dict[str, str] = {}
    for key, value in evidence.items():
        if key not in EVIDENCE_FIELDS:
            errors[f"evidence.{key}"] = ["Unknown field."]
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, str):
            errors[f"evidence.{key}"] = ["Not a valid string."]
            continue
        out[key] = value.strip()
    if required:
        for key in REQUIRED_EVIDENCE.get(source, ()):
            if key not in out:
                errors.setdefault(f"evidence.{key}", []).append(f"required for source {source}")
    if "signature" in out and not _valid_signature(out["signature"]):
        errors.setdefault("evidence.signature", []).append(
            "must be a PNG image as a data URL (data:image/png;base64,...) of at most 512 KB")
    if "ip_address" in out:
        try:
            out["ip_address"] = str(ipaddress.ip_address(out["ip_address"]))
        except ValueError:
            errors.setdefault("evidence.ip_address", []).append("not a valid IP address")
    for key, limit in (("user_agent", 1000), ("form_id", 200), ("recording_id", 200), ("reference", 200),
                       ("event_id", 200), ("note", 2000)):
        if key in out and len(out[key]) > limit:
            errors.setdefault(f"evidence.{key}", []).append(f"at most {limit} characters")
    if errors:
        raise Invalid("The consent evidence is missing or invalid.", errors=errors)
    return out


def _occurred(value: datetime | None) -> datetime:
    now = utcnow()
    if value is None:
        return now
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(errors={"occurred_at": ["Naive datetime refused: include an offset or Z."]})
    if value > now + _CLOCK_SKEW:
        raise Invalid(errors={"occurred_at": ["must not be in the future"]})
    return value


def _lock_hcp(session: DbSession, hcp_id: int) -> None:
    """Serialise ledger writers per HCP, so each rebuild sees every earlier append (PostgreSQL row lock;
    SQLite's BEGIN IMMEDIATE already serialises writers)."""
    session.execute(select(HCP.id).where(HCP.id == hcp_id).with_for_update())


def get_hcp(session: DbSession, hcp_id: int) -> HCP:
    hcp = session.get(HCP, hcp_id)
    if hcp is None:
        raise NotFound(f"HCP {hcp_id} does not exist.")
    return hcp


# -- notices -----------------------------------------------------------------------------------------

def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _require_admin(session: DbSession, actor: Any, action: str) -> None:
    if actor is None:
        return
    from crm.auth.services import viewer_for

    require_write(viewer_for(session, actor), action)


def create_notice(session: DbSession, actor: Any, *, language: str, title: str, text: str,
                  country: str | None = None) -> Notice:
    """A new draft notice version for (language, country); numbering continues per pair."""
    _require_admin(session, actor, "notice.manage")
    language = language.strip().lower()
    country = (country or "").strip().upper()
    errors: dict[str, list[str]] = {}
    if not (2 <= len(language) <= 8) or not language.replace("-", "").isalpha():
        errors["language"] = ["must be a language code such as en or de"]
    if country and (len(country) != 2 or not country.isalpha()):
        errors["country"] = ["must be a two-letter country code"]
    if not title.strip():
        errors["title"] = ["must not be empty"]
    if not text.strip():
        errors["text"] = ["must not be empty"]
    if errors:
        raise Invalid("The notice cannot be created.", errors=errors)
    number = (session.scalar(select(func.max(Notice.number)).where(
        Notice.language == language, Notice.country == country)) or 0) + 1
    version = f"{language}{'-' + country if country else ''}-v{number}"
    notice = Notice(version=version, language=language, country=country, number=number, title=title.strip(),
                    text=text, text_hash=text_hash(text), status="draft", created_by_id=getattr(actor, "id", None))
    session.add(notice)
    session.flush()
    audit.record(session, actor, "notice.create", "consent_notice", notice.id,
                 audit.created({"version": version, "title": notice.title, "text_hash": notice.text_hash}))
    return notice


def update_notice(session: DbSession, actor: Any, notice: Notice, *, title: str | None = None,
                  text: str | None = None) -> Notice:
    """Edit a draft. An active (or retired) notice is frozen: a change is a new version (409)."""
    _require_admin(session, actor, "notice.manage")
    if notice.status != "draft":
        raise Conflict(f"Notice {notice.version} is {notice.status} and cannot be edited; "
                       "create a new version instead.")
    before = {"title": notice.title, "text_hash": notice.text_hash}
    if title is not None:
        if not title.strip():
            raise Invalid(errors={"title": ["must not be empty"]})
        notice.title = title.strip()
    if text is not None:
        if not text.strip():
            raise Invalid(errors={"text": ["must not be empty"]})
        notice.text = text
        notice.text_hash = text_hash(text)
    session.flush()
    audit.record(session, actor, "notice.update", "consent_notice", notice.id,
                 audit.diff(before, {"title": notice.title, "text_hash": notice.text_hash}))
    return notice


def activate_notice(session: DbSession, actor: Any, notice: Notice) -> Notice:
    """Make a draft the active version for its (language, country); the previous one is retired."""
    _require_admin(session, actor, "notice.manage")
    if notice.status != "draft":
        raise Conflict(f"Notice {notice.version} is already {notice.status}.")
    now = utcnow()
    for old in session.scalars(select(Notice).where(Notice.language == notice.language,
                                                    Notice.country == notice.country, Notice.status == "active")):
        old.status, old.retired_at = "retired", now
        audit.record(session, actor, "notice.retire", "consent_notice", old.id,
                     audit.diff({"status": "active"}, {"status": "retired"}))
    notice.status, notice.activated_at = "active", now
    session.flush()
    audit.record(session, actor, "notice.activate", "consent_notice", notice.id,
                 audit.diff({"status": "draft"}, {"status": "active"}))
    return notice


def notice_by_version(session: DbSession, version: str) -> Notice | None:
    return session.scalar(select(Notice).where(Notice.version == version))


def active_notice(session: DbSession, language: str = "en", country: str | None = None) -> Notice | None:
    """The active notice for the language, preferring the country's own version."""
    rows = session.scalars(select(Notice).where(Notice.language == language, Notice.status == "active",
                                                Notice.country.in_([(country or "").upper(), ""]))).all()
    rows = sorted(rows, key=lambda n: n.country == "")
    return rows[0] if rows else None


def _notice_for_grant(session: DbSession, version: str | None, source: str) -> Notice:
    if not version:
        raise Invalid("A grant names the notice it was given under.",
                      errors={"notice_version": ["required for a grant"]})
    notice = notice_by_version(session, version)
    if notice is None:
        raise Invalid(errors={"notice_version": [f"unknown notice version {version!r}"]})
    if notice.status == "draft":
        raise Invalid(errors={"notice_version": [f"{version} is a draft; only an active notice can be shown"]})
    if notice.status == "retired" and source not in ("paper_form", "import"):
        raise Invalid(errors={"notice_version": [
            f"{version} is retired; only paper forms and imports may name a retired notice"]})
    return notice


# -- the fold: ledger -> state ---------------------------------------------------------------------

def _applies(e: ConsentEvent, channel: str, purpose: str) -> bool:
    return e.channel in (channel, ALL) and e.purpose in (purpose, ALL)


# Events at the same instant are applied in this order, so the least permissive one is applied last and
# wins whatever order they were entered in (a withdrawal and a grant at the same second: withdrawn).
_SAME_INSTANT_ORDER = {"requested": 0, "granted": 1, "confirmed": 2, "expired": 3, "withdrawn": 4}


def ledger_order(e: Any) -> tuple[datetime, int, int]:
    """The order the fold applies events in: by instant; at the same instant, least permissive last;
    then by entry (id)."""
    return e.occurred_at, _SAME_INSTANT_ORDER.get(e.event_type, 0), e.id


def _fold_record(events: Iterable[ConsentEvent], at: datetime | None) -> _Fold:
    """The state of one HCP record for one pair: events in ``ledger_order``, the later wins."""
    f = _Fold()
    for e in sorted(events, key=ledger_order):
        if at is not None and e.occurred_at > at:
            break
        kind = e.event_type
        if kind == "requested":
            holds = f.state == "granted" and (f.valid_until is None or f.valid_until > e.occurred_at)
            if not holds:  # a renewal request does not suspend a consent that still holds
                f = _Fold("pending", e.occurred_at, None, e.source, [e.id])
        elif kind == "granted":
            f = _Fold("granted", e.occurred_at, e.valid_until, e.source, [e.id])
        elif kind == "confirmed":
            ids = [e.refers_to_event_id, e.id] if e.refers_to_event_id else [e.id]
            f = _Fold("granted", e.occurred_at, e.valid_until, e.source, ids)
        elif kind == "withdrawn":
            f = _Fold("withdrawn", e.occurred_at, None, e.source, [e.id])
        elif kind == "expired" and f.state == "granted" and f.event_ids and e.refers_to_event_id == f.event_ids[-1]:
            f = _Fold("expired", e.occurred_at, f.valid_until, e.source, [*f.event_ids, e.id])
    if at is not None and f.state == "granted" and f.valid_until is not None and f.valid_until <= at:
        # Past validity is expired at once, whether or not the expiry job has run.
        f = _Fold("expired", f.valid_until, f.valid_until, f.source, f.event_ids)
    return f


def _expires_sooner(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and (b is None or a < b)


def fold(events: Iterable[ConsentEvent], channel: str, purpose: str, at: datetime | None) -> PairState:
    """The state of (channel, purpose) from an HCP's ledger at ``at`` (``None``: everything recorded,
    without applying validity, which is how ``consent_states`` stores it).

    Each HCP record (events grouped by ``origin_hcp_id``; more than one after a merge) is folded on
    its own; when records conflict the least permissive state wins; records with nothing to say
    (``none``) do not conflict. Events captured after the merge apply to every record.
    """
    native: list[ConsentEvent] = []
    by_record: dict[int, list[ConsentEvent]] = defaultdict(list)
    for e in events:
        if _applies(e, channel, purpose):
            (native if e.origin_hcp_id == e.hcp_id else by_record[e.origin_hcp_id]).append(e)
    # What the HCP said after a merge was said with both records in view: events captured on the
    # survivor after a record was merged in also apply to that record's stream.
    for record_events in by_record.values():
        merged_at = min(e.recorded_at for e in record_events)
        record_events.extend(e for e in native if e.recorded_at >= merged_at)
    if native:
        by_record[native[0].hcp_id] = native
    best: _Fold | None = None
    for record_events in by_record.values():
        f = _fold_record(record_events, at)
        if f.state == "none":
            continue
        if best is None or _RANK[f.state] < _RANK[best.state] or (
                f.state == best.state == "granted" and _expires_sooner(f.valid_until, best.valid_until)):
            # Between grants the one that lapses first: the records together hold only until then (so
            # the stored state, read with ``effective``, lapses when the ledger read at that instant does).
            best = f
    if best is None:
        return PairState(channel, purpose)
    return PairState(channel, purpose, best.state, best.since, best.valid_until, best.source, tuple(best.event_ids))


def effective(row: ConsentState | PairState, at: datetime) -> str:
    """A stored state read at ``at``: granted past its validity is expired."""
    return _effective(row.state, row.valid_until, at)


def _effective(state: str, valid_until: datetime | None, at: datetime) -> str:
    if state == "granted" and valid_until is not None and valid_until <= at:
        return "expired"
    return state


def _events_for(session: DbSession, hcp_ids: Sequence[int]) -> list[ConsentEvent]:
    return list(session.scalars(select(ConsentEvent).where(ConsentEvent.hcp_id.in_(list(hcp_ids)))))


def _pairs_touched(channel: str, purpose: str) -> list[tuple[str, str]]:
    return [(c, p) for c, p in PAIRS if channel in (c, ALL) and purpose in (p, ALL)]


def rebuild_states(session: DbSession, hcp_id: int, pairs: Iterable[tuple[str, str]] | None = None) -> None:
    """Recompute ``consent_states`` rows of ``hcp_id`` from the ledger (all touched pairs by default)."""
    events = _events_for(session, [hcp_id])
    if pairs is None:
        wanted: set[tuple[str, str]] = set()
        for e in events:
            wanted.update(_pairs_touched(e.channel, e.purpose))
    else:
        wanted = set(pairs)
    existing = {(r.channel, r.purpose): r for r in session.scalars(
        select(ConsentState).where(ConsentState.hcp_id == hcp_id))}
    for channel, purpose in sorted(wanted):
        ps = fold(events, channel, purpose, None)
        row = existing.get((channel, purpose))
        if ps.state == "none":
            if row is not None:
                session.delete(row)
            continue
        if row is None:
            row = ConsentState(hcp_id=hcp_id, channel=channel, purpose=purpose)
            session.add(row)
        row.state, row.since, row.valid_until = ps.state, ps.since, ps.valid_until
        row.source = ps.source
        row.last_event_id = ps.event_ids[-1] if ps.event_ids else None
    session.flush()


# -- reads -------------------------------------------------------------------------------------------

def current_states(session: DbSession, hcp_id: int, at: datetime | None = None) -> list[PairState]:
    """Every (channel, purpose) pair of the HCP now, from the derived table (validity applied)."""
    at = at or utcnow()
    rows = {(r.channel, r.purpose): r for r in session.scalars(
        select(ConsentState).where(ConsentState.hcp_id == hcp_id))}
    out = []
    for channel, purpose in PAIRS:
        r = rows.get((channel, purpose))
        if r is None:
            out.append(PairState(channel, purpose))
            continue
        state = effective(r, at)
        since = r.valid_until if state == "expired" and r.state == "granted" else r.since
        out.append(PairState(channel, purpose, state, since, r.valid_until, r.source,
                             (r.last_event_id,) if r.last_event_id else ()))
    return out


def state_at(session: DbSession, hcp_id: int, at: datetime) -> list[PairState]:
    """Every pair's state at a past instant, answered from the ledger (not from the derived table)."""
    events = _events_for(session, [hcp_id])
    return [fold(events, channel, purpose, at) for channel, purpose in PAIRS]


def ledger(session: DbSession, hcp_id: int) -> list[ConsentEvent]:
    """The HCP's ledger, newest first."""
    return list(session.scalars(select(ConsentEvent).where(ConsentEvent.hcp_id == hcp_id)
                                .order_by(ConsentEvent.occurred_at.desc(), ConsentEvent.id.desc())))


def _decision(ps: PairState, at: datetime) -> ContactDecision:
    return _decide(ps.state, ps.event_ids, ps.valid_until, at)


def _decide(state: str, event_ids: tuple[int, ...], valid_until: datetime | None, at: datetime) -> ContactDecision:
    rule, reason = RULES[state]
    return ContactDecision(state == "granted", rule, event_ids, state, reason, at, valid_until)


def _cited(last_event_id: int | None, event_type: str | None, refers_to: int | None, referred_type: str | None,
           referred_refers_to: int | None) -> tuple[int, ...]:
    """The events a stored state rests on, as the fold lists them: a confirmation with its request; an
    expiry with the grant it ended (and that grant's request, when it was a confirmation)."""
    if not last_event_id:
        return ()
    if event_type == "confirmed" and refers_to:
        return refers_to, last_event_id
    if event_type == "expired" and refers_to:
        if referred_type == "confirmed" and referred_refers_to:
            return referred_refers_to, refers_to, last_event_id
        return refers_to, last_event_id
    return (last_event_id,)


# How far back "now" is still read from the derived table (a performance choice only: both reads give
# the same answer).
_NOW_SLACK = timedelta(seconds=1)
_EVENT_COLUMNS = (ConsentEvent.id, ConsentEvent.hcp_id, ConsentEvent.origin_hcp_id, ConsentEvent.channel,
                  ConsentEvent.purpose, ConsentEvent.event_type, ConsentEvent.occurred_at, ConsentEvent.recorded_at,
                  ConsentEvent.valid_until, ConsentEvent.source, ConsentEvent.refers_to_event_id)


def _states_at(session: DbSession, ids: list[int], channel: str, purpose: str, at: datetime) -> dict[int, PairState]:
    """The state of one pair for many HCPs at a past instant, folded from the ledger's rows."""
    events: dict[int, list[Any]] = defaultdict(list)
    for e in session.execute(select(*_EVENT_COLUMNS).where(
            among(session, ConsentEvent.hcp_id, ids), ConsentEvent.channel.in_([channel, ALL]),
            ConsentEvent.purpose.in_([purpose, ALL]), ConsentEvent.occurred_at <= at)):
        events[e.hcp_id].append(e)
    return {hcp_id: fold(evs, channel, purpose, at) for hcp_id, evs in events.items()}


def can_contact_many(session: DbSession, hcp_ids: Iterable[int], channel: str, purpose: str,
                     at: datetime | None = None) -> dict[int, ContactDecision]:
    """``can_contact`` for many HCPs in a constant number of queries (campaign sends).

    "Now" is read from the derived state table, in one query with the HCPs; a past instant is folded
    from the ledger.
    """
    return can_contact_many_with(session, hcp_ids, channel, purpose, at)[0]


def can_contact_many_with(
    session: DbSession, hcp_ids: Iterable[int], channel: str, purpose: str, at: datetime | None = None,
    columns: Sequence[Any] = (),
) -> tuple[dict[int, ContactDecision], dict[int, tuple[Any, ...]]]:
    """``can_contact_many``, and the values of ``columns`` (expressions on ``HCP``) of every HCP that
    exists, read in the same query: a send point's own check of the HCP (its address, say) then costs
    no second pass over the audience. HCPs that do not exist have no values."""
    _check_pair(channel, purpose, allow_all=False)
    now = utcnow()
    at = at or now
    ids = list(dict.fromkeys(hcp_ids))
    if not ids:
        return {}, {}
    extra = len(columns)
    # Outcomes that carry nothing of the HCP are one shared (frozen) decision each.
    unknown = ContactDecision(False, "hcp-unknown", (), "none", "No such HCP", at)
    erased = ContactDecision(False, "hcp-erased", (), "none", "The HCP's data was erased", at)
    no_consent = _decision(PairState(channel, purpose), at)
    merged: dict[int | None, ContactDecision] = {}

    def closed(status: str, merged_into_id: int | None) -> ContactDecision | None:
        if status == "erased":
            return erased
        if status == "merged" or merged_into_id is not None:
            if merged_into_id not in merged:
                merged[merged_into_id] = ContactDecision(
                    False, "hcp-merged", (), "none", f"Merged into HCP {merged_into_id}: contact that record", at)
            return merged[merged_into_id]
        return None

    found: dict[int, ContactDecision] = {}
    values: dict[int, tuple[Any, ...]] = {}
    if at >= now - _NOW_SLACK:
        # The pair's state from ``consent_states``, kept in step with the ledger in the same transaction
        # as every append: no fold needed for "now". It answers for ``at`` only when the state was reached
        # by then (``since <= at``: nothing later changed it); an HCP whose state changed after ``at`` (an
        # instant a moment ago) is folded from the ledger. The events cited are those the fold cites, so
        # the answer does not depend on which of the two reads it came from.
        referred = aliased(ConsentEvent)
        query = (select(HCP.id, HCP.status, HCP.merged_into_id, ConsentState.state, ConsentState.valid_until,
                        ConsentState.last_event_id, ConsentState.since, ConsentEvent.event_type,
                        ConsentEvent.refers_to_event_id, referred.event_type, referred.refers_to_event_id, *columns)
                 .outerjoin(ConsentState, and_(ConsentState.hcp_id == HCP.id, ConsentState.channel == channel,
                                               ConsentState.purpose == purpose))
                 .outerjoin(ConsentEvent, ConsentEvent.id == ConsentState.last_event_id)
                 .outerjoin(referred, referred.id == ConsentEvent.refers_to_event_id))
        changed_since: list[int] = []
        # The ids travel as one parameter (crm.db.among): no IN list of thousands to render and parse.
        row: Any
        for row in session.execute(query.where(among(session, HCP.id, ids))):
            # Unpacked by position: a row's attribute lookup by name costs more than the rest of the loop.
            (hcp_id, status, merged_into_id, state, valid_until, last_event_id, since, event_type, refers_to,
             referred_type, referred_refers_to) = row[:11]
            decision = closed(status, merged_into_id)
            if decision is None:
                if state is None:
                    decision = no_consent
                elif since is not None and since > at:
                    changed_since.append(hcp_id)
                    decision = no_consent  # replaced below by the ledger's answer at ``at``
                else:
                    event_ids = _cited(last_event_id, event_type, refers_to, referred_type, referred_refers_to)
                    # granted past its validity, read before the expiry job ran, is expired (effective())
                    decision = _decide(_effective(state, valid_until, at), event_ids, valid_until, at)
            found[hcp_id] = decision
            if extra:
                values[hcp_id] = row[11:]
        if changed_since:
            states = _states_at(session, changed_since, channel, purpose, at)
            for hcp_id in changed_since:
                ps = states.get(hcp_id)
                found[hcp_id] = no_consent if ps is None else _decide(effective(ps, at), ps.event_ids,
                                                                      ps.valid_until, at)
    else:
        rows = session.execute(select(HCP.id, HCP.status, HCP.merged_into_id, *columns)
                               .where(among(session, HCP.id, ids))).all()
        states = _states_at(session, ids, channel, purpose, at)
        for r in rows:
            decision = closed(r.status, r.merged_into_id)
            if decision is None:
                ps = states.get(r.id)
                if ps is None:
                    decision = no_consent
                else:
                    state = effective(ps, at)  # the fold applied validity already; kept for symmetry with "now"
                    decision = _decide(state, ps.event_ids, ps.valid_until, at)
            found[r.id] = decision
            if extra:
                values[r.id] = r[3:]
    return {hcp_id: found.get(hcp_id, unknown) for hcp_id in ids}, values


def can_contact(session: DbSession, hcp_id: int, channel: str, purpose: str,
                at: datetime | None = None) -> ContactDecision:
    """May the company contact ``hcp_id`` on ``channel`` for ``purpose`` at ``at`` (now by default)?

    Allowed only on a granted consent that holds at that instant; the rule that decided and the ledger
    events it rests on come with the answer. Every send point calls this (or ``can_contact_many``).
    """
    get_hcp(session, hcp_id)
    return can_contact_many(session, [hcp_id], channel, purpose, at)[hcp_id]


# -- writes ------------------------------------------------------------------------------------------

def evidence_json(evidence: dict[str, str]) -> str:
    return json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# New ledger rows key their evidence digest: a plain SHA-256 of a short value (a paper-form id, a
# recording id) is recovered by hashing guesses. Rows written before keep ``evidence_hash_scheme`` NULL:
# a plain SHA-256 (the ledger is append-only, they are not rewritten; only roles that see the
# evidence itself are shown any hash, so those old digests give nobody anything new).
EVIDENCE_HASH_SCHEME = "hmac-sha256"
LEGACY_EVIDENCE_HASH_SCHEME = "sha256"


def _evidence_hash_key() -> bytes:
    """The HMAC key of evidence digests, derived from ``CRM_BLIND_INDEX_KEY`` (a key that is kept for
    good anyway: the email blind index depends on it) for this one use."""
    base = current_app.config["CRM_BLIND_INDEX_KEY"].encode()
    return hmac.new(base, b"pharma-crm/consent-evidence-hash/v1", hashlib.sha256).digest()


def evidence_digest(ev_json: str, scheme: str | None) -> str:
    """The digest of an evidence JSON under ``scheme`` (``None``: the legacy plain SHA-256)."""
    data = ev_json.encode("utf-8")
    if scheme is None or scheme == LEGACY_EVIDENCE_HASH_SCHEME:
        return hashlib.sha256(data).hexdigest()
    if scheme == EVIDENCE_HASH_SCHEME:
        return hmac.new(_evidence_hash_key(), data, hashlib.sha256).hexdigest()
    raise ValueError(f"unknown evidence hash scheme {scheme!r}")


def verify_evidence(event: ConsentEvent) -> bool | None:
    """Does the (decrypted) evidence still match the digest recorded with it? ``None`` when the event
    holds no evidence or no digest. Callers check ``can_see_consent_evidence`` first."""
    if not event.evidence or not event.evidence_hash:
        return None
    expected = evidence_digest(event.evidence, event.evidence_hash_scheme)  # the JSON exactly as it was hashed
    return hmac.compare_digest(expected, event.evidence_hash)


def read_evidence(event: ConsentEvent) -> dict[str, Any]:
    """Decrypted evidence. Callers check ``can_see_consent_evidence`` and log the read first."""
    return json.loads(event.evidence) if event.evidence else {}


def _append(
    session: DbSession,
    actor: Any,
    hcp: HCP,
    *,
    channel: str,
    purpose: str,
    event_type: str,
    occurred_at: datetime,
    source: str,
    evidence: dict[str, str] | None = None,
    notice: Notice | None = None,
    notice_version: str | None = None,
    notice_text_hash: str | None = None,
    external_id: str | None = None,
    valid_until: datetime | None = None,
    refers_to_event_id: int | None = None,
    origin_hcp_id: int | None = None,
    merged_from_event_id: int | None = None,
    evidence_hash: str | None = None,
    evidence_hash_scheme: str | None = None,
    captured_by_id: int | None = None,
    captured_by_role: str | None = None,
    on_timeline: bool = True,
    audited: bool = True,
) -> ConsentEvent:
    """Append one ledger event, rebuild the touched states, put it on the timeline, audit, signal.

    ``audited=False`` is for copies made by an HCP merge: the merge's own audit record accounts
    for them (the issue asks for one record per merge) and each copy names its original event."""
    ev_json = evidence_json(evidence) if evidence else None
    if evidence_hash is None and ev_json is not None:  # a merge copy brings its original's digest and scheme
        evidence_hash, evidence_hash_scheme = evidence_digest(ev_json, EVIDENCE_HASH_SCHEME), EVIDENCE_HASH_SCHEME
    event = ConsentEvent(
        hcp_id=hcp.id, origin_hcp_id=origin_hcp_id or hcp.id, channel=channel, purpose=purpose,
        event_type=event_type, occurred_at=occurred_at, source=source, external_id=external_id,
        captured_by_id=captured_by_id if captured_by_id is not None else getattr(actor, "id", None),
        captured_by_role=captured_by_role or _actor_role(actor),
        notice_id=notice.id if notice else None,
        notice_version=notice.version if notice else notice_version,
        notice_text_hash=notice.text_hash if notice else notice_text_hash,
        evidence=ev_json,
        evidence_hash=evidence_hash, evidence_hash_scheme=evidence_hash_scheme if evidence_hash else None,
        valid_until=valid_until, refers_to_event_id=refers_to_event_id,
        merged_from_event_id=merged_from_event_id,
    )
    session.add(event)
    session.flush()
    rebuild_states(session, hcp.id, _pairs_touched(channel, purpose))
    interaction_id = None
    if on_timeline:
        label = {"all": "all channels"}.get(channel, channel.replace("_", " "))
        purpose_label = {"all": "all purposes"}.get(purpose, purpose.replace("_", " "))
        item, _ = record_interaction(
            session, actor, hcp_ids=[hcp.id], occurred_at=occurred_at, channel="consent",
            kind=f"consent.{event_type}", source=TIMELINE_SOURCE[source],
            summary=f"Consent {event_type}: {label} / {purpose_label} (source {source})",
            safe_summary=f"Consent {event_type}: {label} / {purpose_label}",
            details={"consent_event_id": event.id, "event": event_type, "channel": channel, "purpose": purpose,
                     "ledger_source": source, "notice_version": event.notice_version},
            owner_role=captured_by_role or _actor_role(actor), audit_changes=False,
        )
        interaction_id = item.id
    if audited:
        audit.record(session, actor, f"consent.{event_type}", "consent_event", event.id, audit.created({
            "hcp_id": hcp.id, "channel": channel, "purpose": purpose, "source": source,
            "occurred_at": occurred_at, "notice_version": event.notice_version,
            "evidence_fields": sorted(evidence or {}), "evidence_hash": event.evidence_hash,
            "valid_until": valid_until, "refers_to_event_id": refers_to_event_id,
            "merged_from_event_id": merged_from_event_id, "interaction_id": interaction_id,
        }))
    signals.consent_changed.send(event, session=session, actor=actor)
    return event


def find_by_external_id(session: DbSession, source: str, external_id: str) -> ConsentEvent | None:
    return session.scalar(select(ConsentEvent).where(ConsentEvent.source == source,
                                                     ConsentEvent.external_id == external_id))


def grant_consent(
    session: DbSession,
    actor: Any,
    hcp: HCP,
    channel: str,
    purpose: str,
    source: str,
    *,
    notice_version: str | None,
    evidence: dict[str, Any] | None,
    occurred_at: datetime | None = None,
    external_id: str | None = None,
) -> tuple[ConsentEvent, bool]:
    """Record a grant. Returns ``(event, created)``; a replayed ``external_id`` returns the first event.

    Email x promotional under double opt-in records ``requested`` instead and sends the HCP a
    confirmation link (after the commit); the state stays ``pending`` until the HCP confirms.
    """
    _check_source(source)
    _authorize_capture(session, actor, hcp, source)
    _check_pair(channel, purpose, allow_all=False)
    if external_id is not None:
        existing = find_by_external_id(session, source, external_id)
        if existing is not None:
            return existing, False
    _check_hcp_open(hcp)
    clean = clean_evidence(source, evidence, required=True)
    notice = _notice_for_grant(session, notice_version, source)
    at = _occurred(occurred_at)
    _lock_hcp(session, hcp.id)
    if not double_opt_in_applies(channel, purpose):
        event = _append(session, actor, hcp, channel=channel, purpose=purpose, event_type="granted",
                        occurred_at=at, source=source, evidence=clean, notice=notice, external_id=external_id,
                        valid_until=validity_end(at, purpose))
        return event, True
    if not hcp.email:
        raise Invalid("Double opt-in needs an email address to send the confirmation to.",
                      errors={"hcp": ["has no email address"]})
    event = _append(session, actor, hcp, channel=channel, purpose=purpose, event_type="requested",
                    occurred_at=at, source=source, evidence=clean, notice=notice, external_id=external_id)
    raw = tokens.issue(session, "confirm", hcp.id, channel=channel, consent_purpose=purpose, event_id=event.id)
    prefs = tokens.issue(session, "preferences", hcp.id, reference=f"event:{event.id}")
    signals.consent_confirmation_requested.send(
        event, session=session, to=hcp.email, name=hcp.full_name,
        confirm_url=public_url("consent_public.confirm", token=raw),
        preferences_url=public_url("consent_public.preferences", token=prefs),
        channel=channel, purpose=purpose,
    )
    return event, True


def withdraw_consent(
    session: DbSession,
    actor: Any,
    hcp: HCP,
    channel: str,
    purpose: str,
    source: str,
    *,
    evidence: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    external_id: str | None = None,
    notice_version: str | None = None,
) -> tuple[ConsentEvent, bool]:
    """Record a withdrawal (``channel``/``purpose`` may be ``all``). Returns ``(event, created)``.

    Withdrawal is as easy as giving: evidence is kept when given but never required, and a withdrawal
    is recorded even when nothing was granted (the HCP's "no" is a fact worth keeping).
    """
    _check_source(source)
    _authorize_capture(session, actor, hcp, source)
    _check_pair(channel, purpose, allow_all=True)
    if external_id is not None:
        existing = find_by_external_id(session, source, external_id)
        if existing is not None:
            return existing, False
    for _ in range(10):  # a "no" given on a merged duplicate applies to the record that survived
        if hcp.merged_into_id is None:
            break
        hcp = get_hcp(session, hcp.merged_into_id)
    if hcp.status == "erased":
        raise Conflict("This HCP has been erased; no consent can be recorded for it.")
    clean = clean_evidence(source, evidence, required=False)
    notice = notice_by_version(session, notice_version) if notice_version else None
    if notice_version and notice is None:
        raise Invalid(errors={"notice_version": [f"unknown notice version {notice_version!r}"]})
    at = _occurred(occurred_at)
    _lock_hcp(session, hcp.id)
    event = _append(session, actor, hcp, channel=channel, purpose=purpose, event_type="withdrawn",
                    occurred_at=at, source=source, evidence=clean, notice=notice, external_id=external_id)
    return event, True


@dataclass(frozen=True)
class Withdrawal:
    """One withdrawal of a batch for ``withdraw_many``: the HCP record it was reported for, the pair
    (``all`` allowed), its instant, the outside system's id of it (the batch is idempotent on it) and
    the evidence it brings."""

    hcp_id: int
    channel: str
    purpose: str
    occurred_at: datetime
    external_id: str
    evidence: dict[str, Any] | None = None


def withdraw_many(session: DbSession, actor: Any, source: str, withdrawals: Sequence[Withdrawal]) -> dict[str, int]:
    """``withdraw_consent`` for a batch (the email platform's unsubscribes of one webhook batch), with a
    number of statements that does not grow with the batch: one read of the ids already recorded, one
    of the HCP records (each merge hop one more), one multi-row ledger insert, one read of the affected
    HCPs' ledgers and one upsert of their derived states, one timeline insert, one audit insert.

    The same rules and the same records as one ``withdraw_consent`` per item: the ledger rows (evidence
    encrypted, its keyed digest kept), the states folded from the whole ledger, a ``consent.withdrawn``
    timeline item and a ``consent.withdrawn`` audit record per event. A "no" reported for a merged
    duplicate goes to the record that survived; an HCP that is erased or unknown takes nothing; an
    ``external_id`` already recorded for ``source`` (a replay) adds nothing. The batch sends
    ``consent_changed_many`` once (instead of ``consent_changed`` per event).
    Returns ``{external_id: ledger event id}`` of the withdrawals recorded now.
    """
    _check_source(source)
    wanted: dict[str, Withdrawal] = {}
    for w in withdrawals:
        _check_pair(w.channel, w.purpose, allow_all=True)
        wanted.setdefault(w.external_id, w)
    if not wanted:
        return {}
    recorded = set(session.scalars(select(ConsentEvent.external_id).where(
        ConsentEvent.source == source, among(session, ConsentEvent.external_id, list(wanted)))))
    todo = [w for key, w in wanted.items() if key not in recorded]
    if not todo:
        return {}
    records: dict[int, Any] = {}
    ask = {w.hcp_id for w in todo}
    for _ in range(11):  # each merge hop is one query for the whole batch
        ask -= records.keys()
        if not ask:
            break
        for row in session.execute(select(HCP.id, HCP.status, HCP.merged_into_id, HCP.territory_id)
                                   .where(among(session, HCP.id, sorted(ask)))):
            records[row.id] = row
        ask = {r.merged_into_id for r in records.values() if r.merged_into_id is not None}

    def final(hcp_id: int) -> Any:
        row = records.get(hcp_id)
        for _ in range(10):
            if row is None or row.merged_into_id is None:
                break
            row = records.get(row.merged_into_id)
        return row

    targets = [(w, row) for w in todo if (row := final(w.hcp_id)) is not None and row.status != "erased"]
    if not targets:
        return {}
    if actor is not None:
        from crm.auth.services import viewer_for

        require_write(viewer_for(session, actor), "consent.capture", sorted({r.territory_id for _w, r in targets}))
        if source not in ROLE_SOURCES.get(actor.role, frozenset()):
            raise Forbidden(f"A {actor.role} may not capture consent with source {source}",
                            rule="consent.capture:source")
    hcp_ids = sorted({r.id for _w, r in targets})
    if session.get_bind().dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE already serialises writers
        session.execute(select(HCP.id).where(among(session, HCP.id, hcp_ids)).order_by(HCP.id).with_for_update())
    now = utcnow()
    role = _actor_role(actor)
    rows = []
    for w, row in targets:
        clean = clean_evidence(source, w.evidence, required=False)
        ev_json = evidence_json(clean) if clean else None
        rows.append({
            "hcp_id": row.id, "origin_hcp_id": row.id, "channel": w.channel, "purpose": w.purpose,
            "event_type": "withdrawn", "occurred_at": _occurred(w.occurred_at), "recorded_at": now, "source": source,
            "external_id": w.external_id, "captured_by_id": getattr(actor, "id", None), "captured_by_role": role,
            "notice_id": None, "notice_version": None, "notice_text_hash": None, "evidence": ev_json,
            "evidence_hash": evidence_digest(ev_json, EVIDENCE_HASH_SCHEME) if ev_json else None,
            "evidence_hash_scheme": EVIDENCE_HASH_SCHEME if ev_json else None, "valid_until": None,
            "refers_to_event_id": None, "merged_from_event_id": None})
    # A concurrent writer of the same ids (PostgreSQL) is settled by the unique (source, external_id):
    # its rows stand and are not counted here.
    created = dict(insert_ignoring_conflicts(session, ConsentEvent.__table__, rows, ["source", "external_id"],
                                             ["external_id", "id"]))
    if not created:
        return {}
    mine = [(w, row) for (w, row) in targets if w.external_id in created]
    _rebuild_states_many(session, {row.id: _pairs_touched(w.channel, w.purpose) for w, row in mine}, now)
    events = {e.id: e for e in session.execute(select(*_EVENT_COLUMNS).where(
        among(session, ConsentEvent.id, sorted(created.values()))))}
    label = TIMELINE_SOURCE[source]
    facts = []
    for w, row in mine:
        event_id = created[w.external_id]
        channel_label = {"all": "all channels"}.get(w.channel, w.channel.replace("_", " "))
        purpose_label = {"all": "all purposes"}.get(w.purpose, w.purpose.replace("_", " "))
        facts.append(Fact(
            hcp_id=row.id, occurred_at=events[event_id].occurred_at, kind="consent.withdrawn",
            external_id=f"consent-event:{event_id}",
            summary=f"Consent withdrawn: {channel_label} / {purpose_label} (source {source})",
            safe_summary=f"Consent withdrawn: {channel_label} / {purpose_label}",
            details={"consent_event_id": event_id, "event": "withdrawn", "channel": w.channel,
                     "purpose": w.purpose, "ledger_source": source, "notice_version": None},
            owner_id=getattr(actor, "id", None), owner_role=role))
    items = record_interactions(session, actor, facts, channel="consent", source=label)
    audit.record_many(session, actor, [
        ("consent.withdrawn", "consent_event", created[w.external_id], audit.created({
            "hcp_id": row.id, "channel": w.channel, "purpose": w.purpose, "source": source,
            "occurred_at": events[created[w.external_id]].occurred_at, "notice_version": None,
            "evidence_fields": sorted(clean_evidence(source, w.evidence, required=False)),
            "evidence_hash": next(r["evidence_hash"] for r in rows if r["external_id"] == w.external_id),
            "valid_until": None, "refers_to_event_id": None, "merged_from_event_id": None,
            "interaction_id": items.get(f"consent-event:{created[w.external_id]}")}), None)
        for w, row in mine])
    signals.consent_changed_many.send(tuple(events[created[w.external_id]] for w, _row in mine),
                                      session=session, actor=actor)
    return {w.external_id: created[w.external_id] for w, _row in mine}


def _rebuild_states_many(session: DbSession, touched: dict[int, list[tuple[str, str]]], now: datetime) -> None:
    """``rebuild_states`` for many HCPs at once: one read of their ledgers, one upsert of the states
    (and one delete, only if a pair has nothing left to say)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    from sqlalchemy.orm.util import identity_key

    events: dict[int, list[Any]] = defaultdict(list)
    for e in session.execute(select(*_EVENT_COLUMNS).where(among(session, ConsentEvent.hcp_id, sorted(touched)))):
        events[e.hcp_id].append(e)
    upserts: list[dict[str, Any]] = []
    gone: list[tuple[int, str, str]] = []
    for hcp_id, pairs in touched.items():
        for channel, purpose in sorted(set(pairs)):
            ps = fold(events[hcp_id], channel, purpose, None)
            if ps.state == "none":
                gone.append((hcp_id, channel, purpose))
                continue
            upserts.append({"hcp_id": hcp_id, "channel": channel, "purpose": purpose, "state": ps.state,
                            "since": ps.since, "valid_until": ps.valid_until, "source": ps.source,
                            "last_event_id": ps.event_ids[-1] if ps.event_ids else None, "updated_at": now})
    table: Any = ConsentState.__table__
    if upserts:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.hcp_id, table.c.channel, table.c.purpose],
            set_={c: stmt.excluded[c] for c in ("state", "since", "valid_until", "source", "last_event_id",
                                                 "updated_at")})
        session.execute(stmt, upserts)
    for hcp_id, channel, purpose in gone:  # pragma: no cover - a withdrawal always leaves a state
        session.execute(table.delete().where(table.c.hcp_id == hcp_id, table.c.channel == channel,
                                             table.c.purpose == purpose))
    # Rows of these HCPs already loaded in the session are stale now: read them again when next used.
    for key in [*((r["hcp_id"], r["channel"], r["purpose"]) for r in upserts), *gone]:
        loaded = session.identity_map.get(identity_key(ConsentState, key))
        if loaded is not None:
            session.expire(loaded)


def allowed_at_many(session: DbSession, requests: Sequence[tuple[int, str, str, datetime]]) -> list[bool]:
    """``can_contact(...).allowed`` for many ``(hcp_id, channel, purpose, at)`` at once, each at its own
    instant, folded from the ledger: two queries whatever the number (the consent-gap recheck of a
    batch of back-dated events)."""
    if not requests:
        return []
    ids = sorted({r[0] for r in requests})
    open_ids = {row.id for row in session.execute(select(HCP.id, HCP.status, HCP.merged_into_id).where(
        among(session, HCP.id, ids))) if row.status not in ("erased", "merged") and row.merged_into_id is None}
    latest = max(r[3] for r in requests)
    events: dict[int, list[Any]] = defaultdict(list)
    for e in session.execute(select(*_EVENT_COLUMNS).where(among(session, ConsentEvent.hcp_id, sorted(open_ids)),
                                                            ConsentEvent.occurred_at <= latest)):
        events[e.hcp_id].append(e)
    out = []
    for hcp_id, channel, purpose, at in requests:
        if hcp_id not in open_ids:
            out.append(False)
            continue
        ps = fold(events[hcp_id], channel, purpose, at)
        out.append(effective(ps, at) == "granted")
    return out


class LinkNoLongerValid(Conflict):
    """The confirmation link's request was overtaken (withdrawn, or asked again) or already used."""


def request_still_open(session: DbSession, request: ConsentEvent) -> bool:
    """True while no later withdrawal or newer request of the same pair overtook ``request``."""
    later = session.scalars(select(ConsentEvent).where(
        ConsentEvent.hcp_id == request.hcp_id, ConsentEvent.event_type.in_(["withdrawn", "requested", "confirmed"]),
        ConsentEvent.channel.in_([request.channel, ALL]), ConsentEvent.purpose.in_([request.purpose, ALL]),
        ConsentEvent.id != request.id))
    for e in later:
        if ledger_order(e) > ledger_order(request) or e.refers_to_event_id == request.id:
            return False
    return True


def confirm(session: DbSession, token: ConsentToken, *, ip_address: str | None, user_agent: str | None) -> ConsentEvent:
    """The HCP confirmed the double opt-in through the link (an explicit POST): record ``confirmed``."""
    request = session.get(ConsentEvent, token.event_id) if token.event_id else None
    if request is None or request.event_type != "requested":
        raise LinkNoLongerValid("This confirmation link does not belong to a consent request.")
    hcp = get_hcp(session, request.hcp_id)
    if hcp.merged_into_id is not None:  # asked on a record merged since: confirm the survivor's copy
        copy = session.scalar(select(ConsentEvent).where(ConsentEvent.hcp_id == hcp.merged_into_id,
                                                         ConsentEvent.merged_from_event_id == request.id))
        if copy is not None:
            request, hcp = copy, get_hcp(session, copy.hcp_id)
    _check_hcp_open(hcp)
    _lock_hcp(session, hcp.id)
    if not request_still_open(session, request):
        raise LinkNoLongerValid("This request was withdrawn or replaced by a newer one; the link no longer applies.")
    if not tokens.consume(session, token):
        raise LinkNoLongerValid("This link has already been used.")
    evidence = clean_evidence("email_link", {"ip_address": ip_address or "", "user_agent": user_agent or ""},
                              required=True)
    at = utcnow()
    return _append(session, None, hcp, channel=request.channel, purpose=request.purpose, event_type="confirmed",
                   occurred_at=at, source="email_link", evidence=evidence, notice_version=request.notice_version,
                   notice_text_hash=request.notice_text_hash, valid_until=validity_end(at, request.purpose),
                   refers_to_event_id=request.id, origin_hcp_id=request.origin_hcp_id, captured_by_role="system")


def unsubscribe(session: DbSession, token: ConsentToken, *, everything: bool, ip_address: str | None,
                user_agent: str | None) -> ConsentEvent:
    """One click from any email: withdraw email for the link's purpose (or every purpose)."""
    hcp = get_hcp(session, token.hcp_id)
    if not tokens.consume(session, token):
        raise LinkNoLongerValid("This link has already been used.")
    purpose = ALL if everything or not token.consent_purpose else token.consent_purpose
    evidence = {"ip_address": ip_address or "", "user_agent": user_agent or ""}
    if token.reference:
        evidence["reference"] = token.reference
    event, _ = withdraw_consent(session, None, hcp, token.channel or "email", purpose, "email_link",
                                evidence=evidence)
    signals.unsubscribed_by_link.send(event, session=session, hcp_id=event.hcp_id, reference=token.reference)
    return event


def unsubscribe_link(session: DbSession, hcp_id: int, purpose: str, reference: str) -> tuple[str, dict[str, str]]:
    """A fresh unsubscribe link for one outgoing mail (tied to ``reference``, e.g. ``campaign:12``) and the
    mail's RFC 2369 / RFC 8058 headers: ``List-Unsubscribe: <https://...>, <mailto:...>`` (the one-click
    HTTPS link first, then the mailbox ``CRM_UNSUBSCRIBE_MAILTO``) and ``List-Unsubscribe-Post``."""
    raw = tokens.issue(session, "unsubscribe", hcp_id, channel="email", consent_purpose=purpose, reference=reference)
    url = public_url("consent_public.unsubscribe", token=raw)
    mailto = f"mailto:{current_app.config['CRM_UNSUBSCRIBE_MAILTO']}?subject=unsubscribe"
    return url, {"List-Unsubscribe": f"<{url}>, <{mailto}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def unsubscribe_headers(session: DbSession, hcp_id: int, purpose: str, reference: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers for one outgoing mail (campaigns, invitations, surveys)."""
    return unsubscribe_link(session, hcp_id, purpose, reference)[1]


@dataclass(frozen=True)
class DataExportRequest:
    """What became of an HCP's "send me my data": ``sent`` (a fresh link went to ``address``, masked),
    ``already-sent`` (a link mailed within the link's lifetime is still open), ``no-address``."""

    outcome: str
    address: str | None = None
    minutes: int = 0


def request_data_export(session: DbSession, token: ConsentToken) -> DataExportRequest:
    """The HCP asked, from the preference centre, for a copy of their data. The preference link may have
    been forwarded, so the download is never handed to whoever holds it: a fresh, single-use link,
    valid ``CRM_DATA_EXPORT_LINK_MINUTES``, goes to the address on file (after the commit). While such a
    link is open, asking again sends nothing more (no mail flood from a forwarded link)."""
    from crm.access.policy import mask_email

    hcp = get_hcp(session, token.hcp_id)
    _check_hcp_open(hcp)
    minutes = int(current_app.config["CRM_DATA_EXPORT_LINK_MINUTES"])
    if not hcp.email:
        return DataExportRequest("no-address", None, minutes)
    masked = mask_email(hcp.email)
    now = utcnow()
    open_link = session.scalar(select(ConsentToken.id).where(
        ConsentToken.hcp_id == hcp.id, ConsentToken.purpose == "data_export", ConsentToken.used_at.is_(None),
        ConsentToken.expires_at > now).limit(1))
    if open_link is not None:
        return DataExportRequest("already-sent", masked, minutes)
    ttl = timedelta(minutes=minutes)
    raw = tokens.issue(session, "data_export", hcp.id, reference=f"token:{token.id}", ttl=ttl)
    audit.record(session, None, "hcp.data_export_link", "hcp", hcp.id,
                 audit.created({"sent_to": "address on file", "valid_minutes": minutes}),
                 reason="data-subject request from the preference centre")
    signals.data_export_requested.send(
        hcp.id, session=session, to=hcp.email, name=hcp.full_name,
        download_url=public_url("consent_public.my_data", token=raw), expires_at=now + ttl)
    return DataExportRequest("sent", masked, minutes)


def download_data_export(session: DbSession, token: ConsentToken) -> tuple[HCP, dict[str, Any]]:
    """The HCP pressed *Download* on the page of the mailed link: the link is used up and the
    data-subject answer (``crm.consent.subject_access``) is returned. Audited."""
    from crm.consent.subject_access import subject_access_export

    hcp = get_hcp(session, token.hcp_id)
    _check_hcp_open(hcp)
    if not tokens.consume(session, token):
        raise LinkNoLongerValid("This link has already been used.")
    document = subject_access_export(session, hcp)
    audit.record(session, None, "hcp.data_subject_download", "hcp", hcp.id,
                 {"sections": {k: len(v) for k, v in document.items() if isinstance(v, list)}},
                 reason="data-subject request through the mailed link")
    return hcp, document


def save_preferences(session: DbSession, token: ConsentToken, wanted: set[tuple[str, str]], *,
                     ip_address: str | None, user_agent: str | None, language: str = "en") -> tuple[str, list[str]]:
    """The HCP's own choices from the preference centre: a grant or withdrawal per changed pair
    (source ``web_form``). Returns a fresh preference link (each link is single-use) and what changed."""
    hcp = get_hcp(session, token.hcp_id)
    _check_hcp_open(hcp)
    if not tokens.consume(session, token):
        raise LinkNoLongerValid("This link has already been used.")
    evidence = {"ip_address": ip_address or "", "user_agent": user_agent or ""}
    now = utcnow()
    changes: list[str] = []
    notice = None
    for ps in current_states(session, hcp.id, now):
        pair = (ps.channel, ps.purpose)
        holds = ps.state in ("granted", "pending")
        if pair in wanted and not holds:
            notice = notice or active_notice(session, language, hcp.country)
            if notice is None:
                raise Invalid("No consent notice is active; the company must publish one first.")
            grant_consent(session, None, hcp, ps.channel, ps.purpose, "web_form",
                          notice_version=notice.version, evidence=evidence)
            changes.append(f"{ps.channel}/{ps.purpose}: given")
        elif pair not in wanted and holds:
            withdraw_consent(session, None, hcp, ps.channel, ps.purpose, "web_form", evidence=evidence)
            changes.append(f"{ps.channel}/{ps.purpose}: withdrawn")
    fresh = tokens.issue(session, "preferences", hcp.id, reference=f"token:{token.id}")
    return fresh, changes


def expire_due(session: DbSession, now: datetime | None = None) -> int:
    """Write an ``expired`` event for every granted consent past its validity. Idempotent: a second
    run finds nothing to do. The event's ``occurred_at`` is the instant the consent lapsed."""
    now = now or utcnow()
    due = session.execute(select(ConsentState.hcp_id, ConsentState.channel, ConsentState.purpose).where(
        ConsentState.state == "granted", ConsentState.valid_until <= now)).all()
    written = 0
    for hcp_id, channel, purpose in due:
        _lock_hcp(session, hcp_id)
        events = _events_for(session, [hcp_id])
        ps = fold(events, channel, purpose, None)
        if ps.state != "granted" or ps.valid_until is None or ps.valid_until > now or not ps.event_ids:
            continue
        grant = session.get(ConsentEvent, ps.event_ids[-1])
        assert grant is not None  # noqa: S101  (it was just folded)
        hcp = get_hcp(session, hcp_id)
        _append(session, None, hcp, channel=channel, purpose=purpose, event_type="expired",
                occurred_at=ps.valid_until, source=SYSTEM_SOURCE, notice_version=grant.notice_version,
                notice_text_hash=grant.notice_text_hash, refers_to_event_id=grant.id,
                origin_hcp_id=grant.origin_hcp_id, valid_until=ps.valid_until)
        written += 1
    return written


def add_review(session: DbSession, actor: Any, hcp: HCP, *, outcome: str, note: str,
               event_id: int | None = None) -> ConsentReview:
    """A compliance review note on the HCP's consent (annotation; the ledger is untouched)."""
    from crm.auth.services import viewer_for

    require_write(viewer_for(session, actor), "consent.review")
    errors: dict[str, list[str]] = {}
    if outcome not in ("ok", "issue"):
        errors["outcome"] = ["must be ok or issue"]
    if not note.strip():
        errors["note"] = ["must not be empty"]
    if event_id is not None:
        ev = session.get(ConsentEvent, event_id)
        if ev is None or ev.hcp_id != hcp.id:
            errors["event_id"] = ["not an event of this HCP's ledger"]
    if errors:
        raise Invalid("The review cannot be saved.", errors=errors)
    review = ConsentReview(hcp_id=hcp.id, event_id=event_id, outcome=outcome, note=note.strip(),
                           reviewer_id=actor.id)
    session.add(review)
    session.flush()
    audit.record(session, actor, "consent.review", "consent_review", review.id,
                 audit.created({"hcp_id": hcp.id, "event_id": event_id, "outcome": outcome}))
    return review


def reviews(session: DbSession, hcp_id: int) -> list[ConsentReview]:
    return list(session.scalars(select(ConsentReview).where(ConsentReview.hcp_id == hcp_id)
                                .order_by(ConsentReview.created_at.desc(), ConsentReview.id.desc())))


# -- HCP merge ---------------------------------------------------------------------------------------

def merge_consents(session: DbSession, actor: Any, survivor_id: int, loser_id: int) -> int:
    """Give the survivor the loser's consent history. Ledger rows are never moved: each loser event
    is appended again on the survivor with ``merged_from_event_id``, keeping its original instant,
    source, notice and evidence, and the record it came from (``origin_hcp_id``), so the survivor's
    state is least-permissive across both records. Safe to call twice. Returns the events copied.

    Writes no audit record of its own: it runs as a handler inside ``merge_hcps``, whose single
    ``hcp.merge`` record carries the count, and every copy points at its original event."""
    survivor = get_hcp(session, survivor_id)
    _lock_hcp(session, survivor_id)
    copied_from = set(session.scalars(select(ConsentEvent.merged_from_event_id).where(
        ConsentEvent.hcp_id == survivor_id, ConsentEvent.merged_from_event_id.is_not(None))))
    mapping: dict[int, int] = {}
    for e in session.scalars(select(ConsentEvent).where(ConsentEvent.hcp_id == survivor_id,
                                                        ConsentEvent.merged_from_event_id.is_not(None))):
        mapping[e.merged_from_event_id] = e.id  # type: ignore[index]
    count = 0
    for e in session.scalars(select(ConsentEvent).where(ConsentEvent.hcp_id == loser_id)
                             .order_by(ConsentEvent.id)).all():
        if e.id in copied_from:
            continue
        copy = _append(
            session, actor, survivor, channel=e.channel, purpose=e.purpose, event_type=e.event_type,
            occurred_at=e.occurred_at, source=e.source, evidence=json.loads(e.evidence) if e.evidence else None,
            notice=session.get(Notice, e.notice_id) if e.notice_id else None,
            notice_version=e.notice_version, notice_text_hash=e.notice_text_hash,
            valid_until=e.valid_until, origin_hcp_id=e.origin_hcp_id, merged_from_event_id=e.id,
            refers_to_event_id=mapping.get(e.refers_to_event_id) if e.refers_to_event_id else None,
            evidence_hash=e.evidence_hash, evidence_hash_scheme=e.evidence_hash_scheme,
            captured_by_id=e.captured_by_id, captured_by_role=e.captured_by_role,
            on_timeline=False, audited=False,
        )
        mapping[e.id] = copy.id
        count += 1
    rebuild_states(session, survivor_id)
    return count


def merge_consent_states(session: DbSession, actor: Any, survivor_id: int, loser_id: int) -> None:
    """The derived states after a merge: rebuilt for the survivor (the loser's rows stay, derived
    from the loser's ledger, which also stays)."""
    rebuild_states(session, survivor_id)
