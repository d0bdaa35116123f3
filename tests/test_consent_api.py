"""The consent endpoints of API.md, for every role."""

from __future__ import annotations

import pytest

from crm.consent import services
from crm.timeline.models import SensitiveRead
from tests.conftest import ROLES
from tests.consent_support import EVIDENCE, active_notice, grant, mails_to


class _Users(dict):
    """One user per role, made on first use (password hashing is slow; most tests need two roles)."""

    def __init__(self, factory, territory):
        super().__init__()
        self.factory, self.territory = factory, territory

    def __missing__(self, role):
        user = self[role] = self.factory.user(role, [self.territory] if role == "field_rep" else [])
        return user


@pytest.fixture
def setup(db, factory):
    t = factory.territory()
    hcp = factory.hcp(t)
    notice = active_notice(db)
    return hcp, notice, _Users(factory, t)


def _body(notice, **kw):
    body = {"channel": "visit", "purpose": "promotional", "action": "grant", "source": "visit",
            "notice_version": notice.version, "evidence": EVIDENCE["visit"]}
    body.update(kw)
    return body


@pytest.mark.parametrize("role,source,status", [
    ("field_rep", "visit", 201), ("call_centre", "call_centre", 201), ("admin", "paper_form", 201),
    ("compliance", "paper_form", 403), ("marketer", "paper_form", 403), ("medical", "visit", 403),
])
def test_capture_per_role(api, setup, role, source, status):
    hcp, notice, users = setup
    resp = api(users[role]).post(f"/api/v1/hcps/{hcp.id}/consents",
                                 json=_body(notice, source=source, evidence=EVIDENCE[source]))
    assert resp.status_code == status, resp.get_json()
    if status == 403:
        assert resp.mimetype == "application/problem+json" and resp.get_json()["rule"].startswith("consent.capture")
    else:
        body = resp.get_json()
        assert body["event"]["event"] == "granted" and body["state"]["state"] == "granted"
        assert body["event"]["occurred_at"].endswith("Z")


def test_field_rep_only_with_source_visit_and_in_own_territory(api, setup, factory):
    hcp, notice, users = setup
    rep = api(users["field_rep"])
    resp = rep.post(f"/api/v1/hcps/{hcp.id}/consents", json=_body(notice, source="paper_form",
                                                                   evidence=EVIDENCE["paper_form"]))
    assert resp.status_code == 403 and resp.get_json()["rule"] == "consent.capture:source"
    far = factory.hcp(factory.territory())
    resp = rep.post(f"/api/v1/hcps/{far.id}/consents", json=_body(notice))
    assert resp.status_code == 403 and resp.get_json()["rule"] == "consent.capture:territory"


def test_grant_without_evidence_is_422(api, setup):
    hcp, notice, users = setup
    resp = api(users["field_rep"]).post(f"/api/v1/hcps/{hcp.id}/consents", json=_body(notice, evidence={}))
    assert resp.status_code == 422
    assert "evidence.signature" in resp.get_json()["errors"]
    resp = api(users["call_centre"]).post(f"/api/v1/hcps/{hcp.id}/consents",
                                          json=_body(notice, source="call_centre", evidence={"note": "said yes"}))
    assert resp.status_code == 422 and "evidence.recording_id" in resp.get_json()["errors"]


def test_bad_bodies(api, setup):
    hcp, notice, users = setup
    c = api(users["admin"])
    url = f"/api/v1/hcps/{hcp.id}/consents"
    assert c.post(url, json=_body(notice, source="paper_form", evidence=EVIDENCE["paper_form"],
                                  colour="red")).status_code == 422
    assert c.post(url, json=_body(notice, source="paper_form", evidence={"form_id": "x", "x": 1})).status_code == 422
    naive = c.post(url, json=_body(notice, source="paper_form", evidence=EVIDENCE["paper_form"],
                                   occurred_at="2026-01-01T10:00:00"))
    assert naive.status_code == 422 and "occurred_at" in naive.get_json()["errors"]
    assert c.post(url, data="{oops", headers={"Content-Type": "application/json"}).status_code == 400
    assert c.post("/api/v1/hcps/999999/consents", json=_body(notice)).status_code == 404
    assert c.post(url, json=_body(notice, channel="fax")).status_code == 422


