"""Insights (issue 12 item 4): one page and one API for every role with the same numbers, restricted items
counted but never shown, each chart with its table and CSV, bad periods refused, and the marketer's week:
a segment, a quarter's plan, an NPS survey to the segment, and a week later attainment and NPS on one page."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from crm.campaigns.models import CampaignMessage, EmailEvent
from crm.consent.queries import coverage
from crm.db import utcnow
from crm.insights import charts, services
from crm.insights.kpis import KPI_BY_KEY
from crm.navigation import NAV
from crm.plans import services as plan_services
from crm.plans.attainment import attainment
from crm.segments import services as segment_services
from crm.segments.services import segment_where
from crm.surveys import services as survey_services
from crm.surveys.models import Survey
from crm.timeline.services import record_interaction
from tests.campaigns_support import email_consent, make_campaign, make_template, viewer_of
from tests.conftest import PASSWORD, AuthActions

ROLES = ("field_rep", "marketer", "call_centre", "medical", "compliance", "admin")
MARK = "ZQXSECRET"
# A fixed period: Monday 2026-01-05 to Sunday 2026-02-01 (four weeks).
SINCE, UNTIL = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC)
PERIOD = "since=2026-01-05T00:00:00Z&until=2026-02-02T00:00:00Z"
CHART_NAMES = ("channel-mix", "reach", "campaign-funnel", "consent-coverage", "plan-attainment", "nps-trend")


def at(day: int, month: int = 1) -> datetime:
    return datetime(2026, month, day, 10, tzinfo=UTC)


@pytest.fixture
def world(db, factory):
    north, west = factory.territory("IN-N", "North"), factory.territory("IN-W", "West")
    people = {role: factory.user(role, territories=[north] if role == "field_rep" else []) for role in ROLES}
    a1, a2 = factory.hcp(north, tier="A"), factory.hcp(west, tier="A")
    b1 = factory.hcp(north, tier="B")
    marketer = people["marketer"]
    tier_a = segment_services.create_segment(db, marketer, viewer_of(marketer), {"name": "Tier A", "tiers": ["A"]})
    rep, cc, msl = people["field_rep"], people["call_centre"], people["medical"]

    def add(actor, hcps, when, kind, **kw):
        item, _ = record_interaction(db, actor, hcp_ids=[h.id for h in hcps], occurred_at=when,
                                     channel=kind.split(".")[0], kind=kind, **kw)
        return item

    # week of Jan 5: a visit to a1 and a group visit to a1 + b1 (one item, two HCPs)
    add(rep, [a1], at(6), "visit.submitted", summary="standard visit")
    add(rep, [a1, b1], at(7), "visit.submitted", summary="group visit")
    # week of Jan 12: an adverse event (pv) for a2 and a medical visit to b1, both with the marker
    add(cc, [a2], at(13), "call_centre.adverse_event", sensitivity="pv", summary=f"{MARK} rash after dose",
        details={"text": MARK})
    add(msl, [b1], at(14), "visit.submitted", sensitivity="medical", summary=f"{MARK} off-label question")
    # week of Jan 19: a visit corrected once (counts once), an email delivered to b1
    first = add(rep, [a2], at(20), "visit.submitted", summary="first version")
    add(rep, [a2], at(20), "visit.submitted", summary="corrected", supersedes=first)
    add(None, [b1], at(21), "email.delivered", source="esp", owner_role="system")
    # outside the period
    add(rep, [a1], at(3, 2), "visit.submitted")
    db.flush()
    return {"people": people, "a1": a1, "a2": a2, "b1": b1, "tier_a": tier_a, "north": north}


def body_of(api, user, chart, query=PERIOD):
    response = api(user).get(f"/api/v1/insights/{chart}?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# -- the figures -------------------------------------------------------------------------------------

def test_channel_mix_counts_each_item_once_per_week_and_counts_restricted_items(api, world):
    data = body_of(api, world["people"]["marketer"], "channel-mix")
    assert data["weeks"] == ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]
    cell = {(i["week_start"], i["channel"]): (i["interactions"], i["restricted"]) for i in data["items"]}
    assert len(cell) == 4 * 7  # every week and channel listed, zeros included
    assert cell[("2026-01-05", "visit")] == (2, 0)  # the group visit once, not once per HCP
    assert cell[("2026-01-12", "call_centre")] == (1, 1)  # the adverse event counts, and is restricted
    assert cell[("2026-01-12", "visit")] == (1, 1)  # the medical visit too
    assert cell[("2026-01-19", "visit")] == (1, 0)  # the corrected visit counts once
    assert cell[("2026-01-19", "email")] == (1, 0)
    assert cell[("2026-01-26", "visit")] == (0, 0)
    totals = {t["channel"]: t["interactions"] for t in data["totals"]}
    assert totals["visit"] == 4 and totals["call_centre"] == 1 and totals["email"] == 1


def test_a_segment_narrows_the_channel_mix_to_items_with_its_hcps(api, world):
    data = body_of(api, world["people"]["marketer"], "channel-mix", f"{PERIOD}&segment_id={world['tier_a'].id}")
    assert data["segment"] == {"id": world["tier_a"].id, "name": "Tier A"}
    totals = {t["channel"]: t["interactions"] for t in data["totals"]}
    # tier A is a1 and a2: both visits of week 1, the adverse event, the corrected visit; not b1's items
    assert totals == {"visit": 3, "call_centre": 1, "email": 0, "event": 0, "order": 0, "survey": 0, "consent": 0}


def test_reach_and_frequency_by_segment(api, world, db, factory):
    marketer = world["people"]["marketer"]
    segment_services.create_segment(db, marketer, viewer_of(marketer), {"name": "Tier C", "tiers": ["C"]})
    data = body_of(api, marketer, "reach")
    rows = {r["segment"]: r for r in data["items"]}
    assert list(rows) == ["All HCPs", "Tier A", "Tier C"]
    # touches (the touch table): a1 2 visits, b1 group visit + medical visit + email, a2 adverse event + visit
    assert rows["All HCPs"] == {"segment_id": None, "segment": "All HCPs", "hcps": 3, "reach": 3,
                                "reach_rate_pct": 100.0, "touches": 7, "frequency": 2.33}
    assert rows["Tier A"]["hcps"] == 2 and rows["Tier A"]["reach"] == 2 and rows["Tier A"]["touches"] == 4
    assert rows["Tier A"]["frequency"] == 2.0
    assert rows["Tier C"] == {"segment_id": rows["Tier C"]["segment_id"], "segment": "Tier C", "hcps": 0,
                              "reach": 0, "reach_rate_pct": None, "touches": 0, "frequency": 0.0}
    only = body_of(api, marketer, "reach", f"{PERIOD}&segment_id={world['tier_a'].id}")
    assert [r["segment"] for r in only["items"]] == ["All HCPs", "Tier A"]


def test_consent_coverage_is_the_consent_feature_s_narrowed_to_the_segment(api, world, db):
    email_consent(db, world["a1"], "market_research")
    everyone = body_of(api, world["people"]["marketer"], "consent-coverage")
    total, items = coverage(db)
    assert everyone["hcps"] == total == 3 and everyone["items"] == items
    tier_a = body_of(api, world["people"]["marketer"], "consent-coverage", f"segment_id={world['tier_a'].id}")
    row = next(r for r in tier_a["items"] if (r["channel"], r["purpose"]) == ("email", "market_research"))
    assert tier_a["hcps"] == 2 and row["granted"] == 1 and row["coverage_pct"] == 50.0 and row["none"] == 1


def test_plan_attainment_is_the_plans_own_figure(api, world, db):
    marketer = world["people"]["marketer"]
    plan = plan_services.create_plan(db, marketer, viewer_of(marketer), {
        "name": "Q1 tier A", "cycle_start": date(2026, 1, 1), "cycle_end": date(2026, 3, 31),
        "segment_id": world["tier_a"].id, "territory_codes": [], "channel_goals": {"visit": 2},
        "product_goals": [], "targets": []})
    plan_services.create_plan(db, marketer, viewer_of(marketer), {
        "name": "Last year", "cycle_start": date(2025, 1, 1), "cycle_end": date(2025, 3, 31),
        "segment_id": world["tier_a"].id, "territory_codes": [], "channel_goals": {"visit": 1},
        "product_goals": [], "targets": []})
    data = body_of(api, marketer, "plan-attainment")
    (row,) = data["items"]  # only the plan whose cycle meets the period
    own = attainment(db, plan, hcp_limit=0)["totals"]
    assert row["name"] == "Q1 tier A" and row["planned"] == own["planned"] == 4
    assert row["attained"] == own["attained"] == 3 and row["attainment_pct"] == own["attainment_pct"] == 75.0
    other = body_of(api, marketer, "plan-attainment", f"{PERIOD}&segment_id=" + str(
        segment_services.create_segment(db, marketer, viewer_of(marketer), {"name": "Nurses",
                                                                            "professions": ["nurse"]}).id))
    assert other["items"] == []


def _answered_survey(db, world, scores):
    marketer = world["people"]["marketer"]
    hcps = [world["a1"], world["a2"], world["b1"]]
    survey = survey_services.create_survey(db, marketer, viewer_of(marketer), {
        "name": "NPS Jan", "kind": "nps", "questions": [], "audience": {"hcp_ids": [h.id for h in hcps]}})
    cc = world["people"]["call_centre"]
    for hcp, (score, when) in zip(hcps, scores, strict=True):
        survey_services.capture_answer(db, cc, viewer_of(cc), survey, hcp_id=hcp.id,
                                       answer=survey_services.Answer(score, (), None), medium="phone",
                                       answered_at=when)
    return survey


def test_nps_trend_is_the_surveys_nps_per_month_and_per_segment(api, world, db):
    _answered_survey(db, world, [(10, at(10)), (9, at(2, 2) - timedelta(hours=1)), (3, at(20))])
    two_months = "since=2026-01-01T00:00:00Z&until=2026-03-01T00:00:00Z"
    data = body_of(api, world["people"]["marketer"], "nps-trend", two_months)
    assert [m["month"] for m in data["items"]] == ["2026-01", "2026-02"]
    jan, feb = data["items"]
    assert (jan["responses"], jan["promoters"], jan["detractors"], jan["nps"]) == (2, 1, 1, 0)
    assert (feb["responses"], feb["nps"]) == (1, 100)
    assert data["overall"]["nps"] == 33
    by_month = survey_services.nps_results(db, since=datetime(2026, 1, 1, tzinfo=UTC),
                                           until=datetime(2026, 3, 1, tzinfo=UTC))["by_month"]
    assert [m["nps"] for m in by_month] == [jan["nps"], feb["nps"]]
    tier_a = body_of(api, world["people"]["marketer"], "nps-trend",
                     f"since=2026-01-01T00:00:00Z&until=2026-03-01T00:00:00Z&segment_id={world['tier_a'].id}")
    assert [m["nps"] for m in tier_a["items"]] == [100, 100] and tier_a["overall"]["responses"] == 2
    empty = body_of(api, world["people"]["marketer"], "nps-trend",
                    "since=2025-06-01T00:00:00Z&until=2025-07-01T00:00:00Z")
    assert empty["items"] == [{"month": "2025-06", "responses": 0, "promoters": 0, "passives": 0, "detractors": 0,
                               "nps": None}] and empty["overall"]["nps"] is None


def test_campaign_funnel_sums_the_campaigns_sent_in_the_period(api, world, db):
    people = world["people"]
    template = make_template(db, people["marketer"], people["compliance"])
    campaign = make_campaign(db, people["marketer"], template, [world["a1"].id, world["b1"].id], name="January news")
    campaign.status, campaign.last_sent_at = "sent", at(8)
    for hcp in (world["a1"], world["b1"]):
        db.add(CampaignMessage(campaign_id=campaign.id, hcp_id=hcp.id, status="sent", sent_at=at(8)))
    for n, (hcp, kind) in enumerate([(world["a1"], "delivered"), (world["b1"], "delivered"), (world["a1"], "open"),
                                     (world["a1"], "open"), (world["a1"], "click"), (world["b1"], "unsubscribe")]):
        db.add(EmailEvent(sg_event_id=f"ev{n}", event_type=kind, platform_type=kind, occurred_at=at(9),
                          hcp_id=hcp.id, campaign_id=campaign.id))
    old = make_campaign(db, people["marketer"], template, [world["a1"].id], name="Last year")
    old.status, old.last_sent_at = "sent", at(8) - timedelta(days=365)
    db.flush()
    data = body_of(api, people["marketer"], "campaign-funnel")
    assert data["campaigns"] == 1
    assert data["totals"] == {"sent": 2, "delivered": 2, "opened": 1, "clicked": 1, "bounced": 0, "unsubscribed": 1}
    assert data["items"][0]["name"] == "January news"
    tier_a = body_of(api, people["marketer"], "campaign-funnel", f"{PERIOD}&segment_id={world['tier_a'].id}")
    assert tier_a["campaigns"] == 0  # its audience is HCP ids, not the segment


# -- every role: the same figures; restricted content never -------------------------------------------

def _page_client(app, user):
    client = app.test_client()
    assert AuthActions(client).login(user, PASSWORD).status_code == 302
    return client


def _numbers(html: str) -> list[str]:
    main = html[html.find("<main"):]
    # every table cell's text, links and other markup taken off (a link a role may not follow is left out)
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td>(.*?)</td>", main, flags=re.S)]


def test_every_role_sees_the_same_figures_and_never_restricted_content(app, api, world, db):
    _answered_survey(db, world, [(10, at(10)), (9, at(11)), (2, at(12))])
    bodies, pages, csvs = {}, {}, {}
    for role in ROLES:
        user = world["people"][role]
        bodies[role] = {chart: api(user).get(f"/api/v1/insights/{chart}?{PERIOD}").get_data(as_text=True)
                        for chart in CHART_NAMES}
        client = _page_client(app, user)
        page = client.get("/insights?since=2026-01-05&until=2026-02-01")
        assert page.status_code == 200
        pages[role] = page.get_data(as_text=True)
        csvs[role] = {chart: client.get(f"/insights/{chart}.csv?since=2026-01-05&until=2026-02-01")
                      .get_data(as_text=True) for chart in CHART_NAMES}
    for role in ROLES:
        assert bodies[role] == bodies["marketer"], role
        assert csvs[role] == csvs["marketer"], role
        assert _numbers(pages[role]) == _numbers(pages["marketer"]), role
        everything = pages[role] + "".join(bodies[role].values()) + "".join(csvs[role].values())
        assert MARK not in everything, role  # even for roles that may read it elsewhere: insights are counts


def test_the_page_shows_every_chart_with_its_table_csv_and_glossary_link(app, world):
    page = _page_client(app, world["people"]["field_rep"]).get("/insights?since=2026-01-05&until=2026-02-01")
    html = page.get_data(as_text=True)
    assert html.count('role="img"') == 6 and html.count("<table>") >= 6
    for chart in CHART_NAMES:
        assert f'href="/insights/{chart}.csv?since=2026-01-05&amp;until=2026-02-01"' in html
    for anchor in ("kpi-interactions-per-week", "kpi-segment-reach", "kpi-attainment", "kpi-nps", "kpi-funnel-sent",
                   "kpi-consent-coverage"):
        assert f"/glossary#{anchor}" in html
        assert anchor.removeprefix("kpi-").replace("-", "_") in KPI_BY_KEY
    assert 'value="2026-01-05"' in html and 'value="2026-02-01"' in html


def test_a_rep_sees_every_plan_s_figures_but_links_only_to_plans_of_own_territories(app, world, db):
    marketer = world["people"]["marketer"]
    plans = {code: plan_services.create_plan(db, marketer, viewer_of(marketer), {
        "name": f"Plan {code}", "cycle_start": date(2026, 1, 1), "cycle_end": date(2026, 3, 31),
        "segment_id": None, "territory_codes": [code], "channel_goals": {"visit": 1},
        "product_goals": [], "targets": []}) for code in ("IN-N", "IN-W")}
    pages = {role: _page_client(app, world["people"][role]).get("/insights?since=2026-01-05&until=2026-02-01")
             .get_data(as_text=True) for role in ("field_rep", "marketer")}
    own, other = plans["IN-N"].id, plans["IN-W"].id
    assert f'href="/plans/{own}">Plan IN-N</a>' in pages["field_rep"]
    assert f'href="/plans/{other}"' not in pages["field_rep"] and "<td>Plan IN-W</td>" in pages["field_rep"]
    assert f'href="/plans/{other}">Plan IN-W</a>' in pages["marketer"]
    rep = _page_client(app, world["people"]["field_rep"])
    assert rep.get(f"/plans/{other}").status_code == 403  # the link left out would have led here
    assert _numbers(pages["field_rep"]) == _numbers(pages["marketer"])


def test_the_page_defaults_to_the_last_13_weeks(app, world):
    html = _page_client(app, world["people"]["marketer"]).get("/insights").get_data(as_text=True)
    first = services.default_since(utcnow()).date()
    assert f'value="{first.isoformat()}"' in html and f'value="{utcnow().date().isoformat()}"' in html


def test_csv_export_has_the_table_s_figures_and_is_formula_safe(app, world, db):
    marketer = world["people"]["marketer"]
    segment_services.create_segment(db, marketer, viewer_of(marketer), {"name": "=HYPERLINK(1)", "tiers": ["B"]})
    client = _page_client(app, marketer)
    response = client.get("/insights/reach.csv?since=2026-01-05&until=2026-02-01")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "insights-reach-20260105-20260201.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["segment_id", "segment", "hcps", "reach", "reach_rate_pct", "touches", "frequency"]
    assert ["'=HYPERLINK(1)", "1", "1", "100.0", "3", "3.0"] == rows[2][1:]
    mix = list(csv.reader(io.StringIO(client.get("/insights/channel-mix.csv?since=2026-01-05&until=2026-02-01")
                                      .get_data(as_text=True))))
    assert ["2026-01-12", "call_centre", "1", "1"] in mix and len(mix) == 1 + 4 * 7


def test_every_role_has_the_insights_link(app, world):
    for role in ROLES:
        assert ("insights_pages.index", "Insights") in NAV[role]
        html = _page_client(app, world["people"][role]).get("/glossary").get_data(as_text=True)
        assert 'href="/insights"' in html


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "since=2026-01-05T00:00:00%00Z", "until=%00", "since=0001-01-01T00:00:00Z", "until=9999-12-31T23:59:59Z",
    "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
    "since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since=2026-01-01T00:00:00", "segment_id=0",
    "segment_id=99999999999999999999", "segment_id=abc", "segment_id=999999", "since=1900-01-01T00:00:00Z",
    "since=2199-12-31T00:00:00Z",
])
def test_bad_periods_and_segments_are_422_with_a_reason(api, world, query):
    for chart in CHART_NAMES:
        response = api(world["people"]["field_rep"]).get(f"/api/v1/insights/{chart}?{query}")
        assert response.status_code == 422, (chart, query, response.get_data(as_text=True))
        body = response.get_json()
        assert body["status"] == 422 and body["errors"], body


@pytest.mark.parametrize(("query", "message"), [
    ("since=2026-02-01&until=2026-01-01", "must be before until"),
    ("since=2020-01-01&until=2026-01-01", "at most 732 days"),
    ("since=2026-01-01%00", "enter a date as YYYY-MM-DD"),
    ("since=0001-01-01", "choose a date in the years"),
    ("until=9999-12-31", "choose a date in the years"),
    ("since=tomorrow", "enter a date as YYYY-MM-DD"),
    ("segment_id=99999999999999999999", "not a segment id"),
    ("segment_id=424242", "no segment with id 424242"),
])
def test_bad_periods_on_the_page_and_csv_are_422_with_a_message(app, world, query, message):
    client = _page_client(app, world["people"]["marketer"])
    for url in (f"/insights?{query}", f"/insights/reach.csv?{query}"):
        response = client.get(url)
        assert response.status_code == 422, url
        assert message in response.get_data(as_text=True), url


# -- the charts --------------------------------------------------------------------------------------

def test_charts_are_accessible_escaped_svg_that_fits_a_phone():
    svg = str(charts.hbar("Reach <by> segment", "desc & more", ["<script>x</script>"],
                          [charts.Series("Reach rate", [50.0])], unit=" %", max_value=100))
    assert svg.startswith('<svg class="chart" role="img" aria-labelledby="') and svg.endswith("</svg>")
    assert 'viewBox="0 0 360 ' in svg and 'width="100%"' in svg
    assert "<title id=" in svg and "<desc id=" in svg and "Reach &lt;by&gt; segment" in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "50 %" in svg
    stacked = str(charts.columns("Weekly", "d", ["5 Jan", "12 Jan"], [charts.Series("Visits", [3, 0]),
                                                                       charts.Series("Emails", [1, 2])]))
    assert stacked.count("<rect") == 2 + 3  # two legend keys, three non-zero segments
    line = str(charts.line("NPS", "d", ["2026-01", "2026-02", "2026-03"], [charts.Series("NPS", [10, None, -20])],
                           lo=-100, hi=100))
    assert line.count("<circle") == 2 and "<polyline" not in line  # a gap breaks the line
    empty = str(charts.hbar("Nothing", "d", [], [charts.Series("x", [])]))
    assert "No data for this period." in empty


# -- the marketer's week (done-when of the issue) ------------------------------------------------------

def test_a_marketer_segments_plans_surveys_and_sees_attainment_and_nps_a_week_later(app, api, db, factory):
    north = factory.territory("JR-N", "North")
    marketer, cc = factory.user("marketer"), factory.user("call_centre")
    hcps = [factory.hcp(north, tier="A") for _ in range(3)] + [factory.hcp(north, tier="B")]
    for hcp in hcps:
        email_consent(db, hcp, "market_research")
    client = api(marketer)
    segment = client.post("/api/v1/segments", json={"name": "Tier A north", "tiers": ["A"],
                                                    "territory_codes": ["JR-N"]}).get_json()
    today = utcnow().date()
    start, end = plan_services.current_quarter(today)
    plan = client.post("/api/v1/engagement-plans", json={
        "name": "This quarter", "cycle_start": start.isoformat(), "cycle_end": end.isoformat(),
        "segment_id": segment["id"], "channel_goals": {"survey": 1}}).get_json()
    survey = client.post("/api/v1/surveys", json={"name": "How are we doing?", "kind": "nps",
                                                  "audience": {"segment_id": segment["id"]}})
    assert survey.status_code == 201, survey.get_json()
    survey_id = survey.get_json()["id"]
    assert survey.get_json()["segment_id"] == segment["id"]
    assert client.post(f"/api/v1/surveys/{survey_id}/send").get_json()["sent"] == 3  # tier A only
    answered = utcnow() - timedelta(minutes=5)
    for hcp, score in zip(hcps[:3], (10, 9, 4), strict=True):
        assert api(cc).post(f"/api/v1/surveys/{survey_id}/responses", json={
            "hcp_id": hcp.id, "score": score, "medium": "phone",
            "answered_at": answered.isoformat()}).status_code == 201
    # a week later, on one page
    since = (today - timedelta(days=7)).isoformat()
    html = _page_client(app, marketer).get(f"/insights?since={since}&until={today.isoformat()}"
                                           f"&segment_id={segment['id']}").get_data(as_text=True)
    assert "This quarter" in html and "Tier A north" in html
    row = re.search(rf'plans/{plan["id"]}">This quarter</a></td><td>[^<]*</td><td>(\d+)</td><td>(\d+)</td>'
                    r'<td>(\d+)</td><td>([^<]*)</td>', html)
    assert row is not None and row.groups() == ("3", "3", "3", "100.0 %")
    assert "<strong>33</strong> from 3 answer(s)" in html


# -- surveys: a segment as audience; NPS per saved segment ---------------------------------------------

def test_a_survey_to_a_segment_goes_to_the_segment_s_hcps_as_they_are_when_sent(db, world, factory):
    marketer = world["people"]["marketer"]
    survey = survey_services.create_survey(db, marketer, viewer_of(marketer), {
        "name": "Tier A survey", "kind": "nps", "questions": [], "audience": {"segment_id": world["tier_a"].id}})
    assert sorted(survey_services.audience_ids(db, survey)) == sorted([world["a1"].id, world["a2"].id])
    late = factory.hcp(world["north"], tier="A")
    assert late.id in survey_services.audience_ids(db, survey)
    assert sorted(survey_services.audience_ids(db, survey)) == sorted(
        db.scalars(select(segment_services.HCP.id).where(segment_where(world["tier_a"]))))


@pytest.mark.parametrize(("audience", "field"), [
    ({"segment_id": 999999}, "audience.segment_id"),
    ({"segment_id": None, "hcp_ids": []}, "audience"),
    ("both", "audience"),
])
def test_a_survey_audience_names_one_existing_source(api, world, audience, field):
    if audience == "both":
        audience = {"segment_id": world["tier_a"].id, "hcp_ids": [world["a1"].id]}
    response = api(world["people"]["marketer"]).post("/api/v1/surveys", json={
        "name": "x", "kind": "nps", "audience": audience})
    assert response.status_code == 422 and field in response.get_json()["errors"], response.get_json()


def test_the_survey_form_takes_a_segment(app, world, db):
    client = _page_client(app, world["people"]["marketer"])
    form = client.get("/surveys/new").get_data(as_text=True)
    assert f'<option value="{world["tier_a"].id}"' in form and "Tier A" in form
    token = AuthActions(client).csrf_token("/surveys/new")
    response = client.post("/surveys/new", data={"csrf_token": token, "name": "Form survey", "kind": "nps",
                                                  "segment_id": str(world["tier_a"].id)})
    assert response.status_code == 303
    survey = db.scalar(select(Survey).where(Survey.name == "Form survey"))
    assert survey.segment_id == world["tier_a"].id and survey.hcp_ids == [] and survey.audience_id is None
    bad = client.post("/surveys/new", data={"csrf_token": token, "name": "Bad", "kind": "nps",
                                            "segment_id": str(world["tier_a"].id), "hcp_ids": str(world["a1"].id)})
    assert bad.status_code == 422 and "give one of" in bad.get_data(as_text=True)


def test_nps_results_break_down_per_saved_segment(db, world):
    _answered_survey(db, world, [(10, at(10)), (6, at(11)), (9, at(12))])
    result = survey_services.nps_results(db)
    by_segment = {g["key"]: g for g in result["by_segment"]["segment"]}
    assert set(by_segment) == {"Tier A"}  # b1 is in no saved segment
    assert (by_segment["Tier A"]["responses"], by_segment["Tier A"]["nps"]) == (2, 0)
    assert {g["key"] for g in result["by_segment"]["profession"]} == {"gp"}


# -- demo data ---------------------------------------------------------------------------------------

def test_demo_data_fills_every_chart_of_the_default_13_weeks(db):
    from crm.demo import load_demo

    load_demo(db, say=lambda _m: None, hcps=40)
    data = services.all_insights(db, services.window(db))
    busy_weeks = {i["week_start"] for i in data["channel-mix"]["items"] if i["interactions"]}
    assert len(busy_weeks) >= 10 and sum(t["interactions"] for t in data["channel-mix"]["totals"]) >= 40
    assert data["reach"]["items"][0]["reach"] > 0 and len(data["reach"]["items"]) > 1  # the demo's segments
    assert data["plan-attainment"]["items"] and data["plan-attainment"]["items"][0]["planned"] > 0
    assert data["nps-trend"]["overall"]["responses"] > 0
    assert data["campaign-funnel"]["campaigns"] == 2 and data["campaign-funnel"]["totals"]["delivered"] > 0
    assert any(r["granted"] for r in data["consent-coverage"]["items"])
