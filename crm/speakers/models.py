"""Speaker qualifications of HCPs and the speakers engaged for events.

A qualification says an HCP was trained to speak on some topics on a date and may do so until a date.
An event speaker is an HCP engaged to speak at an event on one topic, for an agreed fee (a transfer of
value once paid): engaging one needs a qualification covering that topic on the event's dates, and the
fee must keep the HCP within the annual cap on transfers of value of their country.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import Base, UTCDateTime, utcnow

# How much one HCP's opinion weighs, widest first (the KOL tier on the HCP page).
INFLUENCE_TIERS = ("international", "national", "regional", "local")


class SpeakerQualification(Base):
    __tablename__ = "speaker_qualifications"
    __table_args__ = (
        Index("ix_speaker_qualifications_hcp", "hcp_id", "valid_until"),
        CheckConstraint("valid_until >= trained_on", name="valid_after_training"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False)
    topics: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    trained_on: Mapped[date] = mapped_column(Date, nullable=False)
    valid_until: Mapped[date] = mapped_column(Date, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class EventSpeaker(Base):
    __tablename__ = "event_speakers"
    __table_args__ = (
        UniqueConstraint("event_id", "hcp_id"),
        Index("ix_event_speakers_hcp", "hcp_id"),
        CheckConstraint("fee_amount >= 0", name="fee_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), nullable=False)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False)
    topic: Mapped[str] = mapped_column(String(200), nullable=False)
    qualification_id: Mapped[int] = mapped_column(ForeignKey("speaker_qualifications.id"), nullable=False)
    fee_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 3))
    fee_currency: Mapped[str | None] = mapped_column(String(3))
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
