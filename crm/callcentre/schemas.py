"""Input and output schemas of the call-centre API and its queues."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.callcentre.models import CASE_STATUSES, DIRECTIONS, INQUIRY_STATUSES, MEDIA, REASONS
from crm.schemas import PageArgs, StrictSchema, UTCDateTime

ANSWER_MEDIA = MEDIA + ("letter", "in_person")


class ContactFollowUpIn(StrictSchema):
    date = fields.Date(required=True)
    text = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class ContactAdverseEventIn(StrictSchema):
    reporter = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=300))
    product = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=20000))


class ContactIn(StrictSchema):
    hcp_id = fields.Integer(required=True, validate=validate.Range(min=1))
    occurred_at = UTCDateTime(required=True)
    direction = fields.String(required=True, validate=validate.OneOf(DIRECTIONS))
    medium = fields.String(required=True, validate=validate.OneOf(MEDIA))
    reason = fields.String(required=True, validate=validate.OneOf(REASONS))
    summary = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    details = fields.String(load_default="", validate=validate.Length(max=20000))
    products = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list)
    follow_up = fields.Nested(ContactFollowUpIn, load_default=None, allow_none=True)
    external_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200),
                                metadata={"description": "the call-centre system's id; a replay answers 200"})
    adverse_event = fields.Nested(ContactAdverseEventIn, load_default=None, allow_none=True,
                                  metadata={"description": "reason adverse_event only: reporter, product, what is "
                                                           "known (defaults: the HCP, the first product, details)"})


class GuardrailHitOut(Schema):
    category = fields.String()
    phrase = fields.String()
    rule_id = fields.Integer()
    match = fields.String()
    start = fields.Integer()
    end = fields.Integer()


class QueueVisibilityOut(Schema):
    level = fields.String()
    rule = fields.String()
    reason = fields.String()


class ContactFollowUpOut(Schema):
    date = fields.String()
    text = fields.String(allow_none=True)


class ContactOut(Schema):
    id = fields.Integer()
    hcp_id = fields.Integer()
    occurred_at = fields.String()
    direction = fields.String()
    medium = fields.String()
    reason = fields.String()
    sensitivity = fields.String()
    source = fields.String()
    external_id = fields.String(allow_none=True)
    interaction_id = fields.Integer(allow_none=True)
    summary = fields.String()
    details = fields.String()
    products = fields.List(fields.String())
    follow_up = fields.Nested(ContactFollowUpOut, allow_none=True)
    guardrail_hits = fields.List(fields.Nested(GuardrailHitOut))
    redacted = fields.Boolean()
    redaction_reason = fields.String(allow_none=True)
    visibility = fields.Nested(QueueVisibilityOut)


class ContactCreatedOut(ContactOut):
    ae_case_offer = fields.Boolean(metadata={"description": "adverse-event wording in a contact that is not an "
                                                            "adverse-event report: offer to open a case"})
    medical_inquiry_id = fields.Integer(allow_none=True)
    adverse_event_case_id = fields.Integer(allow_none=True)


class CaseFromContactIn(StrictSchema):
    reporter = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=300))
    product = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=20000))


class InquiryArgs(PageArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(INQUIRY_STATUSES))


class InquiryOut(Schema):
    id = fields.Integer()
    hcp_id = fields.Integer()
    source = fields.String()
    received_at = fields.String()
    status = fields.String()
    answered_at = fields.String(allow_none=True)
    response_hours = fields.Float(allow_none=True)
    late = fields.Boolean()
    contact_id = fields.Integer(allow_none=True)
    visit_id = fields.Integer(allow_none=True)
    question = fields.String()
    answer = fields.String(allow_none=True)
    answer_medium = fields.String(allow_none=True)
    products = fields.List(fields.String())
    answered_by = fields.String(allow_none=True)
    redacted = fields.Boolean()
    redaction_reason = fields.String(allow_none=True)
    visibility = fields.Nested(QueueVisibilityOut)


class InquiryPage(Schema):
    items = fields.List(fields.Nested(InquiryOut))
    next_cursor = fields.String(allow_none=True)


class InquiryAnswerIn(StrictSchema):
    answer = fields.String(required=True, validate=validate.Length(min=1, max=20000))
    medium = fields.String(required=True, validate=validate.OneOf(ANSWER_MEDIA))
    answered_at = UTCDateTime(load_default=None)


class CaseArgs(PageArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(CASE_STATUSES))
    overdue = fields.Boolean(load_default=None)


class CaseOut(Schema):
    id = fields.Integer()
    hcp_id = fields.Integer()
    source = fields.String()
    received_at = fields.String()
    due_at = fields.String()
    status = fields.String()
    overdue = fields.Boolean()
    hours_left = fields.Float(allow_none=True)
    contact_id = fields.Integer(allow_none=True)
    visit_id = fields.Integer(allow_none=True)
    closed_at = fields.String(allow_none=True)
    reporter = fields.String(allow_none=True)
    product = fields.String(allow_none=True)
    description = fields.String()
    forwarded_by = fields.String(allow_none=True)
    forwarded_at = fields.String(allow_none=True)
    pv_reference = fields.String(allow_none=True)
    redacted = fields.Boolean()
    redaction_reason = fields.String(allow_none=True)
    visibility = fields.Nested(QueueVisibilityOut)


class CasePage(Schema):
    items = fields.List(fields.Nested(CaseOut))
    next_cursor = fields.String(allow_none=True)


class CloseCaseIn(StrictSchema):
    forwarded_by = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200),
                                 metadata={"description": "who forwarded it to pharmacovigilance (required)"})
    forwarded_at = UTCDateTime(load_default=None, allow_none=True,
                               metadata={"description": "when it was forwarded (required)"})
    pv_reference = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=120))
