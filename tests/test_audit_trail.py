"""The audit trail: records written by services, the hash chain, `crm audit verify`, the API and pages."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select, text

from crm.audit.models import AuditRecord, AuditVerification
from crm.audit.services import latest_verification, record, record_many, verify_chain
from crm.auth.services import update_user
from crm.hcps.services import create_territory
from crm.timeline.models import SensitiveRead
from crm.timeline.services import record_interaction
from tests.conftest import ROLES, utc


def _records(db, entity=None, entity_id=None):
    query = select(AuditRecord).order_by(AuditRecord.id)
    if entity:
        query = query.where(AuditRecord.entity == entity)
    if entity_id is not None:
        query = query.where(AuditRecord.entity_id == str(entity_id))
    return db.scalars(query).all()


def _chain(db, n=5):
    """``n`` audit records written through a service, oldest first."""
    for i in range(n):
        create_territory(db, None, f"CH{i}", f"Chain {i}")
    return _records(db)


# -- records written by services ------------------------------------------------------------------

def test_service_writes_leave_records_with_actor_action_entity_and_before_after(db, factory):
    admin = factory.user("admin")
    rep = factory.user("field_rep")
    territory, _ = create_territory(db, admin, "NE", "North East")
    update_user(db, admin, rep, role="medical")
    hcp = factory.hcp()
    item, _ = record_interaction(db, admin, hcp_ids=[hcp.id], occurred_at=utc(2026, 1, 5, 9), channel="event",
                                 kind="event.attended")

    t_rec = _records(db, "territory", territory.id)[-1]
    assert (t_rec.actor_id, t_rec.action) == (admin.id, "territory.create")
    assert t_rec.actor_label == f"{admin.name} <admin>"
    assert t_rec.changes["code"] == {"before": None, "after": "NE"}

    u_rec = _records(db, "user", rep.id)[-1]
    assert u_rec.action == "user.update" and u_rec.actor_id == admin.id
    assert u_rec.changes == {"role": {"before": "field_rep", "after": "medical"}}

    i_rec = _records(db, "interaction", item.id)[-1]
    assert i_rec.action == "interaction.create"
    assert i_rec.changes["kind"] == {"before": None, "after": "event.attended"}
    assert i_rec.changes["hcp_ids"]["after"] == [hcp.id]
    # the system (CLI, imports) is an actor too
    system = _records(db, "user", admin.id)[-1]
    assert system.actor_id is None and system.actor_label == "system"


def test_hcp_writes_through_the_api_never_put_personal_data_in_clear(api, db, factory):
    territory = factory.territory()
    admin = factory.user("admin")
    c = api(admin)
    email, phone = "dr.grace.hopper@navy-clinic.example", "+1 202 555 0199"
    resp = c.post("/api/v1/hcps", json={"first_name": "Grace", "last_name": "Hopper", "profession": "specialist",
                                        "specialty": "Cardiology", "email": email, "phone": phone,
                                        "territory": territory.code})
    assert resp.status_code == 201, resp.get_json()
    hcp = resp.get_json()
    new_email = "grace.h@fleet.example"
    resp = c.patch(f"/api/v1/hcps/{hcp['id']}", json={"version": hcp["version"], "email": new_email,
                                                      "specialty": "Cardiac surgery"})
    assert resp.status_code == 200, resp.get_json()

    recs = _records(db, "hcp", hcp["id"])
    assert [r.action for r in recs] == ["hcp.create", "hcp.update"]
    assert all(r.actor_id == admin.id for r in recs)
    update = recs[1]
    assert update.changes["specialty"] == {"before": "Cardiology", "after": "Cardiac surgery"}
    assert "email" in update.changes  # the change is recorded...
    raw = json.dumps([r.changes for r in _records(db)]).lower()
    for secret in (email, new_email, phone, "navy-clinic", "fleet.example"):
        assert secret.lower() not in raw  # ...but never its value


# -- the chain ------------------------------------------------------------------------------------

def test_an_untouched_chain_verifies(db):
    recs = _chain(db, 4)
    report = verify_chain(db)
    assert report.ok and report.checked == len(recs) == 4
    assert recs[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(recs, recs[1:], strict=False))


def test_records_chain_across_savepoints_rolled_back_or_not(db):
    first = record(db, None, "test.first", "thing", 1)
    second = record(db, None, "test.second", "thing", 2)
    assert second.prev_hash == first.hash
    with pytest.raises(RuntimeError):
        with db.begin_nested():
            record(db, None, "test.undone", "thing", 3)
            raise RuntimeError("rolled back with its savepoint")
    third = record(db, None, "test.third", "thing", 4)
    assert third.prev_hash == second.hash  # not the hash of the record that was rolled back
    with db.begin_nested():
        kept = record(db, None, "test.kept", "thing", 5)
    fourth = record(db, None, "test.fourth", "thing", 6)
    assert fourth.prev_hash == kept.hash
    db.flush()
    assert verify_chain(db).ok


def test_many_records_at_once_chain_in_the_order_given(db):
    before = record(db, None, "test.before", "thing", 0)
    many = record_many(db, None, [("test.many", "thing", n, {"n": {"before": None, "after": n}}, f"row {n}")
                                  for n in range(1, 6)])
    after = record(db, None, "test.after", "thing", 6)
    chain = [before, *many, after]
    assert [r.id for r in chain] == sorted(r.id for r in chain)
    assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:], strict=False))
    assert [r.reason for r in many] == [f"row {n}" for n in range(1, 6)]
    assert record_many(db, None, []) == []
    db.flush()
    assert verify_chain(db).ok


def test_tampered_changes_are_named_by_record_id(db):
    recs = _chain(db, 5)
    victim = recs[2]
    db.execute(text("UPDATE audit_records SET changes = :c WHERE id = :id"),
               {"c": json.dumps({"code": {"before": None, "after": "FORGED"}}), "id": victim.id})
    report = verify_chain(db)
    assert not report.ok
    assert report.broken_id == victim.id
    assert report.checked == 2
    assert "hash" in report.problem


def test_a_deleted_middle_record_is_named_by_the_next_one(db):
    recs = _chain(db, 5)
    db.execute(text("DELETE FROM audit_records WHERE id = :id"), {"id": recs[2].id})
    report = verify_chain(db)
    assert not report.ok
    assert report.broken_id == recs[3].id
    assert "link" in report.problem


def test_a_rewritten_reason_breaks_the_chain(db, factory):
    rep = factory.user("field_rep")
    rec = record(db, rep, "visit.amend", "visit", 1, {"notes": {"before": "a", "after": "b"}}, reason="typo")
    db.execute(text("UPDATE audit_records SET reason = 'nothing to see' WHERE id = :id"), {"id": rec.id})
    assert verify_chain(db).broken_id == rec.id


def test_verify_reads_the_database_not_the_session_cache(db):
    # The records are still in the session's identity map; a stale cached copy must not hide the tampering.
    recs = _chain(db, 3)
    db.execute(text("UPDATE audit_records SET actor_label = 'someone else' WHERE id = :id"), {"id": recs[0].id})
    assert verify_chain(db, batch=2).broken_id == recs[0].id


def test_verify_walks_in_batches(db):
    _chain(db, 7)
    assert verify_chain(db, batch=3).checked == 7


# -- the command line -----------------------------------------------------------------------------

def test_cli_verify_ok_exits_0_and_keeps_the_result(runner, db):
    _chain(db, 3)
    result = runner.invoke(args=["crm", "audit", "verify"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ok: 3 records verified"
    latest = latest_verification(db)
    assert latest.ok and latest.checked == 3 and latest.actor_label == "command line"


def test_cli_verify_broken_exits_1_naming_the_record(runner, db):
    recs = _chain(db, 4)
    db.execute(text("UPDATE audit_records SET entity_id = '999' WHERE id = :id"), {"id": recs[1].id})
    result = runner.invoke(args=["crm", "audit", "verify"])
    assert result.exit_code == 1
    assert f"broken at record {recs[1].id}: its content does not match its hash" in result.output
    latest = latest_verification(db)
    assert not latest.ok and latest.broken_id == recs[1].id


def test_cli_verify_deleted_record(runner, db):
    recs = _chain(db, 4)
    db.execute(text("DELETE FROM audit_records WHERE id = :id"), {"id": recs[1].id})
    result = runner.invoke(args=["crm", "audit", "verify"])
    assert result.exit_code == 1
    assert f"broken at record {recs[2].id}: its link to the previous record does not match" in result.output


def test_cli_verify_of_an_empty_trail(runner, db):
    result = runner.invoke(args=["crm", "audit", "verify"])
    assert result.exit_code == 0 and "ok: 0 records verified" in result.output


# -- the API --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical"])
def test_audit_api_refuses_other_roles_with_the_rule(api, factory, role):
    c = api(factory.user(role))
    resp = c.get("/api/v1/audit")
    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["rule"] == "audit.read:role"
    resp = c.get("/api/v1/audit/sensitive-reads")
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "sensitive_log.read:role"


@pytest.mark.parametrize("role", ["compliance", "admin"])
def test_audit_api_for_compliance_and_admin(api, db, factory, role):
    viewer = factory.user(role)
    t, _ = create_territory(db, viewer, "API1", "Api one")
    c = api(viewer)
    resp = c.get("/api/v1/audit")
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"items", "next_cursor"}
    top = body["items"][0]
    assert top["action"] == "territory.create" and top["entity"] == "territory" and top["entity_id"] == str(t.id)
    assert top["actor"] == {"id": viewer.id, "label": f"{viewer.name} <{role}>"}
    assert top["changes"]["code"] == {"before": None, "after": "API1"}
    assert top["occurred_at"].endswith("Z")
    assert re.fullmatch(r"[0-9a-f]{64}", top["hash"]) and re.fullmatch(r"[0-9a-f]{64}", top["prev_hash"])


def test_audit_api_unauthenticated_is_401(client):
    assert client.get("/api/v1/audit").status_code == 401
    assert client.get("/api/v1/audit/sensitive-reads").status_code == 401


def test_audit_api_newest_first_keyset_paging_and_filters(api, db, factory):
    compliance = factory.user("compliance")
    rep = factory.user("field_rep")
    for i in range(7):
        create_territory(db, rep if i % 2 else None, f"P{i}", f"Page {i}")
    c = api(compliance)
    all_ids = [r.id for r in _records(db)][::-1]
    seen, cursor = [], None
    while True:
        resp = c.get("/api/v1/audit", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200
        body = resp.get_json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == all_ids  # newest first, every record exactly once

    by_entity = c.get("/api/v1/audit", query_string={"entity": "territory"}).get_json()["items"]
    assert len(by_entity) == 7 and {i["entity"] for i in by_entity} == {"territory"}
    one = _records(db, "territory")[0]
    by_id = c.get("/api/v1/audit", query_string={"entity": "territory", "entity_id": one.entity_id}).get_json()
    assert [i["id"] for i in by_id["items"]] == [one.id]
    by_actor = c.get("/api/v1/audit", query_string={"actor_id": rep.id}).get_json()["items"]
    assert len(by_actor) == 3 and {i["actor"]["id"] for i in by_actor} == {rep.id}


def test_audit_api_since_until(api, db, factory):
    compliance = factory.user("compliance")
    recs = _chain(db, 3)
    db.execute(text("UPDATE audit_records SET occurred_at = :t WHERE id = :id"),
               {"t": "2025-01-01 00:00:00.000000", "id": recs[0].id})
    c = api(compliance)
    old = c.get("/api/v1/audit", query_string={"until": "2025-06-01T00:00:00Z"}).get_json()["items"]
    assert [i["id"] for i in old] == [recs[0].id]
    assert old[0]["occurred_at"] == "2025-01-01T00:00:00Z"
    new = c.get("/api/v1/audit", query_string={"since": "2025-01-01T00:00:01+00:00"}).get_json()["items"]
    assert recs[0].id not in [i["id"] for i in new]


@pytest.mark.parametrize("query", [{"since": "2026-01-01T00:00:00"}, {"cursor": "garbage!"}, {"limit": 0},
                                   {"limit": 201}, {"actor_id": "x"}])
def test_audit_api_bad_query_is_422(api, factory, query):
    c = api(factory.user("compliance"))
    resp = c.get("/api/v1/audit", query_string=query)
    assert resp.status_code == 422
    assert set(resp.get_json()["errors"]) == set(query)


def _reads(db, factory):
    medical = factory.user("medical")
    agent = factory.user("call_centre")
    hcp = factory.hcp()
    item, _ = record_interaction(db, agent, hcp_ids=[hcp.id], occurred_at=utc(2026, 2, 1),
                                 channel="call_centre", kind="call_centre.adverse_event", sensitivity="pv")
    db.add_all([
        SensitiveRead(viewer_id=medical.id, what="interaction", interaction_id=item.id, hcp_id=hcp.id,
                      sensitivity="pv", occurred_at=utc(2026, 2, 2)),
        SensitiveRead(viewer_id=agent.id, what="consent_evidence", hcp_id=hcp.id, occurred_at=utc(2026, 2, 3)),
    ])
    db.flush()
    return medical, agent, hcp, item


@pytest.mark.parametrize("role", ["compliance", "admin"])
def test_sensitive_reads_api_lists_reader_item_sensitivity_and_time(api, db, factory, role):
    medical, agent, hcp, item = _reads(db, factory)
    c = api(factory.user(role))
    body = c.get("/api/v1/audit/sensitive-reads").get_json()
    assert body["next_cursor"] is None
    newest, older = body["items"]
    assert newest["viewer"] == {"id": agent.id, "name": agent.name, "role": "call_centre"}
    assert newest["what"] == "consent_evidence" and newest["interaction_id"] is None
    assert older == {"id": older["id"], "occurred_at": "2026-02-02T00:00:00Z",
                     "viewer": {"id": medical.id, "name": medical.name, "role": "medical"},
                     "what": "interaction", "interaction_id": item.id, "hcp_id": hcp.id, "sensitivity": "pv"}
    only = c.get("/api/v1/audit/sensitive-reads", query_string={"viewer_id": medical.id}).get_json()["items"]
    assert [r["viewer"]["id"] for r in only] == [medical.id]
    pv = c.get("/api/v1/audit/sensitive-reads", query_string={"sensitivity": "pv"}).get_json()["items"]
    assert [r["sensitivity"] for r in pv] == ["pv"]
    paged = c.get("/api/v1/audit/sensitive-reads", query_string={"limit": 1}).get_json()
    assert len(paged["items"]) == 1 and paged["next_cursor"]
    rest = c.get("/api/v1/audit/sensitive-reads", query_string={"limit": 1, "cursor": paged["next_cursor"]})
    assert rest.get_json()["items"][0]["id"] == older["id"]


def test_sensitive_reads_api_bad_filter_is_422(api, factory):
    c = api(factory.user("compliance"))
    resp = c.get("/api/v1/audit/sensitive-reads", query_string={"sensitivity": "secret"})
    assert resp.status_code == 422 and "sensitivity" in resp.get_json()["errors"]


# -- pages ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", [r for r in ROLES if r not in ("compliance", "admin")])
def test_audit_pages_refuse_other_roles(client, auth, factory, role):
    auth.login(factory.user(role))
    for path in ("/audit", "/audit/sensitive-reads"):
        resp = client.get(path)
        assert resp.status_code == 403
        assert "This page is for compliance, admin" in resp.get_data(as_text=True)


def test_audit_pages_need_a_login(client):
    resp = client.get("/audit")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


@pytest.mark.parametrize("role", ["compliance", "admin"])
def test_audit_trail_page_shows_before_and_after_and_filters(client, auth, db, factory, role):
    user = factory.user(role)
    create_territory(db, user, "PG1", "Page one")
    rep = factory.user("field_rep")
    update_user(db, user, rep, role="marketer")
    auth.login(user)
    page = client.get("/audit").get_data(as_text=True)
    assert "Audit trail" in page and "territory.create" in page and "user.update" in page
    assert "field_rep" in page and "marketer" in page  # before and after of the role change
    assert "not been verified yet" in page
    filtered = client.get("/audit", query_string={"entity": "user", "entity_id": rep.id}).get_data(as_text=True)
    assert "user.update" in filtered and "territory.create" not in filtered
    by_actor = client.get("/audit", query_string={"actor": user.name}).get_data(as_text=True)
    assert "territory.create" in by_actor and "user.create" not in by_actor
    by_actor_id = client.get("/audit", query_string={"actor": str(user.id)}).get_data(as_text=True)
    assert "territory.create" in by_actor_id and "user.create" not in by_actor_id


def test_audit_trail_page_pages_with_a_cursor(client, auth, db, factory):
    user = factory.user("compliance")
    for i in range(55):
        create_territory(db, None, f"M{i:02d}", f"Many {i}")
    auth.login(user)
    page = client.get("/audit").get_data(as_text=True)
    assert "M54" in page and "M00" not in page
    next_url = re.search(r'href="([^"]*cursor=[^"]+)">Older', page).group(1).replace("&amp;", "&")
    older = client.get(next_url).get_data(as_text=True)
    assert "M00" in older and "M54" not in older and "Newest" in older
    assert client.get("/audit?cursor=tampered").status_code == 422


def test_verify_button_stores_and_shows_the_result(client, auth, db, factory):
    user = factory.user("compliance")
    recs = _chain(db, 3)
    auth.login(user)
    token = auth.csrf_token("/audit")
    resp = client.post("/audit/verify", data={"csrf_token": token})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/audit")
    page = client.get("/audit").get_data(as_text=True)
    assert "Intact" in page and f"by {user.name}" in page
    # count, not the newest id: PostgreSQL sequences do not roll back with the test transaction
    total = db.scalar(select(func.count()).select_from(AuditRecord))
    assert latest_verification(db).checked == total

    db.execute(text("UPDATE audit_records SET action = 'x' WHERE id = :id"), {"id": recs[1].id})
    client.post("/audit/verify", data={"csrf_token": token})
    page = client.get("/audit").get_data(as_text=True)
    assert f"Broken at record {recs[1].id}" in page
    assert db.query(AuditVerification).count() == 2


def test_verify_button_needs_csrf_and_the_role(client, auth, factory):
    auth.login(factory.user("compliance"))
    assert client.post("/audit/verify").status_code == 400
    auth.logout()
    auth.login(factory.user("marketer"))
    token = auth.csrf_token("/")
    assert client.post("/audit/verify", data={"csrf_token": token}).status_code == 403


def test_sensitive_reads_page(client, auth, db, factory):
    medical, agent, hcp, item = _reads(db, factory)
    auth.login(factory.user("compliance"))
    # the reads listed (the filter form above lists every user by name, as the "Reader" choice)
    page = client.get("/audit/sensitive-reads").get_data(as_text=True).split('class="audit-list"')[1]
    assert medical.name in page and agent.name in page
    assert f"item #{item.id}" in page and "consent evidence" in page
    filtered = client.get("/audit/sensitive-reads", query_string={"what": "consent_evidence"}).get_data(as_text=True)
    filtered = filtered.split('class="audit-list"')[1]
    assert agent.name in filtered and medical.name not in filtered
