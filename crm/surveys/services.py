"""Surveys: create, send (consent-checked, through the mail outbox), answer once, capture, results.

Rules (SPEC sections 6 and 7, issue 12 item 3):
- A marketer writes and sends surveys. A send checks consent (`email`, `market_research`) for every
  recipient at that instant with the campaign machinery (``crm.campaigns.services.evaluate``: consent,
  then the address), skipping with the rule; nobody is mailed twice (``survey_recipients`` is unique per
  (survey, HCP)). The send (the request) stores its recipients as ``pending`` and creates a
  ``survey.send`` job, which hands them to the mail outbox in batches (``hand_over``, through
  ``crm.jobs.batches``: resumable, never twice), each batch checked against consent again at its instant.
  The outbox checks consent once more before a mail leaves (kind ``survey``).
- Each mail carries a signed, single-use answer link (``crm.consent.tokens``, purpose ``survey``) and the
  RFC 8058 one-click unsubscribe headers for market research; each is a ``survey.sent`` timeline item.
- An answer is recorded once per (survey, HCP), whether it comes through the link or is captured by the
  call centre or a rep (``survey.capture``: a rep only for HCPs of their own territories). Capturing needs
  no consent (logging what happened is always allowed); an answer given on the phone or in a visit
  without a granted market-research consent for that channel is marked ``consent_gap`` by the consent
  listener, like any other contact.
- The comment is free text from an HCP: it is screened by the guardrails (context ``survey``); adverse-
  event wording makes the response and its ``survey.answered`` item `pv` and opens an adverse-event case
  with its 24-hour clock (the same route as adverse-event wording in a visit).
- NPS = % promoters (9-10) - % detractors (0-6), rounded half away from zero to a whole number; no
  answers: ``nps`` is null.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import current_app, render_template
from sqlalchemy import bindparam, func, select, union_all, update

from crm.access.policy import Viewer, require_write
from crm.audit import services as audit
from crm.db import DbSession, among, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.hcps.models import HCP, Territory
from crm.surveys.models import (
    CAPTURE_MEDIA,
    CONTEXT_CHANNELS,
    SURVEY_KINDS,
    Survey,
    SurveyRecipient,
    SurveyResponse,
)
from crm.timeline.services import Fact, record_interaction, record_interactions

PURPOSE = "market_research"
DEFAULT_NPS_QUESTION = "How likely are you to recommend us to a colleague?"
MAX_SATISFACTION_QUESTIONS = 5
MAX_QUESTION = 300
MAX_COMMENT = 2000
# How many recipients one hand-over batch builds and enqueues (one transaction's worth for a job).
BATCH_SIZE = 500
KIND_LABELS = {"nps": "Net Promoter Score", "satisfaction": "Satisfaction"}
CONTEXT_LABELS = {None: "No particular experience", "visit": "After a visit", "event": "After an event",
                  "email": "After an email campaign", "call_centre": "After a call-centre contact"}
MEDIUM_LABELS = {"link": "Answered through the survey link", "phone": "Captured on the phone",
                 "visit": "Captured in a visit", "remote_meeting": "Captured in a remote meeting"}
ALREADY_ANSWERED = "already-answered"
# The rule of everyone a send may mail (crm.consent.services.RULES["granted"]), kept on the survey.sent item.
CONSENT_GRANTED = "consent-granted"


# -- surveys -----------------------------------------------------------------------------------------

def get_survey(session: DbSession, survey_id: int) -> Survey:
    survey = session.get(Survey, survey_id)
    if survey is None:
        raise NotFound(f"Survey {survey_id} does not exist.")
    return survey


def _clean_questions(kind: str, questions: Sequence[str] | None, errors: dict[str, list[str]]) -> list[str]:
    cleaned = [" ".join(str(q).split()) for q in (questions or [])]
    if any(not q for q in cleaned):
        errors["questions"] = ["a question must not be empty"]
    elif any(len(q) > MAX_QUESTION for q in cleaned):
        errors["questions"] = [f"a question has at most {MAX_QUESTION} characters"]
    elif kind == "nps":
        if len(cleaned) > 1:
            errors["questions"] = ["an NPS survey asks one question (the 0-10 recommendation question)"]
        return cleaned or [DEFAULT_NPS_QUESTION]
    elif kind == "satisfaction" and not 1 <= len(cleaned) <= MAX_SATISFACTION_QUESTIONS:
        errors["questions"] = [f"a satisfaction survey asks 1 to {MAX_SATISFACTION_QUESTIONS} questions, "
                               "each answered on a 1-5 scale"]
    return cleaned


def _check_context(session: DbSession, channel: str | None, ref: int | None, errors: dict[str, list[str]]) -> None:
    from crm.campaigns.models import Campaign
    from crm.events.models import Event

    if channel is None:
        if ref is not None:
            errors["context"] = ["a reference needs a channel"]
        return
    if channel not in CONTEXT_CHANNELS:
        errors["context.channel"] = [f"must be one of {', '.join(CONTEXT_CHANNELS)}"]
        return
    if ref is None:
        return
    model = {"event": Event, "email": Campaign}.get(channel)
    if model is None:
        errors["context.reference_id"] = ["only an event or an email campaign can be referenced"]
    elif session.get(model, ref) is None:
        errors["context.reference_id"] = [f"no {'event' if channel == 'event' else 'campaign'} with id {ref}"]


def create_survey(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> Survey:
    """A new survey (draft): name, kind, questions, optional channel experience, audience (a saved campaign
    audience, a saved segment or HCP ids)."""
    from crm.campaigns.models import Audience
    from crm.segments.models import Segment

    require_write(viewer, "survey.write")
    errors: dict[str, list[str]] = {}
    name = " ".join((data.get("name") or "").split())
    if not name:
        errors["name"] = ["must not be empty"]
    kind = data.get("kind") or ""
    if kind not in SURVEY_KINDS:
        errors["kind"] = [f"must be one of {', '.join(SURVEY_KINDS)}"]
    questions = _clean_questions(kind, data.get("questions"), errors)
    context = data.get("context") or {}
    channel, ref = context.get("channel"), context.get("reference_id")
    _check_context(session, channel, ref, errors)
    audience = data.get("audience") or {}
    audience_id, hcp_ids = audience.get("audience_id"), list(dict.fromkeys(audience.get("hcp_ids") or []))
    segment_id = audience.get("segment_id")
    if [audience_id is not None, segment_id is not None, bool(hcp_ids)].count(True) != 1:
        errors["audience"] = ["give one of audience_id (a saved audience), segment_id (a saved segment) or hcp_ids"]
    elif audience_id is not None and session.get(Audience, audience_id) is None:
        errors["audience.audience_id"] = [f"no audience with id {audience_id}"]
    elif segment_id is not None and session.get(Segment, segment_id) is None:
        errors["audience.segment_id"] = [f"no segment with id {segment_id}"]
    elif hcp_ids:
        known = set(session.scalars(select(HCP.id).where(among(session, HCP.id, hcp_ids))))
        missing = [str(i) for i in hcp_ids if i not in known]
        if missing:
            errors["audience.hcp_ids"] = [f"no HCP with id {', '.join(missing[:20])}"]
    if errors:
        raise Invalid("The survey cannot be saved.", errors=errors)
    survey = Survey(name=name[:200], kind=kind, questions=questions, context_channel=channel, context_id=ref,
                    audience_id=audience_id, segment_id=segment_id, hcp_ids=hcp_ids, status="draft",
                    created_by_id=actor.id)
    session.add(survey)
    session.flush()
    audit.record(session, actor, "survey.create", "survey", survey.id, audit.created({
        "name": survey.name, "kind": kind, "questions": questions, "context_channel": channel,
        "context_id": ref, "audience_id": audience_id, "segment_id": segment_id, "hcp_count": len(hcp_ids)}))
    return survey


def audience_ids(session: DbSession, survey: Survey) -> list[int]:
    """The HCPs the survey goes to now: its saved audience (as the campaign audiences resolve), its saved
    segment (through the one filter builder, as the segment is now) or its ids."""
    from crm.campaigns.services import audience_hcp_ids, get_audience
    from crm.segments.filters import matching_ids
    from crm.segments.services import segment_where

    if survey.audience_id is not None:
        return audience_hcp_ids(session, get_audience(session, survey.audience_id))
    if survey.segment is not None:
        return matching_ids(session, segment_where(survey.segment))
    return list(survey.hcp_ids or [])


# -- sending -----------------------------------------------------------------------------------------

@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    job: Any = None  # the ``survey.send`` job handing the pending recipients over (None: nobody pending)


def _skip_text(rule: str) -> str:
    from crm.campaigns.services import SKIP_TEXT

    return {"already-sent": "Already sent this survey", ALREADY_ANSWERED: "Already answered this survey",
            "no-consent": "No consent for market research by email"}.get(rule, SKIP_TEXT.get(rule, rule))


def _audience_source(session: DbSession, survey: Survey) -> tuple[Any, list[int] | None]:
    """What ``decide_audience`` decides for the survey: its saved audience (resolved by the database, as the
    campaign audiences are), or the ids of its segment as it is now or its own ids (in their order)."""
    from crm.campaigns.services import get_audience
    from crm.segments.filters import matching_ids
    from crm.segments.services import segment_where

    if survey.audience_id is not None:
        return get_audience(session, survey.audience_id), None
    if survey.segment is not None:
        ids = matching_ids(session, segment_where(survey.segment))
        return ids, ids
    ids = list(dict.fromkeys(survey.hcp_ids or []))
    return ids, ids


def send_survey(session: DbSession, actor: Any, viewer: Viewer, survey: Survey, *,
                at: datetime | None = None) -> SendResult:
    """Accept a send of the survey: decide now who may be mailed for market research and leave the mailing
    to a job (crm/surveys/sending.py), which answers at once however large the audience.

    Consent (email, market research) and the address are decided for the whole audience at this instant
    by the database (``crm.campaigns.services.decide_audience``, as a campaign send; only the skipped and
    their rules come back); someone who answered, or is pending or queued already, is never mailed again
    (skipped as ``already-answered``, ``already-sent``). The recipients are written set-based: new ones
    inserted in a few statements, ``pending`` or ``skipped`` with the rule, and those skipped by an earlier
    send updated per (status, rule). When anyone is pending a ``survey.send`` job is created
    (``result.job``); after the commit it hands the pending recipients to the mail outbox in batches
    (``hand_over``). ``sent`` are the recipients accepted now, in the audience's order (by id; a list of
    ids: as listed), and so are ``skipped`` (the already-answered first).
    ``at`` is the send instant: now, except for the demo loader, which replays sends of the past.
    """
    from crm.campaigns.services import decide_audience, queue_send_job, store_decisions

    require_write(viewer, "survey.write")
    session.execute(select(Survey.id).where(Survey.id == survey.id).with_for_update())
    now = at or utcnow()
    source, listed = _audience_source(session, survey)
    answered = set(session.scalars(select(SurveyResponse.hcp_id).where(SurveyResponse.survey_id == survey.id)))
    never_again = union_all(
        select(SurveyResponse.hcp_id).where(SurveyResponse.survey_id == survey.id),
        select(SurveyRecipient.hcp_id).where(SurveyRecipient.survey_id == survey.id,
                                             SurveyRecipient.status.in_(("pending", "queued"))))
    decision = decide_audience(session, source, "email", PURPOSE, now, already_sent=never_again)
    position = {h: k for k, h in enumerate(listed)} if listed is not None else None

    def order(hcp_id: int) -> int:
        return position[hcp_id] if position is not None else hcp_id

    send = sorted(session.scalars(decision.allowed_select), key=order)
    decided = sorted(decision.skipped, key=lambda s: order(s[0]))
    result = SendResult(sent=send)
    result.skipped = [{"hcp_id": h, "reason": ALREADY_ANSWERED, "detail": _skip_text(ALREADY_ANSWERED)}
                      for h, rule in decided if rule == "already-sent" and h in answered]
    result.skipped += [{"hcp_id": h, "reason": rule, "detail": _skip_text(rule)}
                       for h, rule in decided if not (rule == "already-sent" and h in answered)]
    store_decisions(session, SurveyRecipient, SurveyRecipient.survey_id, survey.id,
                    [(h, "skipped", rule) for h, rule in decided if rule != "already-sent"]
                    + [(h, "pending", None) for h in send])
    survey.status, survey.last_sent_at = "sent", now
    session.flush()
    skipped: dict[str, int] = defaultdict(int)
    for s in result.skipped:
        skipped[s["reason"]] += 1
    audit.record(session, actor, "survey.send", "survey", survey.id, audit.created({
        "purpose": PURPOSE, "audience": decision.allowed_count + len(decision.skipped), "sent": len(result.sent),
        "skipped": dict(sorted(skipped.items()))}))
    result.job = queue_send_job(session, actor, "survey.send", SurveyRecipient, SurveyRecipient.survey_id,
                                survey.id, at)
    return result


def take_pending(session: DbSession, survey_id: int, n: int) -> list[int]:
    """The HCP ids of at most ``n`` recipients still pending, locked for this batch (crm/jobs/batches.py)."""
    from crm.jobs.batches import lock_pending

    query = (select(SurveyRecipient.hcp_id)
             .where(SurveyRecipient.survey_id == survey_id, SurveyRecipient.status == "pending")
             .order_by(SurveyRecipient.hcp_id).limit(n))
    return list(session.scalars(lock_pending(session, query)))


def hand_over(session: DbSession, actor: Any, survey: Survey, *, limit: int = BATCH_SIZE,
              at: datetime | None = None, hcp_ids: Sequence[int] | None = None) -> SendResult:
    """Hand up to ``limit`` pending recipients (or those of ``hcp_ids`` still pending) to the mail outbox,
    in the caller's transaction.

    Consent is evaluated again for the batch at this instant (a job may run it well after the send); a
    recipient that may no longer be mailed becomes ``skipped`` with the rule. Each mail gets its signed
    answer link and unsubscribe headers, a ``survey.sent`` timeline item (external id
    ``survey:<survey>:<hcp>``) and an outbox row (key the same), handed over after the commit.
    """
    from crm.campaigns.services import decide_audience
    from crm.mail.services import OutgoingMail, enqueue_many

    now = at or utcnow()
    query = (select(SurveyRecipient.hcp_id).where(SurveyRecipient.survey_id == survey.id,
                                                 SurveyRecipient.status == "pending")
             .order_by(SurveyRecipient.hcp_id))
    if hcp_ids is not None:
        query = query.where(among(session, SurveyRecipient.hcp_id, list(hcp_ids)))
    else:
        query = query.limit(limit)
    pending = list(session.scalars(query))
    result = SendResult()
    if not pending:
        return result
    # The database decides the batch at this instant (as at the send): only the skipped come back.
    decision = decide_audience(session, pending, "email", PURPOSE, now)
    by_rule: dict[str, list[int]] = defaultdict(list)
    for hcp_id, rule in decision.skipped:
        by_rule[rule].append(hcp_id)
        result.skipped.append({"hcp_id": hcp_id, "reason": rule, "detail": _skip_text(rule)})
    for rule, ids in by_rule.items():
        session.execute(update(SurveyRecipient).where(
            SurveyRecipient.survey_id == survey.id, among(session, SurveyRecipient.hcp_id, ids),
            SurveyRecipient.status == "pending").values(status="skipped", reason=rule, updated_at=utcnow())
            .execution_options(synchronize_session=False))
    skipped = {hcp_id for hcp_id, _ in decision.skipped}
    send = [h for h in pending if h not in skipped]
    if not send:
        return result
    hcps = {h.id: h for h in session.scalars(select(HCP).where(among(session, HCP.id, send)))}
    mails, facts = [], []
    for hcp_id in send:
        mail = _build_mail(session, survey, hcps[hcp_id])
        mails.append(OutgoingMail(mail, f"survey:{survey.id}:{hcp_id}", hcp_id=hcp_id))
        facts.append(Fact(
            hcp_id=hcp_id, occurred_at=now, kind="survey.sent", external_id=f"survey:{survey.id}:{hcp_id}",
            summary=f"Survey sent: {survey.name}", safe_summary=f"{KIND_LABELS[survey.kind]} survey sent",
            details={"survey_id": survey.id, "survey_name": survey.name, "survey_kind": survey.kind,
                     "purpose": PURPOSE, "consent_rule": CONSENT_GRANTED,
                     "context_channel": survey.context_channel},
            owner_id=getattr(actor, "id", None), owner_role=getattr(actor, "role", None) or "system"))
    queued = enqueue_many(session, mails, kind="survey")
    # One statement for the batch: each recipient queued with its own outbox row.
    session.execute(
        update(SurveyRecipient.__table__)  # type: ignore[arg-type]  # a mapped class's __table__ is a Table
        .where(SurveyRecipient.survey_id == survey.id, SurveyRecipient.hcp_id == bindparam("b_hcp"))
        .values(status="queued", reason=None, outbox_id=bindparam("b_outbox"), queued_at=now, updated_at=utcnow()),
        [{"b_hcp": hcp_id, "b_outbox": row.id} for hcp_id, row in zip(send, queued, strict=True)])
    result.sent = send
    record_interactions(session, actor, facts, channel="survey", source="crm")
    return result


def _build_mail(session: DbSession, survey: Survey, hcp: HCP) -> Any:
    """One recipient's mail, with its own single-use answer link and unsubscribe link."""
    from crm.consent import tokens
    from crm.consent.services import public_url, unsubscribe_link
    from crm.integrations.email import EmailMessage
    from crm.mail.services import new_message_id

    days = int(current_app.config.get("CRM_SURVEY_LINK_DAYS", 30))
    raw = tokens.issue(session, "survey", hcp.id, consent_purpose=PURPOSE, reference=f"survey:{survey.id}",
                       ttl=timedelta(days=days))
    answer_url = public_url("surveys_public.answer", token=raw)
    unsubscribe_url, headers = unsubscribe_link(session, hcp.id, PURPOSE, f"survey:{survey.id}")
    context = {"survey": survey, "hcp": hcp, "answer_url": answer_url, "unsubscribe_url": unsubscribe_url,
               "days": days, "kind_label": KIND_LABELS[survey.kind]}
    subject = " ".join(f"Your opinion, Dr {hcp.last_name}: {survey.name}".split())[:300]
    return EmailMessage(to=hcp.email or "", subject=subject,
                        text=render_template("surveys/mail/invitation.txt", **context),
                        html=render_template("surveys/mail/invitation.html", **context), headers=headers,
                        message_id=new_message_id(f"s{survey.id}h{hcp.id}"))


