"""Call-centre pages: the agent page, the AE offer, the two queues with their redaction, the guardrail page."""

from __future__ import annotations

import re
from datetime import timedelta

from crm.callcentre import services as callcentre
from crm.callcentre.models import AdverseEventCase, Contact, MedicalInquiry
from crm.db import utcnow
from crm.guardrails.models import GuardrailRule
from tests.events_support import viewer_of


def _log(db, agent, hcp, **kw):
    values = {"hcp_id": hcp.id, "occurred_at": utcnow() - timedelta(hours=1), "direction": "inbound",
              "medium": "phone", "reason": "product_information", "summary": "Asked about stock"}
    values.update(kw)
    return callcentre.create_contact(db, agent, viewer_of(agent), **values)


def test_agent_searches_picks_and_logs_a_contact(client, auth, factory, db):
    agent = factory.user("call_centre")
    hcp = factory.hcp(last_name="Findable")
    auth.login(agent)
    found = client.get("/call-centre?q=Findable").get_data(as_text=True)
    assert f"/call-centre?hcp_id={hcp.id}" in found
    form = client.get(f"/call-centre?hcp_id={hcp.id}").get_data(as_text=True)
    assert 'name="summary"' in form and "style=" not in form
    token = auth.csrf_token(f"/call-centre?hcp_id={hcp.id}")
    resp = client.post("/call-centre", data={
        "csrf_token": token, "hcp_id": str(hcp.id), "reason": "complaint", "direction": "inbound",
        "medium": "email", "occurred_at": "2026-01-05T09:30", "occurred_at_offset": "60",
        "summary": "Pack damaged", "details": "Blister broken on arrival"})
    assert resp.status_code == 302
    contact = db.query(Contact).filter_by(hcp_id=hcp.id).one()
    assert contact.reason == "complaint" and contact.occurred_at.isoformat() == "2026-01-05T08:30:00+00:00"
    shown = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Pack damaged" in shown


def test_agent_page_errors_and_roles(client, auth, factory, db):
    hcp = factory.hcp()
    auth.login(factory.user("call_centre"))
    token = auth.csrf_token(f"/call-centre?hcp_id={hcp.id}")
    resp = client.post("/call-centre", data={"csrf_token": token, "hcp_id": str(hcp.id), "reason": "complaint",
                                             "direction": "inbound", "medium": "phone", "times_utc": "1",
                                             "occurred_at": "2026-01-05T09:30", "summary": ""})
    assert resp.status_code == 422 and "must not be empty" in resp.get_data(as_text=True)
    auth.logout()
    auth.login(factory.user("field_rep"))
    assert client.get("/call-centre").status_code == 403


def test_ae_wording_shows_the_offer_and_opens_a_case(client, auth, factory, db):
    agent = factory.user("call_centre")
    hcp = factory.hcp()
    result = _log(db, agent, hcp, summary="Patient reports a rash since Monday", products=["CARDIO-10"])
    auth.login(agent)
    page = client.get(f"/call-centre/contacts/{result.contact.id}").get_data(as_text=True)
    assert "This may be an adverse event" in page and "rash" in page
    token = auth.csrf_token(f"/call-centre/contacts/{result.contact.id}")
    resp = client.post(f"/call-centre/contacts/{result.contact.id}/adverse-event-case", data={"csrf_token": token})
    assert resp.status_code == 302
    case = db.query(AdverseEventCase).filter_by(contact_id=result.contact.id).one()
    assert case.product == "CARDIO-10"
    assert "This may be an adverse event" not in client.get(f"/call-centre/contacts/{result.contact.id}") \
        .get_data(as_text=True)


