"""Planned visits (issue 14 item 5): plan, reschedule (history kept), cancel, start a draft with one tap, the
week views, planned vs done per HCP, every role, bad input. The pages are in tests/test_visit_plans_pages.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from crm.audit.models import AuditRecord
from crm.products.models import Product
from crm.timeline.models import Interaction, InteractionParticipant, SensitiveRead
from crm.visit_plans import services
from crm.visit_plans.models import VisitPlan
from crm.visits.models import Visit
from tests.visits_support import make_world

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def at(days: int, hour: int = 9, minute: int = 0) -> datetime:
    """A time ``days`` from today (UTC) at ``hour:minute``."""
    return (NOW + timedelta(days=days)).replace(hour=hour, minute=minute)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def body(hcp, start=None, minutes=30, **kw):
    start = start or at(2)
    data = {"hcp_id": hcp.id, "planned_start": iso(start), "planned_end": iso(start + timedelta(minutes=minutes))}
    data.update(kw)
    return data


@pytest.fixture
def w(db, factory):
    return make_world(db, factory)


def plan(api, user, hcp, **kw):
    resp = api(user).post("/api/v1/visit-plans", json=body(hcp, **kw))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def audit_actions(db, plan_id):
    return [a for a, in db.execute(select(AuditRecord.action).where(
        AuditRecord.entity == "visit_plan", AuditRecord.entity_id == str(plan_id)).order_by(AuditRecord.id))]


# -- plan --------------------------------------------------------------------------------------------------

def test_a_rep_plans_a_visit_for_an_hcp_of_own_territory_and_it_is_not_on_the_timeline(api, w, db):
    shown = plan(api, w.rep, w.hcp, mode="remote", objective="Discuss the outcomes study", products=["CARDIO-10"])
    assert (shown["status"], shown["hcp_id"], shown["owner"]["id"], shown["mode"]) == ("planned", w.hcp.id, w.rep.id,
                                                                                      "remote")
    assert shown["planned_start"] == iso(at(2)) and shown["planned_end"] == iso(at(2) + timedelta(minutes=30))
    assert (shown["objective"], shown["products"], shown["sensitivity"]) == ("Discuss the outcomes study",
                                                                             ["CARDIO-10"], "standard")
    assert shown["conflicts"] == [] and shown["reschedules"] == [] and shown["visit_id"] is None
    assert audit_actions(db, shown["id"]) == ["visit_plan.create"]
    # a plan is not an interaction: nothing on the HCP's timeline
    assert db.scalar(select(func.count()).select_from(InteractionParticipant)
                     .where(InteractionParticipant.hcp_id == w.hcp.id)) == 0
    assert api(w.rep).get(f"/api/v1/hcps/{w.hcp.id}/timeline").get_json()["items"] == []


def test_a_rep_cannot_plan_outside_own_territories(api, w):
    resp = api(w.rep).post("/api/v1/visit-plans", json=body(w.hcp_south))
    assert resp.status_code == 403 and resp.get_json()["rule"] == "visit_plan.write:territory"


@pytest.mark.parametrize("role", ["marketer", "call_centre", "compliance", "admin"])
def test_roles_that_do_not_visit_do_not_plan(api, w, role):
    resp = api(getattr(w, role)).post("/api/v1/visit-plans", json=body(w.hcp))
    assert resp.status_code == 403 and resp.get_json()["rule"] == "visit_plan.write:role"


def test_medical_affairs_plans_anywhere_and_the_objective_is_withheld_from_field_force_and_marketing(api, w, db):
    shown = plan(api, w.medical, w.hcp_south, objective="Answer the question on renal dosing", products=["CARDIO-10"])
    assert shown["sensitivity"] == "medical" and shown["redacted"] is False
    for role in ("rep_south", "marketer"):
        seen = api(getattr(w, role)).get(f"/api/v1/visit-plans/{shown['id']}").get_json()
        assert seen["redacted"] is True and seen["redaction_reason"] == "Details restricted to Medical Affairs"
        assert (seen["objective"], seen["products"], seen["mode"]) == (None, [], None)
        assert (seen["hcp_id"], seen["owner"]["id"], seen["planned_start"]) == (w.hcp_south.id, w.medical.id,
                                                                               shown["planned_start"])
    assert db.scalar(select(func.count()).select_from(SensitiveRead)) == 0  # reads below full are not logged
    for role in ("compliance", "call_centre", "admin"):
        seen = api(getattr(w, role)).get(f"/api/v1/visit-plans/{shown['id']}").get_json()
        assert seen["objective"] == "Answer the question on renal dosing" and seen["redacted"] is False
    logged = db.scalars(select(SensitiveRead.viewer_id).where(SensitiveRead.what == "visit_plan"))
    assert set(logged) == {w.compliance.id, w.call_centre.id, w.admin.id}


@pytest.mark.parametrize("change, field", [
    ({"planned_start": iso(NOW - timedelta(hours=1))}, "planned_start"),
    ({"planned_start": iso(NOW - timedelta(days=400))}, "planned_start"),
    ({"planned_start": iso(NOW + timedelta(days=400)), "planned_end": iso(NOW + timedelta(days=400, hours=1))},
     "planned_start"),
    ({"planned_end": iso(at(2))}, "planned_end"),
    ({"planned_end": iso(at(2) - timedelta(hours=1))}, "planned_end"),
    ({"planned_end": iso(at(2) + timedelta(hours=13))}, "planned_end"),
    ({"planned_start": "2026-12-10T09:00:00"}, "planned_start"),  # naive: refused, never guessed
    ({"planned_start": "9999-12-31T23:59:59Z"}, "planned_start"),
    ({"planned_start": "0001-01-01T00:00:00+01:00"}, "planned_start"),
    ({"planned_start": "1899-12-31T00:00:00Z"}, "planned_start"),
    ({"planned_start": "tomorrow"}, "planned_start"),
    ({"hcp_id": 2**40}, "hcp_id"),
    ({"hcp_id": "1"}, "hcp_id"),
    ({"hcp_id": None}, "hcp_id"),
    ({"mode": "telepathy"}, "mode"),
    ({"objective": "a\x00b"}, "objective"),
    ({"objective": "x" * 2001}, "objective"),
    ({"products": ["OLD-1"]}, "products"),
    ({"products": ["NOPE"]}, "products"),
    ({"products": ["CARDIO-10"] * 21}, "products"),
    ({"owner_id": 1}, "owner_id"),
])
def test_bad_plans_are_422_on_the_field(api, w, change, field):
    resp = api(w.rep).post("/api/v1/visit-plans", json={**body(w.hcp), **change})
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"], resp.get_json()


def test_unknown_and_unusable_hcps(api, w, db):
    assert api(w.rep).post("/api/v1/visit-plans", json=body(w.hcp, hcp_id=2**31 - 1)).status_code == 404
    w.hcp2.status, w.hcp2.merged_into_id = "merged", w.hcp.id
    db.flush()
    resp = api(w.rep).post("/api/v1/visit-plans", json=body(w.hcp2))
    assert resp.status_code == 422 and "merged into" in resp.get_json()["errors"]["hcp_id"][0]
    bad = api(w.rep).client.post("/api/v1/visit-plans", data="{not json", headers={
        "Authorization": f"Bearer {api(w.rep).token}", "Content-Type": "application/json"})
    assert bad.status_code == 400
    assert api(w.rep).client.post("/api/v1/visit-plans", json=body(w.hcp)).status_code == 401


def test_overlapping_plans_are_warned_not_refused(api, w):
    first = plan(api, w.rep, w.hcp, start=at(3, 9), minutes=60)
    second = plan(api, w.rep, w.hcp2, start=at(3, 9, 30), minutes=60)
    assert [c["id"] for c in second["conflicts"]] == [first["id"]]
    # back to back is no overlap; another person's plan at the same time is not the rep's conflict
    assert plan(api, w.rep, w.hcp2, start=at(3, 10, 30), minutes=30)["conflicts"] == []
    assert plan(api, w.rep2, w.hcp, start=at(3, 9), minutes=60)["conflicts"] == []
    # a cancelled plan no longer conflicts
    api(w.rep).post(f"/api/v1/visit-plans/{first['id']}/cancel")
    assert plan(api, w.rep, w.hcp, start=at(3, 9), minutes=20)["conflicts"] == []


# -- reschedule, cancel ------------------------------------------------------------------------------------

def test_reschedule_keeps_the_history_and_the_audit(api, w, db):
    shown = plan(api, w.rep, w.hcp, start=at(2, 9), minutes=45)
    moved = api(w.rep).patch(f"/api/v1/visit-plans/{shown['id']}", json={
        "planned_start": iso(at(4, 14)), "reason": "The HCP is in surgery on Tuesday", "version": shown["version"]})
    assert moved.status_code == 200, moved.get_json()
    moved = moved.get_json()
    # a new start alone keeps the duration
    assert (moved["planned_start"], moved["planned_end"]) == (iso(at(4, 14)), iso(at(4, 14, 45)))
    assert moved["reschedules"] == [{
        "from_start": iso(at(2, 9)), "from_end": iso(at(2, 9, 45)), "to_start": iso(at(4, 14)),
        "to_end": iso(at(4, 14, 45)), "reason": "The HCP is in surgery on Tuesday", "changed_by_id": w.rep.id,
        "changed_at": moved["reschedules"][0]["changed_at"]}]
    again = api(w.rep).patch(f"/api/v1/visit-plans/{shown['id']}", json={
        "planned_start": iso(at(5, 8)), "planned_end": iso(at(5, 9))}).get_json()
    assert len(again["reschedules"]) == 2 and again["reschedules"][1]["reason"] is None
    assert audit_actions(db, shown["id"]) == ["visit_plan.create", "visit_plan.reschedule", "visit_plan.reschedule"]
    reason = db.scalar(select(AuditRecord.reason).where(AuditRecord.action == "visit_plan.reschedule")
                       .order_by(AuditRecord.id))
    assert reason == "The HCP is in surgery on Tuesday"
    # what the visit is for changes without a move: no history row, an update in the audit trail
    edited = api(w.rep).patch(f"/api/v1/visit-plans/{shown['id']}", json={"objective": "Bring the leaflet"})
    assert edited.status_code == 200 and len(edited.get_json()["reschedules"]) == 2
    assert audit_actions(db, shown["id"])[-1] == "visit_plan.update"


def test_reschedule_rules(api, w, db):
    shown = plan(api, w.rep, w.hcp)
    url = f"/api/v1/visit-plans/{shown['id']}"
    assert api(w.rep).patch(url, json={"planned_start": iso(NOW - timedelta(days=1))}).status_code == 422
    assert api(w.rep).patch(url, json={"planned_end": iso(at(2) - timedelta(minutes=1))}).status_code == 422
    assert api(w.rep).patch(url, json={}).status_code == 422
    assert api(w.rep).patch(url, json={"reason": "only a reason"}).status_code == 422
    assert api(w.rep).patch(url, json={"planned_start": shown["planned_start"]}).status_code == 422  # no change
    assert api(w.rep).patch(url, json={"objective": "x", "version": 99}).status_code == 409
    assert api(w.rep).patch(url, json={"colour": "blue"}).status_code == 422
    for who in ("rep2", "medical", "admin"):
        resp = api(getattr(w, who)).patch(url, json={"planned_start": iso(at(3))})
        assert resp.status_code == 403 and resp.get_json()["rule"] == "visit_plan.edit:owner"
    assert api(w.rep).patch("/api/v1/visit-plans/2147483647", json={"objective": "x"}).status_code == 404
    assert api(w.rep).patch("/api/v1/visit-plans/99999999999", json={"objective": "x"}).status_code == 404
    # the HCP moved to a territory the rep does not cover: the rep may no longer move the visit
    w.hcp.territory_id = w.south.id
    db.flush()
    resp = api(w.rep).patch(url, json={"planned_start": iso(at(3))})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "visit_plan.write:territory"


def test_cancel(api, w, db):
    shown = plan(api, w.rep, w.hcp)
    url = f"/api/v1/visit-plans/{shown['id']}"
    assert api(w.rep2).post(f"{url}/cancel").status_code == 403
    done = api(w.rep).post(f"{url}/cancel", json={"reason": "The practice is closed"})
    assert done.status_code == 200
    assert (done.get_json()["status"], done.get_json()["cancel_reason"]) == ("cancelled", "The practice is closed")
    assert api(w.rep).post(f"{url}/cancel").status_code == 409
    assert api(w.rep).patch(url, json={"planned_start": iso(at(3))}).status_code == 409
    assert api(w.rep).post(f"{url}/start").status_code == 409
    assert api(w.rep).post(f"{url}/cancel", json={"reason": "a\x00"}).status_code == 422
    assert audit_actions(db, shown["id"]) == ["visit_plan.create", "visit_plan.cancel"]
    # cancelled plans stay readable
    assert api(w.rep).get(url).get_json()["status"] == "cancelled"


# -- start: the one tap ------------------------------------------------------------------------------------

def test_start_turns_the_plan_into_a_prefilled_draft_and_the_visit_flow_continues(api, w, db):
    shown = plan(api, w.rep, w.hcp, start=at(0, 23, 0) if NOW.hour < 22 else at(1), minutes=40, mode="remote",
                 objective="Outcomes study", products=["CARDIO-10", "CARDIO-20"])
    db.get(Product, w.products["CARDIO-20"].id).active = False  # retired since the plan was made
    db.flush()
    resp = api(w.rep).post(f"/api/v1/visit-plans/{shown['id']}/start")
    assert resp.status_code == 201, resp.get_json()
    visit = resp.get_json()
    assert resp.headers["Location"].endswith(f"/api/v1/visits/{visit['id']}")
    assert (visit["status"], visit["hcp_id"], visit["mode"], visit["duration_minutes"]) == ("draft", w.hcp.id,
                                                                                           "remote", 40)
    assert visit["products"] == ["CARDIO-10"] and visit["notes"] == "Outcomes study"
    # started ahead of its time: the draft is dated now, not in the future
    started = datetime.fromisoformat(visit["occurred_at"].replace("Z", "+00:00"))
    assert started <= datetime.now(UTC) and started >= NOW - timedelta(minutes=1)
    again = api(w.rep).get(f"/api/v1/visit-plans/{shown['id']}").get_json()
    assert (again["status"], again["visit_id"]) == ("started", visit["id"])
    assert api(w.rep).post(f"/api/v1/visit-plans/{shown['id']}/start").status_code == 409
    assert audit_actions(db, shown["id"]) == ["visit_plan.create", "visit_plan.start"]
    # the visit flow as today: edit the draft, submit it, it is on the timeline
    assert api(w.rep).patch(f"/api/v1/visits/{visit['id']}", json={"notes": "Went well"}).status_code == 200
    assert api(w.rep).post(f"/api/v1/visits/{visit['id']}/submit").status_code == 200
    items = api(w.rep).get(f"/api/v1/hcps/{w.hcp.id}/timeline").get_json()["items"]
    assert [i["kind"] for i in items] == ["visit.submitted"]


def test_a_plan_started_after_its_time_keeps_the_planned_time(api, w, db):
    shown = plan(api, w.rep, w.hcp)
    row = db.get(VisitPlan, shown["id"])
    row.planned_start, row.planned_end = NOW - timedelta(hours=3), NOW - timedelta(hours=2)
    db.flush()
    visit = api(w.rep).post(f"/api/v1/visit-plans/{shown['id']}/start").get_json()
    assert visit["occurred_at"] == iso(NOW - timedelta(hours=3)) and visit["duration_minutes"] == 60


def test_only_the_owner_starts_and_the_visit_rules_still_apply(api, w, db):
    shown = plan(api, w.rep, w.hcp)
    for who in ("rep2", "compliance", "medical"):
        assert api(getattr(w, who)).post(f"/api/v1/visit-plans/{shown['id']}/start").status_code == 403
    assert api(w.rep).post("/api/v1/visit-plans/99999999999/start").status_code == 404
    # the HCP left the rep's territories: creating the visit is refused as any visit would be
    w.hcp.territory_id = w.south.id
    db.flush()
    resp = api(w.rep).post(f"/api/v1/visit-plans/{shown['id']}/start")
    assert resp.status_code == 403 and resp.get_json()["rule"] == "visit.create:territory"
    assert db.get(VisitPlan, shown["id"]).status == "planned"


# -- lists and the week ------------------------------------------------------------------------------------

def _week_of(value: datetime) -> str:
    year, week, _ = value.isocalendar()
    return f"{year}-W{week:02d}"


def test_the_week_lists_monday_to_sunday_earliest_first(api, w):
    monday = (NOW + timedelta(days=14 - NOW.weekday())).replace(hour=0, minute=0)
    inside = [plan(api, w.rep, w.hcp, start=monday + timedelta(days=6, hours=20)),
              plan(api, w.rep, w.hcp2, start=monday + timedelta(hours=8))]
    plan(api, w.rep, w.hcp, start=monday - timedelta(hours=1))  # the Sunday before
    plan(api, w.rep, w.hcp, start=monday + timedelta(days=7))  # the Monday after
    for week in (_week_of(monday), (monday + timedelta(days=3)).date().isoformat()):
        items = api(w.rep).get(f"/api/v1/visit-plans?week={week}").get_json()["items"]
        assert [i["id"] for i in items] == [inside[1]["id"], inside[0]["id"]]
    page = api(w.rep).get(f"/api/v1/visit-plans?week={_week_of(monday)}&limit=1").get_json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = api(w.rep).get(f"/api/v1/visit-plans?week={_week_of(monday)}&limit=1&cursor={page['next_cursor']}")
    assert [i["id"] for i in rest.get_json()["items"]] == [inside[0]["id"]]
    # without a week: from today on
    assert len(api(w.rep).get("/api/v1/visit-plans").get_json()["items"]) == 4


@pytest.mark.parametrize("query", ["week=2026-W54", "week=2026-13-01", "week=9999-W01", "week=1899-W10",
                                   "week=x%00", "week=" + "9" * 50, "owner_id=99999999999", "hcp_id=-99999999999",
                                   "status=done", "limit=0", "limit=201", "cursor=garbage", "territory=" + "x" * 41])
def test_bad_list_queries_are_422(api, w, query):
    resp = api(w.rep).get(f"/api/v1/visit-plans?{query}")
    assert resp.status_code == 422, (query, resp.get_json())


def test_who_sees_which_plans(api, w):
    north = plan(api, w.rep, w.hcp)
    team = plan(api, w.rep2, w.hcp2)
    south = plan(api, w.rep_south, w.hcp_south)
    medical = plan(api, w.medical, w.hcp_south)

    def ids(user, query=""):
        return {i["id"] for i in api(user).get(f"/api/v1/visit-plans?{query}").get_json()["items"]}

    # a rep: own plans and the team's plans for HCPs of own territories
    assert ids(w.rep) == {north["id"], team["id"]}
    assert ids(w.rep, "mine=true") == {north["id"]}
    assert ids(w.rep_south) == {south["id"], medical["id"]}
    for role in ("marketer", "call_centre", "medical", "compliance", "admin"):
        assert ids(getattr(w, role)) == {north["id"], team["id"], south["id"], medical["id"]}, role
    assert ids(w.admin, f"owner_id={w.rep2.id}") == {team["id"]}
    assert ids(w.admin, f"hcp_id={w.hcp_south.id}") == {south["id"], medical["id"]}
    # one plan: 403 outside the rep's territories, not 404 (it exists)
    resp = api(w.rep).get(f"/api/v1/visit-plans/{south['id']}")
    assert resp.status_code == 403 and resp.get_json()["rule"] == "visit_plan.read:territory"
    assert api(w.rep).get("/api/v1/visit-plans/2147483647").status_code == 404
    assert api(w.rep).get("/api/v1/visit-plans/99999999999").status_code == 404
    # the team week of a territory
    assert ids(w.admin, f"territory={w.south.code}") == {south["id"], medical["id"]}
    assert ids(w.rep, f"territory={w.north.code}") == {north["id"], team["id"]}
    resp = api(w.rep).get(f"/api/v1/visit-plans?territory={w.south.code}")
    assert resp.status_code == 403 and resp.get_json()["rule"] == "visit_plan.team:territory"
    assert api(w.rep).get("/api/v1/visit-plans?territory=NOPE").status_code == 422


# -- planned vs done ---------------------------------------------------------------------------------------

def _submit_visit(api, user, hcp, when, attendees=()):
    resp = api(user).post("/api/v1/visits", json={
        "hcp_id": hcp.id, "occurred_at": iso(when), "mode": "in_person", "attendee_hcp_ids": list(attendees)})
    assert resp.status_code == 201, resp.get_json()
    visit_id = resp.get_json()["id"]
    assert api(user).post(f"/api/v1/visits/{visit_id}/submit").status_code == 200
    return visit_id


def test_planned_vs_done_per_hcp(api, w, db):
    # four plans for hcp: upcoming, cancelled, started, missed (its time has passed); one for hcp2
    plan(api, w.rep, w.hcp, start=at(1))
    cancelled = plan(api, w.rep, w.hcp, start=at(1, 14))
    api(w.rep).post(f"/api/v1/visit-plans/{cancelled['id']}/cancel")
    missed = plan(api, w.rep, w.hcp, start=at(1, 16))
    started = plan(api, w.rep, w.hcp2, start=at(1, 11))
    for p, hours in ((missed, 30), (started, 5)):
        row = db.get(VisitPlan, p["id"])
        row.planned_start, row.planned_end = NOW - timedelta(hours=hours), NOW - timedelta(hours=hours - 1)
    db.flush()
    visit = api(w.rep).post(f"/api/v1/visit-plans/{started['id']}/start").get_json()
    assert api(w.rep).post(f"/api/v1/visits/{visit['id']}/submit").status_code == 200
    # done: a group visit to hcp with hcp2 present, amended once (counted once); another rep's visit to hcp;
    # a draft (not done)
    group = _submit_visit(api, w.rep, w.hcp, NOW - timedelta(hours=2), attendees=[w.hcp2.id])
    assert api(w.rep).post(f"/api/v1/visits/{group}/amend", json={
        "reason": "Wrong duration", "changes": {"duration_minutes": 25}}).status_code == 201
    _submit_visit(api, w.rep2, w.hcp, NOW - timedelta(hours=1))
    api(w.rep).post("/api/v1/visits", json={"hcp_id": w.hcp.id, "occurred_at": iso(NOW - timedelta(minutes=5))})
    since, until = (NOW - timedelta(days=3)).date(), (NOW + timedelta(days=3)).date()
    period = f"since={since}&until={until}"

    mine = api(w.rep).get(f"/api/v1/visit-plans/planned-vs-done?{period}").get_json()
    rows = {r["hcp_id"]: r for r in mine["items"]}
    assert mine["owner_id"] == w.rep.id and mine["hcp_id"] is None
    counts = ("planned", "started", "missed", "upcoming", "cancelled", "done")
    assert tuple(rows[w.hcp.id][k] for k in counts) == (2, 0, 1, 1, 1, 1)
    assert tuple(rows[w.hcp2.id][k] for k in counts) == (1, 1, 0, 0, 0, 2)
    assert tuple(mine["totals"][k] for k in counts) == (3, 1, 1, 1, 1, 3)
    assert [r["hcp_id"] for r in mine["items"]] == [w.hcp.id, w.hcp2.id]  # most planned first

    one = api(w.rep).get(f"/api/v1/visit-plans/planned-vs-done?{period}&hcp_id={w.hcp.id}").get_json()
    assert one["owner_id"] is None and len(one["items"]) == 1
    assert (one["totals"]["planned"], one["totals"]["done"]) == (2, 2)  # both reps' visits to the HCP
    # a rep asking about an HCP outside own territories: own plans and visits only
    other = api(w.rep_south).get(f"/api/v1/visit-plans/planned-vs-done?{period}&hcp_id={w.hcp.id}").get_json()
    assert other["owner_id"] == w.rep_south.id and other["totals"]["planned"] == 0 and other["items"] == []
    # another person's: not for a rep; any role but field force may look
    resp = api(w.rep2).get(f"/api/v1/visit-plans/planned-vs-done?{period}&owner_id={w.rep.id}")
    assert resp.status_code == 403 and resp.get_json()["rule"] == "visit_plan.read:owner"
    for role in ("marketer", "call_centre", "medical", "compliance", "admin"):
        seen = api(getattr(w, role)).get(f"/api/v1/visit-plans/planned-vs-done?{period}&owner_id={w.rep.id}")
        assert seen.get_json()["totals"] == mine["totals"], role
    # another period: nothing
    empty = api(w.rep).get("/api/v1/visit-plans/planned-vs-done?since=2030-01-01&until=2030-03-31").get_json()
    assert empty["totals"]["planned"] == 0 and empty["items"] == []
    # default: this quarter
    default = api(w.rep).get("/api/v1/visit-plans/planned-vs-done").get_json()
    assert default["since"] <= NOW.date().isoformat() <= default["until"]


@pytest.mark.parametrize("query, status", [
    ("since=2026-02-30", 422), ("since=2026-03-01&until=2026-02-01", 422), ("since=2026-01-01&until=2028-01-01", 422),
    ("since=0001-01-01", 422), ("until=9999-12-31", 422), ("owner_id=99999999999", 422), ("hcp_id=abc", 422),
    ("owner_id=2147483647", 404), ("hcp_id=2147483647", 404), ("since=2200-12-31", 200), ("until=1900-01-01", 200),
])
def test_planned_vs_done_bad_input(api, w, query, status):
    resp = api(w.admin).get(f"/api/v1/visit-plans/planned-vs-done?{query}")
    assert resp.status_code == status, (query, resp.get_json())


# -- services without HTTP ---------------------------------------------------------------------------------

def test_week_bounds_and_days_are_in_the_plan_zone():
    monday = datetime(2026, 12, 7, tzinfo=UTC).date()
    start, end = services.week_bounds(monday)
    assert (start, end) == (datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 14, tzinfo=UTC))
    assert services.plan_day(datetime(2026, 12, 13, 23, 59, tzinfo=UTC)).isoformat() == "2026-12-13"


def test_period_fills_in_the_quarter():
    since, until = services.period(None, None)
    assert since <= NOW.date() <= until and since.day == 1
    one = NOW.date() + timedelta(days=400)
    assert services.period(one, None) == (one, one)


def test_no_visit_or_interaction_is_written_by_planning(api, w, db):
    def counts():
        return [db.scalar(select(func.count()).select_from(t)) for t in (Visit, Interaction)]

    before = counts()
    shown = plan(api, w.rep, w.hcp)
    api(w.rep).patch(f"/api/v1/visit-plans/{shown['id']}", json={"planned_start": iso(at(5))})
    api(w.rep).post(f"/api/v1/visit-plans/{shown['id']}/cancel")
    assert counts() == before


# -- demo and command line ---------------------------------------------------------------------------------

def test_the_demo_plans_a_working_week_per_rep_once(db, factory, w):
    from crm.visit_plans.demo import load_visit_plan_demo

    users = {"rep.north@demo.example": factory.user("field_rep", territories=[w.north]),
             "rep.west@demo.example": factory.user("field_rep", territories=[w.south])}
    db.add(Product(sku="CARD-10", name="Cardiozol 10 mg"))
    db.flush()
    assert load_visit_plan_demo(db, users, datetime.now(UTC)) == {"visit_plans": 30}
    plans = list(db.scalars(select(VisitPlan).order_by(VisitPlan.planned_start)))
    assert {p.planned_start.weekday() for p in plans} <= {0, 1, 2, 3, 4}
    assert len({p.planned_start.date() for p in plans}) == 5  # five working days
    assert sorted(p.status for p in plans).count("cancelled") == 2
    assert sum(len(p.reschedules) for p in plans) == 2
    assert load_visit_plan_demo(db, users, datetime.now(UTC)) == {"visit_plans": 0}


def test_the_week_on_the_command_line(runner, api, w):
    shown = plan(api, w.rep, w.hcp, start=at(8, 10))
    result = runner.invoke(args=["crm", "visit-plans", "week", w.rep.email, "--week", at(8).date().isoformat()])
    assert result.exit_code == 0, result.output
    assert "1 planned visit(s)" in result.output and f"(HCP {w.hcp.id})" in result.output
    assert shown["planned_start"][11:16] in result.output
    assert runner.invoke(args=["crm", "visit-plans", "week", "nobody@x.example"]).exit_code != 0
    assert runner.invoke(args=["crm", "visit-plans", "week", w.rep.email, "--week", "2026-W77"]).exit_code != 0


# -- the policy rows, without HTTP -------------------------------------------------------------------------

@pytest.mark.parametrize("role, mine, in_territory, allowed, rule", [
    ("field_rep", True, False, True, "visit_plan.read:owner"),
    ("field_rep", False, True, True, "visit_plan.read:own-territory"),
    ("field_rep", False, False, False, "visit_plan.read:territory"),
    *[(role, False, False, True, "visit_plan.read:shared")
      for role in ("marketer", "call_centre", "medical", "compliance", "admin")],
])
def test_visit_plan_read_decision(role, mine, in_territory, allowed, rule):
    from crm.access.policy import Viewer, visit_plan_read_decision

    viewer = Viewer(user_id=1, role=role, territory_ids=frozenset({10}))
    decision = visit_plan_read_decision(viewer, 1 if mine else 2, 10 if in_territory else 20)
    assert (decision.allowed, decision.rule) == (allowed, rule)
    assert visit_plan_read_decision(viewer, 2, None).allowed is (role != "field_rep")


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance", "admin"])
def test_team_week_and_write_rules(role):
    from crm.access.policy import Viewer, team_week_decision, write_decision

    viewer = Viewer(user_id=1, role=role, territory_ids=frozenset({10}))
    assert team_week_decision(viewer, 10).allowed
    assert team_week_decision(viewer, 20).allowed is (role != "field_rep")
    assert write_decision(viewer, "visit_plan.write", [10]).allowed is (role in ("field_rep", "medical"))
    assert write_decision(viewer, "visit_plan.write", [20]).allowed is (role == "medical")