def recipients(session: DbSession, survey: Survey, limit: int = 200) -> list[dict[str, Any]]:
    """The per-HCP outcome of the sends: skipped with the rule, or the state of the mail in the outbox."""
    from crm.mail.models import MailOutbox

    rows = session.execute(
        select(SurveyRecipient, HCP.first_name, HCP.last_name, MailOutbox.state)
        .join(HCP, HCP.id == SurveyRecipient.hcp_id)
        .outerjoin(MailOutbox, MailOutbox.id == SurveyRecipient.outbox_id)
        .where(SurveyRecipient.survey_id == survey.id).order_by(SurveyRecipient.hcp_id).limit(limit)).all()
    return [{"hcp_id": r.hcp_id, "name": f"{first} {last}", "status": r.status, "reason": r.reason,
             "detail": _skip_text(r.reason) if r.reason else None, "mail_state": state}
            for r, first, last, state in rows]


def recipient_counts(session: DbSession, survey: Survey) -> dict[str, int]:
    return {status: n for status, n in session.execute(
        select(SurveyRecipient.status, func.count()).where(SurveyRecipient.survey_id == survey.id)
        .group_by(SurveyRecipient.status))}


# -- answers -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """What an HCP answered: the NPS score, or one 1-5 score per satisfaction question; a comment."""

    score: int | None = None
    answers: tuple[int, ...] = ()
    comment: str | None = None


