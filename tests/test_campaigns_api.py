"""Templates, audiences, campaigns and the consent-checked send, through the API (and the command line)."""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm.audit.models import AuditRecord
from crm.campaigns import services
from crm.campaigns.models import CampaignMessage, EmailTemplate
from crm.products.models import Product
from crm.timeline.models import Interaction, InteractionParticipant
from tests.campaigns_support import (
    HTML,
    TEXT,
    campaign_mails,
    email_consent,
    make_campaign,
    make_template,
    send_now,
    unsubscribe_url,
    viewer_of,
)


def template_body(**overrides):
    body = {"name": "Cardiozol outcomes", "subject": "New outcomes data, Dr {{ hcp.last_name }}",
            "html_body": HTML, "text_body": TEXT, "purpose": "promotional", "language": "en"}
    body.update(overrides)
    return body


@pytest.fixture
def people(factory):
    return {"marketer": factory.user("marketer"), "compliance": factory.user("compliance"),
            "field_rep": factory.user("field_rep"), "call_centre": factory.user("call_centre"),
            "admin": factory.user("admin"), "medical": factory.user("medical")}


def outbox(app) -> Path:
    return Path(app.config["CRM_OUTBOX_DIR"])


# -- templates ---------------------------------------------------------------------------------------

def test_marketer_creates_a_draft_and_compliance_approves_that_version(api, db, people):
    resp = api(people["marketer"]).post("/api/v1/templates", json=template_body())
    assert resp.status_code == 201, resp.get_json()
    t = resp.get_json()
    assert (t["version"], t["status"], t["created_by"]["id"]) == (1, "draft", people["marketer"].id)
    resp = api(people["compliance"]).post(f"/api/v1/templates/{t['id']}/approve")
    assert resp.status_code == 200
    approved = resp.get_json()
    assert approved["status"] == "approved" and approved["approved_by"]["id"] == people["compliance"].id
    assert approved["approved_at"].endswith("Z")
    record = db.scalar(select(AuditRecord).where(AuditRecord.action == "template.approve"))
    assert record.entity_id == str(t["id"]) and record.changes["version"]["after"] == 1
    assert api(people["compliance"]).post(f"/api/v1/templates/{t['id']}/approve").status_code == 409


@pytest.mark.parametrize("role", ["field_rep", "call_centre", "medical", "compliance", "admin"])
def test_only_marketers_write_templates(api, people, role):
    resp = api(people[role]).post("/api/v1/templates", json=template_body())
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "template.write:role"


@pytest.mark.parametrize("role", ["marketer", "field_rep", "admin"])
def test_only_compliance_approves(api, db, people, role):
    t = make_template(db, people["marketer"])
    resp = api(people[role]).post(f"/api/v1/templates/{t.id}/approve")
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "template.approve:role"


def test_an_approved_version_is_frozen_an_edit_makes_a_new_draft(api, db, people):
    t = make_template(db, people["marketer"], people["compliance"])
    client = api(people["marketer"])
    resp = client.patch(f"/api/v1/templates/{t.id}", json={"subject": "Changed {{ hcp.first_name }}"})
    assert resp.status_code == 201
    new = resp.get_json()
    assert (new["version"], new["status"], new["previous_id"]) == (2, "draft", t.id) and new["id"] != t.id
    db.refresh(t)
    assert t.status == "approved" and t.subject == "News for {{ hcp.last_name }}"
    # editing the draft changes it in place; editing the approved one again is a conflict (edit the draft)
    resp = client.patch(f"/api/v1/templates/{new['id']}", json={"text_body": "Short text {{ hcp.last_name }}"})
    assert resp.status_code == 200 and resp.get_json()["id"] == new["id"]
    resp = client.patch(f"/api/v1/templates/{t.id}", json={"subject": "Again"})
    assert resp.status_code == 409 and resp.get_json()["draft_id"] == new["id"]


@pytest.mark.parametrize("changes, field", [
    ({"html_body": "<p>{{ hcp.first_name </p>"}, "html_body"),
    ({"text_body": "Hello {{ hcp.password_hash }}"}, "text_body"),
    ({"subject": "{{ hcp.__class__.__mro__ }}"}, "subject"),
    ({"products": ["NO-SUCH-SKU"]}, "products"),
    ({"language": "e1"}, "language"),
])
def test_template_errors_are_422_per_field(api, people, changes, field):
    resp = api(people["marketer"]).post("/api/v1/templates", json=template_body(**changes))
    assert resp.status_code == 422
    assert field in resp.get_json()["errors"]


