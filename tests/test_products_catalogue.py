"""The catalogue sync: the ERP is the master of products; every change is audited."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.integrations.erp import ErpProduct, ErpUnavailable
from crm.products.models import Product
from crm.products.services import sync_catalogue
from tests.orders_support import stub


class FixedErp:
    """An adapter whose catalogue is whatever the test says (only ``catalogue`` is asked here)."""

    name = "fixed"

    def __init__(self, products):
        self.products = products

    def catalogue(self):
        return list(self.products)


@pytest.fixture(autouse=True)
def erp(app):
    adapter = stub(app)
    adapter.faults.reset()
    yield adapter
    adapter.faults.reset()


def _audits(db, action):
    return db.scalars(select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.id)).all()


def test_sync_creates_changes_and_leaves_alone(db):
    db.add(Product(sku="LOCAL-1", name="Kept by the CRM"))
    db.flush()
    erp = FixedErp([ErpProduct("A-1", "Alpha", "box", Decimal("10.5"), "EUR"),
                    ErpProduct("S-1", "Sample", "pack", None, None, True, False)])
    first = sync_catalogue(db, None, erp)
    assert (first.created, first.changed, first.unchanged) == (["A-1", "S-1"], [], 0)
    alpha = db.scalar(select(Product).where(Product.sku == "A-1"))
    assert alpha.price == Decimal("10.50") and alpha.currency == "EUR" and alpha.orderable
    assert db.scalar(select(Product).where(Product.sku == "S-1")).orderable is False
    created = _audits(db, "product.create")
    assert created[0].changes["price"] == {"before": None, "after": "10.50"}
    assert created[0].reason == "ERP catalogue sync" and created[0].actor_label == "system"

    same = sync_catalogue(db, None, erp)  # 10.5 and 10.50 are the same price
    assert (same.created, same.changed, same.unchanged) == ([], [], 2)

    erp.products = [ErpProduct("A-1", "Alpha", "box", Decimal("11.00"), "EUR", active=False)]
    changed = sync_catalogue(db, None, erp)
    assert changed.changed == ["A-1"]
    update = _audits(db, "product.update")[-1]
    assert update.changes == {"active": {"before": True, "after": False},
                              "price": {"before": "10.50", "after": "11.00"}}
    # products the ERP no longer lists are kept: visits and orders still refer to them
    assert db.scalar(select(Product).where(Product.sku == "LOCAL-1")) is not None
    assert db.scalar(select(Product).where(Product.sku == "S-1")) is not None


def test_an_unreachable_erp_changes_nothing(db, erp):
    erp.faults.down(1)
    with pytest.raises(ErpUnavailable):
        sync_catalogue(db, None, erp)
    assert db.scalar(select(Product)) is None
    assert _audits(db, "product.create") == []


def test_crm_erp_sync_pulls_the_catalogue(runner, db):
    result = runner.invoke(args=["crm", "erp", "sync"])
    assert result.exit_code == 0, result.output
    assert "catalogue: 6 products (6 new, 0 changed)" in result.output
    db.expire_all()
    assert db.scalar(select(Product).where(Product.sku == "ONCO-100")).price == Decimal("1250.00")
    again = runner.invoke(args=["crm", "erp", "sync"])
    assert "catalogue: 6 products (0 new, 0 changed)" in again.output
