"""``mail_outbox``: one row per mail the CRM sends, from the business write to the hand-over.

States: ``queued`` (waiting, ``next_attempt_at`` says when) -> ``sending`` (claimed by a worker until
``locked_until``) -> ``sent`` (the email adapter took it: the SMTP server accepted it, or the file is in the
outbox folder) or back to ``queued`` with a backoff, and ``failed`` after ``CRM_MAIL_MAX_ATTEMPTS``.
The recipient and the built message are personal data and stored encrypted; the message is dropped once
it is sent (the Message-ID, the kind and the related row stay).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import Base, UTCDateTime, utcnow
from crm.security.crypto import EncryptedString

MAIL_KINDS = ("campaign", "invitation", "double_opt_in", "survey", "other")
MAIL_STATES = ("queued", "sending", "sent", "failed")


class MailOutbox(Base):
    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    # Unique: enqueueing the same mail twice (a replayed request, a repeated send) gives the first row.
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    hcp_id: Mapped[int | None] = mapped_column(ForeignKey("hcps.id"), index=True)
    campaign_message_id: Mapped[int | None] = mapped_column(ForeignKey("campaign_messages.id"), index=True)
    invitation_id: Mapped[int | None] = mapped_column(ForeignKey("event_invitations.id"), index=True)
    consent_event_id: Mapped[int | None] = mapped_column(ForeignKey("consent_events.id"), index=True)
    recipient: Mapped[str] = mapped_column(EncryptedString("mail_outbox.recipient"), nullable=False)
    # The built message as JSON (subject, text, html, headers); None once sent.
    message: Mapped[str | None] = mapped_column(EncryptedString("mail_outbox.message"))
    # Fixed when the row is written and used on every attempt, so a receiver can drop a repeat.
    message_id: Mapped[str] = mapped_column(String(250), nullable=False)
    state: Mapped[str] = mapped_column(String(10), nullable=False, default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