def test_withdraw_all_and_read_state_for_every_role(api, setup, db):
    hcp, notice, users = setup
    api(users["admin"]).post(f"/api/v1/hcps/{hcp.id}/consents",
                             json=_body(notice, channel="post", purpose="events", source="paper_form",
                                        evidence=EVIDENCE["paper_form"]))
    resp = api(users["call_centre"]).post(f"/api/v1/hcps/{hcp.id}/consents", json={
        "channel": "all", "purpose": "events", "action": "withdraw", "source": "call_centre"})
    assert resp.status_code == 201 and resp.get_json()["state"] is None
    for role in ROLES:
        body = api(users[role]).get(f"/api/v1/hcps/{hcp.id}/consents").get_json()
        assert len(body["items"]) == 24
        states = {(i["channel"], i["purpose"]): i["state"] for i in body["items"]}
        assert states[("post", "events")] == "withdrawn" and states[("post", "promotional")] == "none"


def test_evidence_only_for_compliance_and_admin_and_reads_are_logged(api, setup, db):
    hcp, notice, users = setup
    grant(db, hcp, "visit", "events", "visit", notice=notice)
    for role in ROLES:
        before = db.query(SensitiveRead).filter_by(viewer_id=users[role].id).count()
        items = api(users[role]).get(f"/api/v1/hcps/{hcp.id}/consents/history").get_json()["items"]
        event = next(i for i in items if i["event"] == "granted")
        after = db.query(SensitiveRead).filter_by(viewer_id=users[role].id, what="consent_evidence").count()
        assert event["source"] == "visit" and event["channel"] == "visit" and event["occurred_at"]
        assert event["evidence_fields"] == ["signature"]
        if role in ("compliance", "admin"):
            assert event["evidence"]["signature"].startswith("data:image/png") and after == before + 1
        else:
            assert event["evidence"] is None and not event["evidence_visible"] and after == before


def test_history_at_an_instant_and_paging(api, setup, db):
    from tests.conftest import utc
    from tests.consent_support import withdraw

    hcp, notice, users = setup
    grant(db, hcp, "phone", "events", occurred_at=utc(2026, 1, 1))
    withdraw(db, hcp, "phone", "events", occurred_at=utc(2026, 2, 1))
    grant(db, hcp, "sms", "events", occurred_at=utc(2026, 3, 1))
    c = api(users["marketer"])
    body = c.get(f"/api/v1/hcps/{hcp.id}/consents/history?at=2026-01-15T00:00:00Z&channel=phone").get_json()
    assert body["at"] == "2026-01-15T00:00:00Z"
    assert {(i["channel"], i["purpose"]): i["state"] for i in body["items"]}[("phone", "events")] == "granted"
    assert all(i["channel"] == "phone" for i in body["items"])
    assert c.get(f"/api/v1/hcps/{hcp.id}/consents/history?at=2026-01-15T00:00:00").status_code == 422
    page1 = c.get(f"/api/v1/hcps/{hcp.id}/consents/history?limit=2").get_json()
    page2 = c.get(f"/api/v1/hcps/{hcp.id}/consents/history?limit=2&cursor={page1['next_cursor']}").get_json()
    assert [i["event"] for i in page1["items"] + page2["items"]] == ["granted", "withdrawn", "granted"]
    assert page2["next_cursor"] is None
    assert c.get(f"/api/v1/hcps/{hcp.id}/consents/history?cursor=garbage").status_code == 422


def test_decision_endpoint(api, setup, db):
    from tests.conftest import utc

    hcp, notice, users = setup
    g = grant(db, hcp, "phone", "events", occurred_at=utc(2026, 1, 1))
    c = api(users["marketer"])
    body = c.get(f"/api/v1/hcps/{hcp.id}/consents/decision?channel=phone&purpose=events&at=2026-01-02T00:00:00Z")
    assert body.get_json()["allowed"] and body.get_json()["evidence_event_ids"] == [g.id]
    body = c.get(f"/api/v1/hcps/{hcp.id}/consents/decision?channel=phone&purpose=events&at=2025-12-31T00:00:00Z")
    assert not body.get_json()["allowed"] and body.get_json()["rule"] == "no-consent"
    assert c.get(f"/api/v1/hcps/{hcp.id}/consents/decision?channel=all&purpose=events").status_code == 422


def test_double_opt_in_over_the_api_mails_after_commit(api, setup, app):
    hcp, notice, users = setup
    resp = api(users["admin"]).post(f"/api/v1/hcps/{hcp.id}/consents", json=_body(
        notice, channel="email", source="paper_form", evidence=EVIDENCE["paper_form"]))
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["double_opt_in"] and body["event"]["event"] == "requested" and body["state"]["state"] == "pending"
    [mail] = mails_to(app.config["CRM_OUTBOX_DIR"], hcp.email)
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "/consent/confirm/" in text and "/consent/preferences/" in text
    assert mail["Subject"] == "Please confirm your email preferences"


