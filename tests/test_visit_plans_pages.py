"""The calendar pages (issue 14 item 5): my week, the team week, plan / reschedule / cancel / start from a page,
planned vs done, the panel on the HCP page, and bad input that must never be a 500."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from crm.visit_plans.models import VisitPlan
from crm.visits.models import Visit
from tests.visits_support import make_world

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def w(db, factory):
    return make_world(db, factory)


def local(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M")


def new_plan(db, owner, hcp, start, minutes=30, **kw):
    from crm.auth.services import viewer_for
    from crm.visit_plans.services import create_plan

    return create_plan(db, owner, viewer_for(db, owner), {
        "hcp_id": hcp.id, "planned_start": start, "planned_end": start + timedelta(minutes=minutes), **kw})


def week_of(value: datetime) -> str:
    year, week, _ = value.isocalendar()
    return f"{year}-W{week:02d}"


def days_of(page: str) -> list[str]:
    """The text of each day column of the week grid."""
    grid = page.split('<ol class="week">', 1)[1].split("</ol>", 1)[0]
    return re.split(r'<li class="day', grid)[1:]


def test_my_week_is_seven_days_with_my_plans_in_their_day(client, auth, w, db):
    monday = (NOW + timedelta(days=7 - NOW.weekday())).replace(hour=0, minute=0)
    new_plan(db, w.rep, w.hcp, monday + timedelta(days=2, hours=9), objective="Outcomes")
    new_plan(db, w.rep2, w.hcp2, monday + timedelta(days=2, hours=10))  # the team's, not mine
    auth.login(w.rep)
    resp = client.get(f"/calendar?week={week_of(monday)}")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    days = days_of(page)
    assert len(days) == 7
    assert w.hcp.full_name in days[2] and "09:00" in days[2]
    assert all(w.hcp.full_name not in d for i, d in enumerate(days) if i != 2)
    assert w.hcp2.full_name not in page
    assert "Plan a visit" in page and "Previous week" in page and "Next week" in page
    # the same HTML on every screen: a list on a phone, seven columns from tablet width (CSS, no script)
    css = (Path(__file__).parents[1] / "crm" / "static" / "crm.css").read_text()
    assert "grid-template-columns:repeat(7, minmax(0, 1fr))" in css
    assert "<script" not in page.split("</nav>", 1)[1]


def test_my_week_shows_the_visits_i_logged(client, auth, w, api):
    when = NOW - timedelta(hours=1)
    resp = api(w.rep).post("/api/v1/visits", json={"hcp_id": w.hcp.id,
                                                   "occurred_at": when.isoformat().replace("+00:00", "Z")})
    assert resp.status_code == 201
    auth.login(w.rep)
    page = client.get(f"/calendar?week={when.date().isoformat()}").get_data(as_text=True)
    assert "visit draft" in page and w.hcp.full_name in page


def test_the_team_week_of_a_territory(client, auth, w, db):
    start = NOW + timedelta(days=1)
    new_plan(db, w.rep, w.hcp, start)
    new_plan(db, w.rep2, w.hcp2, start + timedelta(hours=1))
    new_plan(db, w.rep_south, w.hcp_south, start)
    new_plan(db, w.medical, w.hcp, start + timedelta(hours=2), objective="Renal dosing question")
    auth.login(w.rep)
    page = client.get(f"/calendar/team?week={start.date().isoformat()}").get_data(as_text=True)
    assert w.hcp.full_name in page and w.hcp2.full_name in page and w.rep2.name in page
    assert w.hcp_south.full_name not in page
    assert "Details restricted to Medical Affairs" in page and "Renal dosing" not in page
    assert client.get(f"/calendar/team?territory={w.south.code}").status_code == 403
    assert client.get("/calendar/team?territory=NOPE").status_code == 422
    auth.logout()
    auth.login(w.admin)
    page = client.get(f"/calendar/team?territory={w.south.code}&week={start.date().isoformat()}").get_data(as_text=True)
    assert w.hcp_south.full_name in page and w.hcp.full_name not in page


@pytest.mark.parametrize("url", [
    "/calendar?week=2026-W99", "/calendar?week=x%00", "/calendar?week=9999-W01", "/calendar/team?week=0000-01-01",
    "/calendar/team?territory=%00", "/calendar/team?territory=" + "x" * 300,
    "/calendar/planned-vs-done?since=2026-02-30", "/calendar/planned-vs-done?until=9999-01-01",
    "/calendar/planned-vs-done?since=2026-03-01&until=2026-01-01", "/calendar/planned-vs-done?owner_id=99999999999",
    "/calendar/planned-vs-done?since=2020-01-01&until=2026-01-01",
])
def test_bad_page_input_is_a_message_not_a_500(client, auth, w, url):
    auth.login(w.admin)
    assert client.get(url).status_code == 422, url


def test_the_calendar_pages_for_every_role(client, auth, w):
    for role in ("rep", "marketer", "call_centre", "medical", "compliance", "admin"):
        auth.login(getattr(w, role))
        for url in ("/calendar", "/calendar/team", "/calendar/planned-vs-done"):
            assert client.get(url).status_code == 200, (role, url)
        plan_form = client.get("/calendar/plans/new").status_code
        assert plan_form == (200 if role in ("rep", "medical") else 403), role
        auth.logout()
    assert client.get("/calendar").status_code == 302  # login first


def test_plan_a_visit_from_the_hcp_page(client, auth, w, db):
    auth.login(w.rep)
    hcp_page = client.get(f"/hcps/{w.hcp.id}").get_data(as_text=True)
    assert 'id="visit-plans"' in hcp_page and f"/calendar/plans/new?hcp_id={w.hcp.id}" in hcp_page
    form = client.get(f"/calendar/plans/new?hcp_id={w.hcp.id}").get_data(as_text=True)
    # the HCP field keeps the stable input name the HCP picker will attach to
    assert f'<input type="hidden" name="hcp_id" value="{w.hcp.id}">' in form
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    start = (NOW + timedelta(days=2)).replace(hour=9, minute=0)
    resp = client.post("/calendar/plans/new", data={
        "csrf_token": token, "hcp_id": str(w.hcp.id), "planned_start": local(start), "times_utc": "1",
        "duration_minutes": "45", "mode": "remote", "objective": "Outcomes study", "products": ["CARDIO-10"]})
    assert resp.status_code == 302
    plan = db.scalar(select(VisitPlan).where(VisitPlan.owner_id == w.rep.id))
    assert (plan.planned_start, plan.planned_end, plan.mode, plan.products) == (
        start, start + timedelta(minutes=45), "remote", ["CARDIO-10"])
    assert resp.headers["Location"].endswith(f"/calendar/plans/{plan.id}")
    shown = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Visit planned." in shown and "Outcomes study" in shown and "Start the visit" in shown
    # the browser's offset: 09:00 at UTC+02:00 is 07:00 UTC
    client.post("/calendar/plans/new", data={
        "csrf_token": token, "hcp_id": str(w.hcp2.id), "planned_start": local(start + timedelta(days=1)),
        "planned_start_offset": "120", "duration_minutes": "30", "mode": "in_person"})
    other = db.scalar(select(VisitPlan).where(VisitPlan.hcp_id == w.hcp2.id))
    assert other.planned_start == start + timedelta(days=1, hours=-2)
    # the panel on the HCP page counts it and lists it
    hcp_page = client.get(f"/hcps/{w.hcp.id}").get_data(as_text=True)
    assert f"/calendar/plans/{plan.id}" in hcp_page and "<strong>1</strong> planned" in hcp_page


def test_plan_form_errors_keep_what_was_typed(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token("/calendar/plans/new")
    base = {"csrf_token": token, "planned_start": local(NOW + timedelta(days=1)), "times_utc": "1",
            "duration_minutes": "30", "mode": "in_person", "objective": "Keep me"}
    cases = [
        ({"hcp_id": ""}, "Which HCP"),
        ({"hcp_id": "99999999999"}, "Which HCP"),
        ({"hcp_id": str(w.hcp.id), "planned_start": local(NOW - timedelta(days=1))}, "this time has passed"),
        ({"hcp_id": str(w.hcp.id), "planned_start": "9999-01-01T00:00"}, "year must be"),
        ({"hcp_id": str(w.hcp.id), "planned_start": "nonsense"}, "not a valid date"),
        ({"hcp_id": str(w.hcp.id), "duration_minutes": "0"}, "Minutes"),
        ({"hcp_id": str(w.hcp.id), "duration_minutes": "99999999999999"}, "Minutes"),
        ({"hcp_id": str(w.hcp.id), "mode": "x"}, "in person or remote"),
        ({"hcp_id": str(w.hcp.id), "objective": "a\x00b"}, "characters"),
        ({"hcp_id": str(w.hcp.id), "products": ["NOPE"]}, "not an active product"),
        ({"hcp_id": "2147483647"}, "does not exist"),
    ]
    for change, message in cases:
        resp = client.post("/calendar/plans/new", data={**base, **change})
        page = resp.get_data(as_text=True)
        assert resp.status_code in (404, 422), change
        assert message in page, (change, message)
        assert "Keep me" in page or "a\x00b" in change.get("objective", "")
    assert client.post("/calendar/plans/new", data={**base, "hcp_id": str(w.hcp_south.id)}).status_code == 403
    assert db.scalar(select(VisitPlan.id)) is None


def test_reschedule_cancel_and_start_from_the_plan_page(client, auth, w, db):
    start = (NOW + timedelta(days=2)).replace(hour=9, minute=0)
    plan = new_plan(db, w.rep, w.hcp, start, objective="Outcomes study", products=["CARDIO-10"])
    clash = new_plan(db, w.rep, w.hcp2, start + timedelta(days=1, hours=1))
    auth.login(w.rep)
    url = f"/calendar/plans/{plan.id}"
    page = client.get(url).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    moved = start + timedelta(days=1, hours=1)
    resp = client.post(f"{url}/reschedule", data={"csrf_token": token, "planned_start": local(moved), "times_utc": "1",
                                                  "duration_minutes": "60", "reason": "HCP asked", "version": "1"})
    assert resp.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "overlaps 1 other planned visit" in page and w.hcp2.full_name in page  # the warning, and it is saved
    assert "HCP asked" in page and "History" in page
    db.expire_all()
    assert (plan.planned_start, plan.planned_end) == (moved, moved + timedelta(hours=1))
    # a move to the past re-renders the page with the message
    resp = client.post(f"{url}/reschedule", data={"csrf_token": token, "planned_start": local(NOW - timedelta(days=2)),
                                                  "times_utc": "1", "duration_minutes": "30"})
    assert resp.status_code == 422 and "this time has passed" in resp.get_data(as_text=True)
    # someone else cannot
    auth.logout()
    auth.login(w.rep2)
    token2 = auth.csrf_token(url)
    assert client.post(f"{url}/start", data={"csrf_token": token2}).status_code == 403
    assert client.post(f"{url}/cancel", data={"csrf_token": token2}).status_code == 403
    assert "Start the visit" not in client.get(url).get_data(as_text=True)
    auth.logout()
    auth.login(w.rep)
    token = auth.csrf_token(url)
    assert client.post(f"/calendar/plans/{clash.id}/cancel", data={"csrf_token": token, "reason": "Closed"}
                       ).status_code == 302
    db.expire_all()
    assert clash.status == "cancelled"
    # the one tap: a draft visit, and the visit form opens on it
    resp = client.post(f"{url}/start", data={"csrf_token": token})
    assert resp.status_code == 302
    db.expire_all()
    visit = db.get(Visit, plan.visit_id)
    assert resp.headers["Location"].endswith(f"/visits/{visit.id}")
    assert (visit.status, visit.hcp_id, visit.notes, visit.products) == ("draft", w.hcp.id, "Outcomes study",
                                                                         ["CARDIO-10"])
    form = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert f"Draft visit #{visit.id}" in form and "Outcomes study" in form
    assert client.post(f"{url}/start", data={"csrf_token": token}).status_code == 409


def test_planned_vs_done_page(client, auth, w, db):
    new_plan(db, w.rep, w.hcp, NOW + timedelta(hours=2))
    auth.login(w.rep)
    page = client.get("/calendar/planned-vs-done").get_data(as_text=True)
    assert w.hcp.full_name in page and "<strong>1</strong> planned" in page
    assert client.get(f"/calendar/planned-vs-done?owner_id={w.rep2.id}").status_code == 403
    auth.logout()
    auth.login(w.compliance)
    page = client.get(f"/calendar/planned-vs-done?owner_id={w.rep.id}").get_data(as_text=True)
    assert w.hcp.full_name in page and w.rep.name in page


def test_plan_time_is_the_one_filter_for_plan_times(app):
    from crm.visit_plans.views import plan_time

    value = datetime(2026, 12, 9, 8, 5, tzinfo=UTC)
    assert app.jinja_env.filters["plan_time"] is plan_time
    assert plan_time(value) == "Wed 09 Dec 2026 08:05 UTC"
    assert (plan_time(value, "time"), plan_time(value, "day"), plan_time(value, "input")) == (
        "08:05", "Wed 09 Dec", "2026-12-09T08:05")
    assert plan_time(value.date()) == "Wed 09 Dec" and plan_time(None) == ""