def check_answer(survey: Survey, answer: Answer) -> Answer:
    """The answer fits the survey: NPS a whole 0-10 score; satisfaction one 1-5 score per question."""
    errors: dict[str, list[str]] = {}
    if survey.kind == "nps":
        if answer.score is None or isinstance(answer.score, bool) or not 0 <= answer.score <= 10:
            errors["score"] = ["choose a score from 0 to 10"]
        if answer.answers:
            errors["answers"] = ["an NPS survey takes a score, not answers"]
    else:
        if answer.score is not None:
            errors["score"] = ["a satisfaction survey takes answers, not a score"]
        if len(answer.answers) != len(survey.questions) or any(
                isinstance(a, bool) or not 1 <= a <= 5 for a in answer.answers):
            errors["answers"] = [f"answer each of the {len(survey.questions)} question(s) with 1 to 5"]
    comment = (answer.comment or "").strip()
    if "\x00" in comment:
        errors["comment"] = ["must not contain a NUL character"]
    elif len(comment) > MAX_COMMENT:
        errors["comment"] = [f"at most {MAX_COMMENT} characters"]
    if errors:
        raise Invalid("The answer cannot be recorded.", errors=errors)
    return Answer(answer.score, tuple(answer.answers), comment or None)


def _record(session: DbSession, actor: Any, survey: Survey, hcp: HCP, answer: Answer, *, medium: str,
            answered_at: datetime, captured_by: Any = None) -> SurveyResponse:
    """The response, its ``survey.answered`` item and, for adverse-event wording, a `pv` item and a case."""
    from crm.callcentre.services import open_case_from_survey
    from crm.guardrails import services as guardrails

    if session.scalar(select(SurveyResponse.id).where(SurveyResponse.survey_id == survey.id,
                                                      SurveyResponse.hcp_id == hcp.id)) is not None:
        raise Conflict(f"HCP {hcp.id} has already answered survey {survey.id}; an answer is recorded once.",
                       rule=ALREADY_ANSWERED)
    hits = guardrails.check_text(session, answer.comment, "survey")
    ae = any(h.category == "adverse_event" for h in hits)
    response = SurveyResponse(survey_id=survey.id, hcp_id=hcp.id, score=answer.score, answers=list(answer.answers),
                              comment=answer.comment, medium=medium, answered_at=answered_at,
                              captured_by_id=getattr(captured_by, "id", None),
                              sensitivity="pv" if ae else "standard", guardrail_hits=guardrails.hits_json(hits))
    try:
        with session.begin_nested():
            session.add(response)
            session.flush()
    except Exception as exc:  # the unique (survey, HCP) pair: another request recorded it a moment ago
        from sqlalchemy.exc import IntegrityError

        if not isinstance(exc, IntegrityError):
            raise
        raise Conflict(f"HCP {hcp.id} has already answered survey {survey.id}; an answer is recorded once.",
                       rule=ALREADY_ANSWERED) from None
    facts = (f"score {answer.score}/10" if survey.kind == "nps"
             else "scores " + ", ".join(str(a) for a in answer.answers) + " (1-5)")
    summary = f"Survey answered: {survey.name} ({facts})" + (f": {answer.comment}" if answer.comment else "")
    item, _ = record_interaction(
        session, captured_by or actor, hcp_ids=[hcp.id], occurred_at=answered_at, channel="survey",
        kind="survey.answered", external_id=f"survey:{survey.id}:{hcp.id}:answer", summary=summary,
        safe_summary=f"{KIND_LABELS[survey.kind]} survey answered ({MEDIUM_LABELS[medium].lower()})",
        details={"survey_id": survey.id, "survey_name": survey.name, "survey_kind": survey.kind, "medium": medium,
                 "score": answer.score, "answers": list(answer.answers), "comment": answer.comment,
                 "context_channel": survey.context_channel, "response_id": response.id,
                 "guardrail_hits": guardrails.hits_json(hits)},
        sensitivity=response.sensitivity,
        # An answer through the link belongs to marketing, whose survey it is; a captured one to its capturer.
        owner_role=getattr(captured_by, "role", None) or "marketer", audit_changes=False)
    response.interaction_id = item.id
    audit.record(session, captured_by or actor, "survey.answer", "survey_response", response.id, audit.created({
        "survey_id": survey.id, "hcp_id": hcp.id, "medium": medium, "score": answer.score,
        "answers": list(answer.answers), "sensitivity": response.sensitivity, "interaction_id": item.id,
        "guardrail_hits": [h.phrase for h in hits]}))
    if ae:
        who = f"HCP {hcp.full_name} ({MEDIUM_LABELS[medium].lower()})"
        open_case_from_survey(
            session, captured_by or actor, hcp_id=hcp.id, received_at=answered_at, reporter=who,
            description=f"Survey {survey.name!r} comment: {answer.comment}\n\nFlagged: "
                        f"{', '.join(sorted({h.phrase for h in hits if h.category == 'adverse_event'}))}",
            interaction_id=item.id)
    session.flush()
    return response


