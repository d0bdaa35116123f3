"""``GET /api/v1/products``: the catalogue as last synced from the ERP, for every role."""

from __future__ import annotations

from flask import Blueprint

from crm.auth.context import api_auth
from crm.extensions import db
from crm.openapi import doc
from crm.products import services
from crm.products.schemas import ProductPageSchema, ProductQuerySchema, ProductSchema
from crm.schemas import load_args, page

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
