"""Guardrails: deterministic matching, the editable lists, hits on visits and call-centre contacts."""

from __future__ import annotations

import pytest

from crm.callcentre.models import AdverseEventCase, MedicalInquiry
from crm.errors import Forbidden
from crm.guardrails import services as guardrails
from crm.guardrails.models import GuardrailRule
from crm.timeline.models import Interaction
from crm.visits import services as visits
from tests.events_support import viewer_of
from tests.visits_support import make_world, visit_data


def _phrases(db, text, context="visit"):
    return [(h.category, h.phrase) for h in guardrails.check_text(db, text, context)]


def test_defaults_are_seeded_once_and_matching_is_whole_word_and_case_insensitive(db):
    hits = _phrases(db, "Patient got a RASH; she was Hospitalised after the 2nd dose.")
    assert ("adverse_event", "rash") in hits and ("adverse_event", "hospitalised after") in hits
    assert _phrases(db, "Nothing here, just a crashing server and a secure cure-all.")[0] == ("promotional", "cure")
    assert _phrases(db, "Nothing here, just a crashing server") == []
    assert ("medical_question", "off-label") in _phrases(db, "Any data on off label use? Off-label in kids?")
    assert ("promotional", "100% safe") in _phrases(db, "It is 100% safe, guaranteed!")
    count = db.query(GuardrailRule).count()
    assert guardrails.ensure_default_rules(db) == 0 and db.query(GuardrailRule).count() == count


def test_same_text_same_hits_with_offsets(db):
    text = "He said: no side effects at all."
    first = guardrails.check_text(db, text, "call_centre")
    assert first == guardrails.check_text(db, text, "call_centre")
    promo = next(h for h in first if h.phrase == "no side effects")
    assert text[promo.start:promo.end] == "no side effects" == promo.match


def test_medical_questions_are_flagged_in_visits_not_in_call_summaries(db):
    text = "Can I use it in pregnancy?"
    assert {c for c, _ in _phrases(db, text, "visit")} == {"medical_question"}
    assert _phrases(db, text, "call_centre") == []


def test_unknown_context_is_422(api, factory):
    c = api(factory.user("field_rep"))
    resp = c.post("/api/v1/guardrails/check", json={"text": "rash", "context": "tweet"})
    assert resp.status_code == 422
    ok = c.post("/api/v1/guardrails/check", json={"text": "A rash. 100% safe!", "context": "visit"}).get_json()
    assert ok["adverse_event"] is True and ok["promotional"] is True and ok["medical_question"] is False


def test_compliance_edits_the_lists(api, factory, db):
    compliance = api(factory.user("compliance"))
    resp = compliance.post("/api/v1/guardrails/rules", json={"category": "promotional", "phrase": "  wonder   drug "})
    assert resp.status_code == 201 and resp.get_json()["phrase"] == "wonder drug"
    assert ("promotional", "wonder drug") in _phrases(db, "a true Wonder-Drug", "call_centre")
    dup = compliance.post("/api/v1/guardrails/rules", json={"category": "promotional", "phrase": "Wonder drug"})
    assert dup.status_code == 409
    assert compliance.post("/api/v1/guardrails/rules", json={"category": "promotional", "phrase": "!!!"}) \
        .status_code == 422
    assert compliance.post("/api/v1/guardrails/rules", json={"category": "vibes", "phrase": "x"}).status_code == 422
    rash = db.query(GuardrailRule).filter_by(category="adverse_event", phrase="rash").one()
    off = compliance.patch(f"/api/v1/guardrails/rules/{rash.id}", json={"active": False})
    assert off.status_code == 200 and off.get_json()["active"] is False
    assert ("adverse_event", "rash") not in _phrases(db, "a rash")
    assert compliance.patch("/api/v1/guardrails/rules/999999", json={"active": False}).status_code == 404
    for role in ("field_rep", "marketer", "medical", "call_centre", "admin"):
        c = api(factory.user(role))
        assert c.post("/api/v1/guardrails/rules", json={"category": "promotional", "phrase": "zzz"}).status_code \
            == 403
        assert c.patch(f"/api/v1/guardrails/rules/{rash.id}", json={"active": True}).status_code == 403
        assert c.get("/api/v1/guardrails/rules").status_code == 200


