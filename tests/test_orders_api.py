"""Orders over the API: capture, validation, roles and territories, submit with Idempotency-Key, the
status walk on the timeline, and the signed ERP callback (idempotent, out-of-order safe)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crm.audit.models import AuditRecord
from crm.orders.models import Order, OrderEvent, OrderOutbox
from crm.timeline.models import Interaction
from crm.visits.models import Visit
from tests.conftest import utc
from tests.orders_support import OrderWorld, signed, stub, timeline_kinds


@pytest.fixture(autouse=True)
def erp(app):
    """The stub answers at once and behaves until a test says otherwise."""
    adapter = stub(app)
    adapter.faults.reset()
    yield adapter
    adapter.faults.reset()


@pytest.fixture
def api(api):
    """One token per user and test: issuing one verifies the password, which is slow on purpose."""
    clients = {}

    def make(user):
        if user.id not in clients:
            clients[user.id] = api(user)
        return clients[user.id]

    return make


@pytest.fixture
def w(db, factory, app):
    return OrderWorld(db, factory, app)


def _order(api_client, hcp_id, lines=None, **extra):
    body = {"hcp_id": hcp_id, "lines": [{"sku": "CARD-10", "quantity": 20}] if lines is None else lines}
    body.update(extra)
    return api_client.post("/api/v1/orders", json=body)


# -- capture -------------------------------------------------------------------------------------

def test_a_rep_captures_a_draft_for_an_hcp_in_own_territory(api, w, db):
    resp = _order(api(w.rep), w.hcp.id, [{"sku": "CARD-10", "quantity": 20}, {"sku": "NEURO-5", "quantity": 3}])
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "draft" and body["hcp_id"] == w.hcp.id and body["hco_id"] is None
    assert body["lines"] == [{"sku": "CARD-10", "name": "Cardiozol 10 mg", "quantity": 20},
                             {"sku": "NEURO-5", "name": "Neurolin 5 mg", "quantity": 3}]
    assert body["owner"]["id"] == w.rep.id and body["delivery"] is None
    assert body["created_at"].endswith("Z")
    assert [h["status"] for h in body["history"]] == ["draft"]
    assert db.scalar(select(func.count()).select_from(AuditRecord).where(
        AuditRecord.action == "order.create", AuditRecord.entity_id == str(body["id"]))) == 1
    # a draft is nobody's business yet: nothing on the timeline, nothing for the ERP
    assert db.scalar(select(func.count()).select_from(OrderOutbox)) == 0
    assert timeline_kinds(api(w.rep), w.hcp.id) == []


def test_a_rep_orders_for_a_pharmacy_and_it_shows_on_the_pharmacists_timeline(api, w):
    client = api(w.rep)
    resp = client.post("/api/v1/orders", json={"hco_id": w.pharmacy.id, "lines": [{"sku": "CARD-20", "quantity": 5}]})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["customer_name"] == "Harbor Community Pharmacy"
    order_id = resp.get_json()["id"]
    assert client.post(f"/api/v1/orders/{order_id}/submit").status_code == 202
    assert timeline_kinds(client, w.pharmacist.id) == ["order.queued", "order.sent"]


@pytest.mark.parametrize("lines, field", [
    ([{"sku": "NOPE-1", "quantity": 1}], "lines.0.sku"),  # unknown sku
    ([{"sku": "CARD-S", "quantity": 1}], "lines.0.sku"),  # sample-only: not orderable
    ([{"sku": "NEURO-2", "quantity": 1}], "lines.0.sku"),  # discontinued: inactive
    ([{"sku": "CARD-10", "quantity": 0}], "lines.0.quantity"),
    ([{"sku": "CARD-10", "quantity": -5}], "lines.0.quantity"),
    ([{"sku": "CARD-10", "quantity": 10_001}], "lines.0.quantity"),  # absurd
    ([{"sku": "CARD-10", "quantity": 2.5}], "lines.0.quantity"),
    ([{"sku": "CARD-10", "quantity": "12"}], "lines.0.quantity"),
    ([{"sku": "CARD-10", "quantity": 1}, {"sku": "CARD-10", "quantity": 2}], "lines.1.sku"),  # twice
    ([], "lines"),
])
def test_bad_lines_are_422_and_nothing_is_stored(api, w, db, lines, field):
    resp = _order(api(w.rep), w.hcp.id, lines)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"]
    assert resp.mimetype == "application/problem+json"
    assert db.scalar(select(func.count()).select_from(Order)) == 0


def test_the_largest_sensible_quantity_is_accepted(api, w):
    assert _order(api(w.rep), w.hcp.id, [{"sku": "CARD-10", "quantity": 10_000}]).status_code == 201


@pytest.mark.parametrize("body, field", [
    ({"lines": [{"sku": "CARD-10", "quantity": 1}]}, "_schema"),  # neither customer
    ({"hcp_id": 1, "hco_id": 1, "lines": [{"sku": "CARD-10", "quantity": 1}]}, "_schema"),  # both
    ({"hcp_id": 999_999, "lines": [{"sku": "CARD-10", "quantity": 1}]}, "hcp_id"),
    ({"hco_id": 999_999, "lines": [{"sku": "CARD-10", "quantity": 1}]}, "hco_id"),
    ({"hcp_id": None, "lines": [{"sku": "CARD-10", "quantity": 1}], "colour": "red"}, "colour"),  # unknown field
])
def test_customer_must_be_exactly_one_known_hcp_or_hco(api, w, body, field):
    resp = api(w.rep).post("/api/v1/orders", json=body)
    assert resp.status_code == 422
    assert field in resp.get_json()["errors"]


def test_malformed_json_is_400(api, w):
    resp = api(w.rep).client.post("/api/v1/orders", data="{nope", content_type="application/json",
                                  headers={"Authorization": f"Bearer {api(w.rep).token}"})
    assert resp.status_code == 400


def test_an_order_outside_the_reps_territory_is_403_with_the_rule(api, w, db):
    resp = _order(api(w.rep), w.hcp_south.id)
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "order.write:territory"
    assert db.scalar(select(func.count()).select_from(Order)) == 0


@pytest.mark.parametrize("role", ["marketer", "compliance", "call_centre", "medical", "admin"])
def test_only_field_reps_create_orders(api, w, role):
    resp = _order(api(getattr(w, role)), w.hcp.id)
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "order.write:role"


def test_an_order_taken_during_a_visit_links_it(api, w, db):
    visit = Visit(owner_id=w.rep.id, hcp_id=w.hcp.id, occurred_at=utc(2026, 1, 12, 9), status="submitted")
    other_hcp = Visit(owner_id=w.rep.id, hcp_id=w.pharmacist.id, occurred_at=utc(2026, 1, 12, 9))
    someone_elses = Visit(owner_id=w.rep2.id, hcp_id=w.hcp.id, occurred_at=utc(2026, 1, 12, 9))
    db.add_all([visit, other_hcp, someone_elses])
    db.flush()
    client = api(w.rep)
    ok = _order(client, w.hcp.id, visit_id=visit.id)
    assert ok.status_code == 201 and ok.get_json()["visit_id"] == visit.id
    for bad in (other_hcp.id, someone_elses.id, 999_999):
        resp = _order(client, w.hcp.id, visit_id=bad)
        assert resp.status_code == 422 and "visit_id" in resp.get_json()["errors"]


# -- submit, idempotency, the walk to shipped ------------------------------------------------------

def test_submit_queues_sends_after_commit_and_the_status_walks_to_shipped_on_the_timeline(api, w, db, runner):
    client = api(w.rep)
    order_id = _order(client, w.hcp.id).get_json()["id"]
    resp = client.post(f"/api/v1/orders/{order_id}/submit", headers={"Idempotency-Key": "k-walk"})
    assert resp.status_code == 202
    assert resp.get_json()["status"] == "queued"  # the answer is written before the commit
    after = client.get(f"/api/v1/orders/{order_id}").get_json()
    assert after["status"] == "sent" and after["erp_order_id"].startswith("SO-")
    assert after["delivery"]["state"] == "delivered" and after["delivery"]["attempts"] == 1

    assert runner.invoke(args=["crm", "erp", "sync"]).exit_code == 0
    assert client.get(f"/api/v1/orders/{order_id}").get_json()["status"] == "accepted"
    assert runner.invoke(args=["crm", "erp", "sync"]).exit_code == 0
    final = client.get(f"/api/v1/orders/{order_id}").get_json()
    assert final["status"] == "shipped"
    assert [h["status"] for h in final["history"]] == ["draft", "queued", "sent", "accepted", "shipped"]
    assert [h["source"] for h in final["history"]] == ["crm", "crm", "erp_receipt", "erp_poll", "erp_poll"]
    assert timeline_kinds(client, w.hcp.id) == ["order.queued", "order.sent", "order.accepted", "order.shipped"]
    # everyone sees the order items (standard content, shared by default)
    items = api(w.marketer).get(f"/api/v1/hcps/{w.hcp.id}/timeline?channel=order").get_json()["items"]
    assert items[0]["kind"] == "order.shipped" and items[0]["details"]["order_id"] == order_id
    assert items[0]["products"] == ["CARD-10"] and items[0]["source"] == "erp"
    # a further sync changes nothing
    assert runner.invoke(args=["crm", "erp", "sync"]).exit_code == 0
    assert timeline_kinds(client, w.hcp.id) == ["order.queued", "order.sent", "order.accepted", "order.shipped"]
    assert stub(w.app).simulator.order_count() == 1


def test_same_idempotency_key_and_body_returns_the_first_result(api, w, db):
    client = api(w.rep)
    order_id = _order(client, w.hcp.id).get_json()["id"]
    body = {"customer_reference": "PO-77"}
    first = client.post(f"/api/v1/orders/{order_id}/submit", json=body, headers={"Idempotency-Key": "k-1"})
    again = client.post(f"/api/v1/orders/{order_id}/submit", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["id"] == order_id and again.get_json()["customer_reference"] == "PO-77"
    assert db.scalar(select(func.count()).select_from(OrderOutbox)) == 1
    assert stub(w.app).simulator.order_count() == 1


def test_same_idempotency_key_with_another_body_is_422(api, w, db):
    client = api(w.rep)
    order_id = _order(client, w.hcp.id).get_json()["id"]
    other_id = _order(client, w.hcp.id).get_json()["id"]
    first = client.post(f"/api/v1/orders/{order_id}/submit", json={"customer_reference": "PO-1"},
                        headers={"Idempotency-Key": "k-2"})
    assert first.status_code == 202
    changed = client.post(f"/api/v1/orders/{order_id}/submit", json={"customer_reference": "PO-2"},
                          headers={"Idempotency-Key": "k-2"})
    assert changed.status_code == 422 and "Idempotency-Key" in changed.get_json()["errors"]
    elsewhere = client.post(f"/api/v1/orders/{other_id}/submit", json={"customer_reference": "PO-1"},
                            headers={"Idempotency-Key": "k-2"})
    assert elsewhere.status_code == 422
    assert client.get(f"/api/v1/orders/{other_id}").get_json()["status"] == "draft"
    assert db.scalar(select(func.count()).select_from(OrderOutbox)) == 1


def test_a_second_submit_without_a_key_is_409(api, w):
    client = api(w.rep)
    order_id = _order(client, w.hcp.id).get_json()["id"]
    assert client.post(f"/api/v1/orders/{order_id}/submit").status_code == 202
    resp = client.post(f"/api/v1/orders/{order_id}/submit")
    assert resp.status_code == 409
    assert client.post(f"/api/v1/orders/{order_id}/submit", headers={"Idempotency-Key": "new"}).status_code == 409


@pytest.mark.parametrize("key", ["", " ", "x" * 201, "bad\u0007key"])
def test_a_malformed_idempotency_key_is_422(api, w, key):
    client = api(w.rep)
    order_id = _order(client, w.hcp.id).get_json()["id"]
    resp = client.post(f"/api/v1/orders/{order_id}/submit", headers={"Idempotency-Key": key})
    assert resp.status_code == 422


def test_only_the_owner_submits_and_only_inside_own_territories(api, w, db):
    order_id = _order(api(w.rep), w.hcp.id).get_json()["id"]
    colleague = api(w.rep2).post(f"/api/v1/orders/{order_id}/submit")
    assert colleague.status_code == 403 and colleague.get_json()["rule"] == "order.submit:owner"
    assert api(w.marketer).post(f"/api/v1/orders/{order_id}/submit").status_code == 403
    # the rep was moved out of the territory since the draft was taken
    from crm.auth.services import end_territory

    end_territory(db, None, w.rep, w.north)
    moved = api(w.rep).post(f"/api/v1/orders/{order_id}/submit")
    assert moved.status_code == 403 and moved.get_json()["rule"] == "order.write:territory"
    assert api(w.rep).post("/api/v1/orders/999999/submit").status_code == 404


def test_an_erp_rejection_is_final_and_says_why(api, w, erp):
    client = api(w.rep)
    order_id = _order(client, w.hcp.id, [{"sku": "NEURO-5", "quantity": 2}]).get_json()["id"]
    erp.simulator.put_product("NEURO-5", "Neurolin 5 mg", active=False)  # discontinued since the last sync
    assert client.post(f"/api/v1/orders/{order_id}/submit").status_code == 202
    order = client.get(f"/api/v1/orders/{order_id}").get_json()
    assert order["status"] == "rejected" and "no longer sold" in order["reason"]
    assert order["delivery"]["state"] == "delivered"  # the ERP answered: nothing more to send
    assert timeline_kinds(client, w.hcp.id) == ["order.queued", "order.rejected"]


def test_short_stock_backorders_and_restock_accepts(api, w, erp, runner):
    client = api(w.rep)
    order_id = _order(client, w.hcp.id, [{"sku": "ONCO-100", "quantity": 50}]).get_json()["id"]
    client.post(f"/api/v1/orders/{order_id}/submit")
    runner.invoke(args=["crm", "erp", "sync"])
    order = client.get(f"/api/v1/orders/{order_id}").get_json()
    assert order["status"] == "backordered" and "ONCO-100" in order["reason"]
    erp.simulator.set_stock("ONCO-100", 500)
    runner.invoke(args=["crm", "erp", "sync"])
    runner.invoke(args=["crm", "erp", "sync"])
    assert client.get(f"/api/v1/orders/{order_id}").get_json()["status"] == "shipped"
    assert timeline_kinds(client, w.hcp.id) == ["order.queued", "order.sent", "order.backordered",
                                                "order.accepted", "order.shipped"]


# -- reading ---------------------------------------------------------------------------------------

def test_orders_are_shared_and_mine_lists_the_callers_own(api, w):
    rep, marketer = api(w.rep), api(w.marketer)
    mine = [_order(rep, w.hcp.id).get_json()["id"] for _ in range(3)]
    theirs = _order(api(w.rep2), w.hcp.id).get_json()["id"]
    listed = rep.get("/api/v1/orders?mine=true&limit=2").get_json()
    assert [o["id"] for o in listed["items"]] == sorted(mine, reverse=True)[:2] and listed["next_cursor"]
    rest = rep.get(f"/api/v1/orders?mine=true&limit=2&cursor={listed['next_cursor']}").get_json()
    assert [o["id"] for o in rest["items"]] == [min(mine)] and rest["next_cursor"] is None
    everyone = marketer.get(f"/api/v1/orders?hcp_id={w.hcp.id}").get_json()["items"]
    assert {o["id"] for o in everyone} == {*mine, theirs}
    assert marketer.get(f"/api/v1/orders/{theirs}").status_code == 200
    assert [o["id"] for o in rep.get("/api/v1/orders?status=draft&mine=true").get_json()["items"]] == mine[::-1]
    assert rep.get("/api/v1/orders?status=lost").status_code == 422
    assert rep.get("/api/v1/orders/999999").status_code == 404
    assert rep.client.get("/api/v1/orders").status_code == 401


@pytest.mark.parametrize("role", ["rep", "marketer", "call_centre", "medical", "compliance", "admin"])
def test_every_role_reads_the_catalogue(api, w, role):
    assert api(getattr(w, role)).get("/api/v1/products").status_code == 200


def test_products_api_lists_the_synced_catalogue(api, w):
    rep = api(w.rep)
    items = {p["sku"]: p for p in rep.get("/api/v1/products").get_json()["items"]}
    assert items["CARD-10"] == {"sku": "CARD-10", "name": "Cardiozol 10 mg", "unit": "pack of 28", "active": True,
                                "orderable": True, "price": "42.50", "currency": "USD", "is_sample": False,
                                "max_sample_quantity": 10}
    assert items["CARD-S"]["orderable"] is False and items["CARD-S"]["price"] is None
    assert items["CARD-S"]["is_sample"] is True  # the sync makes a sample-only product a sample product
    assert items["NEURO-2"]["active"] is False
    orderable = rep.get("/api/v1/products?orderable=true").get_json()["items"]
    assert "CARD-S" not in {p["sku"] for p in orderable}
    found = rep.get("/api/v1/products?q=oncorex").get_json()["items"]
    assert [p["sku"] for p in found] == ["ONCO-100"]
    first = rep.get("/api/v1/products?limit=2").get_json()
    second = rep.get(f"/api/v1/products?limit=2&cursor={first['next_cursor']}").get_json()
    assert [p["sku"] for p in first["items"] + second["items"]] == ["CARD-10", "CARD-20", "CARD-S", "NEURO-2"]
    assert rep.get("/api/v1/products?cursor=garbage").status_code == 422


def test_the_order_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/orders", "/api/v1/orders/{order_id}/submit", "/api/v1/orders/{order_id}",
                 "/api/v1/products", "/api/v1/integrations/erp/callback"):
        assert path in paths
    assert "security" not in paths["/api/v1/integrations/erp/callback"]["post"]


# -- the ERP's callback ----------------------------------------------------------------------------

def _submitted(api_client, hcp_id):
    order_id = _order(api_client, hcp_id).get_json()["id"]
    assert api_client.post(f"/api/v1/orders/{order_id}/submit").status_code == 202
    return order_id


def _callback(client, app, payload, secret=None):
    body, headers = signed(secret or app.config["CRM_ERP_CALLBACK_SECRET"], payload)
    return client.post("/api/v1/integrations/erp/callback", data=body, headers=headers)


def test_a_signed_callback_moves_the_order(api, w, client, app, db):
    order_id = _submitted(api(w.rep), w.hcp.id)
    key = db.get(Order, order_id).order_key
    resp = _callback(client, app, {"order_key": key, "status": "accepted", "occurred_at": "2026-03-01T10:00:00+01:00"})
    assert resp.status_code == 200
    assert resp.get_json() == {"order_id": order_id, "status": "accepted", "applied": True}
    history = api(w.rep).get(f"/api/v1/orders/{order_id}").get_json()["history"]
    assert history[-1] == {"status": "accepted", "reason": None, "source": "erp_callback",
                           "occurred_at": "2026-03-01T09:00:00Z"}


@pytest.mark.parametrize("how", ["missing", "wrong-secret", "tampered", "not-sha256"])
def test_a_callback_with_a_bad_signature_is_401_and_nothing_is_stored(api, w, client, app, db, how):
    order_id = _submitted(api(w.rep), w.hcp.id)
    key = db.get(Order, order_id).order_key
    events_before = db.scalar(select(func.count()).select_from(OrderEvent))
    audit_before = db.scalar(select(func.count()).select_from(AuditRecord))
    payload = {"order_key": key, "status": "shipped"}
    body, headers = signed(app.config["CRM_ERP_CALLBACK_SECRET"], payload)
    if how == "missing":
        del headers["X-ERP-Signature"]
    elif how == "wrong-secret":
        body, headers = signed("not-the-secret", payload)
    elif how == "tampered":
        body = body.replace(b"shipped", b"rejected")
    else:
        headers["X-ERP-Signature"] = headers["X-ERP-Signature"].replace("sha256=", "md5=")
    resp = client.post("/api/v1/integrations/erp/callback", data=body, headers=headers)
    assert resp.status_code == 401
    assert db.scalar(select(func.count()).select_from(OrderEvent)) == events_before
    assert db.scalar(select(func.count()).select_from(AuditRecord)) == audit_before
    assert api(w.rep).get(f"/api/v1/orders/{order_id}").get_json()["status"] == "sent"


def test_callbacks_are_idempotent_and_out_of_order_safe(api, w, client, app, db):
    order_id = _submitted(api(w.rep), w.hcp.id)
    key = db.get(Order, order_id).order_key
    shipped = _callback(client, app, {"order_key": key, "status": "shipped"})
    assert shipped.get_json()["applied"] is True
    late = _callback(client, app, {"order_key": key, "status": "accepted"})  # arrives after shipped
    assert late.status_code == 200 and late.get_json() == {"order_id": order_id, "status": "shipped", "applied": False}
    replay = _callback(client, app, {"order_key": key, "status": "shipped"})
    assert replay.get_json()["applied"] is False
    assert timeline_kinds(api(w.rep), w.hcp.id) == ["order.queued", "order.sent", "order.shipped"]
    assert db.scalar(select(func.count()).select_from(Interaction).where(
        Interaction.external_id == f"order:{order_id}:shipped")) == 1


def test_rejected_is_final(api, w, client, app, db):
    order_id = _submitted(api(w.rep), w.hcp.id)
    key = db.get(Order, order_id).order_key
    assert _callback(client, app, {"order_key": key, "status": "rejected", "reason": "Credit hold"}
                     ).get_json()["applied"] is True
    assert _callback(client, app, {"order_key": key, "status": "shipped"}).get_json()["applied"] is False
    order = api(w.rep).get(f"/api/v1/orders/{order_id}").get_json()
    assert order["status"] == "rejected" and order["reason"] == "Credit hold"


def test_callback_for_an_unknown_order_or_bad_body(client, app, api, w, db):
    assert _callback(client, app, {"order_key": "nope", "status": "shipped"}).status_code == 404
    assert _callback(client, app, {"order_key": "nope", "status": "lost"}).status_code == 422
    assert _callback(client, app, {"order_key": "nope", "status": "shipped", "extra": 1}).status_code == 422
    assert _callback(client, app, {"order_key": "nope", "status": "shipped",
                                   "occurred_at": "2026-03-01T10:00:00"}).status_code == 422  # naive
    draft_id = _order(api(w.rep), w.hcp.id).get_json()["id"]
    draft_key = db.get(Order, draft_id).order_key
    assert _callback(client, app, {"order_key": draft_key, "status": "accepted"}).status_code == 409