def test_unknown_purpose_and_unknown_body_fields_are_422(api, people):
    assert api(people["marketer"]).post("/api/v1/templates", json=template_body(purpose="fun")).status_code == 422
    assert api(people["marketer"]).post("/api/v1/templates", json=template_body(colour="red")).status_code == 422


def test_template_name_in_use_is_409(api, people):
    client = api(people["marketer"])
    assert client.post("/api/v1/templates", json=template_body()).status_code == 201
    assert client.post("/api/v1/templates", json=template_body()).status_code == 409


def test_template_with_products(api, db, people):
    db.add(Product(sku="CARD-10", name="Cardiozol 10 mg"))
    db.flush()
    resp = api(people["marketer"]).post("/api/v1/templates", json=template_body(products=["CARD-10"]))
    assert resp.status_code == 201 and resp.get_json()["products"] == ["CARD-10"]


# -- audiences -------------------------------------------------------------------------------------

def test_audience_preview_counts_and_skips_per_consent_reason(api, db, factory, people):
    north = factory.territory()
    ok = factory.hcp(north, tags="kol,new-prescriber")
    pending = factory.hcp(north, tags="kol")
    withdrawn = factory.hcp(north, tags="kol")
    no_email = factory.hcp(north, tags="kol", email=None, email_bidx=None)
    factory.hcp(north, tags="other")  # not in the audience (tag)
    factory.hcp(tags="kol")  # not in the audience (territory)
    email_consent(db, ok)
    email_consent(db, no_email, "events")
    from tests.consent_support import grant, withdraw

    grant(db, pending, channel="email", purpose="promotional")  # double opt-in: pending until confirmed
    email_consent(db, withdrawn)
    withdraw(db, withdrawn, channel="email", purpose="promotional")
    resp = api(people["marketer"]).post("/api/v1/audiences", json={
        "name": "North KOLs", "territory_codes": [north.code], "tags": ["kol"], "professions": ["gp"]})
    assert resp.status_code == 201, resp.get_json()
    audience_id = resp.get_json()["id"]
    preview = api(people["compliance"]).get(f"/api/v1/audiences/{audience_id}/preview?purpose=promotional").get_json()
    assert preview["count"] == 4 and preview["would_send"] == 1
    assert preview["skipped"] == {"consent-withdrawn": 1, "double-opt-in-pending": 1, "no-consent": 1}
    events = api(people["marketer"]).get(f"/api/v1/audiences/{audience_id}/preview?purpose=events").get_json()
    assert events["would_send"] == 0 and events["skipped"] == {"no-consent": 3, "no-email-address": 1}


def test_audience_needs_a_criterion_and_known_values(api, people):
    client = api(people["marketer"])
    assert client.post("/api/v1/audiences", json={"name": "Everyone"}).status_code == 422
    resp = client.post("/api/v1/audiences", json={"name": "Bad", "territory_codes": ["NOPE"],
                                                  "professions": ["astronaut"], "hcp_ids": [999999]})
    assert resp.status_code == 422
    assert {"territory_codes", "professions", "hcp_ids"} <= set(resp.get_json()["errors"])
    assert api(people["field_rep"]).post("/api/v1/audiences", json={"name": "x", "hcp_ids": [1]}).status_code == 403


def test_evaluating_a_large_audience_takes_a_constant_number_of_queries(app, db, factory):
    from sqlalchemy import event as sa_event

    from crm.db import utcnow
    from crm.extensions import db as _db

    hcps = [factory.hcp() for _ in range(40)]
    for h in hcps[::2]:
        email_consent(db, h)

    def count(ids):
        statements = []

        def record(conn, cursor, statement, *args):  # noqa: ANN001
            statements.append(statement)

        with app.app_context():
            engine = _db.engine
        sa_event.listen(engine, "before_cursor_execute", record)
        try:
            services.evaluate(db, ids, "promotional", utcnow())
        finally:
            sa_event.remove(engine, "before_cursor_execute", record)
        return len(statements)

    assert count([h.id for h in hcps[:4]]) == count([h.id for h in hcps])


