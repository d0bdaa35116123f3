"""Sample accountability (issue 14 item 6): shipments acknowledged on receipt, the rep's inventory as a ledger,
disbursement on visit submit, transfers between reps, periodic counts, discrepancies for compliance. Each rule,
each role, bad input, pages, and two submits racing for the last units (both engines)."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import func, select

from crm.audit.models import AuditRecord
from crm.auth.services import create_user, issue_token
from crm.extensions import db as _db
from crm.hcps.models import HCP, Territory
from crm.products.models import Product, SampleLot
from crm.samples import services
from crm.samples.models import SampleDiscrepancy, SampleInventory, SampleMovement
from crm.visits.models import Visit
from tests.conftest import PASSWORD
from tests.visits_support import SIGNATURE, make_world, visit_json


@pytest.fixture
def w(db, factory):
    world = make_world(db, factory)
    old = SampleLot(product_id=world.products["CARDIO-10"].id, lot_number="OLD", expires_on=date(2020, 1, 1))
    db.add(old)
    db.flush()
    # Reps of their own (the world's reps carry stock for the visit tests): these start empty.
    world.a = factory.user("field_rep", territories=[world.north], name="Rep Alpha")
    world.b = factory.user("field_rep", territories=[world.north], name="Rep Bravo")
    return world


def line(sku="CARDIO-10", lot="L1", quantity=5):
    return {"sku": sku, "lot": lot, "quantity": quantity}


def ship(api, w, to, lines, status=201):
    resp = api(w.admin).post("/api/v1/samples/shipments", json={"to_user_id": to.id, "lines": lines})
    assert resp.status_code == status, resp.get_json()
    return resp.get_json()


def stocked(api, w, rep, quantity=5, lot="L1"):
    shipment = ship(api, w, rep, [line(lot=lot, quantity=quantity)])
    resp = api(rep).post(f"/api/v1/samples/shipments/{shipment['id']}/acknowledge", json={})
    assert resp.status_code == 200, resp.get_json()
    return shipment


def held(api, rep):
    items = api(rep).get("/api/v1/samples/inventory").get_json()["items"]
    return {(i["sku"], i["lot"]): i["quantity"] for i in items}


def submit_with_samples(api, rep, hcp_id, quantity, lot="L1"):
    created = api(rep).post("/api/v1/visits", json=visit_json(hcp_id, samples=[line(lot=lot, quantity=quantity)],
                                                              signature=SIGNATURE))
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"], api(rep).post(f"/api/v1/visits/{created.get_json()['id']}/submit")


# -- shipments ---------------------------------------------------------------------------------------------

def test_a_shipment_enters_the_inventory_only_when_acknowledged_and_a_short_line_is_a_discrepancy(api, w, db):
    shipment = ship(api, w, w.a, [line(quantity=10), line(lot="L9", quantity=4)])
    assert shipment["status"] == "sent" and held(api, w.a) == {}
    waiting = api(w.a).get("/api/v1/samples/shipments?status=sent").get_json()["items"]
    assert [s["id"] for s in waiting] == [shipment["id"]]
    first, second = shipment["lines"]
    resp = api(w.a).post(f"/api/v1/samples/shipments/{shipment['id']}/acknowledge",
                         json={"lines": [{"id": second["id"], "quantity_received": 3}]})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "received" and len(body["discrepancy_ids"]) == 1
    assert held(api, w.a) == {("CARDIO-10", "L1"): 10, ("CARDIO-10", "L9"): 3}
    found = db.get(SampleDiscrepancy, body["discrepancy_ids"][0])
    assert (found.source, found.expected, found.actual, found.difference, found.status) == ("shipment", 4, 3, -1,
                                                                                           "open")
    kinds = db.scalars(select(SampleMovement.kind).where(SampleMovement.user_id == w.a.id)).all()
    assert kinds == ["received", "received"]
    assert services.verify_ledger(db) == []
    actions = set(db.scalars(select(AuditRecord.action).where(AuditRecord.entity == "sample_consignment")))
    assert {"sample_shipment.send", "sample_shipment.acknowledge"} <= actions


def test_only_the_recipient_acknowledges_and_only_once(api, w):
    shipment = ship(api, w, w.a, [line()])
    url = f"/api/v1/samples/shipments/{shipment['id']}/acknowledge"
    refused = api(w.b).post(url, json={})
    assert refused.status_code == 403 and refused.get_json()["rule"].startswith("sample_shipment.")
    assert api(w.a).post(url, json={"lines": [{"id": 999999, "quantity_received": 1}]}).status_code == 422
    assert api(w.a).post(url, json={}).status_code == 200
    assert api(w.a).post(url, json={}).status_code == 409
    assert held(api, w.a) == {("CARDIO-10", "L1"): 5}


@pytest.mark.parametrize("role", ["rep", "marketer", "call_centre", "medical", "compliance"])
def test_only_administrators_ship_samples(api, w, role):
    resp = api(getattr(w, role)).post("/api/v1/samples/shipments", json={"to_user_id": w.a.id, "lines": [line()]})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "sample.ship:role"


@pytest.mark.parametrize("body, field", [
    ({"lines": [line(lot="OLD")]}, "lines.0.lot"),  # expired
    ({"lines": [line(lot="NOPE")]}, "lines.0.lot"),
    ({"lines": [line(sku="NOPE-1")]}, "lines.0.sku"),
    ({"lines": [line(), line()]}, "lines.1.lot"),  # the same lot twice
    ({"lines": [line(quantity=0)]}, "lines"),
    ({"lines": [line(quantity=2**40)]}, "lines"),
    ({"lines": []}, "lines"),
    ({"lines": [line(sku="CARDIO\x0010")]}, "lines"),
    ({"lines": [line()], "extra": 1}, "extra"),
])
def test_bad_shipments_are_422_on_the_field(api, w, body, field):
    resp = api(w.admin).post("/api/v1/samples/shipments", json={"to_user_id": w.a.id, **body})
    assert resp.status_code == 422, resp.get_json()
    assert any(key.startswith(field) for key in resp.get_json()["errors"]), resp.get_json()


@pytest.mark.parametrize("to", ["marketer", "compliance", 2**31 - 1])
def test_only_field_reps_receive_samples(api, w, to):
    to_id = to if isinstance(to, int) else getattr(w, to).id
    resp = api(w.admin).post("/api/v1/samples/shipments", json={"to_user_id": to_id, "lines": [line()]})
    assert resp.status_code == 422 and "to_user_id" in resp.get_json()["errors"]


def test_huge_ids_and_cursors_are_4xx_not_500(api, w):
    assert api(w.admin).get("/api/v1/samples/shipments/99999999999").status_code == 404
    assert api(w.admin).get(f"/api/v1/samples/shipments/{2**31 - 1}").status_code == 404
    assert api(w.a).get("/api/v1/samples/inventory?user_id=99999999999").status_code == 422
    assert api(w.a).get("/api/v1/samples/movements?cursor=bm9wZQ").status_code == 422
    assert api(w.admin).post("/api/v1/samples/shipments", data="{", content_type="application/json").status_code == 400


# -- disbursement on visit submit ----------------------------------------------------------------------------

def test_submit_takes_the_samples_from_the_inventory_and_refuses_when_short(api, w, db):
    rep = w.a
    stocked(api, w, rep, quantity=5)
    visit_id, resp = submit_with_samples(api, rep, w.hcp.id, 3)
    assert resp.status_code == 200, resp.get_json()
    assert held(api, rep) == {("CARDIO-10", "L1"): 2}
    moved = db.scalars(select(SampleMovement).where(SampleMovement.kind == "disbursed")).all()
    assert [(m.visit_id, m.quantity, m.user_id) for m in moved] == [(visit_id, -3, rep.id)]

    second_id, refused = submit_with_samples(api, rep, w.hcp2.id, 3)
    assert refused.status_code == 422
    message = " ".join(refused.get_json()["errors"]["samples.0.quantity"])
    assert "holds 2 unit(s) of lot L1 of CARDIO-10" in message and "gives 3" in message
    assert db.get(Visit, second_id).status == "draft"  # nothing written: not submitted, nothing taken
    assert held(api, rep) == {("CARDIO-10", "L1"): 2}
    assert db.scalar(select(func.count()).select_from(SampleMovement).where(SampleMovement.kind == "disbursed")) == 1
    assert services.verify_ledger(db) == []


def test_a_rep_without_stock_cannot_submit_samples_but_can_submit_without(api, w):
    _id, refused = submit_with_samples(api, w.a, w.hcp.id, 1)
    assert refused.status_code == 422 and "holds 0 unit(s)" in refused.get_json()["errors"]["samples.0.quantity"][0]
    created = api(w.a).post("/api/v1/visits", json=visit_json(w.hcp.id))
    assert api(w.a).post(f"/api/v1/visits/{created.get_json()['id']}/submit").status_code == 200


def test_an_expired_lot_is_refused_at_submit_and_nothing_is_taken(api, w, db):
    stocked(api, w, w.a, quantity=5)
    created = api(w.a).post("/api/v1/visits", json=visit_json(w.hcp.id, samples=[line(quantity=1)],
                                                              signature=SIGNATURE))
    lot = db.scalar(select(SampleLot).where(SampleLot.lot_number == "L1",
                                            SampleLot.product_id == w.products["CARDIO-10"].id))
    lot.expires_on = date(2025, 1, 1)  # recalled: the expiry moved before the visit's day
    db.flush()
    resp = api(w.a).post(f"/api/v1/visits/{created.get_json()['id']}/submit")
    assert resp.status_code == 422 and "expired" in " ".join(resp.get_json()["errors"]["samples.0.lot"])
    assert held(api, w.a) == {("CARDIO-10", "L1"): 5}


def test_an_amendment_moves_only_the_difference(api, w, db):
    stocked(api, w, w.a, quantity=10)
    visit_id, resp = submit_with_samples(api, w.a, w.hcp.id, 4)
    assert resp.status_code == 200
    more = api(w.a).post(f"/api/v1/visits/{visit_id}/amend", json={
        "reason": "gave six, not four", "changes": {"samples": [line(quantity=6)], "signature": SIGNATURE}})
    assert more.status_code == 201, more.get_json()
    assert held(api, w.a) == {("CARDIO-10", "L1"): 4}
    fewer = api(w.a).post(f"/api/v1/visits/{more.get_json()['id']}/amend", json={
        "reason": "two came back", "changes": {"samples": [line(quantity=4)], "signature": SIGNATURE}})
    assert fewer.status_code == 201
    assert held(api, w.a) == {("CARDIO-10", "L1"): 6}
    too_many = api(w.a).post(f"/api/v1/visits/{fewer.get_json()['id']}/amend", json={
        "reason": "typo", "changes": {"samples": [line(quantity=40)], "signature": SIGNATURE}})
    assert too_many.status_code == 422  # over the product's per-visit maximum or the inventory: refused
    kinds = db.scalars(select(SampleMovement.kind).where(SampleMovement.user_id == w.a.id)
                       .order_by(SampleMovement.id)).all()
    assert kinds == ["received", "disbursed", "disbursed", "disbursement_corrected"]
    assert services.verify_ledger(db) == []


def test_an_amendment_that_needs_more_units_than_held_is_refused(api, w, db):
    stocked(api, w, w.a, quantity=5)
    visit_id, _ = submit_with_samples(api, w.a, w.hcp.id, 4)
    resp = api(w.a).post(f"/api/v1/visits/{visit_id}/amend", json={
        "reason": "gave more", "changes": {"samples": [line(quantity=6)], "signature": SIGNATURE}})
    assert resp.status_code == 422 and "gives 2 more" in resp.get_json()["errors"]["samples.0.quantity"][0]
    assert db.scalar(select(func.count()).select_from(Visit).where(Visit.amends_id == visit_id)) == 0
    assert held(api, w.a) == {("CARDIO-10", "L1"): 1}


# -- transfers -----------------------------------------------------------------------------------------------

def test_a_transfer_leaves_the_sender_now_and_reaches_the_recipient_on_acknowledgement(api, w, db):
    stocked(api, w, w.a, quantity=8)
    resp = api(w.a).post("/api/v1/samples/transfers", json={"to_user_id": w.b.id, "lines": [line(quantity=3)]})
    assert resp.status_code == 201, resp.get_json()
    transfer = resp.get_json()
    assert held(api, w.a) == {("CARDIO-10", "L1"): 5} and held(api, w.b) == {}
    assert [t["id"] for t in api(w.b).get("/api/v1/samples/transfers?status=sent").get_json()["items"]] == \
        [transfer["id"]]
    assert api(w.a).post(f"/api/v1/samples/transfers/{transfer['id']}/acknowledge", json={}).status_code == 403
    ack = api(w.b).post(f"/api/v1/samples/transfers/{transfer['id']}/acknowledge",
                        json={"lines": [{"id": transfer["lines"][0]["id"], "quantity_received": 2}]})
    assert ack.status_code == 200
    assert held(api, w.b) == {("CARDIO-10", "L1"): 2}
    d = db.scalar(select(SampleDiscrepancy).where(SampleDiscrepancy.source == "transfer"))
    assert (d.user_id, d.expected, d.actual) == (w.b.id, 3, 2)
    assert services.verify_ledger(db) == []


@pytest.mark.parametrize("body, field", [
    ({"lines": [line(quantity=9)]}, "lines.0.quantity"),  # more than held
    ({"lines": [line(lot="OLD", quantity=1)]}, "lines.0.lot"),  # expired
    ({"to_user_id": "self", "lines": [line(quantity=1)]}, "to_user_id"),
    ({"to_user_id": "marketer", "lines": [line(quantity=1)]}, "to_user_id"),
])
def test_bad_transfers_are_422_and_take_nothing(api, w, body, field):
    stocked(api, w, w.a, quantity=8)
    to = {"self": w.a.id, "marketer": w.marketer.id}.get(body.pop("to_user_id", None), w.b.id)
    resp = api(w.a).post("/api/v1/samples/transfers", json={"to_user_id": to, **body})
    assert resp.status_code == 422 and field in resp.get_json()["errors"], resp.get_json()
    assert held(api, w.a) == {("CARDIO-10", "L1"): 8}


@pytest.mark.parametrize("role", ["admin", "marketer", "call_centre", "medical", "compliance"])
def test_only_field_reps_transfer(api, w, role):
    resp = api(getattr(w, role)).post("/api/v1/samples/transfers", json={"to_user_id": w.b.id, "lines": [line()]})
    assert resp.status_code == 403


# -- counts and discrepancies ----------------------------------------------------------------------------------

def test_a_count_adjusts_the_inventory_and_reports_each_difference(api, w, db):
    stocked(api, w, w.a, quantity=8)
    stocked(api, w, w.a, quantity=3, lot="L9")
    missing = api(w.a).post("/api/v1/samples/counts", json={"lines": [{"sku": "CARDIO-10", "lot": "L1", "counted": 8}]})
    assert missing.status_code == 422 and "L9" in missing.get_json()["errors"]["lines"][0]
    resp = api(w.a).post("/api/v1/samples/counts", json={"lines": [
        {"sku": "CARDIO-10", "lot": "L1", "counted": 6}, {"sku": "CARDIO-10", "lot": "L9", "counted": 3},
        {"sku": "CARDIO-20", "lot": "A", "counted": 1}]})
    assert resp.status_code == 201, resp.get_json()
    assert [(li["lot"], li["expected"], li["counted"]) for li in resp.get_json()["lines"]] == \
        [("L1", 8, 6), ("L9", 3, 3), ("A", 0, 1)]
    assert held(api, w.a) == {("CARDIO-10", "L1"): 6, ("CARDIO-10", "L9"): 3, ("CARDIO-20", "A"): 1}
    found = db.scalars(select(SampleDiscrepancy).where(SampleDiscrepancy.source == "count")
                       .order_by(SampleDiscrepancy.id)).all()
    assert [(d.expected, d.actual) for d in found] == [(8, 6), (0, 1)]
    assert services.verify_ledger(db) == []
    assert [c["id"] for c in api(w.a).get("/api/v1/samples/counts").get_json()["items"]] == [resp.get_json()["id"]]
    assert api(w.b).get("/api/v1/samples/counts").get_json()["items"] == []  # a rep sees their own


@pytest.mark.parametrize("role", ["admin", "marketer", "call_centre", "medical", "compliance"])
def test_only_field_reps_record_counts(api, w, role):
    resp = api(getattr(w, role)).post("/api/v1/samples/counts",
                                      json={"lines": [{"sku": "CARDIO-10", "lot": "L1", "counted": 1}]})
    assert resp.status_code == 403


def test_a_count_against_a_balance_that_moved_meanwhile_is_409(db, w):
    from sqlalchemy import event, update

    from crm.errors import Conflict

    services.create_shipment(db, w.admin, w.viewer(w.admin), to_user_id=w.a.id, lines=[line(quantity=5)])
    shipment = services.list_consignments(db, w.viewer(w.a), "shipment")[0][0]
    services.acknowledge(db, w.a, w.viewer(w.a), shipment)
    lot_id = shipment.lines[0].lot_id

    def meanwhile(session, _context):  # another request gives a unit after the count read the balance
        session.connection().execute(update(SampleInventory).where(SampleInventory.user_id == w.a.id)
                                     .values(quantity=SampleInventory.quantity - 1))

    event.listen(db(), "after_flush", meanwhile, once=True)
    with pytest.raises(Conflict):
        services.record_count(db, w.a, w.viewer(w.a), [{"sku": "CARDIO-10", "lot": "L1", "counted": 3}])
    assert db.get(SampleInventory, (w.a.id, lot_id)).quantity == 4  # the other change stands; no adjustment
    assert db.scalar(select(func.count()).select_from(SampleMovement).where(
        SampleMovement.kind == "count_adjustment")) == 0


@pytest.mark.parametrize("role, status", [("compliance", 200), ("admin", 200), ("rep", 403), ("marketer", 403),
                                          ("call_centre", 403), ("medical", 403)])
def test_discrepancies_are_for_compliance_and_administrators(api, w, role, status):
    assert api(getattr(w, role)).get("/api/v1/samples/discrepancies").status_code == status


def test_compliance_reviews_a_discrepancy_once_with_a_note(api, w, db):
    shipment = ship(api, w, w.a, [line(quantity=4)])
    api(w.a).post(f"/api/v1/samples/shipments/{shipment['id']}/acknowledge",
                  json={"lines": [{"id": shipment["lines"][0]["id"], "quantity_received": 1}]})
    items = api(w.compliance).get("/api/v1/samples/discrepancies?status=open").get_json()["items"]
    assert [(i["user_name"], i["difference"], i["sku"], i["lot"]) for i in items] == [("Rep Alpha", -3, "CARDIO-10",
                                                                                       "L1")]
    url = f"/api/v1/samples/discrepancies/{items[0]['id']}/review"
    assert api(w.compliance).post(url, json={"note": " "}).status_code == 422
    assert api(w.admin).post(url, json={"note": "seen"}).status_code == 403
    done = api(w.compliance).post(url, json={"note": "Courier lost a box; claim filed"})
    assert done.status_code == 200 and done.get_json()["status"] == "reviewed"
    assert api(w.compliance).post(url, json={"note": "again"}).status_code == 409
    assert api(w.compliance).post("/api/v1/samples/discrepancies/99999/review", json={"note": "x"}).status_code == 404
    assert api(w.compliance).get("/api/v1/samples/discrepancies?status=open").get_json()["items"] == []


# -- reads -----------------------------------------------------------------------------------------------------

def test_a_rep_reads_their_own_samples_and_oversight_reads_anyones(api, w):
    shipment = stocked(api, w, w.a, quantity=2)
    assert api(w.b).get(f"/api/v1/samples/inventory?user_id={w.a.id}").status_code == 403
    assert api(w.b).get(f"/api/v1/samples/movements?user_id={w.a.id}").status_code == 403
    assert api(w.b).get(f"/api/v1/samples/shipments/{shipment['id']}").status_code == 403
    assert api(w.b).get("/api/v1/samples/shipments").get_json()["items"] == []
    for role in ("compliance", "admin"):
        reader = api(getattr(w, role))
        assert reader.get(f"/api/v1/samples/inventory?user_id={w.a.id}").get_json()["items"][0]["quantity"] == 2
        assert reader.get(f"/api/v1/samples/shipments/{shipment['id']}").status_code == 200
        assert len(reader.get(f"/api/v1/samples/movements?user_id={w.a.id}").get_json()["items"]) == 1
    for role in ("marketer", "call_centre", "medical"):
        assert api(getattr(w, role)).get("/api/v1/samples/inventory").get_json()["items"] == []
    assert api(w.a).get("/api/v1/samples/transfers/99").status_code == 404


def test_the_ledger_pages_with_a_cursor(api, w):
    for _ in range(3):
        stocked(api, w, w.a, quantity=1)
    first = api(w.a).get("/api/v1/samples/movements?limit=2").get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api(w.a).get(f"/api/v1/samples/movements?limit=2&cursor={first['next_cursor']}").get_json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None


def test_verify_command_finds_a_balance_that_is_not_its_ledger(api, w, db, runner):
    stocked(api, w, w.a, quantity=2)
    ok = runner.invoke(args=["crm", "samples", "verify"])
    assert ok.exit_code == 0 and "ok" in ok.output
    row = db.scalar(select(SampleInventory).where(SampleInventory.user_id == w.a.id))
    row.quantity = 7
    db.flush()
    broken = runner.invoke(args=["crm", "samples", "verify"])
    assert broken.exit_code == 1 and "balance 7, movements add up to 2" in broken.output


# -- pages -----------------------------------------------------------------------------------------------------

def _csrf(client, path):
    import re

    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', client.get(path).get_data(as_text=True)
                     ).group(1)


def test_the_rep_acknowledges_transfers_and_counts_on_the_pages(client, auth, api, w):
    shipment = ship(api, w, w.a, [line(quantity=6)])
    auth.login(w.a)
    page = client.get("/samples").get_data(as_text=True)
    assert "Waiting for your acknowledgement" in page and f"received_{shipment['lines'][0]['id']}" in page
    token = _csrf(client, "/samples")
    resp = client.post(f"/samples/consignments/{shipment['id']}/acknowledge",
                       data={"csrf_token": token, f"received_{shipment['lines'][0]['id']}": "5"})
    assert resp.status_code == 302
    page = client.get("/samples").get_data(as_text=True)
    assert "1 difference(s) reported to compliance" in page and "Shipment received" in page
    bad = client.post("/samples/transfers/new", data={"csrf_token": token, "to_user_id": str(w.b.id),
                                                      "sku_0": "CARDIO-10", "lot_0": "L1", "quantity_0": "50"})
    assert bad.status_code == 422 and "you hold 5 unit(s)" in bad.get_data(as_text=True)
    good = client.post("/samples/transfers/new", data={"csrf_token": token, "to_user_id": str(w.b.id),
                                                       "sku_0": "CARDIO-10", "lot_0": "L1", "quantity_0": "2"})
    assert good.status_code == 302
    lot_id = services.inventory(_db.session, w.a.id)[0]["lot_id"]
    missing = client.post("/samples/count", data={"csrf_token": token})
    assert missing.status_code == 422 and "enter the units counted" in missing.get_data(as_text=True)
    counted = client.post("/samples/count", data={"csrf_token": token, f"counted_{lot_id}": "2"})
    assert counted.status_code == 302
    assert "1 difference(s) adjusted" in client.get("/samples").get_data(as_text=True)


def test_the_admin_ships_on_a_page_and_compliance_reviews_on_a_page(client, auth, w, db):
    auth.login(w.admin)
    token = _csrf(client, "/samples/shipments/new")
    bad = client.post("/samples/shipments/new", data={"csrf_token": token, "to_user_id": str(w.a.id),
                                                      "sku_0": "CARDIO-10", "lot_0": "OLD", "quantity_0": "5"})
    assert bad.status_code == 422 and "expired on 2020-01-01" in bad.get_data(as_text=True)
    huge = client.post("/samples/shipments/new", data={"csrf_token": token, "to_user_id": "99999999999999",
                                                       "sku_0": "CARDIO-10", "lot_0": "L1", "quantity_0": "5"})
    assert huge.status_code == 422
    sent = client.post("/samples/shipments/new", data={"csrf_token": token, "to_user_id": str(w.a.id),
                                                       "sku_0": "CARDIO-10", "lot_0": "L1", "quantity_0": "5"})
    assert sent.status_code == 302
    assert "Shipment #" in client.get("/samples/shipments/new").get_data(as_text=True)
    shipment = services.list_consignments(db, w.viewer(w.a), "shipment")[0][0]
    services.acknowledge(db, w.a, w.viewer(w.a), shipment, {shipment.lines[0].id: 4})
    auth.logout()
    auth.login(w.compliance)
    home = client.get("/").get_data(as_text=True)
    assert "Sample discrepancies to review" in home
    page = client.get("/samples/discrepancies").get_data(as_text=True)
    assert "Rep Alpha" in page and "-1" in page and "missing" in page
    d = db.scalar(select(SampleDiscrepancy))
    token = _csrf(client, "/samples/discrepancies")
    resp = client.post(f"/samples/discrepancies/{d.id}/review", data={"csrf_token": token,
                                                                       "note": "Box damaged in transit"})
    assert resp.status_code == 302
    assert "Box damaged in transit" in client.get("/samples/discrepancies?status=reviewed").get_data(as_text=True)
    assert "Rep Alpha" in client.get(f"/samples?user_id={w.a.id}").get_data(as_text=True)


@pytest.mark.parametrize("role, path, status", [
    ("marketer", "/samples/discrepancies", 403), ("rep", "/samples/shipments/new", 403),
    ("compliance", "/samples/transfers/new", 403), ("call_centre", "/samples", 200), ("medical", "/samples/count", 403),
])
def test_pages_refuse_other_roles(client, auth, w, role, path, status):
    auth.login(getattr(w, role))
    assert client.get(path).status_code == status


# -- races -----------------------------------------------------------------------------------------------------

@pytest.mark.committing
def test_two_submits_racing_for_the_last_units_never_go_negative(committing_app):
    """Two visits of one rep, each giving 3 of the 4 units held, submitted at once in two requests (two
    sessions): one is submitted, the other is 422, and the balance is 1, on SQLite and PostgreSQL alike."""
    with committing_app.app_context():
        s = _db.session
        t = Territory(code="RACE", name="Race")
        s.add(t)
        s.flush()
        hcp = HCP(first_name="Ada", last_name="Race", profession="gp", territory_id=t.id)
        product = Product(sku="RACE-S", name="Race sample", is_sample=True, orderable=False)
        s.add_all([hcp, product])
        s.flush()
        lot = SampleLot(product_id=product.id, lot_number="R1", expires_on=date(2099, 1, 1))
        s.add(lot)
        rep = create_user(s, None, email="race.rep@pharma.example", name="Race Rep", role="field_rep",
                          password=PASSWORD, territory_codes=["RACE"])
        s.flush()
        s.add(SampleInventory(user_id=rep.id, lot_id=lot.id, quantity=4))
        s.add(SampleMovement(user_id=rep.id, lot_id=lot.id, kind="received", quantity=4))
        token = issue_token(s, rep.email, PASSWORD, "127.0.0.1")[0]
        hcp_id, rep_id, lot_id = hcp.id, rep.id, lot.id
        s.commit()
        s.remove()

    client = committing_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    ids = []
    for _ in range(2):
        resp = client.post("/api/v1/visits", headers=headers, json=visit_json(
            hcp_id, products=[], samples=[{"sku": "RACE-S", "quantity": 3, "lot": "R1"}], signature=SIGNATURE))
        assert resp.status_code == 201, resp.get_json()
        ids.append(resp.get_json()["id"])
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def submit(visit_id: int) -> None:
        try:
            barrier.wait()
            statuses.append(client.post(f"/api/v1/visits/{visit_id}/submit", headers=headers).status_code)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in ids]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(statuses) == [200, 422], statuses
    with committing_app.app_context():
        s = _db.session
        assert s.get(SampleInventory, (rep_id, lot_id)).quantity == 1
        assert s.scalar(select(func.sum(SampleMovement.quantity)).where(SampleMovement.user_id == rep_id)) == 1
        assert sorted(s.scalars(select(Visit.status)).all()) == ["draft", "submitted"]
        s.remove()
