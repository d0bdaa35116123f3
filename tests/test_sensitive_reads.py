"""Issue 11: one read path for sensitive records, walked route by route.

The walker enumerates every GET route of the app (``url_map``), fills its ids from a data set of medical
and pv records with a ``ZQX`` marker in every free-text field (``tests/sensitive_support.py``), requests it
as a field rep and as a marketer (API with a bearer token, pages with a logged-in session) and asserts that
no marker reaches any body. A route it cannot fill fails the test unless ``NOT_WALKED`` lists it, with why.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from crm.access.policy import SEES_SUPERSEDED
from crm.timeline.models import Interaction, InteractionProduct, SensitiveRead
from tests.conftest import PASSWORD, AuthActions
from tests.sensitive_support import HIDDEN_SKU, MARK, build

# Path parameters the walker fills, by name, from the data set (each value in turn).
FILLED = {
    "hcp_id": lambda w: [w.hcp.id, w.hcp2.id],
    "interaction_id": lambda w: w.ids["interaction"],
    "visit_id": lambda w: w.ids["visit"] + w.ids["plan_visit"],
    "contact_id": lambda w: w.ids["contact"],
    "inquiry_id": lambda w: w.ids["inquiry"],
    "case_id": lambda w: w.ids["case"],
    "event_id": lambda w: w.ids["event"],
    "survey_id": lambda w: w.ids["survey"],
    "plan_id": lambda w: w.ids["plan"],
    "segment_id": lambda w: w.ids["segment"],
    "visit_plan_id": lambda w: w.ids["visit_plan"],
}

# Routes the walker does not request, and why. Adding a GET route with another parameter fails the test
# until it is filled above or listed here with its reason.
NOT_WALKED = {
    "/static/<path:filename>": "files shipped with the app, no data",
    # Signed links sent to one HCP, opened without a login: no role reads them, and they show only that
    # HCP's own consent and preference state.
    "/consent/confirm/<token>": "signed public link, no role",
    "/consent/unsubscribe/<token>": "signed public link, no role",
    "/consent/preferences/<token>": "signed public link, no role",
    # The data-subject download: a single-use link mailed to the HCP's own address; what it holds (no medical or
    # pv text, no staff) is asserted in tests/test_consent_pages.py.
    "/consent/my-data/<token>": "signed single-use link mailed to the HCP, no role",
    "/surveys/answer/<token>": "signed single-use survey link mailed to one HCP, no role; shows only the questions",
    # Marketing and ordering records: campaigns, templates, audiences, orders, HCOs, notices and master-data
    # runs are never medical or pv and carry no interaction content.
    "/api/v1/audiences/<int:audience_id>/preview": "campaign audience (HCP list), no interaction content",
    "/api/v1/campaigns/<int:campaign_id>": "campaign, standard by definition",
    "/api/v1/campaigns/<int:campaign_id>/recipients": "campaign send results, standard",
    "/api/v1/templates/<int:template_id>": "email template, standard",
    "/api/v1/hcos/<int:hco_id>": "HCO master data",
    "/api/v1/notices/<int:notice_id>": "consent notice text",
    "/api/v1/orders/<int:order_id>": "order lines, standard",
    "/api/v1/products/<sku>": "catalogue product and its sample settings, standard",
    "/api/v1/products/<sku>/lots": "sample lots of a product, standard",
    "/campaigns/<int:campaign_id>": "campaign, standard by definition",
    "/campaigns/<int:campaign_id>/send": "send confirmation: counts of a campaign's audience, standard",
    "/campaigns/audiences/<int:audience_id>": "campaign audience (HCP list)",
    "/campaigns/templates/<int:template_id>": "email template, standard",
    "/campaigns/templates/<int:template_id>/edit": "email template form, standard",
    "/hcos/<int:hco_id>/orders/new": "order form",
    "/orders/<int:order_id>": "order, standard",
    "/admin/masterdata/runs/<int:run_id>": "master-data import run (admin only)",
    "/admin/masterdata/exports/<int:job_id>/download": "a data-subject export file, for the admin or compliance "
                                                        "user who asked for it (tests/test_hcps_export.py)",
    "/admin/masterdata/runs/<int:run_id>/errors.csv": "master-data import errors (admin only)",
    # Sample accountability (issue 14): lots and units sent to a rep, never HCP content; who may read one
    # (its parties, compliance, admin) is asserted in tests/test_samples.py.
    "/api/v1/samples/shipments/<int:shipment_id>": "sample shipment: lots and units, standard",
    "/api/v1/samples/transfers/<int:transfer_id>": "sample transfer between reps: lots and units, standard",
    # Background jobs hold ids, counts and error text, never interaction content; who may read one (its
    # creator and admins) is asserted in tests/test_jobs.py.
    "/api/v1/jobs/<int:job_id>": "background job: state, progress, counts",
    "/jobs/<int:job_id>": "background job page: state, progress, counts",
}

# Filters on content a field rep or marketer may not see: walked too, with values from the data set.
FILTERED = [
    "/api/v1/interactions?product={sku}", "/api/v1/hcps/{hcp}/timeline?product={sku}",
    "/api/v1/interactions?kind=visit.submitted&kind=call_centre.adverse_event", "/feed?product={sku}",
    "/api/v1/interactions?channel=event", "/api/v1/visits?hcp_id={hcp}", "/api/v1/adverse-events?status=open",
    "/api/v1/medical-inquiries?status=answered", "/hcps/{hcp}?channel=visit&channel=call_centre",
]

_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def _urls(app: Flask, world: Any) -> tuple[list[str], list[str]]:
    """Every GET url to walk, and the rules the walker could not fill (not in NOT_WALKED)."""
    urls: list[str] = []
    unfilled: list[str] = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule in NOT_WALKED:
            continue
        names = _PARAM.findall(rule.rule)
        if any(n not in FILLED for n in names):
            unfilled.append(rule.rule)
            continue
        combos: list[dict[str, Any]] = [{}]
        for name in names:
            combos = [{**c, name: value} for c in combos for value in FILLED[name](world)]
        for values in combos:
            urls.append(_PARAM.sub(lambda m, v=values: str(v[m.group(1)]), rule.rule))
    urls += [u.format(sku=HIDDEN_SKU, hcp=world.hcp.id) for u in FILTERED]
    return sorted(set(urls)), unfilled


def _page_client(app: Flask, user: Any) -> Any:
    client = app.test_client()
    response = AuthActions(client).login(user, PASSWORD)
    assert response.status_code == 302, "login failed"
    return client


def _bodies(app: Flask, api: Any, user: Any, urls: list[str]) -> dict[str, tuple[int, str]]:
    token_client = api(user)
    pages = _page_client(app, user)
    out = {}
    for url in urls:
        response = token_client.get(url) if url.startswith("/api/") else pages.get(url)
        out[url] = (response.status_code, response.get_data(as_text=True))
    return out


@pytest.fixture
def world(db, factory):
    return build(db, factory)


def test_the_walker_fills_every_get_route(app, world):
    urls, unfilled = _urls(app, world)
    assert unfilled == [], f"GET routes the walker cannot fill: add to FILLED, or to NOT_WALKED with why: {unfilled}"
    assert "/api/v1/interactions/{}".format(world.ids["pv_visit_items"][-1]) in urls
    # The allow-list names only routes that exist: a stale entry would hide nothing but rot.
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert set(NOT_WALKED) <= rules


@pytest.mark.parametrize("role", ["field_rep", "marketer"])
def test_no_medical_or_pv_text_reaches_field_force_or_marketing(app, api, world, role):
    urls, _ = _urls(app, world)
    bodies = _bodies(app, api, world.users[role], urls)
    leaks = {url: body[max(body.find(MARK) - 80, 0):body.find(MARK) + 80]
             for url, (_, body) in bodies.items() if MARK in body}
    assert leaks == {}, f"medical/pv text reached a {role}: {leaks}"
    # The walk reached the records: not a row of 401s or redirects to the login page, and nothing broke.
    assert not [u for u, (status, _) in bodies.items() if status in (401, 302) or status >= 500]
    for key, template in (("interaction", "/api/v1/interactions/{}"), ("visit", "/api/v1/visits/{}"),
                          ("contact", "/api/v1/call-centre/contacts/{}"), ("event", "/api/v1/events/{}"),
                          ("visit", "/visits/{}"), ("contact", "/call-centre/contacts/{}"), ("event", "/events/{}")):
        for ident in world.ids[key]:
            assert bodies[template.format(ident)][0] == 200, template.format(ident)


@pytest.mark.parametrize("role", ["medical", "call_centre", "compliance", "admin"])
def test_the_roles_that_may_read_them_do_and_are_logged(app, api, world, db, role):
    """The positive control: the same walk as these roles finds the markers, and their reads are logged."""
    user = world.users[role]
    ids = world.ids["pv_visit_items"] + world.ids["pv_contact_items"]
    client = api(user)
    for item_id in ids:
        body = client.get(f"/api/v1/interactions/{item_id}").get_json()
        assert body["sensitivity"] == "pv" and body["redacted"] is False and MARK in str(body)
    logged = set(db.scalars(select(SensitiveRead.interaction_id).where(SensitiveRead.viewer_id == user.id)))
    assert set(ids) <= logged
    event = world.ids["event"][0]
    shown = client.get(f"/api/v1/events/{event}").get_json()
    assert shown["name"].startswith(MARK) and shown["redacted"] is False
    assert db.scalar(select(SensitiveRead.id).where(SensitiveRead.viewer_id == user.id,
                                                    SensitiveRead.what == "event")) is not None
    pages = _page_client(app, user)
    for visit_id in world.ids["visit"]:
        assert MARK in pages.get(f"/visits/{visit_id}").get_data(as_text=True)


@pytest.mark.parametrize("role", ["field_rep", "marketer"])
def test_reads_below_full_are_not_logged(api, world, db, role):
    user = world.users[role]
    client = api(user)
    for item_id in world.ids["interaction"]:
        body = client.get(f"/api/v1/interactions/{item_id}").get_json()
        if body["sensitivity"] != "standard":
            assert body["redacted"] is True and body["summary"] == "" and body["details"] == {}
    assert db.scalar(select(SensitiveRead.id).where(SensitiveRead.viewer_id == user.id)) is None


@pytest.mark.parametrize("role", ["field_rep", "marketer"])
def test_a_product_filter_does_not_confirm_a_hidden_product(api, world, db, role):
    """``?product=`` matches only items whose products the viewer may see: an item whose only link to
    the sku is withheld is not returned (it stays on the unfiltered timeline, redacted)."""
    client = api(world.users[role])
    hidden = set(db.scalars(select(Interaction.id).where(Interaction.sensitivity != "standard")))
    for url in (f"/api/v1/interactions?product={HIDDEN_SKU}",
                f"/api/v1/hcps/{world.hcp.id}/timeline?product={HIDDEN_SKU}"):
        assert {i["id"] for i in client.get(url).get_json()["items"]} & hidden == set()
    everything = {i["id"] for i in client.get(f"/api/v1/hcps/{world.hcp.id}/timeline?limit=200").get_json()["items"]}
    assert everything & hidden  # they are there, as existence-level items


@pytest.mark.parametrize("role", ["call_centre", "medical", "compliance", "admin"])
def test_a_product_filter_finds_what_the_viewer_may_read(api, world, db, role):
    client = api(world.users[role])
    found = {i["id"] for i in client.get(f"/api/v1/interactions?product={HIDDEN_SKU}").get_json()["items"]}
    query = select(Interaction.id).join(Interaction.products).where(InteractionProduct.sku == HIDDEN_SKU)
    if role not in SEES_SUPERSEDED:
        query = query.where(Interaction.superseded_by_id.is_(None))
    expected = set(db.scalars(query))
    assert expected and found == expected
    assert all(db.get(Interaction, i).sensitivity != "standard" for i in expected)


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "compliance", "admin"])
def test_a_medical_event_its_attendance_and_transfers_per_role(api, world, db, role):
    user = world.users[role]
    client = api(user)
    event_id = world.ids["event"][0]
    may_read = role not in ("field_rep", "marketer")
    event = client.get(f"/api/v1/events/{event_id}").get_json()
    listed = next(e for e in client.get("/api/v1/events").get_json()["items"] if e["id"] == event_id)
    assert listed == event
    attendance = client.get(f"/api/v1/events/{event_id}/attendance").get_json()["items"]
    transfers = client.get(f"/api/v1/events/{event_id}/transfers").get_json()["items"]
    hcp_transfers = client.get(f"/api/v1/hcps/{world.hcp.id}/transfers").get_json()["items"]
    # who attended and what was paid are shared with everyone; the event's content is not
    assert {(a["hcp_id"], a["status"]) for a in attendance} == {(world.hcp.id, "attended"), (world.hcp2.id, "no_show")}
    assert [Decimal(t["amount"]) for t in transfers + hcp_transfers] == [Decimal(25), Decimal(25)]
    assert event["type"] == "round_table" and event["sensitivity"] == "medical"
    if may_read:
        assert event["redacted"] is False and event["name"] == f"{MARK}-event-name"
        assert event["venue"] == f"{MARK}-event-venue" and event["products"] == ["ZZ-HIDDEN-1"]
        assert transfers[0]["description"] == f"{MARK}-transfer-note"
        logged = db.scalars(select(SensitiveRead.what).where(SensitiveRead.viewer_id == user.id)).all()
        assert set(logged) == {"event"}
    else:
        assert event["redacted"] is True and event["redaction_reason"] == "Details restricted to Medical Affairs"
        assert event["name"] == "Round table (medical, details restricted)"
        assert event["venue"] is None and event["url"] is None and event["organiser"] == ""
        assert event["products"] == []
        assert all(a["redacted"] and a["external_id"] is None for a in attendance)
        assert transfers[0]["description"] is None and hcp_transfers[0]["description"] is None
        assert db.scalar(select(SensitiveRead.id).where(SensitiveRead.viewer_id == user.id)) is None


def test_event_reads_are_on_the_read_log(api, world):
    """Compliance finds the reads of a medical event in the read-access log, by ``what=event``."""
    medical = world.users["medical"]
    assert api(medical).get("/api/v1/events/{}".format(world.ids["event"][0])).status_code == 200
    log = api(world.users["compliance"]).get("/api/v1/audit/sensitive-reads?what=event").get_json()["items"]
    assert [(r["viewer"]["id"], r["what"], r["sensitivity"]) for r in log] == [(medical.id, "event", "medical")]