# -- campaigns and sends ---------------------------------------------------------------------------

def _create(api, marketer, template_id, hcp_ids, name="Spring launch"):
    resp = api(marketer).post("/api/v1/campaigns", json={"name": name, "template_id": template_id,
                                                         "audience": {"hcp_ids": hcp_ids}})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_send_reports_sent_and_skipped_and_mails_carry_the_headers(app, api, db, factory, people):
    consented, without = factory.hcp(), factory.hcp()
    email_consent(db, consented)
    t = make_template(db, people["marketer"], people["compliance"])
    campaign = _create(api, people["marketer"], t.id, [consented.id, without.id])
    resp = api(people["marketer"]).post(f"/api/v1/campaigns/{campaign['id']}/send")
    assert resp.status_code == 202, resp.get_json()
    result = resp.get_json()
    assert result["sent"] == 1 and result["status"] == "queued" and result["job_id"]
    job = api(people["marketer"]).get(f"/api/v1/jobs/{result['job_id']}").get_json()
    assert (job["kind"], job["state"], job["progress"]) == ("campaign.send", "done", {"done": 1, "total": 1})
    assert result["skipped"] == [{"hcp_id": without.id, "reason": "no-consent",
                                  "detail": "No consent for this purpose by email"}]
    assert campaign_mails(outbox(app), without.email) == []
    (mail,) = campaign_mails(outbox(app), consented.email)
    url = unsubscribe_url(mail)
    assert mail["List-Unsubscribe"] == f"<{url}>, <mailto:{app.config['CRM_UNSUBSCRIBE_MAILTO']}?subject=unsubscribe>"
    assert "/consent/unsubscribe/" in url
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert json.loads(mail["X-SMTPAPI"]) == {"unique_args": {"hcp_id": str(consented.id),
                                                             "campaign_id": str(campaign["id"])}}
    assert mail["Subject"] == f"News for {consented.last_name}"
    message = db.scalar(select(CampaignMessage).where(CampaignMessage.hcp_id == consented.id))
    assert message.status == "sent" and message.message_id == mail["Message-ID"]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert url in text  # the footer link, for people without a one-click client
    skipped = db.scalar(select(CampaignMessage).where(CampaignMessage.hcp_id == without.id))
    assert (skipped.status, skipped.reason) == ("skipped", "no-consent")


def test_each_sent_message_is_an_email_sent_timeline_item(api, db, factory, people):
    hcp = factory.hcp()
    email_consent(db, hcp)
    t = make_template(db, people["marketer"], people["compliance"])
    campaign = _create(api, people["marketer"], t.id, [hcp.id])
    api(people["marketer"]).post(f"/api/v1/campaigns/{campaign['id']}/send")
    item = db.scalar(select(Interaction).join(InteractionParticipant).where(
        InteractionParticipant.hcp_id == hcp.id, Interaction.kind == "email.sent"))
    assert (item.channel, item.source, item.owner_role, item.owner_id) == ("email", "crm", "marketer",
                                                                           people["marketer"].id)
    assert item.external_id == f"campaign:{campaign['id']}:{hcp.id}"
    assert item.details["purpose"] == "promotional" and item.details["campaign_id"] == campaign["id"]
    assert item.consent_gap is False


def test_a_repeated_send_mails_nobody_twice(app, api, db, factory, people):
    first, later = factory.hcp(), factory.hcp()
    email_consent(db, first)
    t = make_template(db, people["marketer"], people["compliance"])
    campaign = _create(api, people["marketer"], t.id, [first.id, later.id])
    client = api(people["marketer"])
    assert client.post(f"/api/v1/campaigns/{campaign['id']}/send").get_json()["sent"] == 1
    email_consent(db, later)  # consent arrives after the first send
    again = client.post(f"/api/v1/campaigns/{campaign['id']}/send").get_json()
    assert again["sent"] == 1
    assert {"hcp_id": first.id, "reason": "already-sent", "detail": "Already sent this campaign"} in again["skipped"]
    third = client.post(f"/api/v1/campaigns/{campaign['id']}/send").get_json()
    assert third["sent"] == 0 and len(third["skipped"]) == 2
    assert len(campaign_mails(outbox(app), first.email)) == 1 and len(campaign_mails(outbox(app), later.email)) == 1
    sent_items = db.scalar(select(func.count()).select_from(Interaction).where(
        Interaction.kind == "email.sent", Interaction.external_id.like(f"campaign:{campaign['id']}:%")))
    assert sent_items == 2
    assert db.scalar(select(func.count()).select_from(CampaignMessage)
                     .where(CampaignMessage.campaign_id == campaign["id"])) == 2


