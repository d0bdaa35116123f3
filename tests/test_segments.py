"""Segments (issue 12 item 1): saved HCP filters with a tier, written by marketers, read by everyone, and the
one filter builder behind campaign audiences."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.campaigns import services as campaigns
from crm.segments.filters import HcpFilter, filter_where, matching_ids
from tests.campaigns_support import make_template, viewer_of

ROLES = ("field_rep", "marketer", "call_centre", "medical", "compliance", "admin")


@pytest.fixture
def people(factory):
    return {role: factory.user(role) for role in ROLES}


@pytest.fixture
def hcps(factory):
    north, west = factory.territory("SG-N"), factory.territory("SG-W")
    return {
        "a_gp_north": factory.hcp(north, tier="A", profession="gp", tags="kol"),
        "b_gp_west": factory.hcp(west, tier="B", profession="gp"),
        "a_cardio_west": factory.hcp(west, tier="A", profession="specialist", specialty="Cardiology",
                                     tags="kol,new-prescriber"),
        "untiered": factory.hcp(north, profession="gp"),
        "a_inactive": factory.hcp(north, tier="A", status="inactive"),
    }


def test_a_marketer_saves_a_segment_and_it_counts_active_hcps_by_tier(api, db, people, hcps):
    resp = api(people["marketer"]).post("/api/v1/segments", json={"name": "Tier A", "tiers": ["A"]})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["tiers"] == ["A"] and body["hcp_count"] == 2  # the inactive tier-A HCP is nobody's segment
    assert body["created_by"]["id"] == people["marketer"].id
    record = db.scalar(select(AuditRecord).where(AuditRecord.action == "segment.create"))
    assert record.entity_id == str(body["id"])


@pytest.mark.parametrize(("criteria", "expected"), [
    ({"professions": ["gp"], "tiers": ["A", "B"]}, {"a_gp_north", "b_gp_west"}),
    ({"territory_codes": ["SG-W"]}, {"b_gp_west", "a_cardio_west"}),
    ({"tags": ["kol"], "territory_codes": ["SG-W"]}, {"a_cardio_west"}),
    ({"specialties": ["cardiology"]}, {"a_cardio_west"}),
    ({"tags": ["new-prescriber"]}, {"a_cardio_west"}),
])
def test_criteria_combine_with_and_values_with_or(db, hcps, criteria, expected):
    ids = matching_ids(db, filter_where(HcpFilter.of(criteria)))
    assert set(ids) == {hcps[k].id for k in expected}


def test_no_criterion_matches_nobody(db, hcps):
    assert filter_where(HcpFilter()) is None and matching_ids(db, None) == []


@pytest.mark.parametrize("role", [r for r in ROLES if r != "marketer"])
def test_only_marketers_write_segments(api, people, role):
    resp = api(people[role]).post("/api/v1/segments", json={"name": "X", "tiers": ["A"]})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "segment.write:role"


@pytest.mark.parametrize("role", ROLES)
def test_everyone_reads_segments(api, db, people, hcps, role):
    created = api(people["marketer"]).post("/api/v1/segments", json={"name": "GPs", "professions": ["gp"]})
    seg_id = created.get_json()["id"]
    client = api(people[role])
    assert client.get(f"/api/v1/segments/{seg_id}").get_json()["hcp_count"] == 3
    assert seg_id in [s["id"] for s in client.get("/api/v1/segments").get_json()["items"]]


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "Nothing"}, "segment"),
    ({"name": "X", "territory_codes": ["NOPE"]}, "territory_codes"),
    ({"name": "X", "tiers": ["Z"]}, "tiers"),
    ({"name": "X", "professions": ["surgeon"]}, "professions"),
    ({"name": "  ", "tiers": ["A"]}, "name"),
    ({"name": "X\x00", "tiers": ["A"]}, "name"),
    ({"name": "X", "tiers": ["A"], "colour": "red"}, "colour"),
    ({"name": "X", "tags": "kol"}, "tags"),
])
def test_bad_segments_are_422_with_the_field(api, people, hcps, body, field):
    resp = api(people["marketer"]).post("/api/v1/segments", json=body)
    assert resp.status_code == 422, resp.get_json()
    assert any(key.split(".")[0] == field for key in resp.get_json()["errors"])


def test_a_name_in_use_is_409_and_unknown_ids_are_404(api, people, hcps):
    client = api(people["marketer"])
    assert client.post("/api/v1/segments", json={"name": "Dup", "tiers": ["A"]}).status_code == 201
    assert client.post("/api/v1/segments", json={"name": "Dup", "tiers": ["B"]}).status_code == 409
    assert client.get("/api/v1/segments/2147483647").status_code == 404
    assert client.get("/api/v1/segments/99999999999999999999").status_code == 404
    assert client.post("/api/v1/segments", data="{", content_type="application/json").status_code == 400


def test_a_campaign_on_a_segment_follows_the_segment(api, db, people, hcps, factory):
    """The audience names the segment: an HCP that becomes tier A later is in it at the next read."""
    marketer = people["marketer"]
    seg = api(marketer).post("/api/v1/segments", json={"name": "Tier A", "tiers": ["A"]}).get_json()
    template = make_template(db, marketer)
    resp = api(marketer).post("/api/v1/campaigns", json={"name": "A-list", "template_id": template.id,
                                                         "segment_id": seg["id"]})
    assert resp.status_code == 201, resp.get_json()
    campaign = campaigns.get_campaign(db, resp.get_json()["id"])
    assert campaign.audience.segment_id == seg["id"]
    assert set(campaigns.audience_hcp_ids(db, campaign.audience)) == {hcps["a_gp_north"].id,
                                                                      hcps["a_cardio_west"].id}
    hcps["untiered"].tier = "A"
    db.flush()
    assert hcps["untiered"].id in campaigns.audience_hcp_ids(db, campaign.audience)
    assert campaigns.audience_size(db, campaign.audience) == 3


def test_an_audience_takes_a_segment_or_criteria_not_both(api, db, people, hcps):
    marketer = people["marketer"]
    seg = api(marketer).post("/api/v1/segments", json={"name": "Tier B", "tiers": ["B"]}).get_json()
    both = api(marketer).post("/api/v1/audiences", json={"name": "x", "segment_id": seg["id"],
                                                         "professions": ["gp"]})
    assert both.status_code == 422 and "segment_id" in both.get_json()["errors"]
    unknown = api(marketer).post("/api/v1/audiences", json={"name": "x", "segment_id": 2147483647})
    assert unknown.status_code == 422 and "segment_id" in unknown.get_json()["errors"]
    ok = api(marketer).post("/api/v1/audiences", json={"name": "B plus one", "segment_id": seg["id"],
                                                       "hcp_ids": [hcps["untiered"].id]})
    assert ok.status_code == 201 and ok.get_json()["segment_id"] == seg["id"]
    audience = campaigns.get_audience(db, ok.get_json()["id"])
    assert set(campaigns.audience_hcp_ids(db, audience)) == {hcps["b_gp_west"].id, hcps["untiered"].id}
    template = make_template(db, marketer)
    two = api(marketer).post("/api/v1/campaigns", json={"name": "x", "template_id": template.id,
                                                        "segment_id": seg["id"], "audience_id": audience.id})
    assert two.status_code == 422


def test_audience_criteria_still_select_as_before(db, people, hcps):
    """The extracted filter builder keeps the audiences' meaning: criteria AND, explicit ids added."""
    marketer = people["marketer"]
    audience = campaigns.create_audience(db, marketer, viewer_of(marketer), {
        "name": "West GPs", "professions": ["gp"], "territory_codes": ["SG-W"], "hcp_ids": [hcps["a_inactive"].id]})
    assert set(campaigns.audience_hcp_ids(db, audience)) == {hcps["b_gp_west"].id, hcps["a_inactive"].id}


