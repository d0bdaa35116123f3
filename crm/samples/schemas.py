"""Sample accountability shapes: what the API accepts (strict) and returns. Rules live in services."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.samples.models import CONSIGNMENT_STATUSES, DISCREPANCY_SOURCES, DISCREPANCY_STATUSES, MOVEMENT_KINDS
from crm.schemas import PageArgs, StrictSchema, UTCDateTime

_ID = validate.Range(min=1)
_QTY = validate.Range(min=1, max=100_000)
_LINES = validate.Length(min=1, max=100)


class LotLineIn(StrictSchema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=40))
    lot = fields.String(required=True, validate=validate.Length(min=1, max=60))
    quantity = fields.Integer(required=True, strict=True, validate=_QTY)


class ConsignmentIn(StrictSchema):
    to_user_id = fields.Integer(required=True, strict=True, validate=_ID,
                                metadata={"description": "the field rep who receives the samples"})
    lines = fields.List(fields.Nested(LotLineIn), required=True, validate=_LINES)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class ReceivedLineIn(StrictSchema):
    id = fields.Integer(required=True, strict=True, validate=_ID, metadata={"description": "the line's id"})
    quantity_received = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100_000))


class AcknowledgeIn(StrictSchema):
    lines = fields.List(fields.Nested(ReceivedLineIn), load_default=list, validate=validate.Length(max=100),
                        metadata={"description": "units received per line; lines left out arrived in full"})


class CountLineIn(StrictSchema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=40))
    lot = fields.String(required=True, validate=validate.Length(min=1, max=60))
    counted = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100_000))


class CountIn(StrictSchema):
    lines = fields.List(fields.Nested(CountLineIn), required=True, validate=_LINES,
                        metadata={"description": "every lot you hold, with the units counted"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class ReviewIn(StrictSchema):
    note = fields.String(required=True, validate=validate.Length(min=1, max=2000),
                         metadata={"description": "what the review found"})


class ConsignmentArgs(PageArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(CONSIGNMENT_STATUSES))
    user_id = fields.Integer(load_default=None, validate=_ID,
                             metadata={"description": "compliance and administrators: one rep's"})


class UserArgs(PageArgs):
    user_id = fields.Integer(load_default=None, validate=_ID,
                             metadata={"description": "whose (default: yours; another's for compliance and admin)"})


class DiscrepancyArgs(PageArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(DISCREPANCY_STATUSES))
    user_id = fields.Integer(load_default=None, validate=_ID)


class ConsignmentLineOut(Schema):
    id = fields.Integer()
    sku = fields.String()
    lot = fields.String()
    expires_on = fields.Date()
    quantity_sent = fields.Integer()
    quantity_received = fields.Integer(allow_none=True)


class ConsignmentOut(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "shipment (from the company) or transfer (from a rep)"})
    status = fields.String(validate=validate.OneOf(CONSIGNMENT_STATUSES))
    from_user_id = fields.Integer(allow_none=True)
    to_user_id = fields.Integer()
    sent_at = UTCDateTime()
    received_at = UTCDateTime(allow_none=True)
    note = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(ConsignmentLineOut))
    discrepancy_ids = fields.List(fields.Integer(), metadata={"description": "lines received short or over"})


class ConsignmentPage(Schema):
    items = fields.List(fields.Nested(ConsignmentOut))
    next_cursor = fields.String(allow_none=True)


class InventoryLineOut(Schema):
    sku = fields.String()
    product_name = fields.String()
    lot = fields.String()
    expires_on = fields.Date()
    expired = fields.Boolean()
    quantity = fields.Integer()


class InventoryOut(Schema):
    user_id = fields.Integer()
    items = fields.List(fields.Nested(InventoryLineOut))


class MovementOut(Schema):
    id = fields.Integer()
    kind = fields.String(validate=validate.OneOf(MOVEMENT_KINDS))
    sku = fields.String()
    lot = fields.String()
    quantity = fields.Integer(metadata={"description": "signed: units in (+) or out (-)"})
    occurred_at = UTCDateTime()
    recorded_at = UTCDateTime()
    consignment_id = fields.Integer(allow_none=True)
    visit_id = fields.Integer(allow_none=True)
    count_id = fields.Integer(allow_none=True)


class MovementPage(Schema):
    items = fields.List(fields.Nested(MovementOut))
    next_cursor = fields.String(allow_none=True)


class CountLineOut(Schema):
    sku = fields.String()
    lot = fields.String()
    expected = fields.Integer(metadata={"description": "what the ledger said the rep held"})
    counted = fields.Integer()


class CountOut(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    counted_at = UTCDateTime()
    note = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(CountLineOut))


class CountPage(Schema):
    items = fields.List(fields.Nested(CountOut))
    next_cursor = fields.String(allow_none=True)


class DiscrepancyOut(Schema):
    id = fields.Integer()
    user_id = fields.Integer()
    user_name = fields.String()
    sku = fields.String()
    lot = fields.String()
    source = fields.String(validate=validate.OneOf(DISCREPANCY_SOURCES))
    consignment_id = fields.Integer(allow_none=True)
    count_id = fields.Integer(allow_none=True)
    expected = fields.Integer()
    actual = fields.Integer()
    difference = fields.Integer(metadata={"description": "actual - expected: negative means units missing"})
    reported_at = UTCDateTime()
    status = fields.String(validate=validate.OneOf(DISCREPANCY_STATUSES))
    reviewed_at = UTCDateTime(allow_none=True)
    review_note = fields.String(allow_none=True)


class DiscrepancyPage(Schema):
    items = fields.List(fields.Nested(DiscrepancyOut))
    next_cursor = fields.String(allow_none=True)