def test_ae_queue_highlights_overdue_for_medical_and_compliance(client, auth, factory, db):
    agent = factory.user("call_centre")
    late = _log(db, agent, factory.hcp(), reason="adverse_event", summary="Fainted after dose",
                occurred_at=utcnow() - timedelta(hours=30))
    _log(db, agent, factory.hcp(), reason="adverse_event", summary="Rash")
    case_id = db.query(AdverseEventCase).filter_by(contact_id=late.contact.id).one().id
    for role in ("medical", "compliance"):
        auth.login(factory.user(role))
        page = client.get("/adverse-events").get_data(as_text=True)
        assert "1 case(s) past the 24-hour deadline" in page and "overdue-row" in page
        assert "Fainted after dose" not in page  # the queue shows reporter and product, the case page the rest
        detail = client.get(f"/adverse-events/{case_id}")
        assert "Fainted after dose" in detail.get_data(as_text=True)
        auth.logout()
    for role in ("field_rep", "marketer"):
        auth.login(factory.user(role))
        assert client.get("/adverse-events").status_code == 403
        detail = client.get(f"/adverse-events/{case_id}").get_data(as_text=True)
        assert "Details restricted to Pharmacovigilance" in detail and "Fainted" not in detail
        auth.logout()


def test_case_closed_on_the_page_needs_the_forwarding_record(client, auth, factory, db):
    agent, medical = factory.user("call_centre"), factory.user("medical")
    result = _log(db, agent, factory.hcp(), reason="adverse_event", occurred_at=utcnow() - timedelta(hours=2))
    case = db.query(AdverseEventCase).filter_by(contact_id=result.contact.id).one()
    auth.login(medical)
    token = auth.csrf_token(f"/adverse-events/{case.id}")
    missing = client.post(f"/adverse-events/{case.id}", data={"csrf_token": token, "forwarded_by": ""})
    assert missing.status_code == 422 and "forwarding record" in missing.get_data(as_text=True)
    now = utcnow()
    ok = client.post(f"/adverse-events/{case.id}", data={
        "csrf_token": token, "forwarded_by": "PV desk", "forwarded_at": now.strftime("%Y-%m-%dT%H:%M"),
        "times_utc": "1"})
    assert ok.status_code == 302
    db.refresh(case)
    assert case.status == "closed" and case.forwarded_by == "PV desk"


def test_medical_inquiry_queue_and_answer_page(client, auth, factory, db):
    agent, medical = factory.user("call_centre"), factory.user("medical")
    result = _log(db, agent, factory.hcp(), reason="medical_inquiry", summary="Max dose in elderly?")
    inquiry = db.query(MedicalInquiry).filter_by(contact_id=result.contact.id).one()
    auth.login(medical)
    queue = client.get("/medical-inquiries").get_data(as_text=True)
    assert "Max dose in elderly?" in queue
    token = auth.csrf_token(f"/medical-inquiries/{inquiry.id}")
    resp = client.post(f"/medical-inquiries/{inquiry.id}", data={"csrf_token": token, "answer": "Up to 20 mg.",
                                                                 "medium": "phone"})
    assert resp.status_code == 302
    assert "Up to 20 mg." in client.get(f"/medical-inquiries/{inquiry.id}").get_data(as_text=True)
    auth.logout()
    for role in ("field_rep", "marketer"):
        auth.login(factory.user(role))
        assert client.get("/medical-inquiries").status_code == 403
        page = client.get(f"/medical-inquiries/{inquiry.id}").get_data(as_text=True)
        assert "Details restricted to Medical Affairs" in page and "Max dose" not in page
        auth.logout()


def test_guardrail_page_is_for_compliance(client, auth, factory, db):
    auth.login(factory.user("compliance"))
    page = client.get("/guardrails?text=It+is+100%25+safe&context=visit").get_data(as_text=True)
    assert "Restricted promotional wording" in page and "100% safe" in page
    token = auth.csrf_token("/guardrails")
    assert client.post("/guardrails", data={"csrf_token": token, "category": "promotional",
                                            "phrase": "unbeatable"}).status_code == 302
    rule = db.query(GuardrailRule).filter_by(phrase="unbeatable").one()
    assert client.post(f"/guardrails/{rule.id}", data={"csrf_token": token, "active": "0"}).status_code == 302
    db.refresh(rule)
    assert rule.active is False
    auth.logout()
    auth.login(factory.user("marketer"))
    assert client.get("/guardrails").status_code == 403
    assert re.search("Guardrails", client.get("/").get_data(as_text=True)) is None
