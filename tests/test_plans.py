"""Engagement plans and their attainment (issue 12 item 2): every counting rule of the touch table, the
breakdowns, who writes and who reads, bad input, the pages and the command line."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.db import utcnow
from crm.plans import services
from crm.plans.attainment import attainment, attainment_totals
from crm.products.models import Product
from crm.timeline.services import record_interaction
from tests.campaigns_support import viewer_of

ROLES = ("field_rep", "marketer", "call_centre", "medical", "compliance", "admin")
START, END = date(2026, 1, 1), date(2026, 3, 31)
MID = datetime(2026, 2, 15, 12, tzinfo=UTC)


@pytest.fixture
def world(db, factory):
    north, west = factory.territory("PL-N", "North"), factory.territory("PL-W", "West")
    db.add(Product(sku="CARD-10", name="Cardiozol 10 mg", active=True))
    db.add(Product(sku="ONCO-1", name="Oncorex", active=True))
    db.flush()
    people = {role: factory.user(role, territories=[north] if role == "field_rep" else []) for role in ROLES}
    people["west_rep"] = factory.user("field_rep", territories=[west])
    h1, h2 = factory.hcp(north, tier="A"), factory.hcp(north, tier="B")
    h3 = factory.hcp(west, tier="A")
    return {"north": north, "west": west, "people": people, "h1": h1, "h2": h2, "h3": h3}


def plan_of(db, world, **data):
    marketer = world["people"]["marketer"]
    body = {"name": "Q1 plan", "cycle_start": START, "cycle_end": END, "territory_codes": ["PL-N"],
            "channel_goals": {"visit": 2}, "product_goals": [], "targets": []}
    body.update(data)
    return services.create_plan(db, marketer, viewer_of(marketer), body)


def touch(db, world, hcps, kind, when=MID, **kw):
    actor = kw.pop("actor", world["people"]["field_rep"])
    item, _ = record_interaction(db, actor, hcp_ids=[h.id for h in hcps], occurred_at=when,
                                 channel=kind.split(".")[0], kind=kind, **kw)
    return item


def row(result, channel):
    return next(c for c in result["channels"] if c["channel"] == channel)


# -- the touch table: what counts, per channel ------------------------------------------------------

@pytest.mark.parametrize(("kind", "channel", "counts"), [
    ("visit.submitted", "visit", True),
    ("email.delivered", "email", True),
    ("email.sent", "email", False),
    ("email.opened", "email", False),
    ("email.bounced", "email", False),
    ("event.attended", "event", True),
    ("event.invited", "event", False),
    ("event.registered", "event", False),
    ("event.no_show", "event", False),
    ("call_centre.product_information", "call_centre", True),
    ("call_centre.complaint", "call_centre", True),
    ("call_centre.medical_answer", "call_centre", False),
    ("survey.answered", "survey", True),
    ("survey.sent", "survey", False),
    ("order.submitted", "order", False),
    ("consent.granted", "consent", False),
])
def test_what_counts_as_a_touch(db, world, kind, channel, counts):
    plan = plan_of(db, world)
    touch(db, world, [world["h1"]], kind)
    result = attainment(db, plan, now=MID)
    touches = sum(c["touches"] for c in result["channels"])
    assert touches == (1 if counts else 0)
    if counts:
        assert row(result, channel)["touches"] == 1 and row(result, channel)["reach"] == 1


def test_restricted_items_count_and_their_content_never_shows(db, world):
    plan = plan_of(db, world, channel_goals={"call_centre": 1, "visit": 1})
    touch(db, world, [world["h1"]], "call_centre.medical_inquiry", sensitivity="medical",
          summary="ZQX medical question", actor=world["people"]["call_centre"])
    touch(db, world, [world["h2"]], "call_centre.adverse_event", sensitivity="pv", summary="ZQX side effect",
          actor=world["people"]["call_centre"])
    touch(db, world, [world["h2"]], "visit.submitted", sensitivity="medical", summary="ZQX msl notes",
          actor=world["people"]["medical"])
    result = attainment(db, plan, now=MID)
    assert row(result, "call_centre")["touches"] == 2 and row(result, "visit")["touches"] == 1
    assert "ZQX" not in json.dumps(result, default=str)


def test_the_cycle_counts_its_first_and_last_day_only(db, world):
    plan = plan_of(db, world, channel_goals={"visit": 10})
    for when in (datetime(2025, 12, 31, 23, 59, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
                 datetime(2026, 3, 31, 23, 59, tzinfo=UTC), datetime(2026, 4, 1, 0, 0, tzinfo=UTC)):
        touch(db, world, [world["h1"]], "visit.submitted", when=when)
    assert row(attainment(db, plan, now=MID), "visit")["touches"] == 2


def test_a_corrected_item_counts_once(db, world):
    plan = plan_of(db, world)
    original = touch(db, world, [world["h1"]], "visit.submitted")
    correction = touch(db, world, [world["h1"]], "visit.submitted", supersedes=original)
    touch(db, world, [world["h1"]], "visit.submitted", supersedes=correction)
    assert row(attainment(db, plan, now=MID), "visit")["touches"] == 1


def test_a_group_item_is_a_touch_for_each_participant(db, world):
    plan = plan_of(db, world)
    touch(db, world, [world["h1"], world["h2"]], "event.attended")
    result = attainment(db, plan, now=MID)
    assert row(result, "event")["touches"] == 2 and row(result, "event")["reach"] == 2


def test_only_hcps_on_the_plan_count(db, world):
    plan = plan_of(db, world)  # North only
    touch(db, world, [world["h3"]], "visit.submitted")
    result = attainment(db, plan, now=MID)
    assert result["totals"]["hcps"] == 2 and result["totals"]["touches"] == 0


# -- the arithmetic ---------------------------------------------------------------------------------

def test_attainment_caps_each_hcp_at_the_goal_reach_and_frequency(db, world):
    plan = plan_of(db, world, channel_goals={"visit": 2})
    for _ in range(3):
        touch(db, world, [world["h1"]], "visit.submitted")
    result = attainment(db, plan, now=datetime(2026, 4, 2, tzinfo=UTC))
    visit = row(result, "visit")
    assert (visit["planned"], visit["touches"], visit["attained"], visit["attainment_pct"]) == (4, 3, 2, 50.0)
    assert (visit["reach"], visit["frequency"]) == (1, 3.0)
    totals = result["totals"]
    assert totals["hcps"] == 2 and totals["reach_rate_pct"] == 50.0 and totals["behind"] == 1
    assert row(result, "email")["attainment_pct"] is None  # nothing planned


def test_who_is_behind_follows_the_time_gone_by(db, world):
    plan = plan_of(db, world, channel_goals={"visit": 2})
    touch(db, world, [world["h1"]], "visit.submitted", when=datetime(2026, 1, 5, tzinfo=UTC))
    assert attainment(db, plan, now=datetime(2026, 1, 1, 6, tzinfo=UTC))["totals"]["behind"] == 0
    assert attainment(db, plan, now=datetime(2026, 2, 10, tzinfo=UTC))["totals"]["behind"] == 0  # < half
    mid = attainment(db, plan, now=MID)  # past half the cycle: one of two visits due
    behind = {h["hcp_id"]: h["behind"] for h in mid["hcps"]}
    assert behind == {world["h1"].id: False, world["h2"].id: True}
    assert mid["hcps"][0]["hcp_id"] == world["h2"].id  # those behind come first
    after = attainment(db, plan, now=datetime(2026, 5, 1, tzinfo=UTC))
    assert after["elapsed_pct"] == 100.0 and after["totals"]["behind"] == 2


def test_targets_have_own_goals_and_are_on_the_plan_whatever_the_scope(db, world):
    plan = plan_of(db, world, channel_goals={"visit": 2},
                   targets=[{"hcp_id": world["h1"].id, "goals": {"visit": 5}},
                            {"hcp_id": world["h3"].id, "goals": {}}])
    result = attainment(db, plan, now=MID)
    goals = {h["hcp_id"]: h["goals"] for h in result["hcps"]}
    assert goals == {world["h1"].id: {"visit": 5}, world["h2"].id: {"visit": 2}, world["h3"].id: {"visit": 2}}
    assert row(result, "visit")["planned"] == 9


def test_a_segment_scope_within_territories(api, db, world):
    marketer = world["people"]["marketer"]
    seg = api(marketer).post("/api/v1/segments", json={"name": "Tier A", "tiers": ["A"]}).get_json()
    both = plan_of(db, world, segment_id=seg["id"], territory_codes=["PL-N"])
    assert {h["hcp_id"] for h in attainment(db, both, now=MID)["hcps"]} == {world["h1"].id}
    segment_only = plan_of(db, world, name="A everywhere", segment_id=seg["id"], territory_codes=[])
    assert {h["hcp_id"] for h in attainment(db, segment_only, now=MID)["hcps"]} == {world["h1"].id, world["h3"].id}


def test_products_territories_and_reps(db, world):
    plan = plan_of(db, world, territory_codes=["PL-N", "PL-W"], channel_goals={"visit": 1, "email": 1},
                   product_goals=[{"sku": "CARD-10", "channel": "visit", "touches": 1}])
    rep, west_rep = world["people"]["field_rep"], world["people"]["west_rep"]
    touch(db, world, [world["h1"]], "visit.submitted", products=["CARD-10"], actor=rep)
    touch(db, world, [world["h2"]], "visit.submitted", products=["ONCO-1"], actor=rep)
    touch(db, world, [world["h3"]], "visit.submitted", products=["CARD-10"], actor=west_rep)
    touch(db, world, [world["h3"]], "email.delivered", actor=None, source="esp")
    result = attainment(db, plan, now=MID)
    (product,) = result["products"]
    assert (product["sku"], product["planned"], product["touches"], product["reach"]) == ("CARD-10", 3, 2, 2)
    territories = {t["code"]: t for t in result["territories"]}
    assert territories["PL-N"]["hcps"] == 2 and territories["PL-N"]["touches"] == 2
    assert territories["PL-W"]["attainment_pct"] == 100.0
    west_email = next(c for c in territories["PL-W"]["channels"] if c["channel"] == "email")
    assert (west_email["planned"], west_email["touches"]) == (1, 1)
    reps = {r["user_id"]: r for r in result["reps"]}
    assert reps[rep.id]["touches"] == 2 and reps[rep.id]["reach"] == 2 and reps[rep.id]["channels"] == {"visit": 2}
    assert reps[None]["role"] == "system" and reps[None]["touches"] == 1
    mine = attainment(db, plan, territory_ids=[world["west"].id], now=MID)
    assert mine["totals"]["hcps"] == 1 and mine["territories_filter"] == ["PL-W"]


KINDS = ("visit.submitted", "email.delivered", "email.sent", "event.attended", "event.invited",
         "call_centre.complaint", "call_centre.medical_answer", "survey.answered", "order.submitted")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_totals_summed_in_sql_are_the_attainment_totals(api, db, factory, world, seed):
    """``attainment_totals`` (SQL, used by the insights) gives the same totals as ``attainment`` (Python)
    on a random population: targets with own goals (0, more, none), group items, corrections, items
    outside the cycle and kinds that are no touch, a segment scope, several points in the cycle."""
    rng = random.Random(seed)
    for _ in range(14):
        factory.hcp(rng.choice([world["north"], world["west"]]), tier=rng.choice("ABC"))
    from crm.hcps.models import HCP
    hcps = list(db.scalars(select(HCP).order_by(HCP.id)))
    for _ in range(60):
        kind = rng.choice(KINDS)
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(-240, 24 * 100))
        item = touch(db, world, rng.sample(hcps, rng.choice([1, 1, 2, 3])), kind, when=when)
        if rng.random() < 0.15:
            touch(db, world, [h for h in hcps if h.id in {p.hcp_id for p in item.participants}], kind,
                  when=when, supersedes=item)
    marketer = world["people"]["marketer"]
    seg = api(marketer).post("/api/v1/segments", json={"name": f"Tier A {seed}", "tiers": ["A"]}).get_json()
    targets = [{"hcp_id": h.id, "goals": {c: rng.randrange(0, 4) for c in rng.sample(["visit", "email", "event"], 2)}}
               for h in rng.sample(hcps, 5)] + [{"hcp_id": rng.choice(hcps).id, "goals": {}}]
    targets = list({t["hcp_id"]: t for t in targets}.values())
    plans = [
        plan_of(db, world, name="by territory", channel_goals={"visit": 2, "email": 3, "survey": 1},
                territory_codes=["PL-N", "PL-W"], targets=targets),
        plan_of(db, world, name="by segment", segment_id=seg["id"], territory_codes=[],
                channel_goals={"visit": 1, "call_centre": 2, "event": 1}),
        plan_of(db, world, name="targets only", territory_codes=[], channel_goals={"email": 2}, targets=targets),
    ]
    for plan in plans:
        for now in (datetime(2025, 12, 1, tzinfo=UTC), MID, datetime(2026, 3, 1, 7, tzinfo=UTC),
                    datetime(2026, 6, 1, tzinfo=UTC)):
            full, summed = attainment(db, plan, now=now), attainment_totals(db, plan, now=now)
            assert summed["totals"] == full["totals"], (plan.name, now)
            assert summed["elapsed_pct"] == full["elapsed_pct"]
    assert any(attainment(db, p, now=MID)["totals"]["touches"] for p in plans)


# -- writing: who, and bad input ----------------------------------------------------------------------

def body(world, **kw):
    out = {"name": "Q1", "cycle_start": "2026-01-01", "cycle_end": "2026-03-31", "territory_codes": ["PL-N"],
           "channel_goals": {"visit": 2, "email": 3}}
    out.update(kw)
    return out


def test_a_marketer_creates_a_plan(api, db, world):
    resp = api(world["people"]["marketer"]).post("/api/v1/engagement-plans", json=body(
        world, product_goals=[{"sku": "CARD-10", "channel": "visit", "touches": 1}],
        targets=[{"hcp_id": world["h3"].id, "goals": {"visit": 4}}]))
    assert resp.status_code == 201, resp.get_json()
    plan = resp.get_json()
    assert plan["channel_goals"] == {"visit": 2, "email": 3} and plan["territories"] == [{"code": "PL-N",
                                                                                          "name": "North"}]
    assert plan["targets"] == [{"hcp_id": world["h3"].id, "goals": {"visit": 4}}]
    assert plan["glossary_url"].startswith("/glossary#")
    assert db.scalar(select(AuditRecord).where(AuditRecord.action == "plan.create")).entity_id == str(plan["id"])


@pytest.mark.parametrize("role", [r for r in ROLES if r != "marketer"])
def test_only_marketers_write_plans(api, world, role):
    resp = api(world["people"][role]).post("/api/v1/engagement-plans", json=body(world))
    assert resp.status_code == 403 and resp.get_json()["rule"] == "plan.write:role"


@pytest.mark.parametrize(("changes", "field"), [
    ({"cycle_end": "2025-12-31"}, "cycle_end"),
    ({"cycle_end": "2030-12-31"}, "cycle_end"),
    ({"cycle_start": "9999-01-01"}, "cycle_start"),
    ({"cycle_start": "2026-02-30"}, "cycle_start"),
    ({"segment_id": 2147483647}, "segment_id"),
    ({"segment_id": 99999999999999}, "segment_id"),
    ({"territory_codes": ["NOPE"]}, "territory_codes"),
    ({"territory_codes": []}, "scope"),
    ({"channel_goals": {}}, "channel_goals"),
    ({"channel_goals": {"visit": 0}}, "channel_goals"),
    ({"channel_goals": {"fax": 1}}, "channel_goals"),
    ({"channel_goals": {"visit": -1}}, "channel_goals"),
    ({"channel_goals": {"visit": "2"}}, "channel_goals"),
    ({"product_goals": [{"sku": "NOPE", "channel": "visit", "touches": 1}]}, "product_goals"),
    ({"product_goals": [{"sku": "CARD-10", "channel": "visit", "touches": 1}] * 2}, "product_goals"),
    ({"targets": [{"hcp_id": 2147483647}]}, "targets"),
    ({"targets": [{"hcp_id": 1, "goals": {}}, {"hcp_id": 1, "goals": {}}]}, "targets"),
    ({"name": "\x00"}, "name"),
    ({"name": " "}, "name"),
    ({"colour": "red"}, "colour"),
])
def test_bad_plans_are_422_with_the_field(api, world, changes, field):
    data = body(world, **changes)
    if changes.get("targets") and changes["targets"][0]["hcp_id"] == 1:
        data["targets"] = [{**t, "hcp_id": world["h1"].id} for t in changes["targets"]]
    resp = api(world["people"]["marketer"]).post("/api/v1/engagement-plans", json=data)
    assert resp.status_code == 422, resp.get_json()
    assert any(key.split(".")[0] == field for key in resp.get_json()["errors"]), resp.get_json()


def test_deep_or_malformed_json_is_refused(api, world):
    client = api(world["people"]["marketer"])
    deep = "[" * 5000 + "]" * 5000
    assert client.post("/api/v1/engagement-plans", data=deep, content_type="application/json").status_code == 400
    assert client.post("/api/v1/engagement-plans", json=[1]).status_code == 422


# -- reading: everyone, a rep the plans of own territories ---------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_a_plan_of_the_reps_territory(api, db, world, role):
    plan = plan_of(db, world)
    client = api(world["people"][role])
    assert client.get(f"/api/v1/engagement-plans/{plan.id}").status_code == 200
    resp = client.get(f"/api/v1/engagement-plans/{plan.id}/attainment")
    assert resp.status_code == 200 and resp.get_json()["totals"]["hcps"] == 2
    assert plan.id in [p["id"] for p in client.get("/api/v1/engagement-plans").get_json()["items"]]


def test_a_rep_reads_only_plans_of_own_territories(api, db, world):
    west_plan = plan_of(db, world, name="West", territory_codes=["PL-W"])
    everywhere = plan_of(db, world, name="Everyone", territory_codes=[],
                         targets=[{"hcp_id": world["h1"].id, "goals": {"visit": 1}}])
    north_rep = api(world["people"]["field_rep"])
    for url in (f"/api/v1/engagement-plans/{west_plan.id}", f"/api/v1/engagement-plans/{west_plan.id}/attainment"):
        resp = north_rep.get(url)
        assert resp.status_code == 403 and resp.get_json()["rule"] == "plan.read:territory"
    assert north_rep.get(f"/api/v1/engagement-plans/{everywhere.id}/attainment").status_code == 200
    listed = {p["id"] for p in north_rep.get("/api/v1/engagement-plans").get_json()["items"]}
    assert listed == {everywhere.id}
    assert api(world["people"]["west_rep"]).get(f"/api/v1/engagement-plans/{west_plan.id}").status_code == 200


def test_attainment_query_and_unknown_ids(api, db, world):
    plan = plan_of(db, world, territory_codes=["PL-N", "PL-W"])
    client = api(world["people"]["marketer"])
    one = client.get(f"/api/v1/engagement-plans/{plan.id}/attainment?territory=PL-W&hcp_limit=0").get_json()
    assert one["totals"]["hcps"] == 1 and one["hcps"] == [] and one["territories_filter"] == ["PL-W"]
    assert client.get(f"/api/v1/engagement-plans/{plan.id}/attainment?territory=NOPE").status_code == 422
    assert client.get(f"/api/v1/engagement-plans/{plan.id}/attainment?hcp_limit=-1").status_code == 422
    assert client.get(f"/api/v1/engagement-plans/{plan.id}/attainment?territory=%00").status_code == 422
    assert client.get("/api/v1/engagement-plans/2147483647/attainment").status_code == 404
    assert client.get("/api/v1/engagement-plans?cursor=garbage").status_code == 422
    current = client.get("/api/v1/engagement-plans?current=true").get_json()["items"]
    assert plan.id not in [p["id"] for p in current]  # a 2026 Q1 plan is not current on the test clock


def test_a_page_of_plans_pages_on(api, db, world):
    ids = [plan_of(db, world, name=f"P{i}").id for i in range(3)]
    client = api(world["people"]["marketer"])
    first = client.get("/api/v1/engagement-plans?limit=2").get_json()
    rest = client.get(f"/api/v1/engagement-plans?limit=2&cursor={first['next_cursor']}").get_json()
    assert [p["id"] for p in first["items"] + rest["items"]] == sorted(ids, reverse=True)


# -- pages --------------------------------------------------------------------------------------------

def current_plan(db, world, **kw):
    start, end = services.current_quarter(utcnow().date())
    return plan_of(db, world, name="This quarter", cycle_start=start, cycle_end=end, **kw)


def test_the_reps_home_shows_my_plan_and_who_is_behind(client, auth, db, world):
    plan = current_plan(db, world, channel_goals={"visit": 1})
    touch(db, world, [world["h1"]], "visit.submitted", when=utcnow() - timedelta(minutes=5))
    auth.login(world["people"]["field_rep"])
    page = client.get("/").get_data(as_text=True)
    assert f"/plans/{plan.id}" in page and "My plan" in page
    assert world["h1"].last_name in page and world["h2"].last_name in page
    assert world["h3"].last_name not in page  # another territory
    assert "/glossary#kpi-attainment" in page


def test_the_plan_page_shows_plan_vs_actual_territories_side_by_side(client, auth, db, world):
    plan = plan_of(db, world, territory_codes=["PL-N", "PL-W"])
    touch(db, world, [world["h3"]], "visit.submitted")
    auth.login(world["people"]["compliance"])
    page = client.get(f"/plans/{plan.id}").get_data(as_text=True)
    assert "Territories side by side" in page and "North (PL-N)" in page and "West (PL-W)" in page
    assert "<svg" in page and "/glossary#kpi-reach" in page and "/glossary#term-engagement-plan" in page
    assert world["h2"].last_name in page


def test_a_rep_sees_own_territories_first_and_is_refused_others(client, auth, db, world):
    plan = plan_of(db, world, territory_codes=["PL-N", "PL-W"])
    west = plan_of(db, world, name="West only", territory_codes=["PL-W"])
    auth.login(world["people"]["field_rep"])
    page = client.get(f"/plans/{plan.id}").get_data(as_text=True)
    assert "Showing your territories" in page and world["h3"].last_name not in page
    assert world["h3"].last_name in client.get(f"/plans/{plan.id}?scope=all").get_data(as_text=True)
    assert client.get(f"/plans/{west.id}").status_code == 403
    assert "West only" not in client.get("/plans").get_data(as_text=True)


def test_the_marketer_writes_a_plan_from_the_form(client, auth, db, world):
    auth.login(world["people"]["marketer"])
    token = auth.csrf_token("/plans/new")
    resp = client.post("/plans/new", data={
        "csrf_token": token, "name": "Form plan", "cycle_start": "2026-01-01", "cycle_end": "2026-03-31",
        "territory_codes": ["PL-N"], "goal_visit": "2", "goal_email": "", "product_0_sku": "CARD-10",
        "product_0_channel": "visit", "product_0_touches": "1", "targets": f"{world['h3'].id}: visit=4, email=1\n"})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    plan_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    plan = services.get_plan(db, plan_id)
    assert plan.channel_goals == {"visit": 2} and plan.targets[0].goals == {"visit": 4, "email": 1}
    for data, message in (({"cycle_end": "2025-01-01"}, "must not be before"),
                          ({"targets": "abc"}, "target list, line 1"),
                          ({"goal_visit": "x"}, "whole number"),
                          ({"segment_id": "99999999999999999"}, "segment id"),
                          ({"cycle_start": ""}, "cycle start")):
        form = {"csrf_token": token, "name": "Bad", "cycle_start": "2026-01-01", "cycle_end": "2026-03-31",
                "territory_codes": ["PL-N"], "goal_visit": "1", **data}
        bad = client.post("/plans/new", data=form)
        assert bad.status_code == 422 and message in bad.get_data(as_text=True), (data, bad.get_data(as_text=True))


@pytest.mark.parametrize("role", [r for r in ROLES if r != "marketer"])
def test_only_marketers_get_the_form(client, auth, world, role):
    auth.login(world["people"][role])
    assert client.get("/plans/new").status_code == 403
    assert client.get("/plans").status_code == 200 and client.get("/plans/segments").status_code == 200


def test_plan_vs_actual_per_segment(api, client, auth, db, world):
    seg = api(world["people"]["marketer"]).post("/api/v1/segments", json={"name": "Tier A", "tiers": ["A"]})
    current_plan(db, world, segment_id=seg.get_json()["id"], territory_codes=[])
    plan_of(db, world, name="Old plan")
    auth.login(world["people"]["marketer"])
    page = client.get("/plans/segments").get_data(as_text=True)
    assert "Tier A" in page and "This quarter" in page and "Old plan" not in page
    assert "Old plan" in client.get("/plans/segments?all=1").get_data(as_text=True)


# -- command line -------------------------------------------------------------------------------------

def test_the_attainment_command(runner, db, world):
    plan = plan_of(db, world)
    touch(db, world, [world["h1"]], "visit.submitted")
    out = runner.invoke(args=["crm", "plans", "attainment", str(plan.id)])
    assert out.exit_code == 0, out.output
    assert "Visits" in out.output and "All channels" in out.output
    as_json = runner.invoke(args=["crm", "plans", "attainment", str(plan.id), "--json", "--territory", "PL-N"])
    assert json.loads(as_json.output)["totals"]["touches"] == 1
    assert runner.invoke(args=["crm", "plans", "attainment", "2147483646"]).exit_code != 0
    assert runner.invoke(args=["crm", "plans", "attainment", str(plan.id), "--territory", "NOPE"]).exit_code != 0
    assert "Q1 plan" in runner.invoke(args=["crm", "plans", "list"]).output


def test_current_quarter():
    assert services.current_quarter(date(2026, 11, 5)) == (date(2026, 10, 1), date(2026, 12, 31))
    assert services.current_quarter(date(2026, 1, 1)) == (date(2026, 1, 1), date(2026, 3, 31))
    assert services.current_quarter(date(2026, 6, 30)) == (date(2026, 4, 1), date(2026, 6, 30))
