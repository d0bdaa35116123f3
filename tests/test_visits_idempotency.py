"""`POST /api/v1/visits` with an `Idempotency-Key` (issue 11): a repeat answers 200 with the visit it
created, another body under the same key is 422, keys are per user, and a race creates one visit."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from crm.audit.models import AuditRecord
from crm.auth.services import create_user, issue_token
from crm.errors import Invalid
from crm.extensions import db as _db
from crm.hcps.models import HCP, Territory
from crm.visits import services
from crm.visits.models import Visit
from tests.conftest import PASSWORD
from tests.visits_support import make_world, visit_data, visit_json


@pytest.fixture
def w(db, factory):
    return make_world(db, factory)


def post(client, hcp_id, key=None, **kw):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/api/v1/visits", json=visit_json(hcp_id, **kw), headers=headers)


def visits(db):
    return db.scalar(select(func.count()).select_from(Visit))


def test_a_repeat_answers_200_with_the_same_visit_and_creates_nothing(api, w, db):
    c = api(w.rep)
    first = post(c, w.hcp.id, key="crm-sync-42")
    assert first.status_code == 201, first.get_json()
    again = post(c, w.hcp.id, key="crm-sync-42")
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert {k: v for k, v in again.get_json().items() if k != "updated_at"} == {
        k: v for k, v in first.get_json().items() if k != "updated_at"}
    assert visits(db) == 1
    assert db.scalar(select(func.count()).select_from(AuditRecord).where(AuditRecord.action == "visit.create")) == 1


def test_the_same_key_with_another_body_is_422(api, w, db):
    c = api(w.rep)
    first = post(c, w.hcp.id, key="k-1")
    other = post(c, w.hcp.id, key="k-1", notes="A different visit")
    assert other.status_code == 422 and other.mimetype == "application/problem+json"
    assert f"visit {first.get_json()['id']}" in other.get_json()["errors"]["Idempotency-Key"][0]
    assert visits(db) == 1


def test_keys_are_per_user(api, w, db):
    mine = post(api(w.rep), w.hcp.id, key="shared-key")
    theirs = post(api(w.rep2), w.hcp.id, key="shared-key")
    assert mine.status_code == theirs.status_code == 201
    assert mine.get_json()["id"] != theirs.get_json()["id"] and visits(db) == 2


def test_without_a_key_each_post_creates_a_visit(api, w, db):
    c = api(w.rep)
    assert post(c, w.hcp.id).status_code == post(c, w.hcp.id).status_code == 201
    assert visits(db) == 2


@pytest.mark.parametrize("key", ["", "   ", "x" * 201, "bad\x01key"])
def test_bad_keys_are_422(api, w, db, key):
    resp = post(api(w.rep), w.hcp.id, key=key)
    assert resp.status_code == 422 and "Idempotency-Key" in resp.get_json()["errors"]
    assert visits(db) == 0


def test_a_refused_request_does_not_use_up_its_key(api, w, db):
    c = api(w.rep)
    refused = post(c, w.hcp.id, key="k-2", samples=[{"sku": "CARDIO-10", "quantity": 1, "lot": "NO-LOT"}])
    assert refused.status_code == 422 and visits(db) == 0
    assert post(c, w.hcp.id, key="k-2").status_code == 201


def test_roles_that_may_not_log_visits_are_refused_before_the_key_is_looked_at(api, w, db):
    for user in (w.marketer, w.call_centre, w.compliance, w.admin):
        resp = post(api(user), w.hcp.id, key="k-3")
        assert resp.status_code == 403 and resp.get_json()["rule"] == "visit.create:role"
    assert post(api(w.rep_south), w.hcp.id, key="k-3").status_code == 403  # another territory
    assert post(api(w.medical), w.hcp.id, key="k-3").status_code == 201  # Medical Affairs, anywhere
    assert visits(db) == 1


def test_a_race_lost_at_the_unique_constraint_answers_with_the_winner(db, w, monkeypatch):
    """The other request inserted the key between our look-up and our insert: the constraint refuses our row,
    the savepoint rolls it back, and the winner's visit is the answer (or 422 for another body)."""
    viewer = w.viewer(w.rep)
    winner = services.create_visit(db, w.rep, viewer, visit_data(w.hcp.id), idempotency_key="race",
                                   request_hash="h1")
    real = services.visit_by_idempotency_key
    calls = []

    def late(session, owner_id, key):
        calls.append(key)
        return None if len(calls) == 1 else real(session, owner_id, key)  # the first look-up came too early

    monkeypatch.setattr(services, "visit_by_idempotency_key", late)
    visit, replayed = services.create_visit_once(db, w.rep, viewer, visit_data(w.hcp.id), idempotency_key="race",
                                                 request_hash="h1")
    assert (visit.id, replayed) == (winner.id, True) and len(calls) == 2
    calls.clear()
    with pytest.raises(Invalid):
        services.create_visit_once(db, w.rep, viewer, visit_data(w.hcp.id), idempotency_key="race",
                                   request_hash="h2")
    assert visits(db) == 1
    assert db.scalar(select(func.count()).select_from(AuditRecord).where(AuditRecord.action == "visit.create")) == 1


@pytest.mark.committing
def test_two_identical_requests_at_once_create_one_visit(committing_app):
    with committing_app.app_context():
        t = Territory(code="IK1", name="Idempotency")
        _db.session.add(t)
        _db.session.flush()
        hcp = HCP(first_name="Ada", last_name="Lovelace", profession="gp", territory_id=t.id)
        _db.session.add(hcp)
        rep = create_user(_db.session, None, email="idem.rep@pharma.example", name="Idem Rep", role="field_rep",
                          password=PASSWORD, territory_codes=["IK1"])
        _db.session.flush()
        token = issue_token(_db.session, rep.email, PASSWORD, "127.0.0.1")[0]
        hcp_id = hcp.id
        _db.session.commit()
        _db.session.remove()

    client = committing_app.test_client()
    barrier = threading.Barrier(3)
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait()
            resp = client.post("/api/v1/visits", json=visit_json(hcp_id, products=[]),
                               headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "burst-1"})
            results.append((resp.status_code, resp.get_json().get("id")))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(status for status, _id in results) == [200, 200, 201], results
    assert len({visit_id for _s, visit_id in results}) == 1
    with committing_app.app_context():
        assert _db.session.scalar(select(func.count()).select_from(Visit)) == 1
        _db.session.remove()
