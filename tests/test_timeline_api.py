"""The timeline, feed, item and fatigue endpoints: filters, paging, errors and redaction per role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crm.timeline.models import SensitiveRead
from crm.timeline.services import record_interaction
from tests.conftest import ROLES, days_ago, utc

CONTENT = {
    "standard": ("Detailed SKU-A efficacy data", {"key_messages": ["efficacy"]}),
    "medical": ("Asked about renal dosing", {"question": "renal dosing"}),
    "pv": ("Patient reported a rash after SKU-A", {"reaction": "rash"}),
}
EXPECTED_REASON = {"medical": "Details restricted to Medical Affairs", "pv": "Details restricted to Pharmacovigilance"}
FULL_ROLES = {"call_centre", "medical", "compliance", "admin"}


def rec(db, hcps, at, channel="visit", kind=None, actor=None, **kw):
    ids = [h.id for h in hcps] if isinstance(hcps, list) else [hcps.id]
    item, _ = record_interaction(db, actor, hcp_ids=ids, occurred_at=at, channel=channel,
                                 kind=kind or f"{channel}.submitted", **kw)
    return item


@pytest.fixture
def sensitive_timeline(db, factory):
    """One HCP with a standard visit, a medical inquiry and an adverse event."""
    rep, agent = factory.user("field_rep"), factory.user("call_centre")
    h = factory.hcp()
    items = {
        "standard": rec(db, h, utc(2026, 1, 1, 9), actor=rep, summary=CONTENT["standard"][0],
                        details=CONTENT["standard"][1], products=["SKU-A"]),
        "medical": rec(db, h, utc(2026, 1, 2, 9), channel="call_centre", kind="call_centre.medical_inquiry",
                       actor=agent, summary=CONTENT["medical"][0], details=CONTENT["medical"][1],
                       sensitivity="medical", products=["SKU-A"]),
        "pv": rec(db, h, utc(2026, 1, 3, 9), channel="call_centre", kind="call_centre.adverse_event",
                  actor=agent, summary=CONTENT["pv"][0], details=CONTENT["pv"][1], sensitivity="pv",
                  products=["SKU-A"]),
    }
    return h, items, agent


@pytest.mark.parametrize("role", ROLES)
def test_redaction_per_role_and_sensitivity(role, api, factory, db, sensitive_timeline):
    h, items, agent = sensitive_timeline
    resp = api(factory.user(role)).get(f"/api/v1/hcps/{h.id}/timeline")
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"items", "next_cursor"} and body["next_cursor"] is None
    got = {i["sensitivity"]: i for i in body["items"]}
    assert [i["id"] for i in body["items"]] == [items["pv"].id, items["medical"].id, items["standard"].id]
    for sensitivity, item in got.items():
        full = sensitivity == "standard" or role in FULL_ROLES
        assert item["redacted"] is (not full), (role, sensitivity)
        assert item["visibility"]["level"] == ("full" if full else "existence")
        assert item["visibility"]["rule"] and item["visibility"]["reason"]
        if full:
            assert item["summary"] == CONTENT[sensitivity][0]
            assert item["details"] == CONTENT[sensitivity][1]
            assert item["products"] == ["SKU-A"]
            assert item["redaction_reason"] is None
        else:
            assert item["summary"] == "" and item["details"] == {} and item["products"] == []
            assert item["redaction_reason"] == EXPECTED_REASON[sensitivity]
            assert CONTENT[sensitivity][0] not in resp.get_data(as_text=True)


def test_existence_items_keep_date_channel_kind_owner_role_and_reason(api, factory, sensitive_timeline):
    h, items, agent = sensitive_timeline
    body = api(factory.user("marketer")).get(f"/api/v1/hcps/{h.id}/timeline?channel=call_centre").get_json()
    pv = body["items"][0]
    assert pv == {
        "id": items["pv"].id, "hcp_ids": [h.id], "occurred_at": "2026-01-03T09:00:00Z", "channel": "call_centre",
        "kind": "call_centre.adverse_event", "source": "crm", "summary": "",
        "owner": {"id": agent.id, "name": agent.name, "role": "call_centre"}, "products": [], "details": {},
        "sensitivity": "pv", "redacted": True, "redaction_reason": "Details restricted to Pharmacovigilance",
        "consent_gap": False, "supersedes": None, "superseded_by": None,
        "visibility": {"level": "existence", "rule": "pv-restricted",
                       "reason": "Details restricted to Pharmacovigilance"},
    }


@pytest.mark.parametrize("role", ["medical", "compliance"])
def test_full_reads_of_medical_and_pv_items_are_logged(role, api, factory, db, sensitive_timeline):
    h, items, _agent = sensitive_timeline
    reader = factory.user(role)
    assert api(reader).get(f"/api/v1/hcps/{h.id}/timeline").status_code == 200
    rows = db.scalars(select(SensitiveRead).where(SensitiveRead.viewer_id == reader.id)).all()
    assert sorted((r.interaction_id, r.sensitivity, r.hcp_id) for r in rows) == sorted(
        [(items["medical"].id, "medical", h.id), (items["pv"].id, "pv", h.id)]
    )
    assert all(r.what == "interaction" and r.occurred_at is not None for r in rows)


@pytest.mark.parametrize("role", ["field_rep", "marketer"])
def test_existence_only_reads_are_not_logged(role, api, factory, db, sensitive_timeline):
    h, _items, _agent = sensitive_timeline
    reader = factory.user(role)
    c = api(reader)
    assert c.get(f"/api/v1/hcps/{h.id}/timeline").status_code == 200
    assert c.get("/api/v1/interactions").status_code == 200
    assert db.scalars(select(SensitiveRead).where(SensitiveRead.viewer_id == reader.id)).all() == []


def test_single_item_is_redacted_explained_and_logged(api, factory, db, sensitive_timeline):
    h, items, _agent = sensitive_timeline
    marketer, medical = factory.user("marketer"), factory.user("medical")
    resp = api(marketer).get(f"/api/v1/interactions/{items['medical'].id}")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["redacted"] and body["summary"] == "" and body["visibility"]["rule"] == "medical-firewall"
    body = api(medical).get(f"/api/v1/interactions/{items['pv'].id}").get_json()
    assert body["summary"] == CONTENT["pv"][0] and body["visibility"]["level"] == "full"
    logged = db.scalars(select(SensitiveRead).where(SensitiveRead.viewer_id == medical.id)).all()
    assert [(r.interaction_id, r.hcp_id) for r in logged] == [(items["pv"].id, h.id)]
    assert api(marketer).get("/api/v1/interactions/999999").status_code == 404


def test_repeated_channel_and_kind_and_product_and_owner(api, factory, db):
    rep = factory.user("field_rep")
    h = factory.hcp()
    v = rec(db, h, utc(2026, 1, 1), actor=rep, products=["SKU-A"])
    e = rec(db, h, utc(2026, 1, 2), channel="email", kind="email.opened", source="esp")
    c = rec(db, h, utc(2026, 1, 3), channel="email", kind="email.clicked", source="esp", products=["SKU-B"])
    o = rec(db, h, utc(2026, 1, 4), channel="order", kind="order.shipped", source="erp")
    client = api(factory.user("marketer"))

    def ids(query):
        resp = client.get(f"/api/v1/hcps/{h.id}/timeline?{query}")
        assert resp.status_code == 200, resp.get_json()
        return [i["id"] for i in resp.get_json()["items"]]

    assert ids("channel=visit&channel=order") == [o.id, v.id]
    assert ids("kind=email.opened&kind=email.clicked") == [c.id, e.id]
    assert ids("product=SKU-A&product=SKU-B") == [c.id, v.id]
    assert ids(f"owner={rep.id}") == [v.id]
    assert ids("since=2026-01-02T00:00:00Z&until=2026-01-04T00:00:00Z") == [c.id, e.id]
    # An offset is converted to UTC: 2026-01-02T01:00+01:00 is 2026-01-02T00:00Z (inclusive).
    assert ids("since=2026-01-02T01:00:00%2B01:00&until=2026-01-03T00:00:00Z") == [e.id]


def test_paging_through_the_api_returns_every_item_once(api, factory, db):
    h = factory.hcp()
    made = {rec(db, h, utc(2026, 1, 1) + timedelta(minutes=n // 4)).id for n in range(120)}
    client = api(factory.user("field_rep"))
    seen, cursor, pages = [], None, 0
    while True:
        url = f"/api/v1/hcps/{h.id}/timeline?limit=50" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url).get_json()
        pages += 1
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 120 and set(seen) == made


@pytest.mark.parametrize("query, field", [
    ("cursor=garbage!!", "cursor"),
    ("cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwWiIsInNldmVuIl0", "cursor"),  # ["2026-01-01T00:00:00Z","seven"]
    ("since=2026-01-01T00:00:00", "since"),
    ("until=2026-01-01", "until"),
    ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ("channel=fax", "channel"),
    ("limit=0", "limit"),
    ("limit=201", "limit"),
    ("owner=abc", "owner"),
])
def test_bad_query_is_422(query, field, api, factory):
    h = factory.hcp()
    client = api(factory.user("marketer"))
    for url in (f"/api/v1/hcps/{h.id}/timeline?{query}", f"/api/v1/interactions?{query}"):
        resp = client.get(url)
        assert resp.status_code == 422, url
        assert resp.mimetype == "application/problem+json"
        assert field in "".join(resp.get_json()["errors"]), resp.get_json()


def test_unknown_hcp_is_404_and_no_token_is_401(api, client, factory):
    c = api(factory.user("marketer"))
    for url in ("/api/v1/hcps/999999/timeline", "/api/v1/hcps/999999/fatigue"):
        resp = c.get(url)
        assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    assert client.get("/api/v1/interactions").status_code == 401
    assert client.get("/api/v1/hcps/1/timeline").status_code == 401


def test_fatigue_endpoint(api, factory, db):
    rep = factory.user("field_rep")
    h = factory.hcp()
    rec(db, h, days_ago(3), actor=rep)
    rec(db, h, days_ago(40), actor=rep)
    rec(db, h, days_ago(1), channel="consent", kind="consent.granted")
    body = api(factory.user("marketer")).get(f"/api/v1/hcps/{h.id}/fatigue").get_json()
    visit = next(r for r in body["by_channel"] if r["channel"] == "visit")
    assert (visit["last_30_days"], visit["last_90_days"]) == (1, 2)
    assert body["touches"] == {"last_30_days": 1, "last_90_days": 2}
    assert body["by_department"] == [{"department": "field_rep", "label": "Field force", "last_30_days": 1,
                                      "last_90_days": 2}]
    assert [r["channel"] for r in body["last_by_channel"]] == ["consent", "visit"]
    assert body["as_of"].endswith("Z")


def test_feed_filters_and_redaction(api, factory, db):
    north, south = factory.territory(), factory.territory()
    a = factory.hcp(territory=north, profession="gp")
    b = factory.hcp(territory=south, profession="nurse", specialty="Oncology")
    va = rec(db, a, utc(2026, 4, 1), products=["SKU-A"])
    vb = rec(db, b, utc(2026, 4, 2), channel="call_centre", kind="call_centre.adverse_event", sensitivity="pv",
             summary="rash")
    client = api(factory.user("marketer"))

    def ids(query):
        resp = client.get(f"/api/v1/interactions?since=2026-04-01T00:00:00Z&until=2026-04-03T00:00:00Z&{query}")
        assert resp.status_code == 200, resp.get_json()
        return [i["id"] for i in resp.get_json()["items"]]

    assert ids("") == [vb.id, va.id]
    assert ids(f"territory={north.code}") == [va.id]
    assert ids(f"territory={south.code}") == [vb.id]
    assert ids("profession=nurse") == [vb.id]
    assert ids("profession=gp&territory=" + south.code) == []
    assert ids("specialty=oncology") == [vb.id]
    assert ids("product=SKU-A") == [va.id]
    assert ids("channel=visit") == [va.id]
    item = client.get(f"/api/v1/interactions?territory={south.code}").get_json()["items"][0]
    assert item["redacted"] and item["summary"] == "" and item["hcp_ids"] == [b.id]
    assert client.get("/api/v1/interactions?profession=dentist").status_code == 422


def test_endpoints_are_in_the_openapi_document(api, factory):
    spec = api(factory.user("admin")).get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/hcps/{hcp_id}/timeline", "/api/v1/hcps/{hcp_id}/fatigue", "/api/v1/interactions",
                 "/api/v1/interactions/{interaction_id}"):
        assert "get" in spec["paths"][path], path
    params = {p["name"] for p in spec["paths"]["/api/v1/interactions"]["get"]["parameters"]}
    assert {"channel", "kind", "product", "territory", "profession", "specialty", "since", "until", "limit",
            "cursor"} <= params
