from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm.integrations.erp import ERP_STATUSES
from crm.orders.models import ORDER_STATUSES
from crm.orders.services import MAX_LINES, MAX_QUANTITY
from crm.schemas import PageArgs, StrictSchema, UTCDateTime


class OrderLineInSchema(StrictSchema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=40))
    quantity = fields.Integer(required=True, strict=True,
                              validate=validate.Range(min=1, max=MAX_QUANTITY,
                                                      error=f"Must be between 1 and {MAX_QUANTITY:,}."))


class OrderCreateSchema(StrictSchema):
    hcp_id = fields.Integer(load_default=None, strict=True)
    hco_id = fields.Integer(load_default=None, strict=True)
    visit_id = fields.Integer(load_default=None, strict=True)
    lines = fields.List(fields.Nested(OrderLineInSchema), required=True,
                        validate=validate.Length(min=1, max=MAX_LINES))

    @validates_schema
    def _one_customer(self, data: dict, **kwargs: object) -> None:
        if (data.get("hcp_id") is None) == (data.get("hco_id") is None):
            raise ValidationError("Give exactly one of hcp_id or hco_id.", "_schema")


class OrderSubmitSchema(StrictSchema):
    customer_reference = fields.String(load_default=None, validate=validate.Length(max=60))


class OrderOwnerSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()


class OrderLineSchema(Schema):
    sku = fields.String()
    name = fields.String()
    quantity = fields.Integer()


class OrderEventSchema(Schema):
    status = fields.String()
    reason = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "crm, erp_receipt, erp_poll or erp_callback"})
    occurred_at = UTCDateTime()


class OrderDeliverySchema(Schema):
    state = fields.String(metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer()
    next_attempt_at = UTCDateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = UTCDateTime(allow_none=True)


class OrderSchema(Schema):
    id = fields.Integer()
    order_key = fields.String(metadata={"description": "the key the ERP deduplicates by"})
    status = fields.String(metadata={"enum": list(ORDER_STATUSES)})
    reason = fields.String(allow_none=True)
    hcp_id = fields.Integer(allow_none=True)
    hco_id = fields.Integer(allow_none=True)
    customer_name = fields.String()
    visit_id = fields.Integer(allow_none=True)
    owner = fields.Nested(OrderOwnerSchema)
    lines = fields.List(fields.Nested(OrderLineSchema))
    erp_order_id = fields.String(allow_none=True)
    customer_reference = fields.String(allow_none=True)
    created_at = UTCDateTime()
    submitted_at = UTCDateTime(allow_none=True)
    status_changed_at = UTCDateTime()
    history = fields.List(fields.Nested(OrderEventSchema))
    delivery = fields.Nested(OrderDeliverySchema, allow_none=True)
    version = fields.Integer()


class OrderPageSchema(Schema):
    items = fields.List(fields.Nested(OrderSchema))
    next_cursor = fields.String(allow_none=True)


class OrderQuerySchema(PageArgs):
    mine = fields.Boolean(load_default=False)
    status = fields.String(load_default=None, validate=validate.OneOf(ORDER_STATUSES))
    hcp_id = fields.Integer(load_default=None)
    hco_id = fields.Integer(load_default=None)


class ErpCallbackSchema(StrictSchema):
    """What an ERP pushes when an order moves; signed (``X-ERP-Signature: sha256=<hex>``) over the raw body."""

    order_key = fields.String(required=True, validate=validate.Length(min=1, max=64))
    status = fields.String(required=True, validate=validate.OneOf(ERP_STATUSES))
    erp_order_id = fields.String(load_default=None, validate=validate.Length(max=80))
    reason = fields.String(load_default=None, validate=validate.Length(max=2000))
    occurred_at = UTCDateTime(load_default=None)
    event_id = fields.String(load_default=None, validate=validate.Length(max=200))


class ErpCallbackResultSchema(Schema):
    order_id = fields.Integer()
    status = fields.String()
    applied = fields.Boolean(metadata={"description": "false when the status was a repeat or arrived late"})
