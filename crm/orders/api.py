"""Orders API (shared/API.md) and the ERP's signed status callback."""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, current_app, request

from crm.auth.context import actor, api_auth, viewer
from crm.errors import Invalid, Unauthorized
from crm.extensions import db
from crm.openapi import doc
from crm.orders import services
from crm.orders.schemas import (
    ErpCallbackResultSchema,
    ErpCallbackSchema,
    OrderCreateSchema,
    OrderPageSchema,
    OrderQuerySchema,
    OrderSchema,
    OrderSubmitSchema,
)
from crm.schemas import load_args, load_body, page

bp = Blueprint("orders_api", __name__, url_prefix="/api/v1")

IDEMPOTENCY_HEADER = "Idempotency-Key"
CALLBACK_SIGNATURE_HEADER = "X-ERP-Signature"


def _dump(order) -> dict:
    return OrderSchema().dump(services.order_dict(db.session, order))


@bp.post("/orders")
@doc("Capture a draft order for an HCP or an HCO", tags=["orders"], body=OrderCreateSchema,
     responses={201: OrderSchema})
@api_auth
def create_order():
    """Field reps, for HCPs and HCOs in their own territories. Every sku must be in the catalogue,
    active and orderable; quantities 1 to 10,000; `visit_id` links one of the rep's own visits."""
    data = load_body(OrderCreateSchema())
    order = services.capture_order(db.session, actor(), viewer(), lines=data["lines"], hcp_id=data["hcp_id"],
                                   hco_id=data["hco_id"], visit_id=data["visit_id"])
    return _dump(order), 201


@bp.post("/orders/<int:order_id>/submit")
@doc("Submit a draft order to the ERP", tags=["orders"], body=OrderSubmitSchema,
     responses={202: OrderSchema, 200: "A repeat with the same Idempotency-Key and body: the same order"},
     errors=(400, 401, 403, 404, 409, 415, 422))
@api_auth
def submit_order(order_id: int):
    """The order is queued in the outbox in this transaction and sent to the ERP after it commits
    (retried with backoff when the ERP is down). Send an `Idempotency-Key` header: the same key with
    the same body answers 200 with the order it submitted; the same key with another body is 422.
    The body is optional (`customer_reference`, the customer's purchase-order number)."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        key = key.strip()
        if not 1 <= len(key) <= 200 or not key.isprintable():
            raise Invalid(errors={IDEMPOTENCY_HEADER: ["must be 1 to 200 printable characters"]})
    body = load_body(OrderSubmitSchema()) if request.get_data() else OrderSubmitSchema().load({})
    order, replayed = services.submit_order(db.session, actor(), viewer(), order_id, idempotency_key=key,
                                            body=body)
    return _dump(order), 200 if replayed else 202


@bp.get("/orders/<int:order_id>")
@doc("One order with its lines, status history and delivery state", tags=["orders"],
     responses={200: OrderSchema}, errors=(401, 404))
@api_auth
def get_order(order_id: int):
    return _dump(services.get_order(db.session, order_id))


@bp.get("/orders")
@doc("Orders, newest first", tags=["orders"], query=OrderQuerySchema, responses={200: OrderPageSchema},
     errors=(401, 422))
@api_auth
def list_orders():
    """`mine=true` keeps the caller's own orders; `status`, `hcp_id` and `hco_id` filter."""
    args = load_args(OrderQuerySchema())
    orders, next_cursor = services.list_orders(db.session, viewer(), mine=args["mine"], status=args["status"],
                                               hcp_id=args["hcp_id"], hco_id=args["hco_id"], limit=args["limit"],
                                               cursor=args["cursor"])
    return page(OrderSchema(many=True).dump(services.order_dicts(db.session, orders)), next_cursor)


def callback_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """``X-ERP-Signature: sha256=<hex>``, HMAC-SHA256 of the raw body with CRM_ERP_CALLBACK_SECRET."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())


@bp.post("/integrations/erp/callback")
@doc("An order status pushed by the ERP (HMAC-signed)", tags=["orders"], body=ErpCallbackSchema,
     responses={200: ErpCallbackResultSchema}, errors=(400, 401, 404, 409, 415, 422), auth=False)
def erp_callback():
    """Signed with HMAC-SHA256 over the raw body and the shared secret CRM_ERP_CALLBACK_SECRET, sent as
    `X-ERP-Signature: sha256=<hex>`; a missing or bad signature is 401 and nothing is stored.
    Idempotent and out-of-order safe: a repeat, or a status that arrives after a later one (a late
    `accepted` after `shipped`), changes nothing and answers `applied: false`."""
    raw = request.get_data(cache=True)
    if not callback_signature_ok(current_app.config.get("CRM_ERP_CALLBACK_SECRET", ""), raw,
                                 request.headers.get(CALLBACK_SIGNATURE_HEADER)):
        raise Unauthorized("Missing or bad X-ERP-Signature.")
    data = load_body(ErpCallbackSchema())
    order, moved = services.apply_erp_callback(db.session, data)
    return ErpCallbackResultSchema().dump({"order_id": order.id, "status": order.status, "applied": moved})