def answer_by_link(session: DbSession, token: Any, answer: Answer, *, at: datetime | None = None) -> SurveyResponse:
    """The HCP's POST through the signed link: recorded once; the link is used up in the same transaction.

    ``Conflict`` (rule ``already-answered``) when the HCP answered already, through this link or otherwise.
    ``at`` is the answer's instant: now, except for the demo loader, which replays answers of the past.
    """
    from crm.consent import tokens

    survey, hcp = survey_of_token(session, token)
    checked = check_answer(survey, answer)
    if not tokens.consume(session, token):
        raise Conflict("This survey link has already been used.", rule=ALREADY_ANSWERED)
    return _record(session, None, survey, hcp, checked, medium="link", answered_at=at or utcnow())


def survey_of_token(session: DbSession, token: Any) -> tuple[Survey, HCP]:
    """The survey and HCP an answer link stands for (the link names ``survey:<id>``)."""
    prefix, _, number = (token.reference or "").partition(":")
    if prefix != "survey" or not number.isdigit():
        raise NotFound("This link is not valid.")
    survey = get_survey(session, int(number))
    hcp = session.get(HCP, token.hcp_id)
    if hcp is None or hcp.status == "erased":
        raise NotFound("This link is not valid.")
    return survey, hcp


def already_answered(session: DbSession, survey: Survey, hcp_id: int) -> bool:
    return session.scalar(select(SurveyResponse.id).where(SurveyResponse.survey_id == survey.id,
                                                          SurveyResponse.hcp_id == hcp_id)) is not None


