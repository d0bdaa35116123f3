"""Order pages: the form from an HCP, an HCO or a visit, the rep's order list, one order, the admin outbox."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from crm.orders.models import Order
from crm.visits.models import Visit
from tests.conftest import utc
from tests.orders_support import OrderWorld, stub


@pytest.fixture(autouse=True)
def erp(app):
    adapter = stub(app)
    adapter.faults.reset()
    yield adapter
    adapter.faults.reset()


@pytest.fixture
def w(db, factory, app):
    return OrderWorld(db, factory, app)


def _key(page: str) -> str:
    match = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', page)
    assert match
    return match.group(1)


def _form(page: str, action: str = "submit", **quantities: str) -> dict[str, str]:
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    data = {"csrf_token": token, "idempotency_key": _key(page), "action": action, "customer_reference": ""}
    data.update({f"qty_{sku.replace('_', '-')}": qty for sku, qty in quantities.items()})
    return data


def _count(db) -> int:
    return db.scalar(select(func.count()).select_from(Order))


def test_the_order_form_renders_for_a_rep_with_the_orderable_catalogue(client, auth, w):
    auth.login(w.rep)
    resp = client.get(f"/hcps/{w.hcp.id}/orders/new")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert w.hcp.full_name in page and 'name="csrf_token"' in page
    assert 'name="qty_CARD-10"' in page and "Cardiozol 10 mg" in page and "42.50 USD" in page
    assert "qty_CARD-S" not in page and "qty_NEURO-2" not in page  # sample-only, discontinued
    assert 'id="product-filter"' in page and "orders.js" in page
    assert "<script>" not in page and "style=" not in page  # CSP: no inline script or style


def test_a_rep_submits_an_order_from_the_form_and_it_reaches_the_erp(client, auth, w, db, erp):
    auth.login(w.rep)
    page = client.get(f"/hcps/{w.hcp.id}/orders/new").get_data(as_text=True)
    data = _form(page, CARD_10="12", NEURO_5="", ONCO_100="0")
    data["customer_reference"] = "PO-2026-7"
    resp = client.post(f"/hcps/{w.hcp.id}/orders/new", data=data)
    assert resp.status_code == 302
    order = db.scalar(select(Order))
    assert resp.headers["Location"].endswith(f"/orders/{order.id}")
    db.refresh(order)
    assert [(ln.sku, ln.quantity) for ln in order.lines] == [("CARD-10", 12)]
    assert order.status == "sent" and order.customer_reference == "PO-2026-7"
    assert erp.simulator.order_count() == 1
    shown = client.get(f"/orders/{order.id}").get_data(as_text=True)
    assert "submitted and queued for the ERP" in shown and "Cardiozol 10 mg" in shown and order.erp_order_id in shown
    # a double tap on the button sends the same form again: the same order, no second one
    again = client.post(f"/hcps/{w.hcp.id}/orders/new", data=data)
    assert again.status_code == 302 and again.headers["Location"].endswith(f"/orders/{order.id}")
    assert _count(db) == 1 and erp.simulator.order_count() == 1


def test_a_draft_saved_from_the_form_is_submitted_from_its_page(client, auth, w, db):
    auth.login(w.rep)
    page = client.get(f"/hcps/{w.hcp.id}/orders/new").get_data(as_text=True)
    resp = client.post(f"/hcps/{w.hcp.id}/orders/new", data=_form(page, action="draft", CARD_20="3"))
    order = db.scalar(select(Order))
    assert resp.status_code == 302 and order.status == "draft"
    shown = client.get(f"/orders/{order.id}").get_data(as_text=True)
    assert "saved as a draft" in shown and "Submit order" in shown
    token = re.search(r'name="csrf_token" value="([^"]+)"', shown).group(1)
    resp = client.post(f"/orders/{order.id}/submit", data={"csrf_token": token, "idempotency_key": _key(shown)})
    assert resp.status_code == 302
    db.refresh(order)
    assert order.status == "sent"


@pytest.mark.parametrize("quantities, message", [
    ({}, "at least one product"),
    ({"CARD_10": "abc"}, "Not a whole number"),
    ({"CARD_10": "20000"}, "between 1 and 10,000"),
    ({"CARD_10": "-3"}, "between 1 and 10,000"),
    ({"CARD_S": "2"}, "sample-only"),  # not offered, but sent anyway
    ({"GHOST_1": "2"}, "Unknown sku"),
])
def test_bad_quantities_show_the_form_again_with_what_was_typed(client, auth, w, db, quantities, message):
    auth.login(w.rep)
    page = client.get(f"/hcps/{w.hcp.id}/orders/new").get_data(as_text=True)
    resp = client.post(f"/hcps/{w.hcp.id}/orders/new", data=_form(page, **quantities))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert message in body and "The order was not saved" in body
    if "CARD_10" in quantities:
        assert f'value="{quantities["CARD_10"]}"' in body
    assert _count(db) == 0


def test_an_order_taken_during_a_visit(client, auth, w, db):
    visit = Visit(owner_id=w.rep.id, hcp_id=w.hcp.id, occurred_at=utc(2026, 1, 12, 9, 30))
    db.add(visit)
    db.flush()
    auth.login(w.rep)
    page = client.get(f"/hcps/{w.hcp.id}/orders/new?visit_id={visit.id}").get_data(as_text=True)
    assert "Taken during the visit of 2026-01-12 09:30 UTC" in page
    data = _form(page, CARD_10="1")
    data["visit_id"] = str(visit.id)
    assert client.post(f"/hcps/{w.hcp.id}/orders/new?visit_id={visit.id}", data=data).status_code == 302
    assert db.scalar(select(Order)).visit_id == visit.id
    assert client.get(f"/hcps/{w.hcp.id}/orders/new?visit_id=abc").status_code == 422


def test_an_order_for_a_pharmacy_from_its_form(client, auth, w, db):
    auth.login(w.rep)
    page = client.get(f"/hcos/{w.pharmacy.id}/orders/new").get_data(as_text=True)
    assert "Harbor Community Pharmacy" in page
    assert client.post(f"/hcos/{w.pharmacy.id}/orders/new", data=_form(page, CARD_10="6")).status_code == 302
    assert db.scalar(select(Order)).hco_id == w.pharmacy.id
    assert client.get("/hcos/999999/orders/new").status_code == 404


def test_the_form_refuses_other_roles_and_territories_up_front(client, auth, w):
    auth.login(w.rep)
    resp = client.get(f"/hcps/{w.hcp_south.id}/orders/new")
    assert resp.status_code == 403 and "order.write" in resp.get_data(as_text=True)
    assert client.get("/hcps/999999/orders/new").status_code == 404
    auth.logout()
    for role in ("marketer", "compliance"):
        auth.login(getattr(w, role))
        assert client.get(f"/hcps/{w.hcp.id}/orders/new").status_code == 403
        auth.logout()


def test_the_reps_order_list_shows_statuses_and_only_their_orders(client, auth, w, db, api):
    mine = api(w.rep).post("/api/v1/orders", json={"hcp_id": w.hcp.id, "lines": [{"sku": "CARD-10", "quantity": 2}]})
    theirs = api(w.rep2).post("/api/v1/orders", json={"hcp_id": w.hcp.id,
                                                      "lines": [{"sku": "CARD-20", "quantity": 9}]})
    api(w.rep).post(f"/api/v1/orders/{mine.get_json()['id']}/submit")
    auth.login(w.rep)
    page = client.get("/orders").get_data(as_text=True)
    assert f"#{mine.get_json()['id']}" in page and "order-sent" in page and "2 × CARD-10" in page
    assert f"#{theirs.get_json()['id']}" not in page
    assert 'href="/orders"' in client.get("/").get_data(as_text=True)  # in the rep's navigation
    drafts = client.get("/orders?status=draft").get_data(as_text=True)
    assert f"#{mine.get_json()['id']}" not in drafts
    assert client.get("/orders?status=lost").status_code == 422
    auth.logout()
    auth.login(w.compliance)
    everyone = client.get("/orders").get_data(as_text=True)
    assert f"#{mine.get_json()['id']}" in everyone and f"#{theirs.get_json()['id']}" in everyone
    assert client.get(f"/orders/{theirs.get_json()['id']}").status_code == 200
    assert "Submit order" not in client.get(f"/orders/{theirs.get_json()['id']}").get_data(as_text=True)
    assert client.get("/orders/999999").status_code == 404


def test_the_outbox_page_is_for_admins(client, auth, w, api):
    order_id = api(w.rep).post("/api/v1/orders", json={"hcp_id": w.hcp.id,
                                                       "lines": [{"sku": "CARD-10", "quantity": 2}]}).get_json()["id"]
    api(w.rep).post(f"/api/v1/orders/{order_id}/submit")
    auth.login(w.rep)
    assert client.get("/admin/erp/outbox").status_code == 403
    auth.logout()
    auth.login(w.admin)
    page = client.get("/admin/erp/outbox").get_data(as_text=True)
    assert f"#{order_id}" in page and "delivered" in page and "after commit: delivered" in page
    assert 'href="/admin/erp/outbox"' in client.get("/").get_data(as_text=True)
    detail = client.get(f"/orders/{order_id}").get_data(as_text=True)
    assert "Attempts to reach the ERP" in detail
    assert client.post("/admin/erp/outbox/999999/retry",
                       data={"csrf_token": auth.csrf_token("/admin/erp/outbox")}).status_code == 404
