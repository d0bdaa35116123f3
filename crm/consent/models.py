"""Consent as evidence: notices, the append-only ledger, the derived state, single-purpose tokens.

The ledger (``consent_events``) is the truth; nothing in it is ever updated or deleted (database
triggers refuse it, see ``crm.consent.ddl``). ``consent_states`` is derived from it in the same
transaction as every append, for fast reads; it can always be rebuilt from the ledger.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm.consent.ddl import attach_triggers
from crm.db import Base, UTCDateTime, utcnow
from crm.security.crypto import EncryptedString

CONSENT_CHANNELS = ("email", "phone", "sms", "visit", "remote_meeting", "post")
PURPOSES = ("promotional", "medical_information", "events", "market_research")
# A withdrawal may cover every channel and/or every purpose at once ("stop everything").
ALL = "all"
EVENT_TYPES = ("requested", "granted", "confirmed", "withdrawn", "expired")
LEDGER_SOURCES = ("visit", "web_form", "email_link", "call_centre", "paper_form", "import", "esp")
# `expired` events are written by the expiry job, not captured from anyone.
SYSTEM_SOURCE = "system"
STATES = ("none", "pending", "granted", "withdrawn", "expired")
NOTICE_STATUSES = ("draft", "active", "retired")
# ``data_export``: the short-lived link mailed to the HCP's own address for the data-subject download.
# ``survey``: the single-use answer link of a survey mail (``crm.surveys``), reference ``survey:<id>``.
TOKEN_PURPOSES = ("confirm", "unsubscribe", "preferences", "data_export", "survey")


class Notice(Base):
    """A versioned consent text per language (and optionally country). Active versions are frozen."""

    __tablename__ = "consent_notices"
    __table_args__ = (UniqueConstraint("language", "country", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # "en-v3", "de-DE-v1": what ledger events and API clients name.
    version: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    language: Mapped[str] = mapped_column(String(8), nullable=False)
    # Empty string rather than NULL so that the unique constraint holds for country-less notices too.
    country: Mapped[str] = mapped_column(String(2), nullable=False, default="")
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    text_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="draft")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsentEvent(Base):
    """One ledger entry. Append-only: a change of mind is a new event, never an edit."""

    __tablename__ = "consent_events"
    __table_args__ = (
        Index("ix_consent_events_pair", "hcp_id", "channel", "purpose", "occurred_at", "id"),
        UniqueConstraint("source", "external_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False)
    # The HCP record the event was first captured on (differs from hcp_id for copies made by a merge);
    # conflicts between records resolve least-permissive-wins.
    origin_hcp_id: Mapped[int] = mapped_column(Integer, nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False)  # a channel or "all"
    purpose: Mapped[str] = mapped_column(String(30), nullable=False)  # a purpose or "all"
    event_type: Mapped[str] = mapped_column(String(12), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # LEDGER_SOURCES or SYSTEM_SOURCE
    external_id: Mapped[str | None] = mapped_column(String(200))
    captured_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    captured_by_role: Mapped[str] = mapped_column(String(20), nullable=False, default="system")
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("consent_notices.id"))
    notice_version: Mapped[str | None] = mapped_column(String(40))
    notice_text_hash: Mapped[str | None] = mapped_column(String(64))
    # Signature, form id, recording id, IP address, user agent... as JSON, encrypted at rest.
    evidence: Mapped[str | None] = mapped_column(EncryptedString("consent_events.evidence"))
    # A digest of the evidence JSON: proof of what was captured that survives the loss of the encryption keys.
    evidence_hash: Mapped[str | None] = mapped_column(String(64))
    # How ``evidence_hash`` was computed: ``hmac-sha256`` (keyed, so that a short evidence value such as a
    # paper-form id cannot be recovered by hashing guesses); NULL on rows written before the keyed hash
    # (a plain SHA-256; such rows are kept as they are, the ledger being append-only).
    evidence_hash_scheme: Mapped[str | None] = mapped_column(String(20))
    # For granted/confirmed: until when the consent holds (validity per purpose at capture time).
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # confirmed -> its requested event; expired -> the grant that lapsed.
    refers_to_event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"))
    # A copy made by an HCP merge points at the loser's original event.
    merged_from_event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"))


class ConsentState(Base):
    """The current state per HCP x channel x purpose, derived from the ledger (never edited by hand)."""

    __tablename__ = "consent_states"
    __table_args__ = (Index("ix_consent_states_pair", "channel", "purpose", "state"),
                      Index("ix_consent_states_valid_until", "valid_until"))

    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(30), primary_key=True)
    state: Mapped[str] = mapped_column(String(12), nullable=False)
    since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"))
    source: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)


class ConsentToken(Base):
    """A single-purpose, expiring, single-use link token for an HCP. Only its hash is stored."""

    __tablename__ = "consent_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    purpose: Mapped[str] = mapped_column(String(20), nullable=False)  # one of TOKEN_PURPOSES
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    channel: Mapped[str | None] = mapped_column(String(20))
    consent_purpose: Mapped[str | None] = mapped_column(String(30))
    # The ledger event (a `requested`) the token was created for, when there is one.
    event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"))
    # What sent the link otherwise, e.g. "campaign:12" or "token:34" (a preference link renewed).
    reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsentReview(Base):
    """A compliance officer's review note on an HCP's consent (an annotation, not a ledger event)."""

    __tablename__ = "consent_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"))
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)  # ok | issue
    note: Mapped[str] = mapped_column(Text, nullable=False)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


# create_all (tests) installs the append-only triggers; the Alembic migration carries the same SQL.
attach_triggers(ConsentEvent.__table__)  # type: ignore[arg-type]  # a mapped class's __table__ is a Table
