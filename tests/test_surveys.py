"""Surveys (issue 12 item 3): create, consent-checked send, single-use answer links, capture by the call
centre or a rep, adverse-event wording, NPS arithmetic and results, pages and the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from crm.callcentre.models import AdverseEventCase
from crm.consent.models import ConsentToken
from crm.db import utcnow
from crm.jobs.models import Job
from crm.mail.models import MailOutbox
from crm.surveys import services
from crm.surveys.models import SurveyRecipient, SurveyResponse
from crm.timeline.models import Interaction, InteractionParticipant, SensitiveRead
from tests.campaigns_support import email_consent, unsubscribe_url, viewer_of
from tests.consent_support import grant, mails_to, withdraw
from tests.surveys_support import send_now

ROLES = ("field_rep", "marketer", "call_centre", "medical", "compliance", "admin")


@pytest.fixture
def territory(factory):
    return factory.territory()


@pytest.fixture
def people(factory, territory):
    out = {role: factory.user(role) for role in ROLES if role != "field_rep"}
    out["field_rep"] = factory.user("field_rep", territories=[territory])
    return out


def outbox(app) -> Path:
    return Path(app.config["CRM_OUTBOX_DIR"])


def survey_mails(app, address: str) -> list[Any]:
    return [m for m in mails_to(outbox(app), address) if "/surveys/answer/" in m.get_body(
        preferencelist=("plain",)).get_content()]


def answer_token(mail: Any) -> str:
    text = mail.get_body(preferencelist=("plain",)).get_content()
    (url,) = [w for w in text.split() if "/surveys/answer/" in w]
    return url.rsplit("/", 1)[1]


def create(api, user, hcp_ids, **overrides) -> Any:
    body = {"name": "After the HF round table", "kind": "nps", "context": {"channel": "event"},
            "audience": {"hcp_ids": hcp_ids}}
    body.update(overrides)
    return api(user).post("/api/v1/surveys", json=body)


def make_survey(db, marketer, hcp_ids, kind="nps", questions=None, context=None) -> Any:
    return services.create_survey(db, marketer, viewer_of(marketer), {
        "name": f"Survey {kind}", "kind": kind, "questions": questions or [], "context": context,
        "audience": {"hcp_ids": hcp_ids}})


def sent_survey(app, api, db, factory, people, hcp=None) -> tuple[Any, Any, str]:
    """An NPS survey mailed to one consenting HCP; returns (survey, hcp, the answer link's token)."""
    hcp = hcp or factory.hcp()
    email_consent(db, hcp, "market_research")
    survey = make_survey(db, people["marketer"], [hcp.id])
    assert api(people["marketer"]).post(f"/api/v1/surveys/{survey.id}/send").get_json()["sent"] == 1
    (mail,) = survey_mails(app, hcp.email)
    return survey, hcp, answer_token(mail)


# -- creating ------------------------------------------------------------------------------------------

def test_a_marketer_creates_an_nps_survey_with_the_default_question(api, db, factory, people):
    hcp = factory.hcp()
    resp = create(api, people["marketer"], [hcp.id])
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["kind"] == "nps" and body["questions"] == [services.DEFAULT_NPS_QUESTION]
    assert body["context"] == {"channel": "event", "reference_id": None, "label": "After an event"}
    assert body["status"] == "draft" and body["hcp_ids"] == [hcp.id] and body["recipients"] == {}
    assert api(people["field_rep"]).get(f"/api/v1/surveys/{body['id']}").get_json()["name"] == body["name"]


@pytest.mark.parametrize("role", ["field_rep", "call_centre", "medical", "compliance", "admin"])
def test_only_marketers_write_and_send_surveys(api, db, factory, people, role):
    hcp = factory.hcp()
    resp = create(api, people[role], [hcp.id])
    assert resp.status_code == 403 and resp.get_json()["rule"] == "survey.write:role"
    survey = make_survey(db, people["marketer"], [hcp.id])
    resp = api(people[role]).post(f"/api/v1/surveys/{survey.id}/send")
    assert resp.status_code == 403 and resp.get_json()["rule"] == "survey.write:role"


@pytest.mark.parametrize("overrides, field", [
    ({"kind": "poll"}, "kind"),
    ({"questions": ["One?", "Two?"]}, "questions"),
    ({"kind": "satisfaction", "questions": []}, "questions"),
    ({"kind": "satisfaction", "questions": ["   "]}, "questions"),
    ({"kind": "satisfaction", "questions": [f"Q{i}?" for i in range(6)]}, "questions"),
    ({"audience": {"hcp_ids": []}}, "audience"),
    ({"audience": {"hcp_ids": [2_000_000_000]}}, "audience.hcp_ids"),
    ({"audience": {"hcp_ids": [99_999_999_999]}}, "audience.hcp_ids.0"),
    ({"audience": {"audience_id": 2_000_000_000}}, "audience.audience_id"),
    ({"context": {"channel": "event", "reference_id": 2_000_000_000}}, "context.reference_id"),
    ({"context": {"channel": "visit", "reference_id": 5}}, "context.reference_id"),
    ({"context": {"channel": "fax"}}, "context.channel"),
    ({"name": "bad\x00name"}, "name"),
    ({"colour": "red"}, "colour"),
])
def test_bad_survey_input_is_a_clear_422(api, factory, people, overrides, field):
    hcp = factory.hcp()
    resp = create(api, people["marketer"], [hcp.id], **overrides)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"], resp.get_json()


def test_malformed_json_is_400(api, people):
    resp = api(people["marketer"]).post("/api/v1/surveys", data="{", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400


# -- sending -------------------------------------------------------------------------------------------

def test_send_checks_market_research_consent_and_mails_a_single_use_link(app, api, db, factory, people):
    consented, without, promo_only = factory.hcp(), factory.hcp(), factory.hcp()
    email_consent(db, consented, "market_research")
    email_consent(db, promo_only, "promotional")
    survey = make_survey(db, people["marketer"], [consented.id, without.id, promo_only.id])
    resp = api(people["marketer"]).post(f"/api/v1/surveys/{survey.id}/send")
    assert resp.status_code == 202, resp.get_json()
    result = resp.get_json()
    assert result["sent"] == 1 and result["status"] == "queued"
    job = db.get(Job, result["job_id"])
    assert (job.kind, job.subject, job.state) == ("survey.send", f"survey:{survey.id}", "done")
    assert (job.progress_done, job.progress_total, job.result["queued"]) == (1, 1, 1)
    assert sorted((s["hcp_id"], s["reason"]) for s in result["skipped"]) == sorted(
        [(without.id, "no-consent"), (promo_only.id, "no-consent")])
    assert survey_mails(app, without.email) == [] and survey_mails(app, promo_only.email) == []
    (mail,) = survey_mails(app, consented.email)
    assert "/consent/unsubscribe/" in unsubscribe_url(mail)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = db.scalar(select(ConsentToken).where(ConsentToken.purpose == "unsubscribe",
                                                 ConsentToken.hcp_id == consented.id))
    assert token.consent_purpose == "market_research" and token.reference == f"survey:{survey.id}"
    assert answer_token(mail)
    item = db.scalar(select(Interaction).where(Interaction.kind == "survey.sent"))
    assert item.channel == "survey" and item.external_id == f"survey:{survey.id}:{consented.id}"
    assert item.details["survey_id"] == survey.id and item.details["purpose"] == "market_research"
    row = db.scalar(select(SurveyRecipient).where(SurveyRecipient.hcp_id == consented.id))
    assert row.status == "queued" and db.get(MailOutbox, row.outbox_id).state == "sent"
    assert db.get(MailOutbox, row.outbox_id).kind == "survey"


def test_consent_withdrawn_between_create_and_send_is_skipped(app, api, db, factory, people):
    hcp = factory.hcp()
    email_consent(db, hcp, "market_research")
    survey = make_survey(db, people["marketer"], [hcp.id])
    withdraw(db, hcp, channel="email", purpose="market_research")
    result = api(people["marketer"]).post(f"/api/v1/surveys/{survey.id}/send").get_json()
    assert result == {"sent": 0, "skipped": [{"hcp_id": hcp.id, "reason": "consent-withdrawn",
                                              "detail": "Consent withdrawn"}], "job_id": None, "status": "done"}
    assert db.scalar(select(func.count()).select_from(Job)) == 0
    assert survey_mails(app, hcp.email) == []


def test_a_repeated_send_mails_nobody_twice(app, api, db, factory, people):
    first, later = factory.hcp(), factory.hcp()
    email_consent(db, first, "market_research")
    survey = make_survey(db, people["marketer"], [first.id, later.id])
    client = api(people["marketer"])
    assert client.post(f"/api/v1/surveys/{survey.id}/send").get_json()["sent"] == 1
    email_consent(db, later, "market_research")
    again = client.post(f"/api/v1/surveys/{survey.id}/send").get_json()
    assert again["sent"] == 1
    assert {"hcp_id": first.id, "reason": "already-sent", "detail": "Already sent this survey"} in again["skipped"]
    assert len(survey_mails(app, first.email)) == 1 and len(survey_mails(app, later.email)) == 1
    assert db.scalar(select(func.count()).select_from(SurveyRecipient)) == 2


def test_the_send_stores_recipients_and_hands_them_over_in_batches(app, db, factory, people):
    """The request only stores pending recipients and creates the job; each batch re-checks consent."""
    hcps = [factory.hcp() for _ in range(3)]
    for h in hcps:
        email_consent(db, h, "market_research")
    marketer = people["marketer"]
    survey = make_survey(db, marketer, [h.id for h in hcps])
    result = services.send_survey(db, marketer, viewer_of(marketer), survey)
    assert result.sent == [h.id for h in hcps] and result.skipped == []
    assert (result.job.kind, result.job.state, result.job.progress_total) == ("survey.send", "queued", 3)
    assert set(db.scalars(select(SurveyRecipient.status))) == {"pending"}
    assert db.scalar(select(func.count()).select_from(MailOutbox)) == 0
    withdraw(db, hcps[2], channel="email", purpose="market_research")
    first = services.hand_over(db, marketer, survey, limit=2)
    assert first.sent == [hcps[0].id, hcps[1].id]
    second = services.hand_over(db, marketer, survey, limit=2)
    assert second.sent == [] and second.skipped[0]["reason"] == "consent-withdrawn"
    assert services.hand_over(db, marketer, survey, limit=2).sent == []
    statuses = dict(db.execute(select(SurveyRecipient.hcp_id, SurveyRecipient.status)).all())
    assert statuses == {hcps[0].id: "queued", hcps[1].id: "queued", hcps[2].id: "skipped"}


def test_the_send_skips_a_bounced_or_missing_address_and_the_hand_over_a_bounce_since(app, db, factory, people):
    ok, bounced, no_address, bounces_later = factory.hcp(), factory.hcp(), factory.hcp(email=None), factory.hcp()
    for h in (ok, bounced, no_address, bounces_later):
        email_consent(db, h, "market_research")
    bounced.email_status = "invalid"
    db.flush()
    marketer = people["marketer"]
    survey = make_survey(db, marketer, [ok.id, bounced.id, no_address.id, bounces_later.id])
    result = services.send_survey(db, marketer, viewer_of(marketer), survey)
    assert result.sent == [ok.id, bounces_later.id]
    assert [(s["hcp_id"], s["reason"], s["detail"]) for s in result.skipped] == [
        (bounced.id, "email-invalid", "The email address bounced"),
        (no_address.id, "no-email-address", "No email address on record")]
    bounces_later.email_status = "invalid"
    db.flush()
    handed = services.hand_over(db, marketer, survey)
    assert handed.sent == [ok.id] and [(s["hcp_id"], s["reason"]) for s in handed.skipped] == [
        (bounces_later.id, "email-invalid")]
    rows = {r.hcp_id: (r.status, r.reason) for r in db.scalars(select(SurveyRecipient))}
    assert rows == {ok.id: ("queued", None), bounced.id: ("skipped", "email-invalid"),
                    no_address.id: ("skipped", "no-email-address"), bounces_later.id: ("skipped", "email-invalid")}
    item = db.scalar(select(Interaction).where(Interaction.kind == "survey.sent"))
    assert item.external_id == f"survey:{survey.id}:{ok.id}" and item.details["consent_rule"] == "consent-granted"


def test_answered_hcps_are_skipped_first_and_the_listed_order_is_kept(app, db, factory, people):
    first, answered, without = factory.hcp(), factory.hcp(), factory.hcp()
    for h in (first, answered):
        email_consent(db, h, "market_research")
    marketer = people["marketer"]
    survey = make_survey(db, marketer, [without.id, answered.id, first.id])  # not in id order
    db.add(SurveyResponse(survey_id=survey.id, hcp_id=answered.id, score=9, answers=[], medium="phone",
                          answered_at=utcnow(), sensitivity="standard", guardrail_hits=[]))
    db.flush()
    result = services.send_survey(db, marketer, viewer_of(marketer), survey)
    assert result.sent == [first.id]
    assert [(s["hcp_id"], s["reason"]) for s in result.skipped] == [
        (answered.id, "already-answered"), (without.id, "no-consent")]
    assert db.scalar(select(SurveyRecipient).where(SurveyRecipient.hcp_id == answered.id)) is None
    # consent given meanwhile: the skipped row is decided again, the pending one is never sent twice
    email_consent(db, without, "market_research")
    again = services.send_survey(db, marketer, viewer_of(marketer), survey)
    assert again.sent == [without.id]
    assert [(s["hcp_id"], s["reason"]) for s in again.skipped] == [
        (answered.id, "already-answered"), (first.id, "already-sent")]
    rows = {r.hcp_id: (r.status, r.reason) for r in db.scalars(select(SurveyRecipient))}
    assert rows == {first.id: ("pending", None), without.id: ("pending", None)}


def test_a_large_audience_is_decided_and_stored_in_a_few_statements(app, db, factory, people, territory):
    from crm.segments.models import Segment

    hcps = [factory.hcp(territory=territory, tags="survey-big") for _ in range(1200)]
    for h in hcps[:5]:
        email_consent(db, h, "market_research")
    marketer = people["marketer"]
    segment = Segment(name="Big", description="", professions=[], specialties=[], territory_codes=[],
                      tags=["survey-big"], tiers=[], created_by_id=marketer.id)
    db.add(segment)
    db.flush()
    survey = services.create_survey(db, marketer, viewer_of(marketer), {
        "name": "Big", "kind": "nps", "questions": [], "audience": {"segment_id": segment.id}})
    result = services.send_survey(db, marketer, viewer_of(marketer), survey)
    assert result.sent == [h.id for h in hcps[:5]]
    assert [s["hcp_id"] for s in result.skipped] == [h.id for h in hcps[5:]]
    assert {s["reason"] for s in result.skipped} == {"no-consent"}
    assert result.job.progress_total == 5
    assert dict(db.execute(select(SurveyRecipient.status, func.count()).group_by(SurveyRecipient.status)).all()) == {
        "pending": 5, "skipped": 1195}
    again = services.send_survey(db, marketer, viewer_of(marketer), survey)  # idempotent
    assert again.sent == [] and [s["reason"] for s in again.skipped] == ["already-sent"] * 5 + ["no-consent"] * 1195
    assert db.scalar(select(func.count()).select_from(SurveyRecipient)) == 1200


def test_the_outbox_checks_consent_again_before_a_survey_mail_leaves(app, db, factory, people):
    from crm.mail.services import deliver_pending

    hcp = factory.hcp()
    email_consent(db, hcp, "market_research")
    marketer = people["marketer"]
    app.config["CRM_MAIL_SEND_AFTER_COMMIT"] = False
    try:
        survey = make_survey(db, marketer, [hcp.id])
        send_now(db, marketer, survey)
        withdraw(db, hcp, channel="email", purpose="market_research")
        db.commit()
        counts = deliver_pending(app)
    finally:
        app.config["CRM_MAIL_SEND_AFTER_COMMIT"] = True
    assert counts["failed"] == 1
    row = db.scalar(select(MailOutbox).where(MailOutbox.kind == "survey"))
    db.refresh(row)
    assert row.state == "failed" and "consent-withdrawn" in row.last_error
    assert survey_mails(app, hcp.email) == []


def test_a_saved_campaign_audience_can_be_the_survey_audience(app, api, db, factory, people):
    from crm.campaigns import services as campaigns

    hcp = factory.hcp(profession="pharmacist")
    email_consent(db, hcp, "market_research")
    audience = campaigns.create_audience(db, people["marketer"], viewer_of(people["marketer"]),
                                         {"name": "Pharmacists", "hcp_ids": [hcp.id]})
    resp = create(api, people["marketer"], [], audience={"audience_id": audience.id})
    assert resp.status_code == 201, resp.get_json()
    assert api(people["marketer"]).post(f"/api/v1/surveys/{resp.get_json()['id']}/send").get_json()["sent"] == 1


# -- answering by link -----------------------------------------------------------------------------------

def test_get_shows_the_form_and_changes_nothing_post_records_once(app, api, client, db, factory, people):
    survey, hcp, token = sent_survey(app, api, db, factory, people)
    for _ in range(2):
        page = client.get(f"/surveys/answer/{token}")
        assert page.status_code == 200 and 'name="score"' in page.get_data(as_text=True)
    assert db.scalar(select(ConsentToken.used_at).where(ConsentToken.purpose == "survey")) is None
    resp = client.post(f"/surveys/answer/{token}", data={"score": "9", "comment": "Very helpful rep"})
    assert resp.status_code == 200 and "Thank you" in resp.get_data(as_text=True)
    response = db.scalar(select(SurveyResponse))
    assert (response.score, response.comment, response.medium, response.sensitivity) == (
        9, "Very helpful rep", "link", "standard")
    item = db.get(Interaction, response.interaction_id)
    assert item.kind == "survey.answered" and item.channel == "survey" and item.consent_gap is False
    assert item.details["score"] == 9 and item.owner_role == "marketer"
    assert db.scalar(select(InteractionParticipant.hcp_id).where(
        InteractionParticipant.interaction_id == item.id)) == hcp.id
    again = client.post(f"/surveys/answer/{token}", data={"score": "0"})
    assert again.status_code == 409 and "already answered" in again.get_data(as_text=True)
    assert client.get(f"/surveys/answer/{token}").status_code == 200  # the "already answered" page
    as_json = client.post(f"/surveys/answer/{token}", json={"score": 3})
    assert as_json.status_code == 409 and as_json.get_json()["rule"] == "already-answered"
    assert db.scalar(select(func.count()).select_from(SurveyResponse)) == 1
    assert db.scalar(select(SurveyResponse.score)) == 9


def test_a_json_post_records_and_answers_json(app, api, client, db, factory, people):
    _survey, _hcp, token = sent_survey(app, api, db, factory, people)
    bad = client.post(f"/surveys/answer/{token}", json={"score": 11})
    assert bad.status_code == 422 and "score" in bad.get_json()["errors"]
    unknown = client.post(f"/surveys/answer/{token}", json={"score": 5, "mood": "fine"})
    assert unknown.status_code == 422 and "mood" in unknown.get_json()["errors"]
    resp = client.post(f"/surveys/answer/{token}", json={"score": 6, "comment": None})
    assert resp.status_code == 201 and resp.get_json() == {"status": "recorded"}


@pytest.mark.parametrize("form", [{}, {"score": "11"}, {"score": "-1"}, {"score": "ten"}, {"score": "9" * 40},
                                  {"score": "5", "comment": "x" * 2001}, {"score": "5", "comment": "a\x00b"}])
def test_a_bad_answer_shows_the_form_again_with_the_reason(app, api, client, db, factory, people, form):
    _survey, _hcp, token = sent_survey(app, api, db, factory, people)
    resp = client.post(f"/surveys/answer/{token}", data=form)
    assert resp.status_code == 422 and "Not saved" in resp.get_data(as_text=True)
    assert db.scalar(select(SurveyResponse.id)) is None
    assert client.post(f"/surveys/answer/{token}", data={"score": "7"}).status_code == 200


@pytest.mark.parametrize("token", ["nope", "abc.def", "x" * 300, "a.b.c", "%00"])
def test_a_forged_link_is_a_clear_404_page(client, token):
    for resp in (client.get(f"/surveys/answer/{token}"), client.post(f"/surveys/answer/{token}", data={"score": 5})):
        assert resp.status_code == 404
        assert ("NUL character" if token == "%00" else "not valid") in resp.get_data(as_text=True)


def test_a_token_of_another_purpose_is_refused(app, api, client, db, factory, people):
    _survey, hcp, _token = sent_survey(app, api, db, factory, people)
    (mail,) = survey_mails(app, hcp.email)
    unsubscribe_token = unsubscribe_url(mail).rsplit("/", 1)[1]
    assert client.get(f"/surveys/answer/{unsubscribe_token}").status_code == 404


def test_an_expired_link_says_so(app, api, client, db, factory, people):
    _survey, _hcp, token = sent_survey(app, api, db, factory, people)
    db.execute(update(ConsentToken).where(ConsentToken.purpose == "survey")
               .values(expires_at=utcnow() - timedelta(minutes=1)))
    for resp in (client.get(f"/surveys/answer/{token}"), client.post(f"/surveys/answer/{token}", data={"score": 5})):
        assert resp.status_code == 410 and "expired" in resp.get_data(as_text=True)
    assert db.scalar(select(SurveyResponse.id)) is None


def test_a_link_answered_meanwhile_in_a_conversation_says_already_answered(app, api, client, db, factory, people,
                                                                           territory):
    hcp = factory.hcp(territory)
    survey, _hcp, token = sent_survey(app, api, db, factory, people, hcp)
    assert api(people["call_centre"]).post(f"/api/v1/surveys/{survey.id}/responses", json={
        "hcp_id": hcp.id, "score": 8, "medium": "phone"}).status_code == 201
    resp = client.post(f"/surveys/answer/{token}", data={"score": "2"})
    assert resp.status_code == 409
    assert db.scalar(select(SurveyResponse.score)) == 8


# -- capture by the call centre or a rep -----------------------------------------------------------------

@pytest.mark.parametrize("role, medium", [("call_centre", "phone"), ("field_rep", "visit")])
def test_the_call_centre_and_the_hcps_rep_capture_an_answer(api, db, factory, people, territory, role, medium):
    hcp = factory.hcp(territory)
    survey = make_survey(db, people["marketer"], [hcp.id])
    resp = api(people[role]).post(f"/api/v1/surveys/{survey.id}/responses", json={
        "hcp_id": hcp.id, "score": 10, "comment": "Great congress", "medium": medium})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert (body["score"], body["medium"], body["captured_by_id"]) == (10, medium, people[role].id)
    item = db.get(Interaction, body["interaction_id"])
    assert item.kind == "survey.answered" and item.owner_role == role and item.details["medium"] == medium
    # No market-research consent for that channel at that instant: recorded, and marked for compliance.
    assert item.consent_gap is True
    again = api(people[role]).post(f"/api/v1/surveys/{survey.id}/responses", json={
        "hcp_id": hcp.id, "score": 1, "medium": medium})
    assert again.status_code == 409


def test_a_captured_answer_with_consent_for_the_channel_has_no_gap(api, db, factory, people):
    hcp = factory.hcp()
    grant(db, hcp, channel="phone", purpose="market_research", source="call_centre")
    survey = make_survey(db, people["marketer"], [hcp.id])
    body = api(people["call_centre"]).post(f"/api/v1/surveys/{survey.id}/responses", json={
        "hcp_id": hcp.id, "score": 7, "medium": "phone"}).get_json()
    assert db.get(Interaction, body["interaction_id"]).consent_gap is False


def test_a_rep_captures_only_for_hcps_of_own_territories(api, db, factory, people):
    elsewhere = factory.hcp(factory.territory())
    survey = make_survey(db, people["marketer"], [elsewhere.id])
    resp = api(people["field_rep"]).post(f"/api/v1/surveys/{survey.id}/responses", json={
        "hcp_id": elsewhere.id, "score": 7, "medium": "visit"})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "survey.capture:territory"


@pytest.mark.parametrize("role", ["marketer", "medical", "compliance", "admin"])
def test_other_roles_do_not_capture_answers(api, db, factory, people, role):
    hcp = factory.hcp()
    survey = make_survey(db, people["marketer"], [hcp.id])
    resp = api(people[role]).post(f"/api/v1/surveys/{survey.id}/responses", json={
        "hcp_id": hcp.id, "score": 7, "medium": "phone"})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "survey.capture:role"


@pytest.mark.parametrize("body, field", [
    ({"score": 7, "medium": "fax"}, "medium"),
    ({"medium": "phone"}, "score"),
    ({"score": 7, "answers": [3], "medium": "phone"}, "answers"),
    ({"score": True, "medium": "phone"}, "score"),
    ({"score": 7, "medium": "phone", "answered_at": "2026-01-01T10:00:00"}, "answered_at"),
    ({"score": 7, "medium": "phone", "answered_at": "2999-01-01T10:00:00Z"}, "answered_at"),
    ({"score": 7, "medium": "phone", "answered_at": "9999-12-31T23:59:59Z"}, "answered_at"),
    ({"score": 7, "medium": "phone", "hcp_id": 2_000_000_000}, "hcp_id"),
    ({"score": 7, "medium": "phone", "hcp_id": 99_999_999_999}, "hcp_id"),
])
def test_bad_capture_input_is_a_clear_422(api, db, factory, people, body, field):
    hcp = factory.hcp()
    survey = make_survey(db, people["marketer"], [hcp.id])
    resp = api(people["call_centre"]).post(f"/api/v1/surveys/{survey.id}/responses", json={"hcp_id": hcp.id, **body})
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"], resp.get_json()


def test_capture_for_an_unknown_survey_is_404(api, factory, people):
    hcp = factory.hcp()
    resp = api(people["call_centre"]).post("/api/v1/surveys/2000000000/responses",
                                           json={"hcp_id": hcp.id, "score": 7, "medium": "phone"})
    assert resp.status_code == 404


# -- adverse-event wording -------------------------------------------------------------------------------

def test_adverse_event_wording_makes_the_answer_pv_and_opens_a_case(app, api, client, db, factory, people):
    survey, hcp, token = sent_survey(app, api, db, factory, people)
    client.post(f"/surveys/answer/{token}", data={"score": "3", "comment": "My patient had a rash after Cardiozol"})
    response = db.scalar(select(SurveyResponse))
    assert response.sensitivity == "pv" and response.guardrail_hits[0]["phrase"] == "rash"
    item = db.get(Interaction, response.interaction_id)
    assert item.sensitivity == "pv"
    case = db.scalar(select(AdverseEventCase).where(AdverseEventCase.hcp_id == hcp.id))
    assert case.source == "survey" and case.interaction_id == item.id and "rash" in case.description
    assert case.due_at == case.received_at + timedelta(hours=24)
    # Marketing sees that it was answered and why the rest is withheld; the figures still count it.
    seen = api(people["marketer"]).get(f"/api/v1/surveys/{survey.id}/responses").get_json()["items"][0]
    assert seen["redacted"] is True and seen["comment"] is None and seen["score"] is None
    assert "Pharmacovigilance" in seen["redaction_reason"]
    timeline = api(people["marketer"]).get(f"/api/v1/interactions/{item.id}").get_json()
    assert "rash" not in json.dumps(timeline)
    assert api(people["marketer"]).get(f"/api/v1/surveys/{survey.id}/results").get_json()["detractors"] == 1
    page = api(people["marketer"]).get(f"/api/v1/surveys/{survey.id}/results")
    assert "rash" not in page.get_data(as_text=True)
    # Medical Affairs reads it in full, and the read is logged for compliance.
    full = api(people["medical"]).get(f"/api/v1/surveys/{survey.id}/responses").get_json()["items"][0]
    assert full["comment"] == "My patient had a rash after Cardiozol" and full["redacted"] is False
    assert db.scalar(select(SensitiveRead.what).where(SensitiveRead.viewer_id == people["medical"].id)) \
        == "survey_response"


# -- results and the NPS arithmetic -----------------------------------------------------------------------

@pytest.mark.parametrize("scores, expected", [
    ([], {"responses": 0, "promoters": 0, "passives": 0, "detractors": 0, "nps": None}),
    ([10, 9], {"responses": 2, "promoters": 2, "passives": 0, "detractors": 0, "nps": 100}),
    ([0, 6], {"responses": 2, "promoters": 0, "passives": 0, "detractors": 2, "nps": -100}),
    ([7, 8], {"responses": 2, "promoters": 0, "passives": 2, "detractors": 0, "nps": 0}),
    ([9, 0], {"responses": 2, "promoters": 1, "passives": 0, "detractors": 1, "nps": 0}),
    ([9, 7, 7, 7, 7, 7, 7, 7], {"responses": 8, "promoters": 1, "passives": 7, "detractors": 0, "nps": 13}),
    ([6, 7, 7, 7, 7, 7, 7, 7], {"responses": 8, "promoters": 0, "passives": 7, "detractors": 1, "nps": -13}),
    ([9, 9, 6], {"responses": 3, "promoters": 2, "passives": 0, "detractors": 1, "nps": 33}),
    ([9, 6, 6], {"responses": 3, "promoters": 1, "passives": 0, "detractors": 2, "nps": -33}),
    ([9, 8, 8], {"responses": 3, "promoters": 1, "passives": 2, "detractors": 0, "nps": 33}),
    ([10, 10, 8], {"responses": 3, "promoters": 2, "passives": 1, "detractors": 0, "nps": 67}),
])
def test_nps_is_promoters_minus_detractors_rounded_half_away_from_zero(scores, expected):
    assert services.nps_of(scores) == expected


def test_results_without_answers_have_a_null_nps(api, db, factory, people):
    survey = make_survey(db, people["marketer"], [factory.hcp().id])
    body = api(people["field_rep"]).get(f"/api/v1/surveys/{survey.id}/results").get_json()
    assert {k: body[k] for k in ("responses", "promoters", "passives", "detractors", "nps")} == {
        "responses": 0, "promoters": 0, "passives": 0, "detractors": 0, "nps": None}
    assert body["by_territory"] == [] and body["by_month"] == []


def test_results_break_down_by_territory_month_segment_and_experience(api, db, factory, people, territory):
    other = factory.territory(name="North coast")
    a, b, c = factory.hcp(territory), factory.hcp(territory, profession="pharmacist"), factory.hcp(other)
    survey = make_survey(db, people["marketer"], [a.id, b.id, c.id], context={"channel": "visit"})
    agent = people["call_centre"]
    for hcp, score, when in ((a, 10, utcnow() - timedelta(days=40)), (b, 3, utcnow()), (c, 8, utcnow())):
        services.capture_answer(db, agent, viewer_of(agent), survey, hcp_id=hcp.id, answer=services.Answer(score),
                                medium="phone", answered_at=when)
    body = api(people["marketer"]).get(f"/api/v1/surveys/{survey.id}/results").get_json()
    assert (body["responses"], body["promoters"], body["passives"], body["detractors"], body["nps"]) == (3, 1, 1, 1, 0)
    by_territory = {r["key"]: (r["label"], r["nps"]) for r in body["by_territory"]}
    assert by_territory == {territory.code: (territory.name, 0), other.code: ("North coast", 0)}
    months = {r["key"]: r["responses"] for r in body["by_month"]}
    assert sum(months.values()) == 3 and len(months) == 2
    assert {r["key"]: r["nps"] for r in body["by_segment"]["profession"]} == {"gp": 50, "pharmacist": -100}
    overview = api(people["field_rep"]).get("/api/v1/surveys/nps").get_json()
    assert [(r["key"], r["label"], r["responses"]) for r in overview["by_experience"]] == [
        ("visit", "After a visit", 3)]
    later = api(people["field_rep"]).get("/api/v1/surveys/nps", query_string={
        "since": (utcnow() - timedelta(days=1)).isoformat()}).get_json()
    assert later["responses"] == 2
    assert api(people["field_rep"]).get("/api/v1/surveys/nps?since=yesterday").status_code == 422


def test_a_registered_segmenter_adds_a_breakdown(api, db, factory, people):
    hcp = factory.hcp()
    survey = make_survey(db, people["marketer"], [hcp.id])
    agent = people["call_centre"]
    services.capture_answer(db, agent, viewer_of(agent), survey, hcp_id=hcp.id, answer=services.Answer(9),
                            medium="phone")
    services.register_segmenter("test_segment", lambda session, ids: {i: ["Cardiology leaders"] for i in ids})
    try:
        body = api(people["marketer"]).get(f"/api/v1/surveys/{survey.id}/results").get_json()
    finally:
        services.SEGMENTERS.pop("test_segment")
    assert body["by_segment"]["test_segment"] == [{
        "key": "Cardiology leaders", "label": "Cardiology leaders", "responses": 1, "promoters": 1, "passives": 0,
        "detractors": 0, "nps": 100}]


def test_a_satisfaction_survey_takes_one_score_per_question(app, api, client, db, factory, people):
    hcp = factory.hcp()
    email_consent(db, hcp, "market_research")
    survey = make_survey(db, people["marketer"], [hcp.id], kind="satisfaction",
                         questions=["The event was well organised", "The content was relevant"])
    api(people["marketer"]).post(f"/api/v1/surveys/{survey.id}/send")
    (mail,) = survey_mails(app, hcp.email)
    token = answer_token(mail)
    assert 'name="q1"' in client.get(f"/surveys/answer/{token}").get_data(as_text=True)
    assert client.post(f"/surveys/answer/{token}", data={"q0": "5"}).status_code == 422
    assert client.post(f"/surveys/answer/{token}", data={"q0": "5", "q1": "6"}).status_code == 422
    assert client.post(f"/surveys/answer/{token}", data={"q0": "5", "q1": "4"}).status_code == 200
    body = api(people["marketer"]).get(f"/api/v1/surveys/{survey.id}/results").get_json()
    assert body["responses"] == 1 and body["nps"] is None
    assert [(q["question"], q["average"]) for q in body["questions"]] == [
        ("The event was well organised", 5.0), ("The content was relevant", 4.0)]


# -- pages and the command line ----------------------------------------------------------------------

def test_the_marketer_creates_and_sends_from_the_pages(app, auth, client, db, factory, people, monkeypatch):
    # The send job runs as a consumer would, outside the page's request (its mail is rendered from templates).
    queued: list[int] = []
    monkeypatch.setattr("crm.jobs.queue.enqueue_job", lambda _app, job_id, **_kw: queued.append(job_id))
    hcp = factory.hcp()
    email_consent(db, hcp, "market_research")
    auth.login(people["marketer"])
    assert client.get("/surveys").status_code == 200
    token = auth.csrf_token("/surveys/new")
    bad = client.post("/surveys/new", data={"csrf_token": token, "name": "X", "kind": "nps", "hcp_ids": "12x"})
    assert bad.status_code == 422 and "not an id" in bad.get_data(as_text=True)
    resp = client.post("/surveys/new", data={"csrf_token": token, "name": "After our webinar", "kind": "nps",
                                             "context_channel": "event", "hcp_ids": str(hcp.id)})
    assert resp.status_code == 303
    survey_url = resp.headers["Location"]
    sent = client.post(f"{survey_url}/send", data={"csrf_token": token})
    assert sent.status_code == 303 and len(queued) == 1
    from crm.jobs.services import run_job

    assert run_job(app, queued[0]) == "done"
    page = client.get(survey_url).get_data(as_text=True)
    assert "After our webinar" in page and "mail sent" in page and len(survey_mails(app, hcp.email)) == 1


def test_the_agent_records_an_answer_from_the_hcp_page(auth, client, db, factory, people):
    hcp = factory.hcp()
    survey = make_survey(db, people["marketer"], [hcp.id])
    auth.login(people["call_centre"])
    assert "Record a survey answer" in client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    assert f"/surveys/{survey.id}/capture?hcp_id={hcp.id}" in client.get(
        f"/surveys/capture?hcp_id={hcp.id}").get_data(as_text=True)
    form_url = f"/surveys/{survey.id}/capture"
    assert client.get(f"{form_url}?hcp_id={hcp.id}").status_code == 200
    token = auth.csrf_token(f"{form_url}?hcp_id={hcp.id}")
    bad = client.post(form_url, data={"csrf_token": token, "hcp_id": str(hcp.id), "medium": "phone", "score": "12"})
    assert bad.status_code == 422 and "score" in bad.get_data(as_text=True)
    nobody = client.post(form_url, data={"csrf_token": token, "hcp_id": "99999999999", "medium": "phone"})
    assert nobody.status_code == 422
    resp = client.post(form_url, data={"csrf_token": token, "hcp_id": str(hcp.id), "medium": "phone", "score": "9",
                                       "comment": "Helpful call", "answered_at": "2026-01-02T10:00",
                                       "times_utc": "1"})
    assert resp.status_code == 303
    response = db.scalar(select(SurveyResponse))
    assert response.score == 9 and response.answered_at.isoformat().startswith("2026-01-02T10:00")
    again = client.post(form_url, data={"csrf_token": token, "hcp_id": str(hcp.id), "medium": "phone", "score": "1"})
    assert again.status_code == 409
    assert "Helpful call" in client.get(f"/surveys/{survey.id}").get_data(as_text=True)


@pytest.mark.parametrize("role", ["marketer", "medical", "compliance", "admin"])
def test_roles_that_do_not_capture_see_no_capture_button(auth, client, db, factory, people, role):
    hcp = factory.hcp()
    survey = make_survey(db, people["marketer"], [hcp.id])
    auth.login(people[role])
    assert "Record a survey answer" not in client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
    assert client.get(f"/surveys/{survey.id}/capture?hcp_id={hcp.id}").status_code == 403
    assert client.get(f"/surveys/{survey.id}").status_code == 200


def test_a_rep_sees_the_capture_button_only_for_own_territories(auth, client, factory, people, territory):
    own, other = factory.hcp(territory), factory.hcp(factory.territory())
    auth.login(people["field_rep"])
    assert "Record a survey answer" in client.get(f"/hcps/{own.id}").get_data(as_text=True)
    assert "Record a survey answer" not in client.get(f"/hcps/{other.id}").get_data(as_text=True)


def test_the_command_line_sends_as_the_creator(app, db, factory, people, runner):
    hcp = factory.hcp()
    email_consent(db, hcp, "market_research")
    survey = make_survey(db, people["marketer"], [hcp.id, factory.hcp().id])
    result = runner.invoke(args=["crm", "surveys", "send", str(survey.id)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # the job's log lines go to stderr
    assert out == {"survey_id": survey.id, "sent": 1, "skipped": {"no-consent": 1}, "job_id": out["job_id"]}
    assert db.get(Job, out["job_id"]).kind == "survey.send"
    assert runner.invoke(args=["crm", "surveys", "send", "2000000000"]).exit_code != 0


def test_the_command_line_leaves_the_send_to_a_consumer_or_runs_it_with_now(app, db, factory, people, runner,
                                                                            monkeypatch):
    queued: list[int] = []
    monkeypatch.setattr("crm.jobs.queue.enqueue_job", lambda _app, job_id, **_kw: queued.append(job_id))
    hcp = factory.hcp()
    email_consent(db, hcp, "market_research")
    later = make_survey(db, people["marketer"], [hcp.id])
    out = json.loads(runner.invoke(args=["crm", "surveys", "send", str(later.id)]).stdout)
    assert queued == [out["job_id"]] and "job" not in out
    assert db.get(Job, out["job_id"]).state == "queued" and survey_mails(app, hcp.email) == []
    assert set(db.scalars(select(SurveyRecipient.status).where(SurveyRecipient.survey_id == later.id))) == {
        "pending"}
    now = make_survey(db, people["marketer"], [hcp.id])
    out = json.loads(runner.invoke(args=["crm", "surveys", "send", str(now.id), "--now"]).stdout)
    assert out["job"] == "done" and db.get(Job, out["job_id"]).state == "done"
    assert db.scalar(select(SurveyRecipient.status).where(SurveyRecipient.survey_id == now.id)) == "queued"
    assert len(survey_mails(app, hcp.email)) == 1


def test_the_survey_page_shows_the_send_job_and_its_progress(app, auth, client, db, factory, people, monkeypatch):
    monkeypatch.setattr("crm.jobs.queue.enqueue_job", lambda _app, job_id, **_kw: None)
    hcps = [factory.hcp() for _ in range(2)]
    for h in hcps:
        email_consent(db, h, "market_research")
    survey = make_survey(db, people["marketer"], [h.id for h in hcps])
    auth.login(people["marketer"])
    token = auth.csrf_token(f"/surveys/{survey.id}")
    resp = client.post(f"/surveys/{survey.id}/send", data={"csrf_token": token}, follow_redirects=True)
    page = resp.get_data(as_text=True)
    assert "Accepted for sending to 2 HCP(s)" in page and "Waiting: 0 of 2 done" in page
    job = db.scalar(select(Job).where(Job.subject == f"survey:{survey.id}"))
    assert f"/jobs/{job.id}" in page  # its creator may open the job
    from crm.jobs.services import run_job

    assert run_job(app, job.id) == "done"
    page = client.get(f"/surveys/{survey.id}").get_data(as_text=True)
    assert "Finished: 2 of 2 done" in page and len(survey_mails(app, hcps[0].email)) == 1
    auth.login(people["compliance"])
    page = client.get(f"/surveys/{survey.id}").get_data(as_text=True)
    assert "Finished: 2 of 2 done" in page and f"/jobs/{job.id}" not in page  # not theirs to open

