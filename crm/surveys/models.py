"""Surveys, their recipients (one row per (survey, HCP): never mailed twice) and their responses (one per
(survey, HCP): answered once, by link or captured in a conversation).

A survey's ``questions`` are plain texts: for ``nps`` exactly one (the 0-10 "would you recommend"
question), for ``satisfaction`` one to five statements each answered on a 1-5 scale. Every survey also
takes an optional free-text comment.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, UTCDateTime, utcnow

SURVEY_KINDS = ("nps", "satisfaction")
# The channel experience a survey asks about (what came just before it); the reference, when given, is
# the event (``event``) or campaign (``email``) it follows.
CONTEXT_CHANNELS = ("visit", "event", "email", "call_centre")
SURVEY_STATUSES = ("draft", "sent")
# pending: planned, not yet handed to the mail outbox; queued: its mail is in the outbox (the outbox row
# says whether it left); skipped: not mailed, ``reason`` is the rule.
RECIPIENT_STATUSES = ("pending", "queued", "skipped")
# How an answer came in: the HCP's own signed link, or a conversation someone captured.
ANSWER_MEDIA = ("link", "phone", "visit", "remote_meeting")
CAPTURE_MEDIA = ("phone", "visit", "remote_meeting")


class Survey(Base):
    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    questions: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    context_channel: Mapped[str | None] = mapped_column(String(20))
    context_id: Mapped[int | None] = mapped_column(Integer)
    # A saved campaign audience, a saved segment, or explicit HCP ids (used when neither is named).
    audience_id: Mapped[int | None] = mapped_column(ForeignKey("audiences.id"))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), index=True)
    hcp_ids: Mapped[list[int]] = mapped_column(JSON, nullable=False, default=list)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="draft")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    created_by = relationship("User", lazy="joined")
    segment = relationship("Segment", lazy="joined")


class SurveyRecipient(Base):
    """The outcome of a send for one HCP. Unique per (survey, HCP): a repeated send mails nobody twice."""

    __tablename__ = "survey_recipients"
    __table_args__ = (
        UniqueConstraint("survey_id", "hcp_id"),
        Index("ix_survey_recipients_status", "survey_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"), nullable=False)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="pending")
    reason: Mapped[str | None] = mapped_column(String(60))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("mail_outbox.id"))
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)


class SurveyResponse(Base):
    """One HCP's answer to one survey, given once. ``sensitivity`` is that of its timeline item: `pv`
    when the comment carries adverse-event wording (then an adverse-event case is open for it)."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        UniqueConstraint("survey_id", "hcp_id"),
        Index("ix_survey_responses_answered", "survey_id", "answered_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"), nullable=False)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    score: Mapped[int | None] = mapped_column(Integer)  # NPS: 0-10
    answers: Mapped[list[int]] = mapped_column(JSON, nullable=False, default=list)  # satisfaction: 1-5 each
    comment: Mapped[str | None] = mapped_column(Text)
    medium: Mapped[str] = mapped_column(String(20), nullable=False)
    captured_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    sensitivity: Mapped[str] = mapped_column(String(20), nullable=False, default="standard")
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    guardrail_hits: Mapped[list[dict[str, object]]] = mapped_column(JSON, nullable=False, default=list)
