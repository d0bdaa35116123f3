"""Schemas of the guardrails API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.callcentre.schemas import GuardrailHitOut
from crm.guardrails.models import CATEGORIES
from crm.guardrails.services import CONTEXTS, MAX_PHRASE
from crm.schemas import StrictSchema, UTCDateTime


class GuardrailRuleIn(StrictSchema):
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    phrase = fields.String(required=True, validate=validate.Length(min=1, max=MAX_PHRASE))


class GuardrailRulePatch(StrictSchema):
    active = fields.Boolean(required=True)


class GuardrailRuleOut(Schema):
    id = fields.Integer()
    category = fields.String()
    phrase = fields.String()
    active = fields.Boolean()
    updated_at = UTCDateTime()


class GuardrailRuleListOut(Schema):
    items = fields.List(fields.Nested(GuardrailRuleOut))


class GuardrailCheckIn(StrictSchema):
    text = fields.String(required=True, validate=validate.Length(max=50000))
    context = fields.String(required=True, validate=validate.OneOf(CONTEXTS),
                            metadata={"description": "`visit` (notes) or `call_centre` (summary and details)"})


class GuardrailCheckOut(Schema):
    hits = fields.List(fields.Nested(GuardrailHitOut))
    adverse_event = fields.Boolean()
    medical_question = fields.Boolean()
    promotional = fields.Boolean()
