"""The ERP simulator's own tables. The CRM never reads them: they are the "other system"'s state.

The in-process stub keeps them in the CRM's database (a separate system in a shared file is still a
separate system: nothing but the simulator touches these rows); the loopback ERP server keeps them
in a database of its own.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import Base, UTCDateTime, utcnow


class ErpStubProduct(Base):
    __tablename__ = "erp_stub_products"

    sku: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    unit: Mapped[str] = mapped_column(String(40), nullable=False, default="pack")
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    sample_only: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class ErpStubStock(Base):
    __tablename__ = "erp_stub_stock"

    sku: Mapped[str] = mapped_column(String(40), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class ErpStubOrder(Base):
    """One order as the simulated ERP holds it, deduplicated by the CRM's order key."""

    __tablename__ = "erp_stub_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    erp_order_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    customer: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
