"""Visit shapes: what the API accepts (strict: unknown fields are 422) and what it returns.

Schemas check shape only; rules that need the database (skus, territories, owners) live in services.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from crm.schemas import PageArgs, StrictSchema, UTCDateTime
from crm.visits.models import VISIT_MODES, VISIT_STATUSES

# A signature drawn on a phone canvas is a few tens of kB as a PNG data URL; far more is not a signature.
MAX_SIGNATURE_CHARS = 300_000


class Stripped(fields.String):
    """A string trimmed of surrounding whitespace; blank counts as missing data."""

    default_error_messages = {"blank": "Must not be blank."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        result = super()._deserialize(value, attr, data, **kwargs).strip()
        if not result:
            raise self.make_error("blank")
        return result


class SampleSchema(StrictSchema):
    sku = Stripped(required=True, validate=validate.Length(max=40))
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10_000))
    lot = Stripped(required=True, validate=validate.Length(max=60))


class FollowUpSchema(StrictSchema):
    date = fields.Date(required=True)
    text = fields.String(load_default="", validate=validate.Length(max=2000))


def _signature_field() -> fields.String:
    return fields.String(allow_none=True, validate=validate.Length(max=MAX_SIGNATURE_CHARS),
                         metadata={"description": "The HCP's signature as a PNG data URL "
                                                  "(data:image/png;base64,...); never returned."})


class VisitChangesSchema(StrictSchema):
    """Every editable field of a visit, all optional: only the fields sent are changed."""

    hcp_id = fields.Integer(strict=True)
    occurred_at = UTCDateTime()
    duration_minutes = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=24 * 60))
    mode = fields.String(validate=validate.OneOf(VISIT_MODES))
    meeting_url = fields.String(allow_none=True, validate=validate.Length(max=500), metadata={
        "description": "Remote visits only: the https link of the video meeting (422 on an in-person visit)."})
    products = fields.List(Stripped(validate=validate.Length(max=40)), validate=validate.Length(max=50))
    key_messages = fields.List(Stripped(validate=validate.Length(max=500)), validate=validate.Length(max=20))
    samples = fields.List(fields.Nested(SampleSchema), validate=validate.Length(max=50))
    notes = fields.String(validate=validate.Length(max=20_000))
    follow_up = fields.Nested(FollowUpSchema, allow_none=True)
    attendee_hcp_ids = fields.List(fields.Integer(strict=True), validate=validate.Length(max=50))
    signature = _signature_field()


class VisitCreateSchema(VisitChangesSchema):
    hcp_id = fields.Integer(required=True, strict=True)
    occurred_at = UTCDateTime(required=True)
    mode = fields.String(load_default="in_person", validate=validate.OneOf(VISIT_MODES))


class VisitUpdateSchema(VisitChangesSchema):
    version = fields.Integer(strict=True, metadata={"description": "Optimistic lock: a stale version is 409."})


class SubmitSchema(StrictSchema):
    signature = _signature_field()


class AmendSchema(StrictSchema):
    reason = Stripped(required=True, validate=validate.Length(max=2000))
    changes = fields.Nested(VisitChangesSchema, required=True)


class VisitListArgs(PageArgs):
    mine = fields.Boolean(load_default=False)
    status = fields.String(load_default=None, validate=validate.OneOf(VISIT_STATUSES))
    hcp_id = fields.Integer(load_default=None)


class VisitOwnerSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()


class SampleOutSchema(Schema):
    sku = fields.String()
    quantity = fields.Integer()
    lot = fields.String()


class FollowUpOutSchema(Schema):
    date = fields.Date()
    text = fields.String()


class VisitOutSchema(Schema):
    """One visit as a viewer may see it. The signature image is never part of it: ``signed`` says
    whether there is one. Withheld content (a medical visit read by field force or marketing) is
    null/empty with ``redacted`` and the reason, as on the timeline."""

    id = fields.Integer()
    status = fields.String()
    hcp_id = fields.Integer()
    owner = fields.Nested(VisitOwnerSchema)
    occurred_at = UTCDateTime()
    duration_minutes = fields.Integer(allow_none=True)
    mode = fields.String(allow_none=True)
    meeting_url = fields.String(allow_none=True, metadata={"description": "Remote visits: the meeting link."})
    sensitivity = fields.String()
    products = fields.List(fields.String())
    key_messages = fields.List(fields.String())
    samples = fields.List(fields.Nested(SampleOutSchema))
    notes = fields.String(allow_none=True)
    follow_up = fields.Nested(FollowUpOutSchema, allow_none=True)
    attendee_hcp_ids = fields.List(fields.Integer())
    signed = fields.Boolean()
    signed_at = UTCDateTime(allow_none=True)
    submitted_at = UTCDateTime(allow_none=True)
    interaction_id = fields.Integer(allow_none=True)
    amends_id = fields.Integer(allow_none=True)
    amended_by_id = fields.Integer(allow_none=True)
    amendment_reason = fields.String(allow_none=True)
    version = fields.Integer()
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    redacted = fields.Boolean()
    redaction_reason = fields.String(allow_none=True)
    rule = fields.String(metadata={"description": "The visibility rule that applied."})
    why = fields.String(metadata={"description": "Why can I see this? The rule in words."})


class VisitPageSchema(Schema):
    items = fields.List(fields.Nested(VisitOutSchema))
    next_cursor = fields.String(allow_none=True)

