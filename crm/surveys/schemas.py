"""Shapes of the survey API: surveys, sends, answers, results."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.campaigns.schemas import UserRef
from crm.schemas import QuerySchema, StrictSchema, UTCDateTime
from crm.surveys.models import ANSWER_MEDIA, CAPTURE_MEDIA, CONTEXT_CHANNELS, SURVEY_KINDS
from crm.surveys.services import MAX_COMMENT, MAX_QUESTION, MAX_SATISFACTION_QUESTIONS

_ID = validate.Range(min=1)


class ContextIn(StrictSchema):
    channel = fields.String(required=True, validate=validate.OneOf(CONTEXT_CHANNELS),
                            metadata={"description": "the channel experience the survey asks about"})
    reference_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=_ID,
                                  metadata={"description": "the event (channel event) or campaign (channel email)"})


class SurveyAudienceIn(StrictSchema):
    audience_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=_ID,
                                 metadata={"description": "a saved campaign audience"})
    segment_id = fields.Integer(strict=True, allow_none=True, load_default=None, validate=_ID,
                                metadata={"description": "a saved segment: its HCPs as the segment holds them "
                                                         "when the survey is sent"})
    hcp_ids = fields.List(fields.Integer(strict=True, validate=_ID), load_default=list,
                          validate=validate.Length(max=100_000))


class SurveyIn(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf(SURVEY_KINDS))
    questions = fields.List(
        fields.String(validate=validate.Length(min=1, max=MAX_QUESTION)), load_default=list,
        validate=validate.Length(max=MAX_SATISFACTION_QUESTIONS),
        metadata={"description": "nps: at most one (the 0-10 question; a default is used when empty); "
                                 f"satisfaction: 1 to {MAX_SATISFACTION_QUESTIONS}, each answered 1-5"})
    context = fields.Nested(ContextIn, allow_none=True, load_default=None)
    audience = fields.Nested(SurveyAudienceIn, required=True)


class ContextOut(Schema):
    channel = fields.String(allow_none=True)
    reference_id = fields.Integer(allow_none=True)
    label = fields.String()


class SurveyOut(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    questions = fields.List(fields.String())
    context = fields.Nested(ContextOut)
    audience_id = fields.Integer(allow_none=True)
    segment_id = fields.Integer(allow_none=True)
    hcp_ids = fields.List(fields.Integer())
    status = fields.String()
    created_by = fields.Nested(UserRef, allow_none=True)
    created_at = UTCDateTime()
    last_sent_at = UTCDateTime(allow_none=True)
    recipients = fields.Dict(keys=fields.String(), values=fields.Integer(),
                             metadata={"description": "recipients per status: pending, queued, skipped"})


class SurveyPage(Schema):
    items = fields.List(fields.Nested(SurveyOut))
    next_cursor = fields.String(allow_none=True)


class SurveySkippedOut(Schema):
    hcp_id = fields.Integer()
    reason = fields.String()
    detail = fields.String()


class SurveySendOut(Schema):
    sent = fields.Integer(metadata={"description": "recipients accepted for sending (market-research consent "
                                                   "allowed it at the send instant); the job hands them to the "
                                                   "mail outbox"})
    skipped = fields.List(fields.Nested(SurveySkippedOut))
    job_id = fields.Integer(allow_none=True, metadata={"description": "the send job (GET /jobs/{id}: progress); "
                                                                     "null when nobody was accepted"})
    status = fields.String(metadata={"description": "queued: the job will hand the accepted recipients over; "
                                                    "done: nobody to mail"})


class AnswerIn(StrictSchema):
    """What the HCP answered (the public link takes the same fields)."""

    score = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=0, max=10),
                           metadata={"description": "NPS: 0-10"})
    answers = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=5)), load_default=list,
                          validate=validate.Length(max=MAX_SATISFACTION_QUESTIONS),
                          metadata={"description": "satisfaction: one 1-5 score per question"})
    comment = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=MAX_COMMENT))


class CaptureIn(AnswerIn):
    hcp_id = fields.Integer(strict=True, required=True, validate=_ID)
    medium = fields.String(required=True, validate=validate.OneOf(CAPTURE_MEDIA))
    answered_at = UTCDateTime(allow_none=True, load_default=None)


class ResponseOut(Schema):
    id = fields.Integer()
    survey_id = fields.Integer()
    hcp_id = fields.Integer()
    score = fields.Integer(allow_none=True)
    answers = fields.List(fields.Integer())
    comment = fields.String(allow_none=True)
    medium = fields.String(metadata={"description": ", ".join(ANSWER_MEDIA)})
    answered_at = UTCDateTime()
    captured_by_id = fields.Integer(allow_none=True)
    sensitivity = fields.String()
    interaction_id = fields.Integer(allow_none=True)
    redacted = fields.Boolean()
    redaction_reason = fields.String(allow_none=True)
    visibility = fields.Dict(keys=fields.String(), values=fields.String())


class ResponsePage(Schema):
    items = fields.List(fields.Nested(ResponseOut))
    next_cursor = fields.String(allow_none=True)


class NpsOut(Schema):
    responses = fields.Integer()
    promoters = fields.Integer()
    passives = fields.Integer()
    detractors = fields.Integer()
    nps = fields.Integer(allow_none=True, metadata={"description": "% promoters - % detractors, rounded half away "
                                                                   "from zero; null without answers"})


class NpsGroupOut(NpsOut):
    key = fields.String()
    label = fields.String()


class QuestionOut(Schema):
    question = fields.String()
    responses = fields.Integer()
    average = fields.Float(allow_none=True)


class NpsResultsOut(NpsOut):
    by_experience = fields.List(fields.Nested(NpsGroupOut))
    by_territory = fields.List(fields.Nested(NpsGroupOut))
    by_month = fields.List(fields.Nested(NpsGroupOut))
    by_segment = fields.Dict(keys=fields.String(), values=fields.List(fields.Nested(NpsGroupOut)))


class ResultsOut(NpsResultsOut):
    survey_id = fields.Integer()
    kind = fields.String()
    questions = fields.List(fields.Nested(QuestionOut))


class NpsArgs(QuerySchema):
    since = UTCDateTime(load_default=None)
    until = UTCDateTime(load_default=None)
