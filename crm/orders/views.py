"""Order pages: the phone-first order form (from an HCP, an HCO or a visit), the order list, one order,
and the admin's ERP outbox with attempts, errors and "retry now"."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from crm.access.policy import require_write
from crm.auth.context import actor, page_auth, viewer
from crm.errors import Invalid, NotFound
from crm.extensions import db
from crm.hcps.models import HCO, HCP
from crm.navigation import url_if_known
from crm.orders import services
from crm.orders.models import ORDER_STATUSES, Order, OrderOutbox
from crm.products.services import orderable_products
from crm.visits.models import Visit

bp = Blueprint("orders_pages", __name__)

PAGE_SIZE = 50
_QTY_PREFIX = "qty_"


def _customer(kind: str, customer_id: int) -> tuple[Any, int | None, str]:
    """(record, territory id, display name) of the HCP or HCO an order is taken for."""
    if kind == "hcp":
        hcp = db.session.get(HCP, customer_id)
        if hcp is None:
            raise NotFound(f"There is no HCP with id {customer_id}.")
        return hcp, hcp.territory_id, hcp.full_name
    hco = db.session.get(HCO, customer_id)
    if hco is None:
        raise NotFound(f"There is no HCO with id {customer_id}.")
    return hco, hco.territory_id, hco.name


def _visit_id() -> int | None:
    raw = (request.values.get("visit_id") or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise Invalid(errors={"visit_id": ["Not a visit id."]})
    return int(raw)


def _lines_from_form(errors: dict[str, list[str]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The lines a person filled in (blank quantities are skipped) and the raw values to show again."""
    lines: list[dict[str, Any]] = []
    typed: dict[str, str] = {}
    for key, value in request.form.items():
        if not key.startswith(_QTY_PREFIX) or not value.strip():
            continue
        sku = key[len(_QTY_PREFIX):]
        typed[sku] = value.strip()
        try:
            quantity = int(value.strip())
        except ValueError:
            errors.setdefault(f"quantity of {sku}", []).append("Not a whole number.")
            continue
        if quantity == 0:
            continue
        lines.append({"sku": sku, "quantity": quantity})
    if not lines and not errors:
        errors["lines"] = ["Enter a quantity for at least one product."]
    return lines, typed


def _order_form(kind: str, customer_id: int):
    record, territory_id, name = _customer(kind, customer_id)
    who = viewer()
    require_write(who, "order.write", [territory_id])
    visit_id = _visit_id()
    visit = db.session.get(Visit, visit_id) if visit_id is not None else None
    errors: dict[str, list[str]] = {}
    typed: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        key = request.form.get("idempotency_key", "").strip() or None
        earlier = services.order_by_idempotency_key(db.session, key) if key else None
        if earlier is not None and earlier.owner_id == who.user_id:
            return redirect(url_for("orders_pages.show", order_id=earlier.id))  # a double tap
        lines, typed = _lines_from_form(errors)
        reference = request.form.get("customer_reference", "").strip() or None
        if reference and len(reference) > 60:
            errors["customer_reference"] = ["At most 60 characters."]
        if not errors:
            try:
                order = services.capture_order(
                    db.session, actor(), who, lines=lines, visit_id=visit_id,
                    hcp_id=customer_id if kind == "hcp" else None, hco_id=customer_id if kind == "hco" else None)
                if request.form.get("action") == "submit":
                    services.submit_order(db.session, actor(), who, order.id, idempotency_key=key,
                                          body={"customer_reference": reference})
                    flash(f"Order #{order.id} is submitted and queued for the ERP.")
                else:
                    flash(f"Order #{order.id} is saved as a draft.")
                return redirect(url_for("orders_pages.show", order_id=order.id))
            except Invalid as exc:
                errors.update(exc.errors or {"_schema": [exc.detail]})
        status = 422
    return render_template(
        "orders/form.html", kind=kind, customer=record, customer_name=name, visit=visit, errors=errors,
        typed=typed, products=orderable_products(db.session), idempotency_key=uuid.uuid4().hex,
        reference=request.form.get("customer_reference", ""),
        customer_url=url_if_known("timeline_pages.hcp", hcp_id=customer_id) if kind == "hcp" else None,
    ), status


@bp.route("/hcps/<int:hcp_id>/orders/new", methods=["GET", "POST"])
@page_auth("field_rep")
def new_for_hcp(hcp_id: int):
    """The order form for an HCP; from a visit: ``?visit_id=``."""
    return _order_form("hcp", hcp_id)


