"""Orders, their lines and status history, the outbox that carries them to the ERP, and its attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import Base, TimestampMixin, UTCDateTime, utcnow

ORDER_STATUSES = ("draft", "queued", "sent", "accepted", "rejected", "backordered", "shipped")
# How far along an order is. A status never replaces one of higher rank, so a late or replayed
# `accepted` cannot overwrite `shipped`; `rejected` and `shipped` are final.
STATUS_RANK = {"draft": 0, "queued": 1, "sent": 2, "backordered": 3, "accepted": 4, "shipped": 5, "rejected": 5}
FINAL_STATUSES = frozenset({"shipped", "rejected"})
OUTBOX_STATES = ("pending", "delivered", "failed")


class Order(TimestampMixin, Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("(hcp_id IS NULL) <> (hco_id IS NULL)", name="one_customer"),
        Index("ix_orders_owner", "owner_id", "id"),
        Index("ix_orders_hcp", "hcp_id", "id"),
        Index("ix_orders_hco", "hco_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The CRM's key for this order at the ERP: the ERP deduplicates by it, so a retry never doubles.
    order_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    hcp_id: Mapped[int | None] = mapped_column(ForeignKey("hcps.id"))
    hco_id: Mapped[int | None] = mapped_column(ForeignKey("hcos.id"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="draft")
    reason: Mapped[str | None] = mapped_column(Text)  # the ERP's words on a rejection or a backorder
    erp_order_id: Mapped[str | None] = mapped_column(String(80))
    customer_reference: Mapped[str | None] = mapped_column(String(60))  # the customer's PO number
    # Submit's Idempotency-Key and the hash of the request it came with (same key, other body: 422).
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    lines: Mapped[list[OrderLine]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="OrderLine.id"
    )
    events: Mapped[list[OrderEvent]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="OrderEvent.id"
    )
    outbox: Mapped[OrderOutbox | None] = relationship(back_populates="order", lazy="selectin", uselist=False)
    owner = relationship("User", lazy="joined")
    hcp = relationship("HCP", lazy="joined")
    hco = relationship("HCO", lazy="joined")

    __mapper_args__ = {"version_id_col": version}


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "sku"), CheckConstraint("quantity > 0", name="quantity_positive"))

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False)
    sku: Mapped[str] = mapped_column(String(40), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)


class OrderEvent(Base):
    """One status the order reached, once: (order, status) is unique, so replays change nothing."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("order_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    # crm (the rep), erp_receipt (the answer to the submission), erp_poll (crm erp sync), erp_callback
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"))


class OrderOutbox(Base):
    """The order's message to the ERP, written in the submit transaction; delivered after it commits.

    ``locked_until`` is a short lease taken by the sender before it calls the ERP, so two senders (the
    after-commit hook and ``crm erp sync``) never call at once for one order; a sender that dies
    mid-call leaves a lease that simply runs out, and the next run delivers (the ERP deduplicates).
    """

    __tablename__ = "order_outbox"
    __table_args__ = (Index("ix_order_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False, unique=True)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    order: Mapped[Order] = relationship(back_populates="outbox")
    attempt_log: Mapped[list[OrderAttempt]] = relationship(lazy="selectin", order_by="OrderAttempt.id")


class OrderAttempt(Base):
    """One call to the ERP for one outbox message, with what came of it."""

    __tablename__ = "order_attempts"
    __table_args__ = (Index("ix_order_attempts_outbox", "outbox_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("order_outbox.id"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    trigger: Mapped[str] = mapped_column(String(20), nullable=False)  # after_commit | sync | retry
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # delivered | duplicate | rejected | unavailable | timeout | error
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    erp_order_id: Mapped[str | None] = mapped_column(String(80))
