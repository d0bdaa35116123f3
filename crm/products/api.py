"""``GET /api/v1/products``: the catalogue as last synced from the ERP, for every role; the sample
settings and sample lots of a product (admin writes, everyone reads)."""

from __future__ import annotations

from flask import Blueprint

from crm.auth.context import actor, api_auth, viewer
from crm.extensions import db
from crm.openapi import doc
from crm.products import services
from crm.products.models import SampleLot
from crm.products.schemas import (
    ProductPageSchema,
    ProductQuerySchema,
    ProductSchema,
    SampleLotCreateSchema,
    SampleLotListSchema,
    SampleLotSchema,
    SampleSettingsSchema,
)
from crm.schemas import load_args, load_body, page

bp = Blueprint("products_api", __name__, url_prefix="/api/v1")


@bp.get("/products")
@doc("The product catalogue", tags=["orders"], query=ProductQuerySchema, responses={200: ProductPageSchema},
     errors=(401, 422))
@api_auth
def products():
    """Ordered by sku. `q` matches part of the sku or name; `orderable=true` keeps what can be ordered
    (sample-only products cannot). Prices are decimal strings in `currency`."""
    args = load_args(ProductQuerySchema())
    rows, next_cursor = services.list_products(db.session, args["q"], args["orderable"], args["active"],
                                               args["limit"], args["cursor"])
    return page(ProductSchema(many=True).dump(rows), next_cursor)


def _lot(sku: str, lot: SampleLot) -> dict:
    return SampleLotSchema().dump({"id": lot.id, "sku": sku, "lot_number": lot.lot_number,
                                   "expires_on": lot.expires_on})


@bp.get("/products/<sku>")
@doc("One product of the catalogue", tags=["orders"], responses={200: ProductSchema}, errors=(401, 404))
@api_auth
def product(sku: str):
    return ProductSchema().dump(services.get_product(db.session, sku))


@bp.patch("/products/<sku>")
@doc("Set whether a product is given as a sample, and how many units per visit (admin)", tags=["orders"],
     body=SampleSettingsSchema, responses={200: ProductSchema}, errors=(400, 401, 403, 404, 413, 415, 422))
@api_auth
def update_sample_settings(sku: str):
    """Only `is_sample` and `max_sample_quantity` (1 to 1000) can be changed here; the rest of the
    product is the ERP's. The change is audited."""
    data = load_body(SampleSettingsSchema())
    found = services.get_product(db.session, sku)
    services.set_sample_settings(db.session, actor(), viewer(), found, is_sample=data.get("is_sample"),
                                 max_sample_quantity=data.get("max_sample_quantity"))
    return ProductSchema().dump(found)


@bp.get("/products/<sku>/lots")
@doc("The lots of a sample product, latest expiry first", tags=["orders"], responses={200: SampleLotListSchema},
     errors=(401, 404))
@api_auth
def lots(sku: str):
    found = services.get_product(db.session, sku)
    return {"items": [_lot(sku, lot) for lot in services.sample_lots(db.session, found)]}


@bp.post("/products/<sku>/lots")
@doc("Register a lot of a sample product with its expiry date (admin)", tags=["orders"],
     body=SampleLotCreateSchema, responses={201: SampleLotSchema},
     errors=(400, 401, 403, 404, 409, 413, 415, 422))
@api_auth
def add_lot(sku: str):
    """A visit may give samples of the lot up to and including `expires_on`. The product must be a
    sample product (422); a lot number it already has is 409."""
    data = load_body(SampleLotCreateSchema())
    found = services.get_product(db.session, sku)
    lot = services.add_sample_lot(db.session, actor(), viewer(), found, data["lot_number"], data["expires_on"])
    return _lot(sku, lot), 201
