"""Survey pages.

Public, no login (``surveys_public``): the answer page behind the signed, single-use link of a survey mail.
GET (and HEAD) shows the form and changes nothing (mail scanners follow links); only POST records the
answer, once. A used link says "already answered" (409 on POST), an expired one says so (410), a forged
one is "not valid" (404). A JSON POST gets JSON answers (problem+json for refusals).

Staff (``surveys_pages``): the list with the NPS overview, a new survey and its send (marketer), a survey's
results, recipients and answers (comments through the one read path), and the capture form for the call
centre and reps (also reached from the HCP page).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from marshmallow import ValidationError
from sqlalchemy import select

from crm.access.policy import write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.consent import tokens
from crm.db import utcnow
from crm.errors import Conflict, Invalid, NotFound, flatten_messages, problem
from crm.extensions import csrf, db
from crm.hcps.models import HCP
from crm.hcps.views import hcp_url
from crm.jobs import services as jobs
from crm.pageforms import form_time, page_id
from crm.surveys import services
from crm.surveys.models import CAPTURE_MEDIA, CONTEXT_CHANNELS, Survey
from crm.surveys.schemas import AnswerIn

public_bp = Blueprint("surveys_public", __name__, url_prefix="/surveys")
bp = Blueprint("surveys_pages", __name__, url_prefix="/surveys")
PAGE_SIZE = 100


def _errors_of(exc: Invalid | Conflict) -> list[str]:
    if isinstance(exc, Invalid) and exc.errors:
        return [f"{k.replace('_', ' ')}: {'; '.join(v)}" for k, v in exc.errors.items()]
    return [exc.detail]


def _form_answer(survey: Survey) -> dict[str, Any]:
    """The answer fields of a posted form, as the API's ``AnswerIn`` takes them (numbers where numbers are)."""
    def number(raw: str | None) -> Any:
        value = (raw or "").strip()
        return int(value) if value.isascii() and value.isdigit() and len(value) <= 3 else (value or None)

    data: dict[str, Any] = {"comment": request.form.get("comment") or None}
    if survey.kind == "nps":
        data["score"] = number(request.form.get("score"))
    else:
        data["answers"] = [number(request.form.get(f"q{i}")) for i in range(len(survey.questions))]
    return data


def _load_answer(survey: Survey, data: Any) -> services.Answer:
    """``AnswerIn`` then the survey's own rules; both refuse with ``Invalid`` (the field and why)."""
    try:
        loaded = AnswerIn().load(data if isinstance(data, dict) else {})
    except ValidationError as exc:
        raise Invalid("The answer cannot be recorded.", errors=flatten_messages(exc.messages)) from None
    return services.check_answer(survey, services.Answer(loaded["score"], tuple(loaded["answers"]),
                                                         loaded["comment"]))


# -- the public answer page --------------------------------------------------------------------------

_TITLES = {
    "used": "You have already answered this survey",
    "expired": "This survey link has expired",
}
_TEXTS = {
    "used": "Thank you: your answer is recorded. Each link takes one answer, so nothing more needs to be done.",
    "expired": "Survey links are valid for a limited time. Thank you for your interest all the same.",
}


def _state_page(state: str, status: int):
    if request.is_json:
        return problem(status, _TITLES[state], _TEXTS[state], rule=services.ALREADY_ANSWERED
                       if state == "used" else "survey-link-expired")
    return render_template("surveys/public/state.html", title=_TITLES[state], text=_TEXTS[state]), status


