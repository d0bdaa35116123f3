"""Shapes of the campaign API: templates, audiences, campaigns, sends, funnels."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.consent.models import PURPOSES
from crm.schemas import QuerySchema, StrictSchema, UTCDateTime

_SHORT = validate.Length(min=1, max=200)


class TemplateIn(StrictSchema):
    name = fields.String(required=True, validate=_SHORT)
    subject = fields.String(required=True, validate=validate.Length(min=1, max=300),
                            metadata={"description": "Jinja; fields hcp.first_name, hcp.last_name, ..."})
    html_body = fields.String(required=True, validate=validate.Length(min=1, max=200_000),
                              metadata={"description": "Jinja, autoescaped, sandboxed"})
    text_body = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    purpose = fields.String(required=True, validate=validate.OneOf(PURPOSES))
    language = fields.String(load_default="en", validate=validate.Length(min=2, max=8))
    products = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list,
                           validate=validate.Length(max=20))


class TemplatePatch(StrictSchema):
    subject = fields.String(validate=validate.Length(min=1, max=300))
    html_body = fields.String(validate=validate.Length(min=1, max=200_000))
    text_body = fields.String(validate=validate.Length(min=1, max=100_000))
    purpose = fields.String(validate=validate.OneOf(PURPOSES))
    language = fields.String(validate=validate.Length(min=2, max=8))
    products = fields.List(fields.String(validate=validate.Length(min=1, max=40)), validate=validate.Length(max=20))


class UserRef(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()


class TemplateOut(Schema):
    id = fields.Integer()
    name = fields.String()
    version = fields.Integer()
    status = fields.String(metadata={"description": "draft or approved (approved versions never change)"})
    subject = fields.String()
    html_body = fields.String()
    text_body = fields.String()
    purpose = fields.String()
    language = fields.String()
    products = fields.List(fields.String())
    previous_id = fields.Integer(allow_none=True)
    created_by = fields.Nested(UserRef, allow_none=True)
    created_at = UTCDateTime()
    approved_by = fields.Nested(UserRef, allow_none=True)
    approved_at = UTCDateTime(allow_none=True)


class TemplatePage(Schema):
    items = fields.List(fields.Nested(TemplateOut))
    next_cursor = fields.String(allow_none=True)


_CRITERIA_DOC = "Criteria combine with AND, values of one criterion with OR; hcp_ids are added to the matches."


class AudienceFilterIn(StrictSchema):
    professions = fields.List(fields.String(), load_default=list)
    specialties = fields.List(fields.String(validate=validate.Length(max=120)), load_default=list)
    territory_codes = fields.List(fields.String(validate=validate.Length(max=40)), load_default=list)
    tags = fields.List(fields.String(validate=validate.Length(max=100)), load_default=list)
    hcp_ids = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)), load_default=list,
                          validate=validate.Length(max=100_000))


class AudienceIn(AudienceFilterIn):
    name = fields.String(required=True, validate=_SHORT)
    segment_id = fields.Integer(strict=True, validate=validate.Range(min=1),
                                metadata={"description": "a segment instead of criteria of its own "
                                                         "(hcp_ids may still be added)"})


class AudienceOut(Schema):
    id = fields.Integer()
    name = fields.String()
    professions = fields.List(fields.String())
    specialties = fields.List(fields.String())
    territory_codes = fields.List(fields.String())
    tags = fields.List(fields.String())
    hcp_ids = fields.List(fields.Integer())
    segment_id = fields.Integer(allow_none=True, metadata={"description": "the segment it means, if any"})
    created_at = UTCDateTime()


class PreviewArgs(QuerySchema):
    purpose = fields.String(load_default="promotional", validate=validate.OneOf(PURPOSES))


class PreviewOut(Schema):
    audience_id = fields.Integer()
    purpose = fields.String()
    count = fields.Integer(metadata={"description": "HCPs in the audience now"})
    would_send = fields.Integer()
    skipped = fields.Dict(keys=fields.String(), values=fields.Integer(),
                          metadata={"description": "how many a send now would skip, per rule"})


class CampaignIn(StrictSchema):
    name = fields.String(required=True, validate=_SHORT)
    template_id = fields.Integer(required=True, strict=True)
    audience = fields.Nested(AudienceFilterIn, metadata={"description": _CRITERIA_DOC})
    audience_id = fields.Integer(strict=True, metadata={"description": "a saved audience instead of a filter"})
    segment_id = fields.Integer(strict=True, validate=validate.Range(min=1),
                                metadata={"description": "a segment instead of a filter (saved as an audience "
                                                         "that follows the segment)"})


class TemplateRef(Schema):
    id = fields.Integer()
    name = fields.String()
    version = fields.Integer()
    status = fields.String()
    purpose = fields.String()


class FunnelOut(Schema):
    audience = fields.Integer(metadata={"description": "recipients evaluated (queued + sent + failed + skipped)"})
    skipped = fields.Dict(keys=fields.String(), values=fields.Integer())
    queued = fields.Integer(metadata={"description": "mails in the outbox, not yet taken by the email adapter"})
    sent = fields.Integer(metadata={"description": "mails the email adapter took (the mail server or outbox folder)"})
    failed = fields.Integer(metadata={"description": "mails not handed over after every retry"})
    delivered = fields.Integer()
    opened = fields.Integer()
    clicked = fields.Integer()
    bounced = fields.Integer()
    unsubscribed = fields.Integer()
    spam_reports = fields.Integer()


class CampaignOut(Schema):
    id = fields.Integer()
    name = fields.String()
    status = fields.String(metadata={"description": "draft, or sent (at least once)"})
    template = fields.Nested(TemplateRef)
    audience_id = fields.Integer()
    created_by = fields.Nested(UserRef, allow_none=True)
    created_at = UTCDateTime()
    last_sent_at = UTCDateTime(allow_none=True)
    funnel = fields.Nested(FunnelOut)


class CampaignPage(Schema):
    items = fields.List(fields.Nested(CampaignOut))
    next_cursor = fields.String(allow_none=True)


class SkippedOut(Schema):
    hcp_id = fields.Integer()
    reason = fields.String(metadata={"description": "the rule, e.g. consent-withdrawn, no-consent, already-sent"})
    detail = fields.String()


class SendOut(Schema):
    sent = fields.Integer(metadata={"description": "recipients accepted for sending (consent allowed it at the "
                                                   "send instant); the job hands them to the mail outbox and each "
                                                   "recipient's status says when it left "
                                                   "(GET /campaigns/{id}/recipients)"})
    skipped = fields.List(fields.Nested(SkippedOut))
    job_id = fields.Integer(allow_none=True, metadata={"description": "the send job (GET /jobs/{id}: progress); "
                                                                     "null when nobody was accepted"})
    status = fields.String(metadata={"description": "queued: the job will hand the accepted recipients over; "
                                                    "done: nobody to mail"})


class RecipientOut(Schema):
    hcp_id = fields.Integer()
    name = fields.String()
    status = fields.String(metadata={"description": "queued, sent (the email adapter took the mail), failed "
                                                     "(not handed over after every retry; detail says why) or skipped"})
    reason = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)
    message_id = fields.String(allow_none=True)
    sent_at = UTCDateTime(allow_none=True)
    events = fields.List(fields.String(), metadata={"description": "event types the platform reported"})


class RecipientPage(Schema):
    items = fields.List(fields.Nested(RecipientOut))
    next_cursor = fields.String(allow_none=True)