def test_failed_request_sends_no_mail(api, setup, app, db):
    hcp, notice, users = setup
    hcp2 = hcp
    resp = api(users["admin"]).post(f"/api/v1/hcps/{hcp2.id}/consents", json=_body(
        notice, channel="email", source="paper_form", evidence=EVIDENCE["paper_form"], occurred_at="not a date"))
    assert resp.status_code == 422
    assert mails_to(app.config["CRM_OUTBOX_DIR"], hcp2.email) == []


def test_idempotent_import_answers_200(api, setup):
    hcp, notice, users = setup
    body = _body(notice, channel="post", purpose="events", source="import", evidence=EVIDENCE["import"],
                 external_id="legacy-42")
    c = api(users["admin"])
    first = c.post(f"/api/v1/hcps/{hcp.id}/consents", json=body)
    again = c.post(f"/api/v1/hcps/{hcp.id}/consents", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["event"]["id"] == again.get_json()["event"]["id"]


def test_notices_crud_admin_only(api, setup):
    _hcp, _notice, users = setup
    admin = api(users["admin"])
    for role in ("field_rep", "marketer", "compliance", "call_centre", "medical"):
        resp = api(users[role]).post("/api/v1/notices", json={"language": "fr", "title": "T", "text": "x"})
        assert resp.status_code == 403
    created = admin.post("/api/v1/notices", json={"language": "fr", "title": "Consentement", "text": "Texte"})
    assert created.status_code == 201
    n = created.get_json()
    assert n["status"] == "draft" and n["version"] == "fr-v1"
    assert admin.patch(f"/api/v1/notices/{n['id']}", json={"text": "Texte corrigé"}).status_code == 200
    assert admin.post(f"/api/v1/notices/{n['id']}/activate").get_json()["status"] == "active"
    edit = admin.patch(f"/api/v1/notices/{n['id']}", json={"text": "changed while active"})
    assert edit.status_code == 409
    assert admin.get(f"/api/v1/notices/{n['id']}").get_json()["text"] == "Texte corrigé"
    listed = api(users["field_rep"]).get("/api/v1/notices?language=fr").get_json()["items"]
    assert [x["version"] for x in listed] == ["fr-v1"]
    assert admin.patch(f"/api/v1/notices/{n['id']}", json={"status": "draft"}).status_code == 422
    assert admin.get("/api/v1/notices/999999").status_code == 404


def test_reviews_compliance_only(api, setup, db):
    hcp, notice, users = setup
    e = grant(db, hcp, notice=notice)
    resp = api(users["compliance"]).post(f"/api/v1/hcps/{hcp.id}/consents/reviews",
                                         json={"outcome": "ok", "note": "Signature matches the form", "event_id": e.id})
    assert resp.status_code == 201 and resp.get_json()["reviewer"]["id"] == users["compliance"].id
    for role in ("admin", "field_rep", "marketer"):
        assert api(users[role]).post(f"/api/v1/hcps/{hcp.id}/consents/reviews",
                                     json={"outcome": "ok", "note": "x"}).status_code == 403
    assert api(users["compliance"]).post(f"/api/v1/hcps/{hcp.id}/consents/reviews",
                                         json={"outcome": "ok", "note": "x", "event_id": 999999}).status_code == 422
    assert len(api(users["marketer"]).get(f"/api/v1/hcps/{hcp.id}/consents/reviews").get_json()["items"]) == 1


def test_compliance_lists(api, setup, db, factory):
    from datetime import timedelta

    from crm.db import utcnow
    from crm.timeline.services import record_interaction

    hcp, notice, users = setup
    grant(db, hcp, "phone", "events", occurred_at=utcnow() - timedelta(days=720))
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=utcnow(), channel="email", kind="email.sent",
                       source="esp", details={"purpose": "promotional"})
    for role in ROLES:
        resp = api(users[role]).get("/api/v1/consents/gaps")
        assert resp.status_code == (200 if role in ("compliance", "admin") else 403)
    gaps = api(users["compliance"]).get("/api/v1/consents/gaps").get_json()["items"]
    assert gaps[0]["hcp_ids"] == [hcp.id] and gaps[0]["needed"] == {"channel": "email", "purpose": "promotional"}
    rep_list = api(users["field_rep"]).get("/api/v1/consents/expiring?within_days=30").get_json()["items"]
    assert [(i["hcp_id"], i["channel"], i["state"]) for i in rep_list] == [(hcp.id, "phone", "granted")]
    assert api(users["marketer"]).get("/api/v1/consents/expiring?territory=NOPE").status_code == 422
    coverage = api(users["marketer"]).get("/api/v1/consents/coverage").get_json()
    row = next(r for r in coverage["items"] if (r["channel"], r["purpose"]) == ("phone", "events"))
    assert row["granted"] >= 1


