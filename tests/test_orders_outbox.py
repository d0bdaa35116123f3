"""The outbox: an order reaches the ERP exactly once whatever fails (the ERP down, timing out after it
took the order, the process killed between commit and send, two submits at once), with retries and
exponential backoff recorded per attempt, and ``crm erp sync``."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crm.db import utcnow
from crm.extensions import db as _db
from crm.integrations.erp import ErpCustomer, ErpLine, ErpReceipt, ErpStatus
from crm.orders import outbox as sender
from crm.orders import services
from crm.orders.models import Order, OrderAttempt, OrderOutbox
from crm.timeline.models import Interaction
from tests.conftest import PASSWORD
from tests.orders_support import OrderWorld, signed, stub, timeline_kinds


@pytest.fixture(autouse=True)
def erp(app):
    adapter = stub(app)
    adapter.faults.reset()
    yield adapter
    adapter.faults.reset()


@pytest.fixture
def w(db, factory, app):
    return OrderWorld(db, factory, app)


@pytest.fixture
def rep_api(api, w):
    return api(w.rep)


def _submit(client, hcp_id, key=None, sku="CARD-10"):
    order_id = client.post("/api/v1/orders", json={"hcp_id": hcp_id, "lines": [{"sku": sku, "quantity": 4}]}
                           ).get_json()["id"]
    headers = {"Idempotency-Key": key} if key else {}
    resp = client.post(f"/api/v1/orders/{order_id}/submit", headers=headers)
    assert resp.status_code == 202, resp.get_json()
    return order_id


def _outbox(db, order_id):
    db.expire_all()
    return db.scalar(select(OrderOutbox).where(OrderOutbox.order_id == order_id))


def _outcomes(db, order_id):
    box = _outbox(db, order_id)
    return [a.outcome for a in db.scalars(select(OrderAttempt).where(OrderAttempt.outbox_id == box.id)
                                          .order_by(OrderAttempt.id))]


def test_backoff_doubles_from_the_base_up_to_the_cap():
    assert [services.backoff_delay(n, 30, 3600).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert services.backoff_delay(20, 30, 3600) == timedelta(seconds=3600)


def test_erp_down_for_the_first_three_attempts_then_delivered_once(app, db, w, rep_api, erp):
    erp.faults.down(3)
    order_id = _submit(rep_api, w.hcp.id)
    box = _outbox(db, order_id)
    assert box.state == "pending" and box.attempts == 1 and "unavailable" in box.last_error
    first_gap = box.next_attempt_at - box.created_at
    assert timedelta(seconds=29) < first_gap <= timedelta(seconds=31)  # the base pause, from the submit
    assert db.get(Order, order_id).status == "queued"

    clock = box.next_attempt_at - timedelta(seconds=1)
    assert sender.send_due(app, now=clock) == {}  # not due yet: nothing is sent early
    gaps = []
    for _ in range(3):
        clock = _outbox(db, order_id).next_attempt_at
        outcome = sender.send_due(app, now=clock)
        gaps.append(_outbox(db, order_id).next_attempt_at - clock)
    assert outcome == {"delivered": 1}
    assert gaps[:2] == [timedelta(seconds=60), timedelta(seconds=120)]  # backoff grows per failure
    assert _outcomes(db, order_id) == ["unavailable", "unavailable", "unavailable", "delivered"]
    box = _outbox(db, order_id)
    assert box.state == "delivered" and box.attempts == 4 and box.last_error is None
    attempts = db.scalars(select(OrderAttempt).where(OrderAttempt.outbox_id == box.id)).all()
    assert [a.number for a in attempts] == [1, 2, 3, 4]
    assert [a.trigger for a in attempts] == ["after_commit", "sync", "sync", "sync"]
    assert db.get(Order, order_id).status == "sent"
    assert erp.simulator.order_count() == 1
    assert sender.send_due(app, now=clock + timedelta(days=1)) == {}  # delivered: never again
    assert erp.simulator.order_count() == 1
    assert timeline_kinds(rep_api, w.hcp.id) == ["order.queued", "order.sent"]


def test_erp_timing_out_after_committing_still_makes_exactly_one_erp_order(app, db, w, rep_api, erp):
    erp.faults.time_out_after_commit(1)
    order_id = _submit(rep_api, w.hcp.id)
    key = db.get(Order, order_id).order_key
    assert erp.simulator.order_count(key) == 1  # the ERP has it ...
    assert db.get(Order, order_id).status == "queued"  # ... but we never heard back
    assert _outcomes(db, order_id) == ["timeout"]
    sender.send_due(app, now=utcnow() + timedelta(hours=1))
    assert _outcomes(db, order_id) == ["timeout", "duplicate"]  # the retry found it by its key
    assert erp.simulator.order_count() == 1
    db.expire_all()
    order = db.get(Order, order_id)
    assert order.status == "sent" and order.erp_order_id.startswith("SO-")


def test_a_callback_that_arrives_before_the_retry_completes_the_delivery(app, db, client, w, rep_api, erp):
    erp.faults.time_out_after_commit(1)
    order_id = _submit(rep_api, w.hcp.id)
    key = db.get(Order, order_id).order_key
    body, headers = signed(app.config["CRM_ERP_CALLBACK_SECRET"], {"order_key": key, "status": "accepted",
                                                                     "erp_order_id": "SO-000001"})
    assert client.post("/api/v1/integrations/erp/callback", data=body, headers=headers).status_code == 200
    box = _outbox(db, order_id)
    assert box.state == "delivered" and box.last_error == "confirmed by an ERP callback"
    assert sender.send_due(app, now=utcnow() + timedelta(hours=1)) == {}
    assert erp.simulator.order_count() == 1
    assert db.get(Order, order_id).status == "accepted"


def test_process_killed_between_commit_and_send_the_next_sync_delivers_once(app, db, w, rep_api, erp, runner,
                                                                            monkeypatch):
    monkeypatch.setitem(app.config, "CRM_ERP_SEND_AFTER_COMMIT", False)  # as if the process died after commit
    order_id = _submit(rep_api, w.hcp.id)
    box = _outbox(db, order_id)
    assert box.state == "pending" and box.attempts == 0
    assert erp.simulator.order_count() == 0
    first = runner.invoke(args=["crm", "erp", "sync"])
    assert first.exit_code == 0, first.output
    assert "orders sent: 1 delivered" in first.output
    assert _outcomes(db, order_id) == ["delivered"]
    second = runner.invoke(args=["crm", "erp", "sync"])
    assert second.exit_code == 0 and "orders sent: nothing due" in second.output
    assert _outcomes(db, order_id) == ["delivered"]
    assert erp.simulator.order_count() == 1


def test_process_killed_during_the_call_the_lease_runs_out_and_the_erp_deduplicates(app, db, w, rep_api, erp,
                                                                                   monkeypatch):
    monkeypatch.setitem(app.config, "CRM_ERP_SEND_AFTER_COMMIT", False)
    order_id = _submit(rep_api, w.hcp.id)
    order = db.get(Order, order_id)
    # A sender took the lease and reached the ERP, then died before it could record anything.
    box = _outbox(db, order_id)
    now = utcnow()
    box.locked_until, box.attempts = now + timedelta(minutes=2), 1
    db.flush()
    erp.submit_order(order.order_key, [ErpLine("CARD-10", 4)], ErpCustomer("hcp", w.hcp.id, w.hcp.full_name))
    assert sender.send_due(app, now=now) == {}  # its lease still holds: nobody sends twice at once
    assert sender.send_due(app, now=now + timedelta(minutes=3)) == {"duplicate": 1}
    assert erp.simulator.order_count() == 1
    assert _outbox(db, order_id).attempts == 2


def test_after_too_many_failures_the_message_waits_for_an_admin_who_retries_it(app, db, api, auth, client, w,
                                                                               rep_api, erp, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_ERP_MAX_ATTEMPTS", 2)
    erp.faults.down(10)
    order_id = _submit(rep_api, w.hcp.id)
    sender.send_due(app, now=utcnow() + timedelta(hours=1))
    box = _outbox(db, order_id)
    assert box.state == "failed" and box.attempts == 2
    assert sender.send_due(app, now=utcnow() + timedelta(days=30)) == {}  # failed: not retried on its own
    erp.faults.reset()
    auth.login(w.admin)
    page = client.get("/admin/erp/outbox").get_data(as_text=True)
    assert f"#{order_id}" in page and "failed" in page and "Retry now" in page
    token = auth.csrf_token("/admin/erp/outbox")
    resp = client.post(f"/admin/erp/outbox/{box.id}/retry", data={"csrf_token": token})
    assert resp.status_code == 302
    assert _outcomes(db, order_id) == ["unavailable", "unavailable", "delivered"]
    assert _outbox(db, order_id).state == "delivered"
    assert erp.simulator.order_count() == 1
    again = client.post(f"/admin/erp/outbox/{box.id}/retry", data={"csrf_token": token})
    assert again.status_code == 409  # delivered: nothing to retry


def test_a_failing_after_commit_hook_never_fails_the_request(app, db, w, rep_api, monkeypatch, erp):
    def boom(*args, **kwargs):
        raise RuntimeError("the sender crashed")

    monkeypatch.setattr(sender, "deliver", boom)
    order_id = _submit(rep_api, w.hcp.id)  # still 202: the order is safely queued
    assert db.get(Order, order_id).status == "queued"
    monkeypatch.undo()
    assert sender.send_due(app) == {"delivered": 1}


def test_the_status_poll_stops_when_the_erp_goes_down(app, db, w, rep_api, erp):
    first, second = _submit(rep_api, w.hcp.id), _submit(rep_api, w.hcp.id)
    erp.faults.down(1)
    assert sender.pull_statuses(app) == {"error": 1}  # asked once, then stopped
    assert sender.pull_statuses(app) == {"updated": 2}
    db.expire_all()
    assert {db.get(Order, first).status, db.get(Order, second).status} == {"accepted"}


def test_sync_reports_an_unreachable_erp_and_exits_1(app, w, rep_api, erp, runner):
    _submit(rep_api, w.hcp.id)
    erp.faults.down(10)
    result = runner.invoke(args=["crm", "erp", "sync"])
    assert result.exit_code == 1
    assert "catalogue not updated" in result.output and "status query" in result.output


def test_sync_as_a_worker_runs_on_a_schedule(app, w, runner):
    result = runner.invoke(args=["crm", "erp", "sync", "--every", "0.01", "--runs", "2"])
    assert result.exit_code == 0
    assert result.output.count("orders sent:") == 2
    assert runner.invoke(args=["crm", "erp", "sync", "--every", "0"]).exit_code == 2


# -- two submits at once, for real -------------------------------------------------------------------

def _committed_world(app):
    from crm.auth.services import create_user, issue_token
    from crm.hcps.models import HCP, Territory
    from crm.products.models import Product

    with app.app_context():
        territory = Territory(code="C1", name="C1")
        _db.session.add(territory)
        _db.session.flush()
        hcp = HCP(first_name="Ada", last_name="Byron", profession="gp", territory_id=territory.id)
        _db.session.add_all([hcp, Product(sku="CARD-10", name="Cardiozol 10 mg")])
        create_user(_db.session, None, email="rep@c.example", name="Rep", role="field_rep", password=PASSWORD,
                    territory_codes=["C1"])
        _db.session.commit()
        raw, _tok, _user = issue_token(_db.session, "rep@c.example", PASSWORD, "127.0.0.1")
        _db.session.commit()
        ids = hcp.id
        _db.session.remove()
    return raw, ids


def _race(app, token, order_id, keys):
    barrier = threading.Barrier(len(keys))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def worker(key):
        try:
            client = app.test_client()
            barrier.wait()
            resp = client.post(f"/api/v1/orders/{order_id}/submit",
                               headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})
            statuses.append(resp.status_code)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return sorted(statuses)


@pytest.mark.committing
@pytest.mark.parametrize("keys, expected", [(["same", "same"], [200, 202]), (["one", "two"], [202, 409])])
def test_the_submit_endpoint_called_twice_at_once_makes_one_outbox_row_and_one_erp_order(committing_app, keys,
                                                                                          expected):
    app = committing_app
    token, hcp_id = _committed_world(app)
    client = app.test_client()
    created = client.post("/api/v1/orders", json={"hcp_id": hcp_id, "lines": [{"sku": "CARD-10", "quantity": 1}]},
                          headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.get_json()
    order_id = created.get_json()["id"]
    assert _race(app, token, order_id, keys) == expected
    with app.app_context():
        assert stub(app).simulator.order_count() == 1
        assert _db.session.scalar(select(func.count()).select_from(OrderOutbox)) == 1
        assert _db.session.scalar(select(func.count()).select_from(OrderAttempt)) == 1
        assert _db.session.get(Order, order_id).status == "sent"
        assert _db.session.scalar(select(func.count()).select_from(Interaction).where(
            Interaction.kind == "order.queued")) == 1
        _db.session.remove()


def _misbehaving(erp, monkeypatch, bad_key, fault):
    """The adapter fails for one order key only, in a way that is not an ``ErpError``."""
    real = erp.submit_order

    def submit_order(order_key, lines, customer):
        if order_key == bad_key:
            return fault(real, order_key, lines, customer)
        return real(order_key, lines, customer)

    monkeypatch.setattr(erp, "submit_order", submit_order)


def _raise(exc):
    def fault(real, *args):
        raise exc
    return fault


def _malformed_receipt(real, order_key, lines, customer):
    real(order_key, lines, customer)  # the ERP took it, but the answer is broken
    return ErpReceipt(order_key=order_key, erp_order_id="", status="received")  # no ERP order id


def _not_a_receipt(real, order_key, lines, customer):
    return {"status": "received"}


def _odd_status(real, order_key, lines, customer):
    receipt = real(order_key, lines, customer)
    return ErpReceipt(order_key=order_key, erp_order_id=receipt.erp_order_id, status="teleported")


@pytest.mark.parametrize("fault", [_raise(ValueError("bad decimal")), _raise(KeyError("erp_order_id")),
                                   _raise(TypeError("NoneType")), _malformed_receipt, _not_a_receipt, _odd_status],
                         ids=["ValueError", "KeyError", "TypeError", "empty-id", "not-a-receipt", "unknown-status"])
def test_one_order_that_breaks_the_adapter_is_retried_with_backoff_and_the_others_go_out(
        app, db, w, rep_api, erp, monkeypatch, fault):
    monkeypatch.setitem(app.config, "CRM_ERP_SEND_AFTER_COMMIT", False)
    # The bad order is the oldest, so it comes first in every run.
    bad = _submit(rep_api, w.hcp.id)
    good = [_submit(rep_api, w.hcp.id), _submit(rep_api, w.hcp.id)]
    _misbehaving(erp, monkeypatch, db.get(Order, bad).order_key, fault)

    now = utcnow()
    assert sender.send_due(app, now=now) == {"error": 1, "delivered": 2}
    assert [db.get(Order, g).status for g in good] == ["sent", "sent"]
    box = _outbox(db, bad)
    assert box.state == "pending" and box.attempts == 1 and box.locked_until is None
    assert box.last_error.startswith("error: ")
    assert box.next_attempt_at >= now + timedelta(seconds=29)  # backoff, not first in line again at once
    assert db.get(Order, bad).status == "queued"
    assert _outcomes(db, bad) == ["error"]

    # An order submitted later is not blocked behind it either.
    late = _submit(rep_api, w.hcp.id)
    assert sender.send_due(app, now=now + timedelta(seconds=1)) == {"delivered": 1}
    assert db.get(Order, late).status == "sent"

    # Once the adapter behaves, the retry delivers it, once.
    monkeypatch.undo()
    monkeypatch.setitem(app.config, "CRM_ERP_SEND_AFTER_COMMIT", False)
    assert sender.send_due(app, now=box.next_attempt_at) in ({"delivered": 1}, {"duplicate": 1})
    assert db.get(Order, bad).status == "sent"
    assert erp.simulator.order_count() == 4


def test_an_adapter_that_keeps_breaking_ends_failed_and_waits_for_an_admin(app, db, w, rep_api, erp, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_ERP_SEND_AFTER_COMMIT", False)
    monkeypatch.setitem(app.config, "CRM_ERP_MAX_ATTEMPTS", 2)
    bad = _submit(rep_api, w.hcp.id)
    _misbehaving(erp, monkeypatch, db.get(Order, bad).order_key, _raise(ValueError("not JSON")))
    sender.send_due(app, now=utcnow())
    sender.send_due(app, now=utcnow() + timedelta(hours=1))
    box = _outbox(db, bad)
    assert box.state == "failed" and box.attempts == 2 and "ValueError: not JSON" in box.last_error


def test_sync_goes_on_and_exits_1_when_one_order_breaks_the_adapter(app, db, w, rep_api, erp, monkeypatch, runner):
    monkeypatch.setitem(app.config, "CRM_ERP_SEND_AFTER_COMMIT", False)
    bad, good = _submit(rep_api, w.hcp.id), _submit(rep_api, w.hcp.id)
    _misbehaving(erp, monkeypatch, db.get(Order, bad).order_key, _raise(KeyError("status")))
    result = runner.invoke(args=["crm", "erp", "sync"])
    assert result.exit_code == 1, result.output
    assert "1 delivered" in result.output and "1 error" in result.output
    assert db.get(Order, good).status in ("sent", "accepted", "backordered", "shipped")


def test_a_status_answer_that_cannot_be_read_does_not_stop_the_poll_of_the_others(app, db, w, rep_api, erp,
                                                                                 monkeypatch):
    first, second = _submit(rep_api, w.hcp.id), _submit(rep_api, w.hcp.id)
    bad_key = db.get(Order, first).order_key
    real = erp.order_status

    def order_status(order_key):
        if order_key == bad_key:
            raise KeyError("status")
        return real(order_key)

    monkeypatch.setattr(erp, "order_status", order_status)
    assert sender.pull_statuses(app) == {"malformed": 1, "updated": 1}
    db.expire_all()
    assert db.get(Order, first).status == "sent" and db.get(Order, second).status != "sent"

    def odd(order_key):
        status = real(order_key)
        return ErpStatus(order_key, status.erp_order_id, "lost-in-space")

    monkeypatch.setattr(erp, "order_status", odd)
    assert sender.pull_statuses(app)["malformed"] == 2
