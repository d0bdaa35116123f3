"""Call-centre contacts, the medical-inquiry queue and the adverse-event queue through the API."""

from __future__ import annotations

from datetime import timedelta

from crm.callcentre.models import AdverseEventCase, Contact, MedicalInquiry
from crm.db import iso_z, utcnow
from crm.timeline.models import Interaction, SensitiveRead


def _contact(hcp, **kw):
    body = {"hcp_id": hcp.id, "occurred_at": iso_z(utcnow() - timedelta(hours=1)), "direction": "inbound",
            "medium": "phone", "reason": "product_information", "summary": "Asked for the SmPC of Cardiozol",
            "details": "Sent the SmPC by email."}
    body.update(kw)
    return body


def test_agent_logs_a_contact_as_a_call_centre_interaction(api, factory, db):
    agent = factory.user("call_centre")
    hcp = factory.hcp()
    resp = api(agent).post("/api/v1/call-centre/contacts",
                           json=_contact(hcp, follow_up={"date": "2030-01-02", "text": "Call back"}))
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["sensitivity"] == "standard" and body["source"] == "crm" and body["ae_case_offer"] is False
    assert body["follow_up"] == {"date": "2030-01-02", "text": "Call back"}
    item = db.get(Interaction, body["interaction_id"])
    assert item.channel == "call_centre" and item.kind == "call_centre.product_information"
    assert item.owner_role == "call_centre" and [p.hcp_id for p in item.participants] == [hcp.id]
    assert item.details["direction"] == "inbound" and item.details["reason"] == "product_information"


def test_only_call_centre_creates_contacts(api, factory):
    hcp = factory.hcp()
    for role in ("field_rep", "marketer", "medical", "compliance", "admin"):
        resp = api(factory.user(role)).post("/api/v1/call-centre/contacts", json=_contact(hcp))
        assert resp.status_code == 403 and resp.get_json()["rule"] == "call_centre.contact:role"


def test_external_id_replay_answers_200_with_the_existing_contact(api, factory, db):
    c = api(factory.user("call_centre"))
    hcp = factory.hcp()
    first = c.post("/api/v1/call-centre/contacts", json=_contact(hcp, external_id="CC-1001"))
    again = c.post("/api/v1/call-centre/contacts", json=_contact(hcp, external_id="CC-1001", summary="changed"))
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["summary"] == first.get_json()["summary"]
    assert first.get_json()["source"] == "call_centre_system"
    assert db.query(Contact).filter_by(external_id="CC-1001").count() == 1


def test_contact_input_refusals(api, factory):
    c = api(factory.user("call_centre"))
    hcp = factory.hcp()
    url = "/api/v1/call-centre/contacts"
    assert c.post(url, json=_contact(hcp, reason="gossip")).status_code == 422
    assert c.post(url, json=_contact(hcp, medium="pigeon")).status_code == 422
    assert c.post(url, json=_contact(hcp, occurred_at="2026-01-01T10:00:00")).status_code == 422
    assert c.post(url, json=_contact(hcp, occurred_at=iso_z(utcnow() + timedelta(days=1)))).status_code == 422
    assert c.post(url, json=_contact(hcp, summary="")).status_code == 422
    assert c.post(url, json=_contact(hcp, hcp_id=999999)).status_code == 422
    assert c.post(url, json=_contact(hcp, mood="angry")).status_code == 422
    ae_on_other = c.post(url, json=_contact(hcp, adverse_event={"reporter": "x"}))
    assert ae_on_other.status_code == 422 and "adverse_event" in ae_on_other.get_json()["errors"]
    assert c.post(url, data="not json", content_type="application/json").status_code == 400


def test_medical_inquiry_is_medical_and_queued(api, factory, db):
    agent, medical = factory.user("call_centre"), factory.user("medical")
    hcp = factory.hcp()
    body = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        hcp, reason="medical_inquiry", summary="Dose in renal impairment?", products=["CARDIO-10"])).get_json()
    assert body["sensitivity"] == "medical" and body["medical_inquiry_id"]
    assert db.get(Interaction, body["interaction_id"]).sensitivity == "medical"
    queue = api(medical).get("/api/v1/medical-inquiries?status=open").get_json()["items"]
    assert [q["id"] for q in queue] == [body["medical_inquiry_id"]]
    assert queue[0]["question"].startswith("Dose in renal impairment?") and queue[0]["redacted"] is False