def test_an_unsubscribe_between_creation_and_send_is_honoured(app, api, client, db, factory, people):
    hcp = factory.hcp()
    email_consent(db, hcp)
    t = make_template(db, people["marketer"], people["compliance"])
    earlier = _create(api, people["marketer"], t.id, [hcp.id], name="Winter news")
    spring = _create(api, people["marketer"], t.id, [hcp.id], name="Spring news")
    api(people["marketer"]).post(f"/api/v1/campaigns/{earlier['id']}/send")
    (mail,) = campaign_mails(outbox(app), hcp.email)
    # the HCP's mail client sends the RFC 8058 one-click POST to the List-Unsubscribe URL
    url = unsubscribe_url(mail)
    path = url.split("://", 1)[1].split("/", 1)[1]
    resp = client.post("/" + path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 200
    result = api(people["marketer"]).post(f"/api/v1/campaigns/{spring['id']}/send").get_json()
    assert result["sent"] == 0
    assert result["skipped"][0]["reason"] == "consent-withdrawn"
    assert len(campaign_mails(outbox(app), hcp.email)) == 1


def test_an_hcp_field_with_script_is_escaped_in_the_html_part(app, api, db, factory, people):
    hcp = factory.hcp(first_name="<script>alert(1)</script>", last_name="O'Brien\r\nBcc: x@evil.example")
    email_consent(db, hcp)
    t = make_template(db, people["marketer"], people["compliance"])
    campaign = _create(api, people["marketer"], t.id, [hcp.id])
    assert api(people["marketer"]).post(f"/api/v1/campaigns/{campaign['id']}/send").get_json()["sent"] == 1
    (mail,) = campaign_mails(outbox(app), hcp.email)
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert mail["Bcc"] is None and "\n" not in mail["Subject"]
    assert mail["Subject"] == "News for O'Brien Bcc: x@evil.example"


def test_only_an_approved_version_can_be_sent(api, db, factory, people):
    hcp = factory.hcp()
    email_consent(db, hcp)
    draft = make_template(db, people["marketer"])
    campaign = _create(api, people["marketer"], draft.id, [hcp.id])
    resp = api(people["marketer"]).post(f"/api/v1/campaigns/{campaign['id']}/send")
    assert resp.status_code == 422
    assert "not approved" in resp.get_json()["detail"]
    assert db.scalar(select(func.count()).select_from(CampaignMessage)) == 0


@pytest.mark.parametrize("role", ["field_rep", "call_centre", "compliance", "medical", "admin"])
def test_only_marketers_create_and_send_campaigns(api, db, factory, people, role):
    hcp = factory.hcp()
    t = make_template(db, people["marketer"], people["compliance"])
    campaign = make_campaign(db, people["marketer"], t, [hcp.id])
    resp = api(people[role]).post(f"/api/v1/campaigns/{campaign.id}/send")
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "campaign.write:role"
    resp = api(people[role]).post("/api/v1/campaigns", json={"name": "x", "template_id": t.id,
                                                             "audience": {"hcp_ids": [hcp.id]}})
    assert resp.status_code == 403


def test_campaign_creation_errors(api, db, factory, people):
    hcp = factory.hcp()
    client = api(people["marketer"])
    assert client.post("/api/v1/campaigns", json={"name": "x", "template_id": 999999,
                                                  "audience": {"hcp_ids": [hcp.id]}}).status_code == 422
    t = make_template(db, people["marketer"])
    both = client.post("/api/v1/campaigns", json={"name": "x", "template_id": t.id, "audience_id": 1,
                                                  "audience": {"hcp_ids": [hcp.id]}})
    assert both.status_code == 422
    assert client.post("/api/v1/campaigns", json={"name": "x", "template_id": t.id,
                                                  "audience": {"hcp_ids": ["a"]}}).status_code == 422


def test_campaign_with_a_saved_audience_and_its_funnel(api, db, factory, people):
    territory = factory.territory()
    a, b = factory.hcp(territory), factory.hcp(territory)
    email_consent(db, a)
    audience = api(people["marketer"]).post("/api/v1/audiences",
                                            json={"name": "T", "territory_codes": [territory.code]})
    t = make_template(db, people["marketer"], people["compliance"])
    resp = api(people["marketer"]).post("/api/v1/campaigns", json={"name": "Saved", "template_id": t.id,
                                                                   "audience_id": audience.get_json()["id"]})
    assert resp.status_code == 201
    campaign_id = resp.get_json()["id"]
    api(people["marketer"]).post(f"/api/v1/campaigns/{campaign_id}/send")
    tied = {"hcp_id": a.id, "campaign_id": campaign_id}
    api(people["marketer"]).post("/api/v1/integrations/email/events", json=[
        {"sg_event_id": "f-1", "event": "delivered", "timestamp": 1767000000, **tied},
        {"sg_event_id": "f-2", "event": "open", "timestamp": 1767000100, **tied},
        {"sg_event_id": "f-3", "event": "open", "timestamp": 1767000200, **tied},
    ])
    funnel = api(people["field_rep"]).get(f"/api/v1/campaigns/{campaign_id}").get_json()["funnel"]
    assert funnel == {"audience": 2, "skipped": {"no-consent": 1}, "queued": 0, "sent": 1, "failed": 0,
                      "delivered": 1, "opened": 1, "clicked": 0, "bounced": 0, "unsubscribed": 0, "spam_reports": 0}
    recipients = api(people["marketer"]).get(f"/api/v1/campaigns/{campaign_id}/recipients?limit=1").get_json()
    assert recipients["items"][0]["hcp_id"] == a.id and recipients["items"][0]["events"] == ["delivered", "open"]
    more = api(people["marketer"]).get(f"/api/v1/campaigns/{campaign_id}/recipients?limit=1&cursor="
                                       f"{recipients['next_cursor']}").get_json()
    assert more["items"][0]["hcp_id"] == b.id and more["next_cursor"] is None
    listing = api(people["call_centre"]).get("/api/v1/campaigns").get_json()
    assert campaign_id in [c["id"] for c in listing["items"]]
    assert api(people["call_centre"]).get("/api/v1/templates").status_code == 200


def test_smtp_backend_delivers_campaign_mail_to_a_real_smtp_server(app, db, factory, people, monkeypatch):
    import socket

    from aiosmtpd.controller import Controller

    from crm.integrations.email import SmtpSender

    received: list[bytes] = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received.append(envelope.original_content or envelope.content)
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        monkeypatch.setitem(app.extensions, "crm_email_sender",
                            SmtpSender(f"smtp://127.0.0.1:{port}", app.config["CRM_MAIL_FROM"], timeout=10))
        hcp = factory.hcp()
        email_consent(db, hcp)
        campaign = make_campaign(db, people["marketer"], make_template(db, people["marketer"], people["compliance"]),
                                 [hcp.id])
        db.commit()  # the consent confirmation mail leaves here
        received.clear()
        send_now(db, people["marketer"], campaign)
        assert received == []  # nothing leaves before the commit
        db.commit()
    finally:
        controller.stop()
    (mail,) = [m for m in (BytesParser(policy=policy.default).parsebytes(r) for r in received) if m["X-SMTPAPI"]]
    assert mail["To"] == hcp.email and mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert json.loads(mail["X-SMTPAPI"])["unique_args"]["hcp_id"] == str(hcp.id)


def test_mails_are_not_handed_over_when_the_transaction_rolls_back(app, db, factory, people):
    hcp = factory.hcp()
    email_consent(db, hcp)
    campaign = make_campaign(db, people["marketer"], make_template(db, people["marketer"], people["compliance"]),
                             [hcp.id])
    send_now(db, people["marketer"], campaign)
    db.rollback()
    db.commit()
    assert campaign_mails(outbox(app), hcp.email) == []


def test_cli_sends_as_the_campaigns_creator(app, runner, db, factory, people):
    hcp, other = factory.hcp(), factory.hcp()
    email_consent(db, hcp)
    campaign = make_campaign(db, people["marketer"], make_template(db, people["marketer"], people["compliance"]),
                             [hcp.id, other.id])
    result = runner.invoke(args=["crm", "campaigns", "send", str(campaign.id)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out == {"campaign_id": campaign.id, "sent": 1, "skipped": {"no-consent": 1}, "job_id": out["job_id"]}
    assert out["job_id"] is not None
    assert len(campaign_mails(outbox(app), hcp.email)) == 1
    again = runner.invoke(args=["crm", "campaigns", "send", str(campaign.id)])
    assert json.loads(again.output)["skipped"] == {"already-sent": 1, "no-consent": 1}
    refused = runner.invoke(args=["crm", "campaigns", "send", str(campaign.id), "--as", people["field_rep"].email])
    assert refused.exit_code != 0 and "campaign.write" in refused.output
    missing = runner.invoke(args=["crm", "campaigns", "send", "999999"])
    assert missing.exit_code != 0 and "does not exist" in missing.output


def test_templates_are_kept_per_version(db, people):
    t = make_template(db, people["marketer"], people["compliance"])
    services.update_template(db, people["marketer"], viewer_of(people["marketer"]), t, {"subject": "v2"})
    versions = services.template_versions(db, t.name)
    assert [(v.version, v.status) for v in versions] == [(2, "draft"), (1, "approved")]
    assert db.scalar(select(func.count()).select_from(EmailTemplate).where(EmailTemplate.name == t.name)) == 2


def test_funnel_counts_unsubscribes_through_the_crms_own_link_once_per_recipient(app, api, client, db, factory,
                                                                                  people):
    a, b, c = factory.hcp(), factory.hcp(), factory.hcp()
    for h in (a, b, c):
        email_consent(db, h)
    t = make_template(db, people["marketer"], people["compliance"])
    campaign = _create(api, people["marketer"], t.id, [a.id, b.id, c.id])
    other = _create(api, people["marketer"], t.id, [c.id], name="Other news")
    api(people["marketer"]).post(f"/api/v1/campaigns/{campaign['id']}/send")

    def one_click(mail):
        path = "/" + unsubscribe_url(mail).split("://", 1)[1].split("/", 1)[1]
        assert client.get(path).status_code == 200  # opening the page counts for nothing
        resp = client.post(path, data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
        assert resp.status_code == 200

    (mail_a,) = campaign_mails(outbox(app), a.email)
    (mail_b,) = campaign_mails(outbox(app), b.email)
    one_click(mail_a)
    funnel = api(people["marketer"]).get(f"/api/v1/campaigns/{campaign['id']}").get_json()["funnel"]
    assert funnel["unsubscribed"] == 1
    # the platform reports A's unsubscribe too, and B's: each recipient counts once
    tied = {"campaign_id": campaign["id"]}
    api(people["marketer"]).post("/api/v1/integrations/email/events", json=[
        {"sg_event_id": "u-1", "event": "unsubscribe", "timestamp": 1767000000, "hcp_id": a.id, **tied},
        {"sg_event_id": "u-2", "event": "group_unsubscribe", "timestamp": 1767000100, "hcp_id": b.id, **tied},
    ])
    one_click(mail_b)  # B also used the link: still once
    funnel = api(people["marketer"]).get(f"/api/v1/campaigns/{campaign['id']}").get_json()["funnel"]
    assert funnel["unsubscribed"] == 2 and funnel["sent"] == 3
    recipients = api(people["marketer"]).get(f"/api/v1/campaigns/{campaign['id']}/recipients").get_json()
    assert {i["hcp_id"]: "unsubscribe" in i["events"] for i in recipients["items"]} == {a.id: True, b.id: True,
                                                                                          c.id: False}
    # a link from another sender (an event invitation) counts in no campaign's funnel
    from crm.consent import services as consent

    url, _ = consent.unsubscribe_link(db, c.id, "promotional", "event-invitation:1")
    client.post("/" + url.split("://", 1)[1].split("/", 1)[1], data="List-Unsubscribe=One-Click",
                content_type="application/x-www-form-urlencoded")
    assert not consent.can_contact(db, c.id, "email", "promotional").allowed
    funnel = api(people["marketer"]).get(f"/api/v1/campaigns/{campaign['id']}").get_json()["funnel"]
    assert funnel["unsubscribed"] == 2
    assert api(people["marketer"]).get(f"/api/v1/campaigns/{other['id']}").get_json()["funnel"]["unsubscribed"] == 0
