from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm.schemas import PageArgs, StrictSchema


class ProductSchema(Schema):
    sku = fields.String()
    name = fields.String()
    unit = fields.String()
    active = fields.Boolean()
    orderable = fields.Boolean()
    # A decimal string ("42.50"), never a float; null when the ERP gives no price.
    price = fields.Decimal(as_string=True, allow_none=True)
    currency = fields.String(allow_none=True)
    is_sample = fields.Boolean(metadata={"description": "reps may give it as a sample in a visit"})
    max_sample_quantity = fields.Integer(metadata={"description": "units per visit at most"})


class ProductPageSchema(Schema):
    items = fields.List(fields.Nested(ProductSchema))
    next_cursor = fields.String(allow_none=True)


class ProductQuerySchema(PageArgs):
    q = fields.String(load_default=None)
    orderable = fields.Boolean(load_default=None)
    active = fields.Boolean(load_default=None)


class SampleSettingsSchema(StrictSchema):
    """The CRM's own settings of a product (admin); the ERP sync never changes them."""

    is_sample = fields.Boolean(metadata={"description": "reps may give it as a sample in a visit"})
    max_sample_quantity = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000),
                                         metadata={"description": "units of it one visit may give at most"})


class SampleLotCreateSchema(StrictSchema):
    lot_number = fields.String(required=True, validate=validate.Length(min=1, max=60))
    expires_on = fields.Date(required=True, metadata={"description": "the last day the lot may be given"})


class SampleLotSchema(Schema):
    id = fields.Integer()
    sku = fields.String()
    lot_number = fields.String()
    expires_on = fields.Date()


class SampleLotListSchema(Schema):
    items = fields.List(fields.Nested(SampleLotSchema))