def _submit(world, user, notes, hcp=None):
    v = world.viewer(user)
    visit = visits.create_visit(world.db, user, v, visit_data((hcp or world.hcp).id, notes=notes))
    return visits.submit_visit(world.db, user, v, visit)


def test_rep_visit_with_medical_question_creates_an_inquiry(db, factory):
    world = make_world(db, factory)
    visit = _submit(world, world.rep, "Dr asked: dose for children under 12? Also is it 100% safe?")
    item = db.get(Interaction, visit.interaction_id)
    categories = {h["category"] for h in item.details["guardrail_hits"]}
    assert categories == {"medical_question", "promotional"}
    inquiry = db.query(MedicalInquiry).filter_by(visit_id=visit.id).one()
    assert inquiry.source == "visit" and inquiry.status == "open" and inquiry.hcp_id == world.hcp.id
    assert db.query(AdverseEventCase).filter_by(visit_id=visit.id).count() == 0


def test_visit_with_ae_wording_opens_an_ae_case(db, factory):
    world = make_world(db, factory)
    visit = _submit(world, world.rep, "Patient had a rash and was hospitalised after starting Cardiozen.")
    case = db.query(AdverseEventCase).filter_by(visit_id=visit.id).one()
    assert case.source == "visit" and case.product == "CARDIO-10" and case.status == "open"
    assert (case.due_at - case.received_at).total_seconds() == 24 * 3600
    assert world.rep.name in case.reporter


def test_a_visit_with_ae_wording_becomes_pv_content_on_the_timeline(db, factory):
    from crm.access.policy import Viewer
    from crm.timeline.queries import TimelineFilters, timeline_page

    world = make_world(db, factory)
    visit = _submit(world, world.rep, "Patient had a rash and was hospitalised after starting Cardiozen.")
    first_item = db.query(Interaction).filter(Interaction.superseded_by_id.isnot(None),
                                              Interaction.kind == "visit.submitted").one()
    now_item = db.get(Interaction, visit.interaction_id)
    assert visit.sensitivity == "pv" and now_item.sensitivity == "pv" and now_item.supersedes_id == first_item.id
    # issue 11: the superseded original carries the same text, so it is `pv` too (its content unchanged)
    assert now_item.details["guardrail_hits"] and first_item.sensitivity == "pv"
    assert db.query(AdverseEventCase).filter_by(visit_id=visit.id).one().interaction_id == now_item.id
    # the rep and marketing see that the visit happened, not the adverse-event text
    for role in ("field_rep", "marketer"):
        items, _ = timeline_page(db, Viewer(0, role, frozenset()), world.hcp.id, TimelineFilters())
        shown = [i for i in items if i["kind"] == "visit.submitted"]
        assert [i["id"] for i in shown] == [now_item.id]
        assert shown[0]["redacted"] and shown[0]["summary"] == "" and shown[0]["details"] == {}


def test_medical_visit_questions_stay_with_medical(db, factory):
    world = make_world(db, factory)
    visit = _submit(world, world.medical, "Discussed off-label data in renal impairment.")
    assert db.query(MedicalInquiry).filter_by(visit_id=visit.id).count() == 0
    assert db.get(Interaction, visit.interaction_id).details["guardrail_hits"]


def test_clean_visit_records_no_hits(db, factory):
    world = make_world(db, factory)
    visit = _submit(world, world.rep, "Discussed the new pack size.")
    assert "guardrail_hits" not in db.get(Interaction, visit.interaction_id).details


def test_hits_for_visit_helper(db):
    hits = guardrails.guardrail_hits_for_visit(db, "overdose?")
    assert [h.category for h in hits] == ["adverse_event"]
    assert guardrails.guardrail_hits_for_visit(db, "") == []


def test_rules_service_needs_compliance(db, factory):
    marketer = factory.user("marketer")
    with pytest.raises(Forbidden):
        guardrails.add_rule(db, marketer, viewer_of(marketer), "promotional", "best ever")
