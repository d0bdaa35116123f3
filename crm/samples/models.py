"""Sample accountability (PDMA-style): every unit a rep holds is traceable through a ledger of movements.

``sample_movements`` is append-only: a shipment received, a unit disbursed in a visit, a transfer sent or
received, a count adjustment. ``sample_inventory`` is the running balance per (rep, lot), written in the same
transaction as each movement and never below zero (a CHECK constraint, and every decrement is a conditional
update), so a rep's inventory always equals the sum of their movements (``crm samples verify`` checks it).
Shipments from the company and transfers between reps are one table: both are sent, then acknowledged by the
receiving rep with the quantities actually received; a difference is a discrepancy for compliance, as is
every difference found by a periodic count.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, UTCDateTime, utcnow

# shipment: from the company's sample warehouse to a rep (sent by an administrator); transfer: rep to rep
CONSIGNMENT_KINDS = ("shipment", "transfer")
CONSIGNMENT_STATUSES = ("sent", "received")
# disbursement_corrected: units an amendment of a visit no longer gives, back in the rep's inventory
MOVEMENT_KINDS = ("received", "disbursed", "transfer_out", "transfer_in", "count_adjustment", "disbursement_corrected")
DISCREPANCY_SOURCES = ("shipment", "transfer", "count")
DISCREPANCY_STATUSES = ("open", "reviewed")


class SampleConsignment(Base):
    """Units sent to a rep: a shipment from the company (``from_user_id`` null) or a transfer from another rep."""

    __tablename__ = "sample_consignments"
    __table_args__ = (
        Index("ix_sample_consignments_to_user", "to_user_id", "status"),
        Index("ix_sample_consignments_from_user", "from_user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="sent")
    from_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    to_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    sent_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    received_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)

    lines: Mapped[list[SampleConsignmentLine]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="SampleConsignmentLine.id")


class SampleConsignmentLine(Base):
    __tablename__ = "sample_consignment_lines"
    __table_args__ = (
        UniqueConstraint("consignment_id", "lot_id"),
        CheckConstraint("quantity_sent > 0", name="quantity_sent_positive"),
        CheckConstraint("quantity_received >= 0", name="quantity_received_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consignment_id: Mapped[int] = mapped_column(ForeignKey("sample_consignments.id"), nullable=False)
    lot_id: Mapped[int] = mapped_column(ForeignKey("sample_lots.id"), nullable=False)
    quantity_sent: Mapped[int] = mapped_column(Integer, nullable=False)
    quantity_received: Mapped[int | None] = mapped_column(Integer)


class SampleInventory(Base):
    """The units of one lot a rep holds now: the sum of their movements of that lot, never negative."""

    __tablename__ = "sample_inventory"
    __table_args__ = (CheckConstraint("quantity >= 0", name="quantity_not_negative"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("sample_lots.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


class SampleMovement(Base):
    """One change to one rep's units of one lot (append-only); ``quantity`` is signed."""

    __tablename__ = "sample_movements"
    __table_args__ = (
        Index("ix_sample_movements_user_lot", "user_id", "lot_id"),
        Index("ix_sample_movements_visit", "visit_id"),
        CheckConstraint("quantity <> 0", name="quantity_not_zero"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    lot_id: Mapped[int] = mapped_column(ForeignKey("sample_lots.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    consignment_id: Mapped[int | None] = mapped_column(ForeignKey("sample_consignments.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    count_id: Mapped[int | None] = mapped_column(ForeignKey("sample_counts.id"))


class SampleCount(Base):
    """A periodic physical count of a rep's samples: counted vs. held, per lot."""

    __tablename__ = "sample_counts"
    __table_args__ = (Index("ix_sample_counts_user", "user_id", "counted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)

    lines: Mapped[list[SampleCountLine]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="SampleCountLine.id")


class SampleCountLine(Base):
    __tablename__ = "sample_count_lines"
    __table_args__ = (UniqueConstraint("count_id", "lot_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    count_id: Mapped[int] = mapped_column(ForeignKey("sample_counts.id"), nullable=False)
    lot_id: Mapped[int] = mapped_column(ForeignKey("sample_lots.id"), nullable=False)
    expected: Mapped[int] = mapped_column(Integer, nullable=False)
    counted: Mapped[int] = mapped_column(Integer, nullable=False)


class SampleDiscrepancy(Base):
    """Units that went missing or appeared: a shipment or transfer received short (or over), or a count that
    differs from the ledger. Listed for compliance until reviewed."""

    __tablename__ = "sample_discrepancies"
    __table_args__ = (Index("ix_sample_discrepancies_status", "status", "reported_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    lot_id: Mapped[int] = mapped_column(ForeignKey("sample_lots.id"), nullable=False)
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    consignment_id: Mapped[int | None] = mapped_column(ForeignKey("sample_consignments.id"))
    count_id: Mapped[int | None] = mapped_column(ForeignKey("sample_counts.id"))
    expected: Mapped[int] = mapped_column(Integer, nullable=False)
    actual: Mapped[int] = mapped_column(Integer, nullable=False)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="open")
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    review_note: Mapped[str | None] = mapped_column(Text)

    @property
    def difference(self) -> int:
        return self.actual - self.expected
