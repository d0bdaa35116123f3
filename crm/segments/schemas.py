"""Shapes of the segment API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.hcps.models import TIERS
from crm.hcps.professions import PROFESSIONS
from crm.schemas import StrictSchema, UTCDateTime

_CRITERIA_DOC = "Criteria combine with AND, values of one criterion with OR; only active HCPs match."
_LIST = validate.Length(max=100)


class SegmentIn(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=500))
    professions = fields.List(fields.String(validate=validate.OneOf(PROFESSIONS)), load_default=list, validate=_LIST)
    specialties = fields.List(fields.String(validate=validate.Length(min=1, max=120)), load_default=list,
                              validate=_LIST)
    territory_codes = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list,
                                  validate=_LIST)
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list, validate=_LIST)
    tiers = fields.List(fields.String(validate=validate.OneOf(TIERS)), load_default=list, validate=_LIST,
                        metadata={"description": "HCP priority tiers: A (highest), B, C"})


class SegmentCreator(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()


class SegmentOut(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String()
    professions = fields.List(fields.String())
    specialties = fields.List(fields.String())
    territory_codes = fields.List(fields.String())
    tags = fields.List(fields.String())
    tiers = fields.List(fields.String())
    hcp_count = fields.Integer(metadata={"description": "HCPs the segment matches now. " + _CRITERIA_DOC})
    created_by = fields.Nested(SegmentCreator, allow_none=True)
    created_at = UTCDateTime()


class SegmentPage(Schema):
    items = fields.List(fields.Nested(SegmentOut))
    next_cursor = fields.String(allow_none=True)
