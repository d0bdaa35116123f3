"""Visits over the API: every rule and unhappy path, the shapes, and the timeline it writes."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.timeline.models import Interaction, InteractionParticipant
from tests.visits_support import SIGNATURE, make_world, visit_json

SAMPLE = {"sku": "CARDIO-20", "quantity": 2, "lot": "LOT-7"}


@pytest.fixture
def w(db, factory):
    return make_world(db, factory)


def create(api, user, hcp_id, **kw):
    return api(user).post("/api/v1/visits", json=visit_json(hcp_id, **kw))


def test_rep_creates_a_draft(api, w):
    resp = create(api, w.rep, w.hcp.id, attendee_hcp_ids=[w.hcp2.id], samples=[SAMPLE], signature=SIGNATURE)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "draft" and body["hcp_id"] == w.hcp.id
    assert body["owner"] == {"id": w.rep.id, "name": w.rep.name, "role": "field_rep"}
    assert body["occurred_at"] == "2026-01-12T09:30:00Z"  # +01:00 converted to UTC
    assert body["samples"] == [SAMPLE] and body["attendee_hcp_ids"] == [w.hcp2.id]
    assert body["follow_up"] == {"date": "2026-02-01", "text": "Bring the study"}
    assert body["signed"] is True and "signature" not in body
    assert body["sensitivity"] == "standard" and body["version"] == 1 and body["interaction_id"] is None
    assert SIGNATURE[25:80] not in resp.get_data(as_text=True)


def test_rep_outside_territory_403_with_rule(api, w):
    resp = create(api, w.rep, w.hcp_south.id)
    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["rule"] == "visit.create:territory"
    resp = create(api, w.rep, w.hcp.id, attendee_hcp_ids=[w.hcp_south.id])
    assert resp.status_code == 403 and resp.get_json()["rule"] == "visit.create:territory"


@pytest.mark.parametrize("role", ["marketer", "compliance", "call_centre", "admin"])
def test_roles_that_do_not_log_visits(api, w, role):
    resp = create(api, getattr(w, role), w.hcp.id)
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "visit.create:role"


def test_medical_visit_is_medical_on_the_timeline(api, w, db):
    c = api(w.medical)
    resp = create(api, w.medical, w.hcp_south.id, notes="Answered an off-label question")
    assert resp.status_code == 201 and resp.get_json()["sensitivity"] == "medical"
    sub = c.post(f"/api/v1/visits/{resp.get_json()['id']}/submit", json={})
    assert sub.status_code == 200
    item = db.get(Interaction, sub.get_json()["interaction_id"])
    assert item.sensitivity == "medical" and item.owner_role == "medical"


@pytest.mark.parametrize("change, field", [
    ({"occurred_at": "2026-01-12T09:30:00"}, "occurred_at"),
    ({"products": ["NOPE"]}, "products"),
    ({"samples": [{"sku": "NOPE", "quantity": 1, "lot": "x"}]}, "samples.0.sku"),
    ({"samples": [{"sku": "CARDIO-10", "quantity": 0, "lot": "x"}]}, "samples.0.quantity"),
    ({"samples": [{"sku": "CARDIO-10", "quantity": 1, "lot": "  "}]}, "samples.0.lot"),
    ({"samples": [{"sku": "CARDIO-10", "quantity": 1}]}, "samples.0.lot"),
    ({"mode": "carrier_pigeon"}, "mode"),
    ({"colour": "blue"}, "colour"),
    ({"follow_up": {"date": "2026-02-01", "when": "soon"}}, "follow_up.when"),
    ({"signature": "data:image/gif;base64,R0lGOD"}, "signature"),
])
def test_invalid_input_is_422_per_field(api, w, change, field):
    resp = create(api, w.rep, w.hcp.id, **change)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"]


def test_unknown_hcp_404_and_malformed_json_400(api, w, client):
    assert create(api, w.rep, 987654).status_code == 404
    c = api(w.rep)
    resp = c.client.post("/api/v1/visits", data="{not json", headers={**c._h(None), "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert client.post("/api/v1/visits", json=visit_json(w.hcp.id)).status_code == 401


def test_patch_by_owner_other_rep_and_after_submit(api, w):
    visit = create(api, w.rep, w.hcp.id).get_json()
    url = f"/api/v1/visits/{visit['id']}"
    ok = api(w.rep).patch(url, json={"notes": "Better notes", "version": visit["version"]})
    assert ok.status_code == 200 and ok.get_json()["notes"] == "Better notes"
    assert ok.get_json()["version"] == visit["version"] + 1
    stale = api(w.rep).patch(url, json={"notes": "stale", "version": visit["version"]})
    assert stale.status_code == 409
    other = api(w.rep2).patch(url, json={"notes": "mine"})
    assert other.status_code == 403 and other.get_json()["rule"] == "visit.edit:owner"
    assert api(w.rep).patch(url, json={"version": 1, "bogus": 1}).status_code == 422
    assert api(w.rep).post(url + "/submit").status_code == 200
    locked = api(w.rep).patch(url, json={"notes": "after"})
    assert locked.status_code == 409
    assert locked.get_json()["detail"] == "submitted visits are locked; amend instead"
    assert api(w.rep).patch("/api/v1/visits/987654", json={"notes": "x"}).status_code == 404


def test_submit_needs_signature_for_samples_then_once_only(api, w, db):
    visit = create(api, w.rep, w.hcp.id, samples=[SAMPLE], attendee_hcp_ids=[w.hcp2.id]).get_json()
    url = f"/api/v1/visits/{visit['id']}/submit"
    c = api(w.rep)
    missing = c.post(url, json={})
    assert missing.status_code == 422 and "signature" in missing.get_json()["errors"]
    bad = c.post(url, json={"signature": "data:image/png;base64,@@@"})
    assert bad.status_code == 422 and "signature" in bad.get_json()["errors"]
    assert api(w.rep2).post(url, json={"signature": SIGNATURE}).status_code == 403
    ok = c.post(url, json={"signature": SIGNATURE})
    assert ok.status_code == 200, ok.get_json()
    body = ok.get_json()
    assert body["status"] == "submitted" and body["signed"] is True and body["submitted_at"].endswith("Z")
    again = c.post(url, json={"signature": SIGNATURE})
    assert again.status_code == 409
    assert db.query(Interaction).filter_by(source="crm", external_id=f"visit:{visit['id']}").count() == 1
    hcps = db.scalars(select(InteractionParticipant.hcp_id).where(
        InteractionParticipant.interaction_id == body["interaction_id"])).all()
    assert sorted(hcps) == sorted([w.hcp.id, w.hcp2.id])
    # the group visit is on each participant's timeline
    for hcp_id in (w.hcp.id, w.hcp2.id):
        timeline = api(w.marketer).get(f"/api/v1/hcps/{hcp_id}/timeline").get_json()
        assert [i["id"] for i in timeline["items"]] == [body["interaction_id"]]


def test_signature_never_in_api_output_or_audit_in_clear(api, w, db):
    visit = create(api, w.rep, w.hcp.id, samples=[SAMPLE], signature=SIGNATURE).get_json()
    c = api(w.rep)
    payload = SIGNATURE[len("data:image/png;base64,"):]
    responses = [
        c.post(f"/api/v1/visits/{visit['id']}/submit", json={}),
        c.get(f"/api/v1/visits/{visit['id']}"),
        c.get("/api/v1/visits?mine=true"),
        api(w.compliance).get(f"/api/v1/hcps/{w.hcp.id}/timeline"),
    ]
    for resp in responses:
        assert resp.status_code == 200
        assert payload not in resp.get_data(as_text=True)
    audit_text = json.dumps([r.changes for r in db.scalars(select(AuditRecord))])
    assert payload not in audit_text and "[personal data withheld]" in audit_text
    trail = api(w.compliance).get(f"/api/v1/audit?entity=visit&entity_id={visit['id']}")
    assert trail.status_code == 200 and payload not in trail.get_data(as_text=True)


def test_amend_over_the_api(api, w, db):
    visit = create(api, w.rep, w.hcp.id).get_json()
    c = api(w.rep)
    c.post(f"/api/v1/visits/{visit['id']}/submit", json={})
    url = f"/api/v1/visits/{visit['id']}/amend"
    no_reason = c.post(url, json={"changes": {"duration_minutes": 30}})
    assert no_reason.status_code == 422 and "reason" in no_reason.get_json()["errors"]
    blank = c.post(url, json={"reason": "  ", "changes": {"duration_minutes": 30}})
    assert blank.status_code == 422 and "reason" in blank.get_json()["errors"]
    unknown = c.post(url, json={"reason": "x", "changes": {"status": "draft"}})
    assert unknown.status_code == 422 and "changes.status" in unknown.get_json()["errors"]
    assert api(w.rep2).post(url, json={"reason": "x", "changes": {"duration_minutes": 30}}).status_code == 403
    ok = c.post(url, json={"reason": "Duration was wrong", "changes": {"duration_minutes": 30}})
    assert ok.status_code == 201, ok.get_json()
    new = ok.get_json()
    assert new["amends_id"] == visit["id"] and new["amendment_reason"] == "Duration was wrong"
    assert new["status"] == "submitted" and new["duration_minutes"] == 30
    old = c.get(f"/api/v1/visits/{visit['id']}").get_json()
    assert old["amended_by_id"] == new["id"] and old["duration_minutes"] == 20
    old_item = db.get(Interaction, old["interaction_id"])
    assert old_item.superseded_by_id == new["interaction_id"]
    assert c.post(url, json={"reason": "again", "changes": {"duration_minutes": 40}}).status_code == 409
    # compliance sees both versions on the timeline; the rep sees the correction
    ids = [i["id"] for i in api(w.compliance).get(f"/api/v1/hcps/{w.hcp.id}/timeline").get_json()["items"]]
    assert set(ids) == {old["interaction_id"], new["interaction_id"]}
    ids = [i["id"] for i in c.get(f"/api/v1/hcps/{w.hcp.id}/timeline").get_json()["items"]]
    assert ids == [new["interaction_id"]]


def test_any_internal_role_reads_a_visit_medical_content_withheld(api, w):
    standard = create(api, w.rep, w.hcp.id).get_json()
    medical = create(api, w.medical, w.hcp.id, key_messages=["Renal dosing"], notes="Medical detail").get_json()
    for role in ("rep", "marketer", "call_centre", "medical", "compliance", "admin"):
        body = api(getattr(w, role)).get(f"/api/v1/visits/{standard['id']}").get_json()
        assert body["notes"] == "Asked about dosing" and body["redacted"] is False
    for role in ("rep", "marketer"):
        body = api(getattr(w, role)).get(f"/api/v1/visits/{medical['id']}").get_json()
        assert body["redacted"] is True and body["notes"] is None and body["key_messages"] == []
        assert body["redaction_reason"] == "Details restricted to Medical Affairs"
        assert body["occurred_at"] == medical["occurred_at"] and body["owner"]["role"] == "medical"
    for role in ("call_centre", "medical", "compliance", "admin"):
        body = api(getattr(w, role)).get(f"/api/v1/visits/{medical['id']}").get_json()
        assert body["redacted"] is False and body["key_messages"] == ["Renal dosing"]
    assert api(w.rep).get("/api/v1/visits/987654").status_code == 404


def test_list_my_drafts(api, w):
    mine = [create(api, w.rep, w.hcp.id).get_json() for _ in range(3)]
    create(api, w.rep2, w.hcp.id)
    c = api(w.rep)
    c.post(f"/api/v1/visits/{mine[0]['id']}/submit", json={})
    body = c.get("/api/v1/visits?mine=true&status=draft").get_json()
    assert sorted(v["id"] for v in body["items"]) == sorted(v["id"] for v in mine[1:])
    first = c.get("/api/v1/visits?mine=true&limit=2").get_json()
    rest = c.get(f"/api/v1/visits?mine=true&limit=2&cursor={first['next_cursor']}").get_json()
    assert len(first["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert c.get("/api/v1/visits?status=lost").status_code == 422
    assert c.get("/api/v1/visits?cursor=garbage").status_code == 422
    everyone = api(w.marketer).get(f"/api/v1/visits?hcp_id={w.hcp.id}").get_json()
    assert len(everyone["items"]) == 4


def test_visits_are_in_the_openapi_document(api, w):
    spec = api(w.rep).get("/api/v1/openapi.json").get_json()
    assert {"post", "get"} <= set(spec["paths"]["/api/v1/visits"])
    assert {"get", "patch"} <= set(spec["paths"]["/api/v1/visits/{visit_id}"])
    assert "post" in spec["paths"]["/api/v1/visits/{visit_id}/submit"]
    assert "post" in spec["paths"]["/api/v1/visits/{visit_id}/amend"]


def test_full_reads_of_medical_visits_are_logged_writes_are_not(api, w, db):
    from crm.timeline.models import SensitiveRead

    visit = create(api, w.medical, w.hcp.id).get_json()
    api(w.medical).post(f"/api/v1/visits/{visit['id']}/submit", json={})
    assert db.query(SensitiveRead).count() == 0
    api(w.rep).get(f"/api/v1/visits/{visit['id']}")  # existence level: nothing read, nothing logged
    assert db.query(SensitiveRead).count() == 0
    api(w.compliance).get(f"/api/v1/visits/{visit['id']}")
    api(w.medical2).get("/api/v1/visits?status=submitted")
    rows = db.query(SensitiveRead).order_by(SensitiveRead.id).all()
    assert [(r.viewer_id, r.what, r.hcp_id, r.sensitivity) for r in rows] == [
        (w.compliance.id, "visit", w.hcp.id, "medical"), (w.medical2.id, "visit", w.hcp.id, "medical")]
    assert rows[0].interaction_id is not None
