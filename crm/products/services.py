"""The catalogue: read by everyone; written by the ERP catalogue sync, except the sample settings
(``is_sample``, ``max_sample_quantity``) and the sample lots, which are the CRM's own (admin)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from crm.access.policy import Viewer, require_write
from crm.audit import services as audit
from crm.db import DbSession
from crm.errors import Conflict, Invalid, NotFound
from crm.integrations.erp import ErpAdapter
from crm.products.models import Product, SampleLot
from crm.schemas import decode_cursor, encode_cursor

_CENT = Decimal("0.01")
MAX_SAMPLE_QUANTITY_LIMIT = 1000  # an upper bound for the per-visit maximum an admin may set
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
            # A sample-only product (not orderable) is a sample product from the start; the rest are not
            # until an admin says so.
            product = Product(sku=item.sku, is_sample=not item.orderable, **values)
            session.add(product)
            session.flush()
            audit.record(session, actor, "product.create", "product", product.id,
                         audit.created({"sku": item.sku, **_auditable(values), "is_sample": product.is_sample}),
                         reason="ERP catalogue sync")
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


# -- samples (issue 11): which products are given as samples, how many per visit, and their lots ------

def get_product(session: DbSession, sku: str) -> Product:
    product = session.scalar(select(Product).where(Product.sku == sku))
    if product is None:
        raise NotFound(f"No product with sku {sku}.")
    return product


def set_sample_settings(session: DbSession, actor: Any, viewer: Viewer | None, product: Product, *,
                        is_sample: bool | None = None, max_sample_quantity: int | None = None) -> Product:
    """Mark ``product`` as a sample product (or not) and set how many units a rep may give per visit.

    Admin only (``product.manage``; the command line acts as ``viewer=None``). These are the CRM's own
    settings: the ERP catalogue sync never changes them. Audited when something changes.
    """
    if viewer is not None:
        require_write(viewer, "product.manage")
    if max_sample_quantity is not None and not 1 <= max_sample_quantity <= MAX_SAMPLE_QUANTITY_LIMIT:
        raise Invalid(errors={"max_sample_quantity": [f"must be 1 to {MAX_SAMPLE_QUANTITY_LIMIT}"]})
    before = {"is_sample": product.is_sample, "max_sample_quantity": product.max_sample_quantity}
    if is_sample is not None:
        product.is_sample = is_sample
    if max_sample_quantity is not None:
        product.max_sample_quantity = max_sample_quantity
    changes = audit.diff(before, {"is_sample": product.is_sample, "max_sample_quantity": product.max_sample_quantity})
    if changes:
        session.flush()
        audit.record(session, actor, "product.update", "product", product.id, changes)
    return product


def add_sample_lot(session: DbSession, actor: Any, viewer: Viewer | None, product: Product, lot_number: str,
                   expires_on: date) -> SampleLot:
    """Register a lot of a sample product with its expiry date (admin; ``viewer=None`` on the command line).

    Refused: a product that is not a sample product (422), a blank lot number (422), a lot number the
    product already has (409; two requests at once: one wins, the other gets 409).
    """
    if viewer is not None:
        require_write(viewer, "product.manage")
    lot_number = (lot_number or "").strip()
    errors: dict[str, list[str]] = {}
    if not lot_number:
        errors["lot_number"] = ["Must not be blank."]
    if not product.is_sample:
        errors["sku"] = [f"{product.sku} is not a sample product; mark it as one first"]
    if errors:
        raise Invalid("The lot cannot be registered.", errors=errors)
    if session.scalar(select(SampleLot.id).where(SampleLot.product_id == product.id,
                                                 SampleLot.lot_number == lot_number)) is not None:
        raise Conflict(f"{product.sku} already has lot {lot_number}.")
    lot = SampleLot(product_id=product.id, lot_number=lot_number, expires_on=expires_on)
    try:
        with session.begin_nested():
            session.add(lot)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{product.sku} already has lot {lot_number}.") from exc
    audit.record(session, actor, "sample_lot.create", "sample_lot", lot.id,
                 audit.created({"sku": product.sku, "lot_number": lot_number, "expires_on": expires_on.isoformat()}))
    return lot


def sample_lots(session: DbSession, product: Product) -> list[SampleLot]:
    """The product's lots, latest expiry first."""
    return list(session.scalars(select(SampleLot).where(SampleLot.product_id == product.id)
                                .order_by(SampleLot.expires_on.desc(), SampleLot.lot_number)))


def sample_problems(session: DbSession, samples: Sequence[tuple[str, int, str]], on: date) -> dict[str, list[str]]:
    """Why each sample ``(sku, quantity, lot)`` of a visit on the date ``on`` cannot be given, by field path
    (``samples.0.sku``, ``samples.0.lot``, ``samples.0.quantity``); empty when all can.

    A sample names an active sample product, a lot registered for that product and not expired on ``on``
    (a lot is good through its expiry date), and a quantity of at least 1; the units of one product in
    one visit add up to at most its ``max_sample_quantity``.
    """
    errors: dict[str, list[str]] = {}
    if not samples:
        return errors
    skus = {sku for sku, _q, _l in samples}
    products = {p.sku: p for p in session.scalars(select(Product).where(Product.sku.in_(skus)))}
    lots = {(sku, lot.lot_number): lot for sku, lot in session.execute(
        select(Product.sku, SampleLot).join(SampleLot, SampleLot.product_id == Product.id)
        .where(Product.sku.in_(skus)))}
    totals: dict[str, int] = {}
    for sku, quantity, _lot in samples:
        totals[sku] = totals.get(sku, 0) + quantity
    for i, (sku, quantity, lot_number) in enumerate(samples):
        product = products.get(sku)
        if product is None:
            errors[f"samples.{i}.sku"] = [f"{sku}: unknown sku"]
            continue
        if not product.active:
            errors[f"samples.{i}.sku"] = [f"{sku}: product is no longer active"]
            continue
        if not product.is_sample:
            errors[f"samples.{i}.sku"] = [f"{sku}: not a sample product"]
            continue
        lot = lots.get((sku, lot_number))
        if lot is None:
            errors[f"samples.{i}.lot"] = [f"{lot_number}: no such lot of {sku}"]
        elif lot.expires_on < on:
            errors[f"samples.{i}.lot"] = [f"{lot_number}: expired on {lot.expires_on.isoformat()}, "
                                          f"before the visit ({on.isoformat()})"]
        if quantity < 1:
            errors[f"samples.{i}.quantity"] = ["must be at least 1"]
        elif totals[sku] > product.max_sample_quantity:
            errors[f"samples.{i}.quantity"] = [f"at most {product.max_sample_quantity} unit(s) of {sku} per visit "
                                               f"(this visit gives {totals[sku]})"]
    return errors
