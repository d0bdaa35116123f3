"""The survey API: surveys and sends (marketer), captured answers (call centre, rep), results, responses."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from crm.auth.context import actor, api_auth, viewer
from crm.extensions import db
from crm.openapi import doc
from crm.schemas import PageArgs, decode_cursor, encode_cursor, load_args, load_body, page
from crm.surveys import services
from crm.surveys.models import Survey
from crm.surveys.schemas import (
    CaptureIn,
    NpsArgs,
    NpsResultsOut,
    ResponseOut,
    ResponsePage,
    ResultsOut,
    SurveyIn,
    SurveyOut,
    SurveyPage,
    SurveySendOut,
)

bp = Blueprint("surveys_api", __name__, url_prefix="/api/v1")
TAGS = ["surveys"]


def survey_out(s: Survey, counts: dict[str, int] | None = None) -> dict[str, Any]:
    creator = s.created_by
    out: dict[str, Any] = SurveyOut().dump({
        "id": s.id, "name": s.name, "kind": s.kind, "questions": list(s.questions),
        "context": {"channel": s.context_channel, "reference_id": s.context_id,
                    "label": services.CONTEXT_LABELS.get(s.context_channel, s.context_channel or "")},
        "audience_id": s.audience_id, "segment_id": s.segment_id, "hcp_ids": list(s.hcp_ids or []), "status": s.status,
        "created_by": None if creator is None else {"id": creator.id, "name": creator.name, "role": creator.role},
        "created_at": s.created_at, "last_sent_at": s.last_sent_at,
        "recipients": counts if counts is not None else services.recipient_counts(db.session, s),
    })
    return out


@bp.post("/surveys")
@doc("Create a survey (NPS or satisfaction)", tags=TAGS, body=SurveyIn, responses={201: SurveyOut},
     errors=(400, 401, 403, 422))
@api_auth
def create_survey():
    """Marketer. `audience` names one of a saved campaign audience (`audience_id`), a saved segment
    (`segment_id`, its HCPs as the segment holds them at the send) or HCP ids; `context` the
    channel experience it asks about (an event or campaign may be referenced)."""
    data = load_body(SurveyIn())
    return survey_out(services.create_survey(db.session, actor(), viewer(), data), {}), 201


@bp.get("/surveys")
@doc("Surveys, newest first", tags=TAGS, query=PageArgs, responses={200: SurveyPage}, errors=(401, 422))
@api_auth
def list_surveys():
    args = load_args(PageArgs())
    query = select(Survey).order_by(Survey.id.desc()).limit(args["limit"] + 1)
    if args["cursor"]:
        (last_id,) = decode_cursor(args["cursor"], (int,))
        query = query.where(Survey.id < last_id)
    rows = list(db.session.scalars(query))
    more = len(rows) > args["limit"]
    rows = rows[:args["limit"]]
    return page([survey_out(s) for s in rows], encode_cursor(rows[-1].id) if more else None)


@bp.get("/surveys/nps")
@doc("NPS across every NPS survey: overall, by channel experience, territory, month and segment", tags=TAGS,
     query=NpsArgs, responses={200: NpsResultsOut}, errors=(401, 422))
@api_auth
def nps_overview():
    """Aggregate figures (no free text): every role. `since` inclusive, `until` exclusive (answer time)."""
    args = load_args(NpsArgs())
    return NpsResultsOut().dump(services.nps_results(db.session, since=args["since"], until=args["until"]))


@bp.get("/surveys/<int:survey_id>")
@doc("One survey", tags=TAGS, responses={200: SurveyOut}, errors=(401, 404))
@api_auth
def get_survey(survey_id: int):
    return survey_out(services.get_survey(db.session, survey_id))


@bp.post("/surveys/<int:survey_id>/send")
@doc("Send a survey by email (accepted at once, mailed by a background job)", tags=TAGS,
     responses={202: SurveySendOut}, errors=(401, 403, 404))
@api_auth
def send_survey(survey_id: int):
    """Marketer. Consent (email, market research) is checked for every recipient at this instant; those
    without it are skipped with the rule. A repeated send mails nobody twice (`already-sent`).
    Answers 202 at once: `sent` are the recipients accepted for sending, which the job `job_id` hands to the
    mail outbox in batches (its progress: GET /api/v1/jobs/{job_id})."""
    survey = services.get_survey(db.session, survey_id)
    result = services.send_survey(db.session, actor(), viewer(), survey)
    job_id = result.job.id if result.job is not None else None
    return SurveySendOut().dump({"sent": len(result.sent), "skipped": result.skipped, "job_id": job_id,
                                 "status": "queued" if job_id is not None else "done"}), 202


@bp.get("/surveys/<int:survey_id>/results")
@doc("Results of a survey: NPS and its breakdowns, or the average per satisfaction question", tags=TAGS,
     responses={200: ResultsOut}, errors=(401, 404))
@api_auth
def survey_results(survey_id: int):
    survey = services.get_survey(db.session, survey_id)
    return ResultsOut().dump(services.survey_results(db.session, survey))


@bp.post("/surveys/<int:survey_id>/responses")
@doc("Record an answer given in a conversation", tags=TAGS, body=CaptureIn, responses={201: ResponseOut},
     errors=(400, 401, 403, 404, 409, 422))
@api_auth
def capture_response(survey_id: int):
    """Call centre, or a field rep for an HCP of their own territories. Once per HCP and survey (409 after).
    No consent is needed to record it; without a market-research consent for the medium at that instant
    the timeline item is marked `consent_gap`. A comment with adverse-event wording makes the answer `pv`
    and opens an adverse-event case."""
    data = load_body(CaptureIn())
    survey = services.get_survey(db.session, survey_id)
    answer = services.Answer(data["score"], tuple(data["answers"]), data["comment"])
    response = services.capture_answer(db.session, actor(), viewer(), survey, hcp_id=data["hcp_id"], answer=answer,
                                       medium=data["medium"], answered_at=data["answered_at"])
    from crm.access.reads import read_record

    return ResponseOut().dump(read_record(None, viewer(), response, services.response_shape(), log=False)), 201


@bp.get("/surveys/<int:survey_id>/responses")
@doc("Answers of a survey, newest first", tags=TAGS, query=PageArgs, responses={200: ResponsePage},
     errors=(401, 404, 422))
@api_auth
def list_responses(survey_id: int):
    """Comments are free text: an answer flagged as an adverse event (`pv`) shows its comment and scores
    only to the roles that read pharmacovigilance content, and those reads are logged."""
    args = load_args(PageArgs())
    survey = services.get_survey(db.session, survey_id)
    after = decode_cursor(args["cursor"], (int,))[0] if args["cursor"] else None
    items, last = services.response_page(db.session, viewer(), survey, args["limit"], after)
    return ResponsePage().dump({"items": items, "next_cursor": encode_cursor(last) if last else None})