def test_medical_inquiry_read_by_rep_or_marketer_is_existence_only(api, factory, db):
    agent = factory.user("call_centre")
    hcp = factory.hcp()
    body = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        hcp, reason="medical_inquiry", summary="Can I use it in pregnancy?")).get_json()
    for role in ("field_rep", "marketer"):
        c = api(factory.user(role))
        item = c.get(f"/api/v1/hcps/{hcp.id}/timeline").get_json()["items"][0]
        assert item["kind"] == "call_centre.medical_inquiry" and item["redacted"] is True
        assert item["summary"] == "" and item["details"] == {}
        assert item["redaction_reason"] == "Details restricted to Medical Affairs"
        one = c.get(f"/api/v1/interactions/{body['interaction_id']}").get_json()
        assert one["redacted"] is True and one["visibility"]["level"] == "existence"
        inquiry = c.get(f"/api/v1/medical-inquiries/{body['medical_inquiry_id']}").get_json()
        assert inquiry["redacted"] is True and inquiry["question"] == "" and inquiry["status"] == "open"
        contact = c.get(f"/api/v1/call-centre/contacts/{body['id']}").get_json()
        assert contact["summary"] == "" and contact["details"] == "" and contact["redacted"] is True
    # full reads by medical are logged for compliance; existence reads are not
    medical = factory.user("medical")
    before = db.query(SensitiveRead).filter_by(viewer_id=medical.id).count()
    api(medical).get(f"/api/v1/medical-inquiries/{body['medical_inquiry_id']}")
    assert db.query(SensitiveRead).filter_by(viewer_id=medical.id).count() == before + 1


def test_medical_answers_the_inquiry(api, factory, db):
    agent, medical = factory.user("call_centre"), factory.user("medical")
    hcp = factory.hcp()
    received = utcnow() - timedelta(hours=5)
    body = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        hcp, reason="medical_inquiry", occurred_at=iso_z(received))).get_json()
    url = f"/api/v1/medical-inquiries/{body['medical_inquiry_id']}/answer"
    for role in ("call_centre", "field_rep", "compliance"):
        assert api(factory.user(role)).post(url, json={"answer": "x", "medium": "email"}).status_code == 403
    resp = api(medical).post(url, json={"answer": "Reduce to 5 mg when eGFR < 30.", "medium": "email"})
    assert resp.status_code == 200, resp.get_json()
    out = resp.get_json()
    assert out["status"] == "answered" and 4.9 <= out["response_hours"] <= 5.1
    assert out["answered_by"] == medical.name
    inquiry = db.get(MedicalInquiry, body["medical_inquiry_id"])
    answer_item = db.get(Interaction, inquiry.answer_interaction_id)
    assert answer_item.sensitivity == "medical" and answer_item.kind == "call_centre.medical_answer"
    rep_view = api(factory.user("field_rep")).get(f"/api/v1/interactions/{answer_item.id}").get_json()
    assert rep_view["redacted"] is True
    assert api(medical).post(url, json={"answer": "again", "medium": "email"}).status_code == 409
    assert api(medical).get("/api/v1/medical-inquiries?status=open").get_json()["items"] == []


def test_answer_refusals(api, factory, db):
    agent, medical = factory.user("call_centre"), factory.user("medical")
    body = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        factory.hcp(), reason="medical_inquiry")).get_json()
    url = f"/api/v1/medical-inquiries/{body['medical_inquiry_id']}/answer"
    m = api(medical)
    assert m.post(url, json={"answer": "", "medium": "email"}).status_code == 422
    assert m.post(url, json={"answer": "x", "medium": "fax"}).status_code == 422
    early = iso_z(utcnow() - timedelta(days=3))
    assert m.post(url, json={"answer": "x", "medium": "email", "answered_at": early}).status_code == 422
    assert m.post("/api/v1/medical-inquiries/999999/answer", json={"answer": "x", "medium": "email"}).status_code \
        == 404


def test_adverse_event_opens_a_case_due_in_24_hours(api, factory, db):
    agent = factory.user("call_centre")
    hcp = factory.hcp()
    received = utcnow() - timedelta(hours=2)
    resp = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        hcp, reason="adverse_event", occurred_at=iso_z(received), summary="Patient developed a rash",
        details="Rash after two days of Cardiozol 10 mg", products=["CARDIO-10"],
        adverse_event={"reporter": "Dr Ada (treating GP)"}))
    body = resp.get_json()
    assert resp.status_code == 201 and body["sensitivity"] == "pv"
    case = db.get(AdverseEventCase, body["adverse_event_case_id"])
    assert case.due_at == received.replace(microsecond=received.microsecond) + timedelta(hours=24)
    assert case.reporter == "Dr Ada (treating GP)" and case.product == "CARDIO-10"
    assert case.description == "Rash after two days of Cardiozol 10 mg"
    for role in ("medical", "compliance"):
        queue = api(factory.user(role)).get("/api/v1/adverse-events?status=open").get_json()["items"]
        assert queue[0]["id"] == case.id and queue[0]["overdue"] is False
        assert 21.5 < queue[0]["hours_left"] <= 22.0 and queue[0]["description"]
    for role in ("field_rep", "marketer"):
        c = api(factory.user(role))
        item = c.get(f"/api/v1/hcps/{hcp.id}/timeline").get_json()["items"][0]
        assert item["redacted"] is True and item["redaction_reason"] == "Details restricted to Pharmacovigilance"
        seen = c.get(f"/api/v1/adverse-events/{case.id}").get_json()
        assert seen["redacted"] is True and seen["description"] == "" and seen["reporter"] is None
        assert seen["due_at"] == iso_z(case.due_at)