@public_bp.route("/answer/<token>", methods=["GET", "POST"])
@csrf.exempt
def answer(token: str):
    try:
        tok = tokens.resolve(db.session, token, "survey")
        survey, hcp = services.survey_of_token(db.session, tok)
    except NotFound as exc:
        if request.is_json:
            return problem(404, "Not found", exc.detail)
        return render_template("surveys/public/state.html", title="This link is not valid",
                               text=tokens.INVALID_LINK), 404
    state = tokens.status(tok)
    if state == "valid" and services.already_answered(db.session, survey, hcp.id):
        state = "used"  # answered in a conversation meanwhile: the link has nothing left to record
    if state != "valid":
        return _state_page(state, 409 if state == "used" and request.method == "POST" else
                           (200 if state == "used" else 410))
    if request.method != "POST":  # GET, and HEAD (Flask answers it with GET): the form only
        return render_template("surveys/public/answer.html", survey=survey, token=token, errors=[], form={})
    data = (request.get_json(silent=True) if request.is_json else _form_answer(survey))
    try:
        checked = _load_answer(survey, data)
        services.answer_by_link(db.session, tok, checked)
    except Invalid as exc:
        if request.is_json:
            return problem(422, "Unprocessable content", exc.detail, errors=exc.errors)
        return render_template("surveys/public/answer.html", survey=survey, token=token, errors=_errors_of(exc),
                               form=request.form), 422
    except Conflict:
        return _state_page("used", 409)
    if request.is_json:
        return jsonify({"status": "recorded"}), 201
    return render_template("surveys/public/state.html", title="Thank you",
                           text="Your answer is recorded. It helps us improve what we do for you and your patients.")


# -- staff pages -------------------------------------------------------------------------------------

def _may(action: str) -> bool:
    return write_decision(viewer(), action).allowed


@bp.get("")
@page_auth()
def index():
    surveys = list(db.session.scalars(select(Survey).order_by(Survey.id.desc()).limit(PAGE_SIZE)))
    return render_template("surveys/index.html", surveys=surveys, overview=services.nps_results(db.session),
                           kind_labels=services.KIND_LABELS, context_labels=services.CONTEXT_LABELS,
                           can_write=_may("survey.write"))


def _new_form(errors: list[str] | None = None, status: int = 200):
    from crm.campaigns.models import Audience
    from crm.segments.models import Segment

    audiences = list(db.session.scalars(select(Audience).order_by(Audience.id.desc()).limit(200)))
    segments = list(db.session.scalars(select(Segment).order_by(Segment.name).limit(500)))
    return render_template("surveys/new.html", audiences=audiences, segments=segments, errors=errors or [],
                           form=request.form,
                           context_channels=CONTEXT_CHANNELS, context_labels=services.CONTEXT_LABELS), status


@bp.get("/new")
@page_auth("marketer")
def new():
    return _new_form()


@bp.post("/new")
@page_auth("marketer")
def create():
    form = request.form
    raw_ids = [p.strip() for p in form.get("hcp_ids", "").replace("\n", ",").split(",") if p.strip()]
    bad = [i for i in raw_ids if page_id(i) is None]
    if bad:
        return _new_form([f"HCP ids: not an id: {', '.join(bad[:5])}"], 422)
    channel = form.get("context_channel") or None
    data: dict[str, Any] = {
        "name": form.get("name", ""), "kind": form.get("kind", ""),
        "questions": [q for q in form.get("questions", "").splitlines() if q.strip()],
        "context": {"channel": channel, "reference_id": page_id(form.get("context_reference_id"))}
        if channel else None,
        "audience": {"audience_id": page_id(form.get("audience_id")), "segment_id": page_id(form.get("segment_id")),
                     "hcp_ids": [page_id(i) for i in raw_ids]},
    }
    try:
        survey = services.create_survey(db.session, actor(), viewer(), data)
    except (Invalid, Conflict) as exc:
        return _new_form(_errors_of(exc), 422)
    flash(f"Survey {survey.name!r} created.")
    return redirect(url_for(".show", survey_id=survey.id), code=303)