def test_openapi_lists_the_consent_endpoints(api, setup):
    _hcp, _notice, users = setup
    paths = api(users["marketer"]).get("/api/v1/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/hcps/{hcp_id}/consents"])
    assert "/api/v1/hcps/{hcp_id}/consents/history" in paths and "/api/v1/notices/{notice_id}/activate" in paths


def test_unauthenticated_is_401(client, setup):
    hcp, _notice, _users = setup
    assert client.get(f"/api/v1/hcps/{hcp.id}/consents").status_code == 401
    assert client.post(f"/api/v1/hcps/{hcp.id}/consents", json={}).status_code == 401


def test_merge_copies_keep_the_loser_visible(db, factory):
    survivor, loser = factory.hcp(), factory.hcp()
    grant(db, loser, "post", "events")
    services.merge_consents(db, None, survivor.id, loser.id)
    assert services.can_contact(db, survivor.id, "post", "events").allowed


def test_evidence_hash_is_keyed_and_shown_only_where_evidence_is(api, setup, db):
    """A paper-form id is short: an unkeyed SHA-256 of the evidence let anyone who saw the digest recover
    it by hashing guesses. The digest is keyed, and shown (with its check) only to compliance and admin."""
    import hashlib

    hcp, notice, users = setup
    e = grant(db, hcp, "post", "events", "paper_form", notice=notice)
    plain = hashlib.sha256(services.evidence_json(EVIDENCE["paper_form"]).encode()).hexdigest()
    assert e.evidence_hash and e.evidence_hash != plain and e.evidence_hash_scheme == "hmac-sha256"
    for role in ROLES:
        resp = api(users[role]).get(f"/api/v1/hcps/{hcp.id}/consents/history")
        body = resp.get_data(as_text=True)
        event = next(i for i in resp.get_json()["items"] if i["id"] == e.id)
        assert plain not in body, role
        if role in ("compliance", "admin"):
            assert event["evidence_hash"] == e.evidence_hash and event["evidence_hash_scheme"] == "hmac-sha256"
            assert event["evidence_verified"] is True
        else:
            assert e.evidence_hash not in body, role
            assert event["evidence_hash"] is None and event["evidence_hash_scheme"] is None, role
            assert event["evidence_verified"] is None, role


def test_old_unkeyed_evidence_hashes_are_shown_as_such_and_still_verify(api, setup, db):
    """Rows written before the keyed digest keep their plain SHA-256 (the ledger is append-only): compliance
    sees the scheme and can still check the evidence against it; a digest that does not match says so."""
    import hashlib

    hcp, notice, users = setup
    ev = services.evidence_json({"form_id": "PF-1"})
    old = services._append(db, None, hcp, channel="post", purpose="events", event_type="granted",
                           occurred_at=services.utcnow(), source="paper_form", evidence={"form_id": "PF-1"},
                           notice=notice, evidence_hash=hashlib.sha256(ev.encode()).hexdigest())
    bad = services._append(db, None, hcp, channel="post", purpose="market_research", event_type="granted",
                           occurred_at=services.utcnow(), source="paper_form", evidence={"form_id": "PF-2"},
                           notice=notice, evidence_hash="0" * 64, evidence_hash_scheme="hmac-sha256")
    assert old.evidence_hash_scheme is None
    items = {i["id"]: i for i in api(users["compliance"]).get(
        f"/api/v1/hcps/{hcp.id}/consents/history").get_json()["items"]}
    assert items[old.id]["evidence_hash_scheme"] == "sha256" and items[old.id]["evidence_verified"] is True
    assert items[bad.id]["evidence_hash_scheme"] == "hmac-sha256" and items[bad.id]["evidence_verified"] is False
    marketer = {i["id"]: i for i in api(users["marketer"]).get(
        f"/api/v1/hcps/{hcp.id}/consents/history").get_json()["items"]}
    assert marketer[old.id]["evidence_hash"] is None and marketer[old.id]["evidence_verified"] is None
