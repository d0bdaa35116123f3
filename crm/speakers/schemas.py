"""KOL profile, speaker qualification and event speaker shapes (strict in, documented out)."""

from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, fields, validate

from crm.schemas import StrictSchema, UTCDateTime
from crm.speakers.models import INFLUENCE_TIERS

_TOPIC = fields.String(validate=validate.Length(min=1, max=200))


class KolProfileIn(StrictSchema):
    influence_tier = fields.String(required=True, allow_none=True, validate=validate.OneOf(INFLUENCE_TIERS),
                                   metadata={"description": "null: not assessed"})
    expertise = fields.List(fields.String(validate=validate.Length(min=1, max=200)), required=True,
                            validate=validate.Length(max=20), metadata={"description": "areas of expertise"})


class KolProfileOut(Schema):
    hcp_id = fields.Integer()
    influence_tier = fields.String(allow_none=True)
    expertise = fields.List(fields.String())


class QualificationIn(StrictSchema):
    topics = fields.List(fields.String(validate=validate.Length(min=1, max=200)), required=True,
                         validate=validate.Length(min=1, max=20))
    trained_on = fields.Date(required=True, metadata={"description": "the day the speaker training took place"})
    valid_until = fields.Date(required=True, metadata={"description": "the last day the qualification holds"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class QualificationOut(Schema):
    id = fields.Integer()
    hcp_id = fields.Integer()
    topics = fields.List(fields.String())
    trained_on = fields.Date()
    valid_until = fields.Date()
    valid_today = fields.Boolean()
    note = fields.String(allow_none=True)
    recorded_at = UTCDateTime()


class QualificationList(Schema):
    items = fields.List(fields.Nested(QualificationOut))


class FeeIn(StrictSchema):
    amount = fields.Decimal(required=True, as_string=True, allow_nan=False,
                            validate=validate.Range(min=Decimal(0), max=Decimal("99999999999.999")))
    currency = fields.String(load_default=None, allow_none=True, validate=validate.Length(equal=3),
                             metadata={"description": "ISO 4217; default: the HCP's reporting currency"})


class SpeakerIn(StrictSchema):
    hcp_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    topic = fields.String(required=True, validate=validate.Length(min=1, max=200),
                          metadata={"description": "what the speaker speaks on; a qualification must cover it"})
    fee = fields.Nested(FeeIn, load_default=None, allow_none=True,
                        metadata={"description": "the agreed speaker fee, checked against the annual cap"})


class FeeOut(Schema):
    amount = fields.String()
    currency = fields.String()


class SpeakerOut(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    hcp_id = fields.Integer()
    hcp_name = fields.String()
    topic = fields.String()
    qualification_id = fields.Integer()
    fee = fields.Nested(FeeOut, allow_none=True)
    added_at = UTCDateTime()


class SpeakerList(Schema):
    items = fields.List(fields.Nested(SpeakerOut))
