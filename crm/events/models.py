"""Events, their invitations, registrations, attendance and the transfers of value made to HCPs."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, TimestampMixin, UTCDateTime, utcnow

EVENT_TYPES = ("congress", "webinar", "speaker_programme", "round_table")
# A medical round table is `medical`; events never carry pharmacovigilance content.
EVENT_SENSITIVITIES = ("standard", "medical")
INVITATION_CHANNELS = ("email", "other")
# sent: the mail left (or, channel other, the invitation was handed over); queued: its mail waits in the
# outbox; failed: the mail could not be handed over after every retry; skipped: not invited (the rule says why)
INVITATION_STATUSES = ("queued", "sent", "failed", "skipped")
INVITED = ("queued", "sent")  # invited already: no second invitation
ATTENDANCE_STATUSES = ("attended", "no_show")
TRANSFER_KINDS = ("meal", "travel", "accommodation", "speaker_fee", "registration_fee")
CAP_ACTIONS = ("warn", "block")


class Event(TimestampMixin, Base):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_events_starts_at", "starts_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    type: Mapped[str] = mapped_column(String(30), nullable=False)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    venue: Mapped[str | None] = mapped_column(String(300))
    url: Mapped[str | None] = mapped_column(String(500))
    products: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    organiser: Mapped[str] = mapped_column(String(200), nullable=False)
    sensitivity: Mapped[str] = mapped_column(String(20), nullable=False, default="standard")
    country: Mapped[str] = mapped_column(String(2), nullable=False, default="US")
    # The event platform's own id for this event, so rows of its export can be checked against it.
    external_id: Mapped[str | None] = mapped_column(String(120), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The current "attended" interaction carrying every attendee; replaced (superseded) as attendance grows.
    attendance_interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))


class Invitation(Base):
    """One HCP invited to one event: sent, or skipped with the reason (e.g. no consent for email/events)."""

    __tablename__ = "event_invitations"
    __table_args__ = (UniqueConstraint("event_id", "hcp_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), nullable=False)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    channel: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(300))
    rule: Mapped[str | None] = mapped_column(String(100))
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))


class Registration(Base):
    __tablename__ = "event_registrations"
    __table_args__ = (UniqueConstraint("event_id", "hcp_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), nullable=False)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    source: Mapped[str] = mapped_column(String(30), nullable=False, default="crm")
    external_id: Mapped[str | None] = mapped_column(String(200))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))


class Attendance(Base):
    """Whether one HCP came to one event. Idempotent on (event, HCP) and on (event, external id)."""

    __tablename__ = "event_attendance"
    __table_args__ = (UniqueConstraint("event_id", "hcp_id"), UniqueConstraint("event_id", "external_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), nullable=False)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    source: Mapped[str] = mapped_column(String(30), nullable=False, default="crm")
    external_id: Mapped[str | None] = mapped_column(String(200))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    # For a no-show: the HCP's own `event.no_show` item (attendees share the event's attended item).
    no_show_interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))


class TransferOfValue(Base):
    """Money or kind given to an HCP in connection with an event; feeds the transparency report."""

    __tablename__ = "transfers_of_value"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_transfers_of_value_hcp_date", "hcp_id", "paid_on"),
        Index("ix_transfers_of_value_date", "paid_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), nullable=False, index=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 3), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    paid_on: Mapped[date] = mapped_column(Date, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)

    event: Mapped[Event] = relationship(lazy="joined")


class TransferCap(TimestampMixin, Base):
    """The annual cap on transfers of value to one HCP in a country, in that country's reporting currency."""

    __tablename__ = "transfer_caps"

    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    annual_cap: Mapped[Decimal] = mapped_column(Numeric(14, 3), nullable=False)
    action: Mapped[str] = mapped_column(String(10), nullable=False, default="warn")


class DisclosureConsent(Base):
    """Append-only: whether an HCP agreed to be named in the transparency disclosure (EFPIA).

    The latest row at the end of the reporting year decides; without one the HCP is reported in the
    aggregate row, never by name.
    """

    __tablename__ = "disclosure_consents"
    __table_args__ = (Index("ix_disclosure_consents_hcp", "hcp_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hcp_id: Mapped[int] = mapped_column(ForeignKey("hcps.id"), nullable=False)
    granted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