@bp.get("/<int:survey_id>")
@page_auth()
def show(survey_id: int):
    survey = services.get_survey(db.session, survey_id)
    after = page_id(request.args.get("after"))
    responses, last = services.response_page(db.session, viewer(), survey, PAGE_SIZE, after)
    names = dict(db.session.execute(select(HCP.id, HCP.last_name).where(
        HCP.id.in_({r["hcp_id"] for r in responses}))).all()) if responses else {}
    for r in responses:
        r["url"], r["name"] = hcp_url(r["hcp_id"]), names.get(r["hcp_id"], str(r["hcp_id"]))
    recipients = services.recipients(db.session, survey, PAGE_SIZE)
    job = jobs.latest_for(db.session, f"survey:{survey.id}")
    for r in recipients:
        r["url"] = hcp_url(r["hcp_id"])
    return render_template("surveys/show.html", survey=survey, results=services.survey_results(db.session, survey),
                           responses=responses, next_after=last, after=after, recipients=recipients,
                           counts=services.recipient_counts(db.session, survey),
                           audience_size=len(services.audience_ids(db.session, survey)),
                           kind_labels=services.KIND_LABELS, context_labels=services.CONTEXT_LABELS,
                           medium_labels=services.MEDIUM_LABELS, can_send=_may("survey.write"), job=job,
                           job_link=job is not None and jobs.may_read(viewer(), job),
                           job_states={"queued": "Waiting", "running": "Running", "done": "Finished",
                                       "failed": "Failed"})


@bp.post("/<int:survey_id>/send")
@page_auth("marketer")
def send(survey_id: int):
    survey = services.get_survey(db.session, survey_id)
    result = services.send_survey(db.session, actor(), viewer(), survey)
    if result.job is not None:
        flash(f"Accepted for sending to {len(result.sent)} HCP(s); {len(result.skipped)} skipped. The mails are "
              "handed over in the background: the progress is shown below.")
    else:
        flash(f"Nobody to send to: {len(result.skipped)} skipped (see the recipients below).")
    return redirect(url_for(".show", survey_id=survey.id), code=303)


@bp.get("/capture")
@page_auth()
def pick():
    """From an HCP's page: which survey to record the HCP's answer for."""
    hcp = db.session.get(HCP, page_id(request.args.get("hcp_id")) or 0)
    surveys = list(db.session.scalars(select(Survey).order_by(Survey.id.desc()).limit(PAGE_SIZE)))
    answered = set()
    if hcp is not None:
        from crm.surveys.models import SurveyResponse

        answered = set(db.session.scalars(select(SurveyResponse.survey_id).where(SurveyResponse.hcp_id == hcp.id)))
    return render_template("surveys/pick.html", hcp=hcp, surveys=surveys, answered=answered,
                           kind_labels=services.KIND_LABELS, can_capture=_may("survey.capture"))


def _capture_form(survey: Survey, hcp: HCP | None, errors: list[str] | None = None, status: int = 200):
    return render_template("surveys/capture.html", survey=survey, hcp=hcp, errors=errors or [], form=request.form,
                           media=CAPTURE_MEDIA, medium_labels=services.MEDIUM_LABELS,
                           default_medium="visit" if viewer().role == "field_rep" else "phone"), status


@bp.get("/<int:survey_id>/capture")
@page_auth("call_centre", "field_rep")
def capture_form(survey_id: int):
    survey = services.get_survey(db.session, survey_id)
    hcp = db.session.get(HCP, page_id(request.args.get("hcp_id")) or 0)
    return _capture_form(survey, hcp)


@bp.post("/<int:survey_id>/capture")
@page_auth("call_centre", "field_rep")
def capture(survey_id: int):
    survey = services.get_survey(db.session, survey_id)
    hcp_id = page_id(request.form.get("hcp_id"))
    hcp = db.session.get(HCP, hcp_id or 0)
    if hcp is None:
        return _capture_form(survey, None, ["HCP: choose the HCP who answered"], 422)
    try:
        checked = _load_answer(survey, _form_answer(survey))
        when = form_time("answered_at", "Answered at", required=False) or utcnow()
        services.capture_answer(db.session, actor(), viewer(), survey, hcp_id=hcp.id, answer=checked,
                                medium=request.form.get("medium", ""), answered_at=when)
    except (Invalid, Conflict) as exc:
        return _capture_form(survey, hcp, _errors_of(exc), 409 if isinstance(exc, Conflict) else 422)
    flash(f"Answer to {survey.name!r} recorded on the HCP's timeline.")
    return redirect(hcp_url(hcp.id), code=303)
