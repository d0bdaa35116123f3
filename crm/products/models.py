from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Boolean, Date, ForeignKey, Integer, Numeric, String, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import Base, TimestampMixin

# How many units of one product a rep may hand out in one visit, unless the product says otherwise.
DEFAULT_MAX_SAMPLE_QUANTITY = 10


class Product(TimestampMixin, Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    unit: Mapped[str] = mapped_column(String(40), default="pack", nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    # Sample-only products can be detailed and given as samples but not ordered.
    orderable: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    # List price and its ISO 4217 currency, where the ERP gives one (catalogue sync).
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    # Whether reps may hand it out as a sample in a visit, and how many units per visit (issue 11).
    # The CRM's own settings (admin), not the ERP's: the catalogue sync never changes them.
    is_sample: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), nullable=False)
    max_sample_quantity: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_MAX_SAMPLE_QUANTITY, server_default=text(str(DEFAULT_MAX_SAMPLE_QUANTITY)),
        nullable=False)


class SampleLot(TimestampMixin, Base):
    """A manufacturing lot of a sample product and its expiry date. A sample given in a visit names one
    that is not expired at the visit's date. (Sample accountability, inventories and transfers, builds
    on this table later.)"""

    __tablename__ = "sample_lots"
    __table_args__ = (UniqueConstraint("product_id", "lot_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), nullable=False)
    lot_number: Mapped[str] = mapped_column(String(60), nullable=False)
    expires_on: Mapped[date] = mapped_column(Date, nullable=False)