def test_overdue_cases_are_flagged(api, factory, db):
    agent = factory.user("call_centre")
    old = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        factory.hcp(), reason="adverse_event", occurred_at=iso_z(utcnow() - timedelta(hours=30)))).get_json()
    fresh = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        factory.hcp(), reason="adverse_event")).get_json()
    c = api(factory.user("compliance"))
    overdue = c.get("/api/v1/adverse-events?overdue=true").get_json()["items"]
    assert [o["id"] for o in overdue] == [old["adverse_event_case_id"]] and overdue[0]["overdue"] is True
    everything = c.get("/api/v1/adverse-events").get_json()["items"]
    assert [e["id"] for e in everything] == [old["adverse_event_case_id"], fresh["adverse_event_case_id"]]


def test_case_closed_without_forwarding_record_is_422(api, factory, db):
    agent = factory.user("call_centre")
    body = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        factory.hcp(), reason="adverse_event", occurred_at=iso_z(utcnow() - timedelta(hours=3)))).get_json()
    url = f"/api/v1/adverse-events/{body['adverse_event_case_id']}/close"
    medical = api(factory.user("medical"))
    missing = medical.post(url, json={})
    assert missing.status_code == 422
    assert set(missing.get_json()["errors"]) == {"forwarded_by", "forwarded_at"}
    assert medical.post(url, json={"forwarded_by": "Dr PV"}).status_code == 422
    assert medical.post(url, json={"forwarded_at": iso_z(utcnow())}).status_code == 422
    assert medical.post(url, json={"forwarded_by": "  ", "forwarded_at": iso_z(utcnow())}).status_code == 422
    before = iso_z(utcnow() - timedelta(days=1))
    assert medical.post(url, json={"forwarded_by": "Dr PV", "forwarded_at": before}).status_code == 422
    assert medical.post(url, json={"forwarded_by": "Dr PV", "forwarded_at": "2026-01-01T10:00:00"}).status_code \
        == 422
    assert db.get(AdverseEventCase, body["adverse_event_case_id"]).status == "open"
    for role in ("field_rep", "marketer", "compliance"):
        resp = api(factory.user(role)).post(url, json={"forwarded_by": "x", "forwarded_at": iso_z(utcnow())})
        assert resp.status_code == 403
    ok = medical.post(url, json={"forwarded_by": "Dr PV Safety Desk", "forwarded_at": iso_z(utcnow()),
                                 "pv_reference": "PV-2026-0042"})
    assert ok.status_code == 200, ok.get_json()
    out = ok.get_json()
    assert out["status"] == "closed" and out["forwarded_by"] == "Dr PV Safety Desk" and out["overdue"] is False
    assert medical.post(url, json={"forwarded_by": "x", "forwarded_at": iso_z(utcnow())}).status_code == 409


def test_ae_wording_in_another_contact_offers_a_case(api, factory, db):
    agent = factory.user("call_centre")
    hcp = factory.hcp()
    body = api(agent).post("/api/v1/call-centre/contacts", json=_contact(
        hcp, summary="Asked about stock; mentioned a patient was hospitalised after the first dose")).get_json()
    assert body["ae_case_offer"] is True and body["sensitivity"] == "standard"
    phrases = {h["phrase"] for h in body["guardrail_hits"]}
    assert {"hospitalised after", "hospitalised"} <= phrases
    assert db.get(Interaction, body["interaction_id"]).details["guardrail_hits"]
    resp = api(agent).post(f"/api/v1/call-centre/contacts/{body['id']}/adverse-event-case",
                           json={"product": "CARDIO-10"})
    assert resp.status_code == 201, resp.get_json()
    case = resp.get_json()
    assert case["product"] == "CARDIO-10" and case["received_at"] == body["occurred_at"]
    contact = db.get(Contact, body["id"])
    assert contact.reason == "adverse_event" and contact.sensitivity == "pv"
    old = db.get(Interaction, body["interaction_id"])
    new = db.get(Interaction, contact.interaction_id)
    assert old.superseded_by_id == new.id and new.sensitivity == "pv"
    rep_items = api(factory.user("field_rep")).get(f"/api/v1/hcps/{hcp.id}/timeline").get_json()["items"]
    assert [(i["kind"], i["redacted"]) for i in rep_items] == [("call_centre.adverse_event", True)]
    again = api(agent).post(f"/api/v1/call-centre/contacts/{body['id']}/adverse-event-case", json={})
    assert again.status_code == 409
    rep = api(factory.user("field_rep"))
    assert rep.post(f"/api/v1/call-centre/contacts/{body['id']}/adverse-event-case", json={}).status_code == 403