def capture_answer(session: DbSession, actor: Any, viewer: Viewer, survey: Survey, *, hcp_id: int, answer: Answer,
                   medium: str, answered_at: datetime | None = None) -> SurveyResponse:
    """An answer the HCP gave in a conversation, typed in by the call centre or a rep of the HCP's territory.

    No consent is needed to record what was said; the consent listener marks the item ``consent_gap``
    when no market-research consent for ``medium`` held at that instant. A merged HCP stands for its
    survivor; an erased one takes no answer (422). Once per (survey, HCP): a second answer is 409.
    """
    from crm.callcentre.services import CLOCK_SKEW, resolve_hcp

    require_write(viewer, "survey.capture")
    errors: dict[str, list[str]] = {}
    if medium not in CAPTURE_MEDIA:
        errors["medium"] = [f"must be one of {', '.join(CAPTURE_MEDIA)}"]
    when = answered_at or utcnow()
    if when.tzinfo is None:
        errors["answered_at"] = ["Naive datetime refused: include an offset or Z."]
    elif when > utcnow() + CLOCK_SKEW:
        errors["answered_at"] = ["must not be in the future"]
    if errors:
        raise Invalid("The answer cannot be recorded.", errors=errors)
    hcp = resolve_hcp(session, hcp_id)
    require_write(viewer, "survey.capture", [hcp.territory_id])
    checked = check_answer(survey, answer)
    return _record(session, actor, survey, hcp, checked, medium=medium, answered_at=when, captured_by=actor)


