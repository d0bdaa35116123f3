"""Journeys that used to dead-end (issue 14 item 1), walked through the pages as each role concerned."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from crm.db import utcnow
from crm.orders import outbox as sender
from crm.orders.models import OrderOutbox
from tests.orders_support import OrderWorld, stub


def _token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


# -- ERP retry: the message says what really happened --------------------------------------------------

@pytest.fixture
def erp(app):
    adapter = stub(app)
    adapter.faults.reset()
    yield adapter
    adapter.faults.reset()


@pytest.fixture
def w(db, factory, app):
    return OrderWorld(db, factory, app)


def _queued_order(api, w) -> int:
    rep = api(w.rep)
    order_id = rep.post("/api/v1/orders", json={"hcp_id": w.hcp.id, "lines": [{"sku": "CARD-10", "quantity": 2}]}
                        ).get_json()["id"]
    assert rep.post(f"/api/v1/orders/{order_id}/submit").status_code == 202
    return order_id


def _retry(client, auth, db, order_id: int) -> str:
    box_id = db.scalar(select(OrderOutbox.id).where(OrderOutbox.order_id == order_id))
    token = auth.csrf_token("/admin/erp/outbox")
    resp = client.post(f"/admin/erp/outbox/{box_id}/retry", data={"csrf_token": token}, follow_redirects=True)
    assert resp.status_code == 200
    match = re.search(r'class="flash retry-outcome"[^>]*>([^<]*)<', resp.get_data(as_text=True))
    assert match, "no outcome shown after the retry"
    return match.group(1)


def test_retry_that_reaches_the_erp_says_sent_and_accepted(app, db, api, auth, client, w, erp):
    erp.faults.down(1)
    order_id = _queued_order(api, w)  # the send after commit failed: still pending
    auth.login(w.admin)
    message = _retry(client, auth, db, order_id)
    assert message == f"Order #{order_id} was sent: the ERP received it and has not answered yet."


def test_retry_while_the_erp_is_down_says_when_and_why_and_never_sent(app, db, api, auth, client, w, erp):
    erp.faults.down(10)
    order_id = _queued_order(api, w)
    auth.login(w.admin)
    message = _retry(client, auth, db, order_id)
    assert "was not sent: queued for retry at" in message and " UTC because " in message
    assert "unavailable" in message.lower()
    assert "was sent:" not in message


def test_retry_of_a_failed_message_that_fails_again_says_after_how_many_attempts(app, db, api, auth, client, w,
                                                                                 erp, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_ERP_MAX_ATTEMPTS", 2)
    erp.faults.down(10)
    order_id = _queued_order(api, w)
    sender.send_due(app, now=utcnow() + timedelta(hours=1))
    auth.login(w.admin)
    message = _retry(client, auth, db, order_id)
    assert message.startswith(f"Order #{order_id} was not sent: failed after 3 attempts (last error: ")


# -- HCP page: "Log a visit" / "Log a contact" for the roles that may, opening the form with the HCP ------

def test_a_rep_logs_a_visit_from_the_page_of_an_hcp_in_own_territory_only(client, auth, factory):
    mine, other = factory.territory(), factory.territory()
    hcp, stranger = factory.hcp(territory=mine), factory.hcp(territory=other)
    auth.login(factory.user("field_rep", territories=[mine]))
    page = client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    assert f'href="/visits/new?hcp_id={hcp.id}">Log a visit</a>' in page
    form = client.get(f"/visits/new?hcp_id={hcp.id}").get_data(as_text=True)
    assert f'name="hcp_id" value="{hcp.id}"' in form and hcp.full_name in form
    elsewhere = client.get(f"/hcps/{stranger.id}").get_data(as_text=True)
    assert "Log a visit" not in elsewhere
    assert client.get(f"/visits/new?hcp_id={stranger.id}").status_code == 403


def test_medical_logs_a_visit_for_any_hcp(client, auth, factory):
    hcp = factory.hcp(territory=factory.territory())
    auth.login(factory.user("medical"))
    assert f'href="/visits/new?hcp_id={hcp.id}">Log a visit</a>' in client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    assert client.get(f"/visits/new?hcp_id={hcp.id}").status_code == 200


def test_the_call_centre_logs_a_contact_with_the_hcp_picked(client, auth, factory):
    hcp = factory.hcp(territory=factory.territory())
    auth.login(factory.user("call_centre"))
    page = client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    assert f'href="/call-centre?hcp_id={hcp.id}">Log a contact</a>' in page
    assert "Log a visit" not in page
    form = client.get(f"/call-centre?hcp_id={hcp.id}").get_data(as_text=True)
    assert f'name="hcp_id" value="{hcp.id}"' in form


@pytest.mark.parametrize("role", ["marketer", "compliance", "admin", "field_rep", "medical"])
def test_no_log_a_contact_for_other_roles(client, auth, factory, role):
    hcp = factory.hcp(territory=factory.territory())
    auth.login(factory.user(role))
    assert "Log a contact" not in client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    assert client.get(f"/call-centre?hcp_id={hcp.id}").status_code == 403


# -- Compliance home: what waits for them, with counts and links ------------------------------------------

def _awaiting(page: str, key: str) -> tuple[int, str | None]:
    match = re.search(rf'<li id="awaiting-{key}"><strong class="count">(\d+)</strong>\s*(?:<a href="([^"]+)">)?',
                      page)
    assert match, f"no awaiting row {key}"
    return int(match.group(1)), match.group(2)


def test_the_compliance_home_shows_what_awaits_with_counts_and_links(client, auth, factory, db):
    from crm.callcentre import services as callcentre
    from crm.mail.models import MailOutbox
    from crm.timeline.services import record_interaction
    from tests.campaigns_support import make_template
    from tests.events_support import viewer_of

    compliance, marketer, agent = factory.user("compliance"), factory.user("marketer"), factory.user("call_centre")
    make_template(db, marketer)  # a draft: awaits approval
    make_template(db, marketer, compliance)  # approved: nothing to do
    hcp = factory.hcp()
    for days in (2, 40):  # one recent consent gap, one older than the window
        record_interaction(db, marketer, hcp_ids=[hcp.id], occurred_at=utcnow() - timedelta(days=days),
                           channel="email", kind="email.sent", summary="Mail", consent_gap=True)
    for hours in (30, 2, 3):  # one overdue, two due within 24 hours
        callcentre.create_contact(db, agent, viewer_of(agent), hcp_id=hcp.id,
                                  occurred_at=utcnow() - timedelta(hours=hours), direction="inbound",
                                  medium="phone", reason="adverse_event", summary="Rash after dose")
    db.add(MailOutbox(kind="campaign", idempotency_key="k-failed", recipient="a@example.org", message_id="<m@x>",
                      state="failed"))
    db.flush()
    auth.login(compliance)
    page = client.get("/").get_data(as_text=True)
    assert _awaiting(page, "templates") == (1, "/campaigns/templates")
    assert _awaiting(page, "gaps") == (1, "/consent/gaps")
    assert _awaiting(page, "ae-overdue") == (1, "/adverse-events")
    assert _awaiting(page, "ae-due") == (2, "/adverse-events")
    assert _awaiting(page, "mail-failed") == (1, None)
    for path in ("/campaigns/templates", "/consent/gaps", "/adverse-events"):
        assert client.get(path).status_code == 200  # compliance may open every link it is given


@pytest.mark.parametrize("role", ["field_rep", "marketer", "call_centre", "medical", "admin"])
def test_only_compliance_gets_the_waiting_list(client, auth, factory, role):
    auth.login(factory.user(role))
    assert 'id="awaiting"' not in client.get("/").get_data(as_text=True)


# -- Campaign send: a confirmation step, and only the confirm POST sends ----------------------------------

def _campaign_world(db, factory):
    from tests.campaigns_support import email_consent, make_campaign, make_template

    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    consented, silent = factory.hcp(), factory.hcp()
    email_consent(db, consented)
    template = make_template(db, marketer, compliance, subject="Cardiozol news")
    return marketer, make_campaign(db, marketer, template, [consented.id, silent.id], name="Autumn"), consented


def _funnel(page: str, text: str) -> int:
    match = re.search(rf'class="n">(\d+)</span> {text}', page)
    assert match, f"no funnel line {text!r}"
    return int(match.group(1))


def _messages(db, campaign) -> int:
    from sqlalchemy import func

    from crm.campaigns.models import CampaignMessage

    return db.scalar(select(func.count()).select_from(CampaignMessage)
                     .where(CampaignMessage.campaign_id == campaign.id)) or 0


def test_send_asks_for_confirmation_with_audience_skips_template_and_purpose(client, auth, db, factory, app):
    from tests.campaigns_support import campaign_mails

    marketer, campaign, consented = _campaign_world(db, factory)
    auth.login(marketer)
    show = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert f'href="/campaigns/{campaign.id}/send"' in show and f'action="/campaigns/{campaign.id}/send"' not in show
    page = client.get(f"/campaigns/{campaign.id}/send").get_data(as_text=True)
    assert _funnel(page, "HCPs in the audience now") == 2
    assert _funnel(page, "expected to be mailed") == 1
    assert _funnel(page, "expected to be skipped: No consent for this purpose by email") == 1
    assert "Cardiozol news" in page and "<dt>Purpose</dt><dd>promotional</dd>" in page
    assert _messages(db, campaign) == 0  # looking sends nothing

    stray = client.post(f"/campaigns/{campaign.id}/send", data={"csrf_token": _token(page)})
    assert stray.status_code == 303 and stray.headers["Location"].endswith(f"/campaigns/{campaign.id}/send")
    assert _messages(db, campaign) == 0  # a POST without the confirmation sends nothing

    done = client.post(f"/campaigns/{campaign.id}/send", data={"csrf_token": _token(page), "confirm": "yes"},
                       follow_redirects=True)
    assert "Accepted for sending to 1 HCP(s); 1 skipped." in done.get_data(as_text=True)
    assert len(campaign_mails(app.config["CRM_OUTBOX_DIR"], consented.email)) == 1
    again = client.get(f"/campaigns/{campaign.id}/send").get_data(as_text=True)
    assert _funnel(again, "expected to be skipped: Already sent this campaign") == 1
    assert _funnel(again, "expected to be mailed") == 0


@pytest.mark.parametrize("role", ["field_rep", "call_centre", "medical", "compliance", "admin"])
def test_only_marketers_reach_the_send_confirmation(client, auth, db, factory, role):
    _marketer, campaign, _hcp = _campaign_world(db, factory)
    auth.login(factory.user(role))
    assert client.get(f"/campaigns/{campaign.id}/send").status_code == 403
    token = auth.csrf_token(f"/campaigns/{campaign.id}")
    assert client.post(f"/campaigns/{campaign.id}/send", data={"csrf_token": token, "confirm": "yes"}
                       ).status_code == 403
    assert _messages(db, campaign) == 0


# -- From a timeline item to its record ----------------------------------------------------------------

def _links(page: str) -> list[str]:
    return re.findall(r'<p class="item-link"><a href="([^"]+)">', page)


@pytest.mark.parametrize("role", ["field_rep", "marketer"])
@pytest.mark.parametrize("where", ["hcp", "feed"])
def test_redacted_items_link_to_their_records_whose_pages_redact_them(client, auth, db, factory, role, where):
    from tests.sensitive_support import MARK, build

    world = build(db, factory)
    auth.login(world.users[role])
    page = client.get(f"/hcps/{world.hcp.id}" if where == "hcp" else "/feed").get_data(as_text=True)
    assert MARK not in page
    links = _links(page)
    med_visit, contact, event = world.ids["visit"][-1], world.ids["contact"][0], world.ids["event"][0]
    assert {f"/visits/{med_visit}", f"/call-centre/contacts/{contact}", f"/events/{event}"} <= set(links)
    for url in links:
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert MARK not in resp.get_data(as_text=True), url


def test_compliance_follows_the_same_links_to_the_full_records(client, auth, db, factory):
    from tests.sensitive_support import MARK, build

    world = build(db, factory)
    auth.login(world.users["compliance"])
    links = _links(client.get(f"/hcps/{world.hcp.id}").get_data(as_text=True))
    med_visit = world.ids["visit"][-1]
    assert f"/visits/{med_visit}" in links
    assert f"{MARK}-medical-visit-notes" in client.get(f"/visits/{med_visit}").get_data(as_text=True)
    inquiry_links = _links(client.get(f"/hcps/{world.hcp2.id}").get_data(as_text=True))
    assert f"/medical-inquiries/{world.ids['inquiry'][0]}" in inquiry_links


def test_order_and_campaign_items_link_to_their_pages(client, auth, db, factory, api, app):
    from tests.campaigns_support import send_now

    marketer, campaign, hcp = _campaign_world(db, factory)
    send_now(db, marketer, campaign)
    w = OrderWorld(db, factory, app)
    stub(app).faults.reset()
    order_id = _queued_order(api, w)
    auth.login(marketer)
    assert f"/campaigns/{campaign.id}" in _links(client.get(f"/hcps/{hcp.id}").get_data(as_text=True))
    order_links = _links(client.get(f"/hcps/{w.hcp.id}").get_data(as_text=True))
    assert f"/orders/{order_id}" in order_links
    assert client.get(f"/orders/{order_id}").status_code == 200
    assert client.get(f"/campaigns/{campaign.id}").status_code == 200


# -- Amend a submitted visit from the page ---------------------------------------------------------------

@pytest.fixture
def vw(db, factory):
    from tests.visits_support import make_world

    return make_world(db, factory)


def _submitted(db, vw, user, **kw):
    from crm.visits import services as visits
    from tests.visits_support import visit_data

    visit = visits.create_visit(db, user, vw.viewer(user), visit_data(vw.hcp.id, **kw))
    visits.submit_visit(db, user, vw.viewer(user), visit)
    return visit


def _amend_form(page: str, **changes: str):
    from werkzeug.datastructures import MultiDict

    def value(name: str) -> str:
        match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page)
        return match.group(1) if match else ""

    def text(name: str) -> str:
        match = re.search(rf'<textarea name="{name}"[^>]*>([^<]*)</textarea>', page)
        return match.group(1) if match else ""

    data = MultiDict({"csrf_token": _token(page), "occurred_at": value("occurred_at"), "tz_choice": "0",
                      "tz_offset": "", "duration_minutes": value("duration_minutes"), "mode": "in_person",
                      "key_messages": text("key_messages"), "notes": text("notes"), "follow_up_date": "",
                      "follow_up_text": "", "attendee_hcp_ids": "", "signature": "", "reason": "",
                      "action": "amend"})
    data.setlist("products", re.findall(r'name="products" value="([^"]+)" checked', page))
    for key, val in changes.items():
        data[key] = val
    return data


def test_the_owner_amends_a_submitted_visit_with_a_reason_and_sees_the_chain(client, auth, db, vw):
    from crm.visits.models import Visit

    visit = _submitted(db, vw, vw.rep, notes="Asked about dosing")
    auth.login(vw.rep)
    page = client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert f'href="/visits/{visit.id}/amend">Amend</a>' in page
    form = client.get(f"/visits/{visit.id}/amend").get_data(as_text=True)
    assert "Asked about dosing" in form and 'name="duration_minutes"' in form and 'value="20"' in form
    assert 'name="reason"' in form and "Save draft" not in form and 'name="consent_grant"' not in form

    resp = client.post(f"/visits/{visit.id}/amend",
                       data=_amend_form(form, duration_minutes="35", reason="Stayed longer than typed"))
    assert resp.status_code == 302
    new = db.scalar(select(Visit).where(Visit.amends_id == visit.id))
    assert resp.headers["Location"].endswith(f"/visits/{new.id}")
    assert new.duration_minutes == 35 and new.amendment_reason == "Stayed longer than typed"
    assert new.notes == "Asked about dosing" and new.status == "submitted"

    shown = client.get(f"/visits/{new.id}").get_data(as_text=True)
    chain = re.search(r'id="amendment-chain">(.*?)</section>', shown, re.S).group(1)
    assert f'href="/visits/{visit.id}">Visit #{visit.id}</a>' in chain and "original" in chain
    assert "Stayed longer than typed" in chain and f"superseded by #{new.id}" in chain
    assert f'href="/visits/{new.id}/amend">Amend</a>' in shown
    old = client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert "Amend</a>" not in old and "Stayed longer than typed" in old
    assert client.get(f"/visits/{visit.id}/amend").status_code == 409  # amend the latest version instead


def test_an_amendment_without_reason_or_change_shows_the_errors_and_keeps_what_was_typed(client, auth, db, vw):
    from crm.visits.models import Visit

    visit = _submitted(db, vw, vw.rep)
    auth.login(vw.rep)
    form = client.get(f"/visits/{visit.id}/amend").get_data(as_text=True)
    resp = client.post(f"/visits/{visit.id}/amend", data=_amend_form(form, duration_minutes="45", reason="  "))
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "The amendment was not saved." in page and "Say why the visit is amended." in page
    assert 'value="45"' in page
    same = client.post(f"/visits/{visit.id}/amend", data=_amend_form(form, reason="Checking"))
    assert same.status_code == 422 and "Nothing would change." in same.get_data(as_text=True)
    bad = client.post(f"/visits/{visit.id}/amend", data=_amend_form(form, duration_minutes="ten", reason="x"))
    assert bad.status_code == 422 and "Minutes, as a whole number." in bad.get_data(as_text=True)
    assert db.scalar(select(Visit).where(Visit.amends_id == visit.id)) is None


@pytest.mark.parametrize("who", ["rep2", "rep_south", "marketer", "call_centre", "medical", "compliance", "admin"])
def test_only_the_owner_amends_a_standard_visit(client, auth, db, vw, who):
    visit = _submitted(db, vw, vw.rep)
    auth.login(getattr(vw, who))
    assert "Amend</a>" not in client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert client.get(f"/visits/{visit.id}/amend").status_code == 403
    token = auth.csrf_token(f"/visits/{visit.id}")
    assert client.post(f"/visits/{visit.id}/amend", data={"csrf_token": token, "reason": "x"}).status_code == 403


def test_medical_affairs_amends_another_medical_visit(client, auth, db, vw):
    from crm.visits.models import Visit

    visit = _submitted(db, vw, vw.medical, notes="MSL discussion")
    assert visit.sensitivity == "medical"
    auth.login(vw.medical2)
    assert f'href="/visits/{visit.id}/amend">Amend</a>' in client.get(f"/visits/{visit.id}").get_data(as_text=True)
    form = client.get(f"/visits/{visit.id}/amend").get_data(as_text=True)
    resp = client.post(f"/visits/{visit.id}/amend", data=_amend_form(form, notes="MSL discussion, corrected",
                                                                     reason="Wrong study named"))
    assert resp.status_code == 302
    assert db.scalar(select(Visit.notes).where(Visit.amends_id == visit.id)) == "MSL discussion, corrected"


def test_a_visit_whose_content_the_owner_may_not_read_is_not_amended_from_a_form(client, auth, db, vw):
    visit = _submitted(db, vw, vw.rep, notes="ZQX the patient had a rash and was hospitalised after the dose")
    assert visit.sensitivity == "pv"
    auth.login(vw.rep)
    page = client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert "Amend</a>" not in page and "ZQX" not in page
    refused = client.get(f"/visits/{visit.id}/amend")
    assert refused.status_code == 403 and "ZQX" not in refused.get_data(as_text=True)
