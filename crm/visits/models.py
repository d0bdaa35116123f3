from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, TimestampMixin, UTCDateTime
from crm.security.crypto import EncryptedString

VISIT_MODES = ("in_person", "remote")
VISIT_STATUSES = ("draft", "submitted")


class Visit(TimestampMixin, Base):
    __tablename__ = "visits"
    # An outside tool's Idempotency-Key is unique per user: a repeat finds the visit it created.
    __table_args__ = (UniqueConstraint("owner_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="draft")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(20), nullable=False, default="in_person")
    sensitivity: Mapped[str] = mapped_column(String(20), nullable=False, default="standard")
    products: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    key_messages: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    notes: Mapped[str] = mapped_column(Text, nullable=False, default="")
    follow_up_date: Mapped[date | None] = mapped_column(Date)
    follow_up_text: Mapped[str | None] = mapped_column(Text)
    # The HCP's signature for samples received (a PNG data URL), personal data: encrypted.
    signature: Mapped[str | None] = mapped_column(EncryptedString("visits.signature"))
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    amends_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), unique=True)
    amendment_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # The Idempotency-Key the visit was created with (API), and the fingerprint of that request's body,
    # so the same key with another body is refused instead of answered with this visit.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # Where a remote visit took place (an https link to the video meeting); never set for in-person visits.
    meeting_url: Mapped[str | None] = mapped_column(String(500))

    samples: Mapped[list[VisitSample]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="VisitSample.id"
    )
    attendees: Mapped[list[VisitAttendee]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    owner = relationship("User", lazy="joined")
    hcp = relationship("HCP", lazy="joined")

    __mapper_args__ = {"version_id_col": version}

    def as_details(self) -> dict[str, Any]:
        return {
            "visit_id": self.id,
            "mode": self.mode,
            "meeting_url": self.meeting_url,
            "duration_minutes": self.duration_minutes,
            "key_messages": list(self.key_messages),
            "samples": [{"sku": s.sku, "quantity": s.quantity, "lot": s.lot} for s in self.samples],
            "notes": self.notes,
            "follow_up": (
                {"date": self.follow_up_date.isoformat(), "text": self.follow_up_text}
                if self.follow_up_date else None
            ),
            "attendee_hcp_ids": [a.hcp_id for a in self.attendees],
            "signed": self.signature is not None,
            "amendment_reason": self.amendment_reason,
        }


class VisitSample(Base):
    __tablename__ = "visit_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), nullable=False, index=True)
    sku: Mapped[str] = mapped_column(String(40), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    lot: Mapped[str] = mapped_column(String(60), nullable=False)


class VisitAttendee(Base):
    """Another HCP present at a group visit; the visit's interaction appears on their timeline too."""

    __tablename__ = "visit_attendees"

    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"), primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), primary_key=True)