# -- results -----------------------------------------------------------------------------------------

def nps_of(scores: Iterable[int]) -> dict[str, Any]:
    """``{"responses", "promoters", "passives", "detractors", "nps"}`` for 0-10 scores.

    NPS = % promoters (9-10) - % detractors (0-6), rounded half away from zero to a whole number
    (``Decimal`` ``ROUND_HALF_UP``: 12.5 -> 13, -12.5 -> -13); no scores: ``nps`` is None.
    """
    values = list(scores)
    promoters = sum(1 for s in values if s >= 9)
    detractors = sum(1 for s in values if s <= 6)
    n = len(values)
    nps = None
    if n:
        exact = Decimal(100 * (promoters - detractors)) / Decimal(n)
        nps = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return {"responses": n, "promoters": promoters, "passives": n - promoters - detractors,
            "detractors": detractors, "nps": nps}


# Segment hooks: name -> function mapping HCP ids to the segments each belongs to. "profession" is built in;
# the segments feature registers its own (``register_segmenter``) so results break down by it too.
Segmenter = Callable[[DbSession, list[int]], dict[int, list[str]]]
SEGMENTERS: dict[str, Segmenter] = {}


def register_segmenter(name: str, fn: Segmenter) -> None:
    """Let results break down by another segmentation (one call at import of the feature that owns it)."""
    SEGMENTERS[name] = fn


