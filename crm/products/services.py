"""The catalogue: read by everyone, written only by the ERP catalogue sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select

from crm.audit import services as audit
from crm.db import DbSession
from crm.integrations.erp import ErpAdapter
from crm.products.models import Product
from crm.schemas import decode_cursor, encode_cursor

_CENT = Decimal("0.01")
_SYNCED_FIELDS = ("name", "unit", "active", "orderable", "price", "currency")


@dataclass
class CatalogueSync:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def total(self) -> int:
        return len(self.created) + len(self.changed) + self.unchanged


def sync_catalogue(session: DbSession, actor: Any, adapter: ErpAdapter) -> CatalogueSync:
    """Upsert every product of the ERP's ``catalogue()`` by sku and audit each change.

    The ERP is the master of sku, name, unit, price, currency, active, and whether a product can be
    ordered (sample-only products cannot). Products the ERP no longer lists are left as they are:
    their history (visits detailing them, past orders) still refers to them. Raises the adapter's
    ErpError when the ERP cannot be asked; nothing is written then. The ERP is asked before ``session``
    touches the database, so no transaction is held open while it answers.
    """
    result = CatalogueSync()
    remote = adapter.catalogue()
    known = {p.sku: p for p in session.scalars(select(Product).where(Product.sku.in_([r.sku for r in remote])))}
    for item in remote:
        price = item.price.quantize(_CENT) if item.price is not None else None
        values = {"name": item.name, "unit": item.unit, "active": item.active, "orderable": item.orderable,
                  "price": price, "currency": item.currency}
        product = known.get(item.sku)
        if product is None:
            product = Product(sku=item.sku, **values)
            session.add(product)
            session.flush()
            audit.record(session, actor, "product.create", "product", product.id,
                         audit.created({"sku": item.sku, **_auditable(values)}), reason="ERP catalogue sync")
            result.created.append(item.sku)
            continue
        before = {k: getattr(product, k) for k in _SYNCED_FIELDS}
        changes = audit.diff(_auditable(before), _auditable(values))
        if not changes:
            result.unchanged += 1
            continue
        for key, value in values.items():
            setattr(product, key, value)
        session.flush()
        audit.record(session, actor, "product.update", "product", product.id, changes, reason="ERP catalogue sync")
        result.changed.append(item.sku)
    return result


def _auditable(values: dict[str, Any]) -> dict[str, Any]:
    """Prices as decimal strings: the audit trail is JSON and a float would round."""
    price = values.get("price")
    return {**values, "price": str(price) if price is not None else None}


def list_products(session: DbSession, q: str | None = None, orderable: bool | None = None,
                  active: bool | None = None, limit: int = 50,
                  cursor: str | None = None) -> tuple[list[Product], str | None]:
    """One page of the catalogue ordered by sku; ``q`` matches a part of the sku or the name."""
    stmt = select(Product)
    if q and q.strip():
        term = q.strip()
        stmt = stmt.where(or_(Product.sku.icontains(term, autoescape=True),
                              Product.name.icontains(term, autoescape=True)))
    if orderable is not None:
        stmt = stmt.where(Product.orderable.is_(orderable))
    if active is not None:
        stmt = stmt.where(Product.active.is_(active))
    if cursor:
        (last_sku,) = decode_cursor(cursor, (str,))
        stmt = stmt.where(Product.sku > last_sku)
    rows = list(session.scalars(stmt.order_by(Product.sku).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].sku)


def orderable_products(session: DbSession) -> list[Product]:
    """What can go on an order now: active and orderable, by name (the order form's list)."""
    return list(session.scalars(
        select(Product).where(Product.active.is_(True), Product.orderable.is_(True)).order_by(Product.name)
    ))
