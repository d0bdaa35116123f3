from __future__ import annotations

from marshmallow import Schema, fields

from crm.schemas import PageArgs


class ProductSchema(Schema):
    sku = fields.String()
    name = fields.String()
    unit = fields.String()
    active = fields.Boolean()
    orderable = fields.Boolean()
    # A decimal string ("42.50"), never a float; null when the ERP gives no price.
    price = fields.Decimal(as_string=True, allow_none=True)
    currency = fields.String(allow_none=True)


class ProductPageSchema(Schema):
    items = fields.List(fields.Nested(ProductSchema))
    next_cursor = fields.String(allow_none=True)


class ProductQuerySchema(PageArgs):
    q = fields.String(load_default=None)
    orderable = fields.Boolean(load_default=None)
    active = fields.Boolean(load_default=None)
