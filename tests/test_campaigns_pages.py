"""The campaign pages: a marketer drafts, compliance approves, the marketer sends, everyone reads the funnel."""

from __future__ import annotations

import re

from sqlalchemy import select

from crm.campaigns.models import Audience, Campaign, EmailTemplate
from tests.campaigns_support import campaign_mails, email_consent, make_campaign, make_template


def _csrf(auth, path):
    return auth.csrf_token(path)


def test_from_the_pages_alone_a_campaign_is_drafted_approved_and_sent(app, client, auth, db, factory):
    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    territory = factory.territory()
    hcp = factory.hcp(territory, tags="kol")
    factory.hcp(territory, tags="kol")  # no consent: skipped
    email_consent(db, hcp)

    auth.login(marketer)
    assert "Campaigns" in client.get("/").get_data(as_text=True)
    token = _csrf(auth, "/campaigns/templates/new")
    resp = client.post("/campaigns/templates/new", data={
        "csrf_token": token, "name": "KOL update", "subject": "Hello Dr {{ hcp.last_name }}",
        "html_body": "<p>Dear {{ hcp.first_name }}</p>", "text_body": "Dear {{ hcp.first_name }}",
        "purpose": "promotional", "language": "en"})
    assert resp.status_code == 303
    template = db.scalar(select(EmailTemplate).where(EmailTemplate.name == "KOL update"))
    page = client.get(f"/campaigns/templates/{template.id}").get_data(as_text=True)
    assert "Approve version" not in page and 'sandbox=""' in page and "Hello Dr Doe" in page
    auth.logout()

    auth.login(compliance)
    page = client.get(f"/campaigns/templates/{template.id}").get_data(as_text=True)
    assert "Approve version 1" in page
    token = _csrf(auth, f"/campaigns/templates/{template.id}")
    assert client.post(f"/campaigns/templates/{template.id}/approve", data={"csrf_token": token}).status_code == 303
    db.refresh(template)
    assert template.status == "approved" and template.approved_by_id == compliance.id
    auth.logout()

    auth.login(marketer)
    token = _csrf(auth, "/campaigns/audiences")
    resp = client.post("/campaigns/audiences", data={"csrf_token": token, "name": "KOLs", "tags": "kol",
                                                     "territory_codes": territory.code})
    assert resp.status_code == 303
    audience = db.scalar(select(Audience).where(Audience.name == "KOLs"))
    preview = client.get(f"/campaigns/audiences/{audience.id}").get_data(as_text=True)
    assert re.search(r'class="n">2</span> HCPs in the audience', preview)
    assert re.search(r'class="n">1</span> would be mailed', preview)
    token = _csrf(auth, "/campaigns/new")
    resp = client.post("/campaigns/new", data={"csrf_token": token, "name": "KOL spring", "template_id": template.id,
                                               "audience_id": audience.id})
    assert resp.status_code == 303
    campaign = db.scalar(select(Campaign).where(Campaign.name == "KOL spring"))
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Send now" in page
    token = _csrf(auth, f"/campaigns/{campaign.id}/send")
    resp = client.post(f"/campaigns/{campaign.id}/send", data={"csrf_token": token, "confirm": "yes"},
                       follow_redirects=True)
    page = resp.get_data(as_text=True)
    assert "Accepted for sending to 1 HCP(s); 1 skipped." in page
    assert f'href="/hcps/{hcp.id}"' in page
    assert re.search(r'class="n">1</span> sent', page)
    (mail,) = campaign_mails(app.config["CRM_OUTBOX_DIR"], hcp.email)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_other_roles_read_campaigns_but_cannot_send(client, auth, db, factory):
    marketer, compliance, rep = factory.user("marketer"), factory.user("compliance"), factory.user("field_rep")
    campaign = make_campaign(db, marketer, make_template(db, marketer, compliance), [factory.hcp().id])
    auth.login(rep)
    page = client.get(f"/campaigns/{campaign.id}")
    assert page.status_code == 200 and "Send now" not in page.get_data(as_text=True)
    token = _csrf(auth, f"/campaigns/{campaign.id}")
    resp = client.post(f"/campaigns/{campaign.id}/send", data={"csrf_token": token})
    assert resp.status_code == 403
    assert client.get("/campaigns/templates/new").status_code == 403
    assert client.get("/campaigns").status_code == 200


def test_a_draft_template_shows_no_send_button(client, auth, db, factory):
    marketer = factory.user("marketer")
    campaign = make_campaign(db, marketer, make_template(db, marketer), [factory.hcp().id])
    auth.login(marketer)
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Send now" not in page and "not approved yet" in page


def test_template_form_errors_are_shown_on_the_form(client, auth, factory):
    auth.login(factory.user("marketer"))
    token = _csrf(auth, "/campaigns/templates/new")
    resp = client.post("/campaigns/templates/new", data={
        "csrf_token": token, "name": "Broken", "subject": "Hi {{ hcp.nickname }}", "html_body": "<p>x</p>",
        "text_body": "x", "purpose": "promotional", "language": "en"})
    assert resp.status_code == 422
    page = resp.get_data(as_text=True)
    assert "Not saved" in page and "subject" in page and 'value="Broken"' in page


def test_editing_an_approved_template_from_the_page_makes_a_new_version(client, auth, db, factory):
    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    template = make_template(db, marketer, compliance)
    auth.login(marketer)
    page = client.get(f"/campaigns/templates/{template.id}/edit").get_data(as_text=True)
    assert "frozen" in page
    token = _csrf(auth, f"/campaigns/templates/{template.id}/edit")
    resp = client.post(f"/campaigns/templates/{template.id}/edit", data={
        "csrf_token": token, "subject": "Second {{ hcp.last_name }}", "html_body": "<p>2</p>", "text_body": "2",
        "purpose": "promotional", "language": "en"})
    assert resp.status_code == 303
    versions = db.scalars(select(EmailTemplate).where(EmailTemplate.name == template.name)
                          .order_by(EmailTemplate.version)).all()
    assert [(v.version, v.status) for v in versions] == [(1, "approved"), (2, "draft")]


def test_template_preview_never_runs_markup_in_the_page(client, auth, db, factory):
    marketer = factory.user("marketer")
    template = make_template(db, marketer, html_body="<p>Hi</p><script>alert(1)</script>")
    auth.login(marketer)
    page = client.get(f"/campaigns/templates/{template.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_campaign_form_rejects_bad_ids(client, auth, db, factory):
    marketer = factory.user("marketer")
    template = make_template(db, marketer)
    auth.login(marketer)
    token = _csrf(auth, "/campaigns/new")
    resp = client.post("/campaigns/new", data={"csrf_token": token, "name": "x", "template_id": template.id,
                                               "hcp_ids": "12, abc"})
    assert resp.status_code == 422 and "not a number" in resp.get_data(as_text=True)
    resp = client.post("/campaigns/new", data={"csrf_token": token, "name": "x", "template_id": template.id,
                                               "hcp_ids": ""})
    assert resp.status_code == 422 and "at least one criterion" in resp.get_data(as_text=True)