def test_hcp_tier_in_the_api(api, db, people, factory):
    territory = factory.territory()
    admin = people["admin"]
    created = api(admin).post("/api/v1/hcps", json={"first_name": "T", "last_name": "Ier", "profession": "gp",
                                                    "territory": territory.code, "tier": "B"})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["tier"] == "B"
    patched = api(admin).patch(f"/api/v1/hcps/{body['id']}", json={"version": body["version"], "tier": None})
    assert patched.status_code == 200 and patched.get_json()["tier"] is None
    bad = api(admin).patch(f"/api/v1/hcps/{body['id']}", json={"version": patched.get_json()["version"],
                                                                "tier": "Z"})
    assert bad.status_code == 422 and "tier" in bad.get_json()["errors"]
    record = db.scalars(select(AuditRecord).where(AuditRecord.action == "hcp.update")).all()[-1]
    assert record.changes["tier"] == {"before": "B", "after": None}


def test_segment_pages(client, auth, db, people, hcps):
    auth.login(people["marketer"])
    token = auth.csrf_token("/segments")
    resp = client.post("/segments", data={"csrf_token": token, "name": "West A", "tiers": ["A"],
                                          "territory_codes": ["SG-W"]})
    assert resp.status_code == 303
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "West A" in page and "Tiers" in page and "/glossary#term-segment" in page
    bad = client.post("/segments", data={"csrf_token": token, "name": "Empty"})
    assert bad.status_code == 422 and "choose at least one criterion" in bad.get_data(as_text=True)
    dup = client.post("/segments", data={"csrf_token": token, "name": "West A", "tiers": ["B"]})
    assert dup.status_code == 409
    auth.logout()
    auth.login(people["field_rep"])
    listing = client.get("/segments").get_data(as_text=True)
    assert "West A" in listing and "New segment" not in listing
    assert client.post("/segments", data={"csrf_token": auth.csrf_token("/segments"), "name": "R",
                                          "tiers": ["A"]}).status_code == 403
