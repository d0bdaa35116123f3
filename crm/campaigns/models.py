"""Email campaigns: versioned templates, saved audiences, campaigns, one message per recipient, and the
email platform's events as they came in.

An approved template version is frozen (an edit makes a new draft version); a campaign names one
version. ``campaign_messages`` holds one row per (campaign, HCP), so a repeated send never mails anyone
twice. ``email_events`` is keyed by the platform's ``sg_event_id``: a replayed event adds nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, UTCDateTime, utcnow
from crm.security.crypto import BLIND_INDEX_TYPE, EncryptedString

TEMPLATE_STATUSES = ("draft", "approved")
CAMPAIGN_STATUSES = ("draft", "sent")
# pending: accepted by a send, waiting for the send job; queued: in the mail outbox; sent: the email adapter
# took it; failed: not handed over after the retries; skipped: not mailed, with the rule
MESSAGE_STATUSES = ("pending", "queued", "sent", "failed", "skipped")
# The platform's event types we know; anything else is kept with type ``unknown``.
EMAIL_EVENT_TYPES = ("processed", "delivered", "open", "click", "bounce", "dropped", "deferred", "spamreport",
                     "unsubscribe", "group_unsubscribe", "unknown")


class EmailTemplate(Base):
    """One version of a template. Versions of one template share ``name``; only drafts change."""

    __tablename__ = "email_templates"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    subject: Mapped[str] = mapped_column(String(300), nullable=False)
    html_body: Mapped[str] = mapped_column(Text, nullable=False)
    text_body: Mapped[str] = mapped_column(Text, nullable=False)
    purpose: Mapped[str] = mapped_column(String(30), nullable=False)
    products: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    language: Mapped[str] = mapped_column(String(8), nullable=False, default="en")
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="draft")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The version this one was made from (an edit of an approved version).
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("email_templates.id"))

    created_by = relationship("User", foreign_keys=[created_by_id], lazy="joined")
    approved_by = relationship("User", foreign_keys=[approved_by_id], lazy="joined")


class Audience(Base):
    """A saved filter over HCPs. Criteria combine with AND, values of one criterion with OR; explicit
    ``hcp_ids`` are added to whatever the criteria match. An audience that names a segment means the
    segment's HCPs (as the segment is when the audience is read) instead of criteria of its own. Either
    way the SQL comes from the one filter builder, ``crm.segments.filters``."""

    __tablename__ = "audiences"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    professions: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    specialties: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    territory_codes: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    hcp_ids: Mapped[list[int]] = mapped_column(JSON, nullable=False, default=list)
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    segment = relationship("Segment", lazy="joined")


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    template_id: Mapped[int] = mapped_column(ForeignKey("email_templates.id"), nullable=False)
    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="draft")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    template: Mapped[EmailTemplate] = relationship(lazy="joined")
    audience: Mapped[Audience] = relationship(lazy="joined")
    created_by = relationship("User", lazy="joined")


class CampaignMessage(Base):
    """The outcome of a send for one recipient: queued, sent or failed (following its mail in the outbox,
    with its Message-ID), or skipped with the rule."""

    __tablename__ = "campaign_messages"
    __table_args__ = (
        UniqueConstraint("campaign_id", "hcp_id"),
        Index("ix_campaign_messages_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), nullable=False)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(10), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(60))  # the rule that skipped it
    detail: Mapped[str | None] = mapped_column(String(300))
    message_id: Mapped[str | None] = mapped_column(String(250))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)


class EmailEvent(Base):
    """One event from the email platform, exactly once (``sg_event_id`` is unique).

    ``raw`` is the event as received minus personal data (address, IP, user agent); the address is kept
    encrypted only while the event matches no HCP, so that someone can resolve it.
    """

    __tablename__ = "email_events"
    __table_args__ = (
        Index("ix_email_events_campaign", "campaign_id", "event_type", "hcp_id"),
        Index("ix_email_events_unmatched", "hcp_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sg_event_id: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    event_type: Mapped[str] = mapped_column(String(20), nullable=False)
    platform_type: Mapped[str] = mapped_column(String(60), nullable=False)  # what the platform called it
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    hcp_id: Mapped[int | None] = mapped_column(ForeignKey("hcps.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    matched_by: Mapped[str | None] = mapped_column(String(10))  # hcp_id | email
    email_bidx: Mapped[str | None] = mapped_column(BLIND_INDEX_TYPE, index=True)
    email: Mapped[str | None] = mapped_column(EncryptedString("email_events.email"))
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
