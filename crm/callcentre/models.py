"""Call-centre contacts, the medical-inquiry queue and the adverse-event intake queue."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, TimestampMixin, UTCDateTime, utcnow

DIRECTIONS = ("inbound", "outbound")
MEDIA = ("phone", "email", "chat", "web_form")
REASONS = ("product_information", "medical_inquiry", "adverse_event", "complaint", "sample_request", "other")
# The reason decides the sensitivity of the contact's timeline item (SPEC section 6).
REASON_SENSITIVITY = {"medical_inquiry": "medical", "adverse_event": "pv"}
INQUIRY_STATUSES = ("open", "answered", "closed")
CASE_STATUSES = ("open", "closed")
CASE_SOURCES = ("call_centre", "visit", "survey")
AE_DUE_HOURS = 24


def sensitivity_for(reason: str) -> str:
    return REASON_SENSITIVITY.get(reason, "standard")


class Contact(TimestampMixin, Base):
    __tablename__ = "call_centre_contacts"
    __table_args__ = (Index("ix_call_centre_contacts_hcp", "hcp_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    direction: Mapped[str] = mapped_column(String(10), nullable=False)
    medium: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str] = mapped_column(String(30), nullable=False)
    sensitivity: Mapped[str] = mapped_column(String(20), nullable=False, default="standard")
    summary: Mapped[str] = mapped_column(Text, nullable=False, default="")
    details: Mapped[str] = mapped_column(Text, nullable=False, default="")
    products: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    follow_up_date: Mapped[date | None] = mapped_column(Date)
    follow_up_text: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(30), nullable=False, default="crm")
    # The call-centre system's id: a replay (API or CSV) finds the contact instead of doubling it.
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    guardrail_hits: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))

    agent = relationship("User", lazy="joined")


class MedicalInquiry(TimestampMixin, Base):
    """A question that needs an answer from Medical Affairs, from a call or from a rep's visit."""

    __tablename__ = "medical_inquiries"
    __table_args__ = (Index("ix_medical_inquiries_status", "status", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # call_centre | visit
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("call_centre_contacts.id"), unique=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), unique=True)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    products: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="open")
    answer: Mapped[str | None] = mapped_column(Text)
    answer_medium: Mapped[str | None] = mapped_column(String(20))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The inquiry's own item (the contact's, or the visit's) and the answer's item, both `medical`.
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))
    answer_interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))

    answered_by = relationship("User", lazy="joined")


class AdverseEventCase(TimestampMixin, Base):
    """An adverse-event report waiting to be forwarded to pharmacovigilance within 24 hours."""

    __tablename__ = "adverse_event_cases"
    __table_args__ = (Index("ix_adverse_event_cases_status", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # call_centre | visit
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("call_centre_contacts.id"), unique=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    reporter: Mapped[str] = mapped_column(String(300), nullable=False)
    product: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="open")
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The forwarding record: who sent it to pharmacovigilance and when. Required to close.
    forwarded_by: Mapped[str | None] = mapped_column(String(200))
    forwarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pv_reference: Mapped[str | None] = mapped_column(String(120))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))

    def is_overdue(self, now: datetime | None = None) -> bool:
        """Open past its due time, or closed with a forwarding later than the due time."""
        if self.status == "open":
            return (now or utcnow()) > self.due_at
        return self.forwarded_at is not None and self.forwarded_at > self.due_at