@bp.route("/hcos/<int:hco_id>/orders/new", methods=["GET", "POST"])
@page_auth("field_rep")
def new_for_hco(hco_id: int):
    """The order form for an HCO (a pharmacy, a hospital); from a visit: ``?visit_id=``."""
    return _order_form("hco", hco_id)


@bp.get("/orders")
@page_auth()
def orders():
    """A rep's own orders with their statuses; other roles see everyone's (``?mine=1`` for their own)."""
    who = viewer()
    mine = who.role == "field_rep" or request.args.get("mine") == "1"
    status = request.args.get("status") or None
    if status is not None and status not in ORDER_STATUSES:
        raise Invalid(errors={"status": [f"must be one of {', '.join(ORDER_STATUSES)}"]})
    cursor = request.args.get("cursor") or None
    rows, next_cursor = services.list_orders(db.session, who, mine=mine, status=status, limit=PAGE_SIZE,
                                             cursor=cursor)
    return render_template("orders/list.html", orders=services.order_dicts(db.session, rows), mine=mine,
                           status=status, statuses=ORDER_STATUSES, next_cursor=next_cursor, cursor=cursor)


@bp.get("/orders/<int:order_id>")
@page_auth()
def show(order_id: int):
    order = services.get_order(db.session, order_id)
    who = viewer()
    attempts = order.outbox.attempt_log if order.outbox is not None and who.role == "admin" else []
    return render_template(
        "orders/show.html", order=services.order_dict(db.session, order), attempts=attempts,
        can_submit=order.status == "draft" and order.owner_id == who.user_id,
        idempotency_key=uuid.uuid4().hex,
        hcp_url=url_if_known("timeline_pages.hcp", hcp_id=order.hcp_id) if order.hcp_id else None,
        visit_url=url_if_known("visits_pages.edit", visit_id=order.visit_id) if order.visit_id else None,
    )


@bp.post("/orders/<int:order_id>/submit")
@page_auth("field_rep")
def submit(order_id: int):
    key = request.form.get("idempotency_key", "").strip() or None
    order, replayed = services.submit_order(db.session, actor(), viewer(), order_id, idempotency_key=key,
                                            body={"customer_reference": request.form.get("customer_reference",
                                                                                         "").strip() or None})
    if not replayed:
        flash(f"Order #{order.id} is submitted and queued for the ERP.")
    return redirect(url_for("orders_pages.show", order_id=order.id))


@bp.get("/admin/erp/outbox")
@page_auth("admin")
def outbox():
    """Every outbox message, undelivered first: attempts, the last error, when the next try is due."""
    rows = services.outbox_rows(db.session)
    orders = {o.id: o for o in db.session.scalars(select(Order).where(Order.id.in_([r.order_id for r in rows])))}
    retried = request.args.get("retried", "").strip()
    outcome = None
    if retried.isdigit() and len(retried) < 10:
        row = db.session.get(OrderOutbox, int(retried))
        outcome = retry_outcome(row) if row is not None else None
    return render_template("orders/outbox.html", rows=rows, orders=orders, outcome=outcome)


# What the order's status says about the ERP's answer, after it took the order.
_RECEIPT_WORDS = {"sent": "received it and has not answered yet", "accepted": "accepted it",
                  "backordered": "accepted it and backordered it", "shipped": "accepted and shipped it"}


def retry_outcome(row: OrderOutbox) -> str:
    """What a "retry now" really did, read back from the outbox after the send that ran on commit:
    never "sent" unless the ERP took the order."""
    order = row.order
    last = row.attempt_log[-1] if row.attempt_log else None
    tried = last is not None and last.trigger == "retry"
    if row.state == "delivered":
        if order.status == "rejected":
            return f"Order #{order.id} reached the ERP and was rejected: {order.reason or 'no reason given'}."
        return f"Order #{order.id} was sent: the ERP {_RECEIPT_WORDS.get(order.status, order.status)}."
    error = (last.error or last.outcome) if last is not None else None
    if row.state == "failed":
        return (f"Order #{order.id} was not sent: failed after {row.attempts} attempts"
                f"{f' (last error: {error})' if error else ''}. Retry again once the ERP is back.")
    when = row.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if tried:
        return f"Order #{order.id} was not sent: queued for retry at {when} because {error}."
    return f"Order #{order.id} is queued for the ERP; it has not been sent yet (next try {when})."


@bp.post("/admin/erp/outbox/<int:outbox_id>/retry")
@page_auth("admin")
def retry(outbox_id: int):
    row: OrderOutbox = services.retry_outbox(db.session, actor(), viewer(), outbox_id)
    # The send runs after this request commits; the outbox page reads back what came of it.
    return redirect(url_for("orders_pages.outbox", retried=row.id))