def _by_profession(session: DbSession, hcp_ids: list[int]) -> dict[int, list[str]]:
    return {i: [p] for i, p in session.execute(select(HCP.id, HCP.profession).where(among(session, HCP.id, hcp_ids)))}


register_segmenter("profession", _by_profession)


def _breakdown(rows: list[tuple[int, Any]]) -> list[dict[str, Any]]:
    groups: dict[Any, list[int]] = defaultdict(list)
    for score, key in rows:
        groups[key].append(score)
    return [{"key": key, "label": str(key), **nps_of(scores)}
            for key, scores in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def nps_results(session: DbSession, survey_ids: Sequence[int] | None = None, *, since: datetime | None = None,
                until: datetime | None = None, hcp_where: Any = None) -> dict[str, Any]:
    """NPS over the answers of NPS surveys (``survey_ids``, or every one): overall, and by channel
    experience, territory (the HCP's current one), month of the answer and segment. ``hcp_where`` (a
    condition on ``HCP``, e.g. a saved segment's) keeps only the answers of those HCPs."""
    query = (select(SurveyResponse.score, SurveyResponse.answered_at, SurveyResponse.hcp_id, Survey.context_channel,
                    Territory.code, Territory.name)
             .join(Survey, Survey.id == SurveyResponse.survey_id)
             .join(HCP, HCP.id == SurveyResponse.hcp_id)
             .outerjoin(Territory, Territory.id == HCP.territory_id)
             .where(Survey.kind == "nps", SurveyResponse.score.is_not(None)))
    if survey_ids is not None:
        query = query.where(among(session, SurveyResponse.survey_id, list(survey_ids)))
    if since is not None:
        query = query.where(SurveyResponse.answered_at >= since)
    if until is not None:
        query = query.where(SurveyResponse.answered_at < until)
    if hcp_where is not None:
        query = query.where(hcp_where)
    rows = session.execute(query).all()
    territories = {r.code: r.name for r in rows if r.code}
    hcp_ids = sorted({r.hcp_id for r in rows})
    segments: dict[str, list[dict[str, Any]]] = {}
    for name, fn in SEGMENTERS.items():
        of = fn(session, hcp_ids) if hcp_ids else {}
        segments[name] = _breakdown([(r.score, seg) for r in rows for seg in of.get(r.hcp_id, [])])
    by_territory = _breakdown([(r.score, r.code or "") for r in rows])
    for entry in by_territory:
        entry["label"] = territories.get(entry["key"], "No territory")
    by_experience = _breakdown([(r.score, r.context_channel or "") for r in rows])
    for entry in by_experience:
        entry["label"] = CONTEXT_LABELS.get(entry["key"] or None, entry["key"])
    return {**nps_of(r.score for r in rows), "by_experience": by_experience, "by_territory": by_territory,
            "by_month": _breakdown([(r.score, f"{r.answered_at:%Y-%m}") for r in rows]), "by_segment": segments}


def survey_results(session: DbSession, survey: Survey) -> dict[str, Any]:
    """The results of one survey: NPS figures (null for a satisfaction survey) with their breakdowns, and
    the average per satisfaction question."""
    out: dict[str, Any] = {"survey_id": survey.id, "kind": survey.kind}
    if survey.kind == "nps":
        out.update(nps_results(session, [survey.id]))
    else:
        answers = [list(a or []) for a in session.scalars(
            select(SurveyResponse.answers).where(SurveyResponse.survey_id == survey.id))]
        out.update({**nps_of([]), "by_experience": [], "by_territory": [], "by_month": [], "by_segment": {}})
        out["responses"] = len(answers)
        questions = []
        for i, text in enumerate(survey.questions):
            scores = [a[i] for a in answers if len(a) > i]
            average = (Decimal(sum(scores)) / Decimal(len(scores))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP) \
                if scores else None
            questions.append({"question": text, "responses": len(scores),
                              "average": float(average) if average is not None else None})
        out["questions"] = questions
    out.setdefault("questions", [])
    return out


# -- reading responses (comments are free text: through the one read path) ---------------------------

def _response_dump(r: SurveyResponse, _seen: Any) -> dict[str, Any]:
    return {"id": r.id, "survey_id": r.survey_id, "hcp_id": r.hcp_id, "score": r.score, "answers": list(r.answers),
            "comment": r.comment, "medium": r.medium, "answered_at": r.answered_at,
            "captured_by_id": r.captured_by_id, "sensitivity": r.sensitivity, "interaction_id": r.interaction_id}


def response_shape() -> Any:
    from crm.access.reads import Redaction, Shape

    return Shape(
        what="survey_response", sensitivity=lambda r: r.sensitivity, dump=_response_dump,
        # Below full level the comment (free text) and the scores given with it are withheld.
        redaction=Redaction(below_full={"comment": None}, below_summary={"score": None, "answers": []}),
        logged=lambda r: [(r.interaction_id, r.hcp_id)])


def response_page(session: DbSession, viewer: Viewer, survey: Survey, limit: int, after_id: int | None
                  ) -> tuple[list[dict[str, Any]], int | None]:
    """Responses newest first (keyset by id), each as ``viewer`` may see it; full reads of `pv` ones logged."""
    from crm.access.reads import read_records

    query = (select(SurveyResponse).where(SurveyResponse.survey_id == survey.id)
             .order_by(SurveyResponse.id.desc()).limit(limit + 1))
    if after_id is not None:
        query = query.where(SurveyResponse.id < after_id)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return read_records(session, viewer, rows, response_shape()), (rows[-1].id if more and rows else None)

