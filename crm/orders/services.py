"""Orders: capture a draft, submit it into the outbox, and apply the statuses the ERP reports.

Services take the actor and the policy viewer, ask ``crm.access.policy`` for every decision, audit
every write, flush and never commit. Every status an order reaches is an ``OrderEvent`` (once per
status) and an ``order`` interaction on the timeline (external id ``order:<id>:<status>``, so a
replayed callback or poll never doubles it). The ERP itself is only called by ``crm.orders.outbox``,
after the submit transaction has committed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import case, or_, select

from crm.access.policy import Viewer, require_owner, require_write
from crm.audit import services as audit
from crm.db import DbSession, on_commit, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.hcps.models import HCO, HCP, Affiliation
from crm.orders.models import (
    FINAL_STATUSES,
    ORDER_STATUSES,
    STATUS_RANK,
    Order,
    OrderEvent,
    OrderLine,
    OrderOutbox,
)
from crm.products.models import Product
from crm.schemas import decode_cursor, encode_cursor
from crm.timeline.services import record_interaction
from crm.visits.models import Visit

MAX_QUANTITY = 10_000
MAX_LINES = 50
# Which timeline source a status comes from: the rep's own action, or the ERP.
_CRM_STATUSES = frozenset({"draft", "queued"})


# -- reading -------------------------------------------------------------------------------------

def get_order(session: DbSession, order_id: int) -> Order:
    order = session.get(Order, order_id)
    if order is None:
        raise NotFound(f"No order with id {order_id}.")
    return order


def lock_order(session: DbSession, order_id: int) -> Order:
    """The order, re-read and locked for this transaction (PostgreSQL row lock; SQLite's BEGIN IMMEDIATE
    already serialises writers), so concurrent submits, polls and callbacks apply one after another."""
    order = session.scalar(select(Order).where(Order.id == order_id).with_for_update(of=Order)
                           .execution_options(populate_existing=True))
    if order is None:
        raise NotFound(f"No order with id {order_id}.")
    return order


def order_by_idempotency_key(session: DbSession, key: str) -> Order | None:
    return session.scalar(select(Order).where(Order.idempotency_key == key))


def list_orders(session: DbSession, viewer: Viewer, *, mine: bool = False, status: str | None = None,
                hcp_id: int | None = None, hco_id: int | None = None, limit: int = 50,
                cursor: str | None = None) -> tuple[list[Order], str | None]:
    """Newest first, keyset-paged. Orders are shared like the rest of the timeline: every role reads them."""
    stmt = select(Order)
    if mine:
        stmt = stmt.where(Order.owner_id == viewer.user_id)
    if status:
        stmt = stmt.where(Order.status == status)
    if hcp_id is not None:
        stmt = stmt.where(Order.hcp_id == hcp_id)
    if hco_id is not None:
        stmt = stmt.where(Order.hco_id == hco_id)
    if cursor:
        (last_id,) = decode_cursor(cursor, (int,))
        stmt = stmt.where(Order.id < last_id)
    rows = list(session.scalars(stmt.order_by(Order.id.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id)


def order_dicts(session: DbSession, orders: list[Order]) -> list[dict[str, Any]]:
    """THE output shape of orders (API and pages), product names looked up in one query."""
    skus = {line.sku for order in orders for line in order.lines}
    names: dict[str, str] = {}
    if skus:
        names = {sku: name for sku, name in session.execute(select(Product.sku, Product.name)
                                                            .where(Product.sku.in_(skus)))}
    return [_order_dict(order, names) for order in orders]


def order_dict(session: DbSession, order: Order) -> dict[str, Any]:
    return order_dicts(session, [order])[0]


def _order_dict(order: Order, names: dict[str, str]) -> dict[str, Any]:
    outbox = order.outbox
    return {
        "id": order.id,
        "order_key": order.order_key,
        "status": order.status,
        "reason": order.reason,
        "hcp_id": order.hcp_id,
        "hco_id": order.hco_id,
        "customer_name": _customer_name(order),
        "visit_id": order.visit_id,
        "owner": {"id": order.owner.id, "name": order.owner.name, "role": order.owner.role},
        "lines": [{"sku": ln.sku, "name": names.get(ln.sku, ln.sku), "quantity": ln.quantity} for ln in order.lines],
        "erp_order_id": order.erp_order_id,
        "customer_reference": order.customer_reference,
        "created_at": order.created_at,
        "submitted_at": order.submitted_at,
        "status_changed_at": order.status_changed_at,
        "history": [{"status": e.status, "reason": e.reason, "source": e.source, "occurred_at": e.occurred_at}
                    for e in order.events],
        "delivery": None if outbox is None else {
            "state": outbox.state, "attempts": outbox.attempts, "next_attempt_at": outbox.next_attempt_at,
            "last_error": outbox.last_error, "delivered_at": outbox.delivered_at,
        },
        "version": order.version,
    }


def _customer_name(order: Order) -> str:
    if order.hcp is not None:
        return str(order.hcp.full_name)
    return str(order.hco.name) if order.hco is not None else ""


# -- capture -------------------------------------------------------------------------------------

def capture_order(session: DbSession, actor: Any, viewer: Viewer, *, lines: list[dict[str, Any]],
                  hcp_id: int | None = None, hco_id: int | None = None, visit_id: int | None = None) -> Order:
    """A draft order for an HCP or an HCO (exactly one), by a field rep in own territories.

    Every sku must be in the catalogue, active and orderable (sample-only products are not); each
    sku once; quantities from 1 to 10,000. ``visit_id`` links the visit it was taken in: it must be
    the rep's own visit, and for an HCP order a visit with that HCP.
    """
    if (hcp_id is None) == (hco_id is None):
        raise Invalid(errors={"_schema": ["Give exactly one of hcp_id or hco_id."]})
    territory_id = _customer_territory(session, hcp_id, hco_id)
    require_write(viewer, "order.write", [territory_id])
    errors: dict[str, list[str]] = {}
    clean = _check_lines(session, lines, errors)
    if visit_id is not None:
        _check_visit(session, actor, visit_id, hcp_id, errors)
    if errors:
        raise Invalid(errors=errors)
    now = utcnow()
    order = Order(order_key=uuid.uuid4().hex, owner_id=actor.id, hcp_id=hcp_id, hco_id=hco_id, visit_id=visit_id,
                  status="draft", status_changed_at=now)
    order.lines = [OrderLine(sku=sku, quantity=qty) for sku, qty in clean]
    session.add(order)
    session.flush()
    session.add(OrderEvent(order_id=order.id, status="draft", source="crm", occurred_at=now))
    session.flush()
    audit.record(session, actor, "order.create", "order", order.id, audit.created({
        "hcp_id": hcp_id, "hco_id": hco_id, "visit_id": visit_id, "status": "draft",
        "lines": [{"sku": sku, "quantity": qty} for sku, qty in clean],
    }))
    return order


def _customer_territory(session: DbSession, hcp_id: int | None, hco_id: int | None) -> int | None:
    if hcp_id is not None:
        hcp = session.get(HCP, hcp_id)
        if hcp is None:
            raise Invalid(errors={"hcp_id": [f"No HCP with id {hcp_id}."]})
        if hcp.merged_into_id is not None:
            raise Invalid(errors={"hcp_id": [f"HCP {hcp_id} was merged into HCP {hcp.merged_into_id}; "
                                             "order for that record."]})
        if hcp.status == "erased":
            raise Invalid(errors={"hcp_id": [f"HCP {hcp_id} was erased."]})
        return hcp.territory_id
    hco = session.get(HCO, hco_id)
    if hco is None:
        raise Invalid(errors={"hco_id": [f"No HCO with id {hco_id}."]})
    if hco.status != "active":
        raise Invalid(errors={"hco_id": [f"HCO {hco_id} is {hco.status}."]})
    return hco.territory_id


def _check_lines(session: DbSession, lines: list[dict[str, Any]],
                 errors: dict[str, list[str]]) -> list[tuple[str, int]]:
    if not lines:
        errors["lines"] = ["An order needs at least one line."]
        return []
    if len(lines) > MAX_LINES:
        errors["lines"] = [f"At most {MAX_LINES} lines."]
        return []
    skus = [str(line["sku"]).strip() for line in lines]
    products = {p.sku: p for p in session.scalars(select(Product).where(Product.sku.in_(skus)))}
    seen: set[str] = set()
    clean: list[tuple[str, int]] = []
    for i, (sku, line) in enumerate(zip(skus, lines, strict=True)):
        product = products.get(sku)
        problem = None
        if product is None:
            problem = f"Unknown sku {sku!r}."
        elif not product.active:
            problem = f"{sku} is no longer sold."
        elif not product.orderable:
            problem = f"{sku} is a sample-only product and cannot be ordered."
        elif sku in seen:
            problem = f"{sku} appears twice; put the whole quantity on one line."
        if problem:
            errors.setdefault(f"lines.{i}.sku", []).append(problem)
        quantity = line["quantity"]
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
            errors.setdefault(f"lines.{i}.quantity", []).append(f"Must be between 1 and {MAX_QUANTITY:,}.")
        seen.add(sku)
        clean.append((sku, quantity))
    return clean


def _check_visit(session: DbSession, actor: Any, visit_id: int, hcp_id: int | None,
                 errors: dict[str, list[str]]) -> None:
    visit = session.get(Visit, visit_id)
    if visit is None:
        errors["visit_id"] = [f"No visit with id {visit_id}."]
    elif visit.owner_id != actor.id:
        errors["visit_id"] = ["An order can only be linked to one of your own visits."]
    elif hcp_id is not None and visit.hcp_id != hcp_id:
        errors["visit_id"] = ["That visit was with another HCP."]


# -- submit --------------------------------------------------------------------------------------

def request_hash(order_id: int, body: dict[str, Any]) -> str:
    """The fingerprint of one submit request: the order and the body, canonically serialised."""
    raw = json.dumps({"order_id": order_id, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def submit_order(session: DbSession, actor: Any, viewer: Viewer, order_id: int, *,
                 idempotency_key: str | None = None, body: dict[str, Any] | None = None) -> tuple[Order, bool]:
    """Submit a draft: it becomes ``queued`` and its outbox message is written in this same transaction.

    Returns ``(order, replayed)``. With an ``idempotency_key``: the same key with the same request
    (same order, same body) returns the order it submitted (``replayed``); the same key with another
    request is 422. Without one, a second submit of the same order is 409. The order row is locked,
    so two submits at once are serialised: one outbox message, one ERP order. Only the owner submits,
    and only while still covering the customer's territory. The ERP is called after commit.
    """
    body = body or {}
    order = lock_order(session, order_id)
    fingerprint = request_hash(order_id, body)
    if idempotency_key is not None:
        earlier = order_by_idempotency_key(session, idempotency_key)
        if earlier is not None:
            if earlier.id != order.id or earlier.request_hash != fingerprint:
                raise Invalid("This Idempotency-Key was used with another request.",
                              errors={"Idempotency-Key": ["already used with another request"]})
            return earlier, True
    require_owner(viewer, order.owner_id, "order.submit")
    require_write(viewer, "order.write", [_territory_of(order)])
    if order.status != "draft":
        raise Conflict(f"Order {order.id} was already submitted; it is {order.status}.")
    now = utcnow()
    order.idempotency_key = idempotency_key
    order.request_hash = fingerprint
    order.customer_reference = body.get("customer_reference")
    order.submitted_at = now
    session.flush()
    apply_status(session, actor, order, "queued", source="crm", occurred_at=now)
    outbox = OrderOutbox(order_id=order.id, state="pending", next_attempt_at=now, created_at=now)
    session.add(outbox)
    session.flush()
    audit.record(session, actor, "order.submit", "order", order.id,
                 audit.created({"outbox_id": outbox.id, "customer_reference": order.customer_reference}))
    _send_after_commit(session, outbox.id, "after_commit")
    return order, False


def _territory_of(order: Order) -> int | None:
    if order.hcp is not None:
        return order.hcp.territory_id
    return order.hco.territory_id if order.hco is not None else None


def _send_after_commit(session: DbSession, outbox_id: int, trigger: str) -> None:
    if not current_app.config.get("CRM_ERP_SEND_AFTER_COMMIT", True):
        return
    from crm.orders import outbox as sender

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if trigger == "retry":
        # An admin's "retry now": sent in this request after the commit, so the outbox page it returns to
        # can say what came of it.
        on_commit(session, lambda: sender.deliver_quietly(app, outbox_id, trigger))
        return
    from crm.jobs.queue import enqueue_order

    # A queue task carries it to the ERP (a consumer; at once in huey's immediate mode); the sweep and
    # `crm erp sync` take up what a lost message left behind.
    on_commit(session, lambda: enqueue_order(app, outbox_id, trigger))


def retry_outbox(session: DbSession, actor: Any, viewer: Viewer, outbox_id: int) -> OrderOutbox:
    """Admin: send this message now (a failed one is re-armed). Delivery runs after the commit."""
    require_write(viewer, "erp_outbox.manage")
    outbox = session.get(OrderOutbox, outbox_id)
    if outbox is None:
        raise NotFound(f"No outbox message with id {outbox_id}.")
    if outbox.state == "delivered":
        raise Conflict(f"Order {outbox.order_id} has already reached the ERP.")
    before = {"state": outbox.state, "next_attempt_at": outbox.next_attempt_at}
    outbox.state = "pending"
    outbox.next_attempt_at = utcnow()
    session.flush()
    audit.record(session, actor, "order_outbox.retry", "order_outbox", outbox.id,
                 audit.diff(before, {"state": outbox.state, "next_attempt_at": outbox.next_attempt_at}))
    _send_after_commit(session, outbox.id, "retry")
    return outbox


# -- statuses ------------------------------------------------------------------------------------

def apply_status(session: DbSession, actor: Any, order: Order, status: str, *, source: str,
                 occurred_at: datetime | None = None, reason: str | None = None,
                 erp_order_id: str | None = None) -> bool:
    """Move ``order`` to ``status`` unless it is already there or further along; True when it moved.

    Out-of-order safe: a status never replaces one of equal or higher rank (a late ``accepted`` does
    not overwrite ``shipped``; ``rejected`` and ``shipped`` are final). Idempotent: a repeat is a no-op.
    Each move is an ``OrderEvent``, an ``order`` interaction on the timeline and an audit record.
    """
    if status not in ORDER_STATUSES:
        raise Invalid(errors={"status": [f"must be one of {', '.join(ORDER_STATUSES)}"]})
    if erp_order_id and order.erp_order_id != erp_order_id:
        before_id = order.erp_order_id
        order.erp_order_id = erp_order_id
        audit.record(session, actor, "order.erp_order_id", "order", order.id,
                     audit.diff({"erp_order_id": before_id}, {"erp_order_id": erp_order_id}), reason=source)
    if order.status in FINAL_STATUSES or STATUS_RANK[status] <= STATUS_RANK[order.status]:
        session.flush()
        return False
    when = occurred_at or utcnow()
    before = {"status": order.status, "reason": order.reason}
    order.status = status
    order.reason = reason if status in ("rejected", "backordered") else None
    order.status_changed_at = when
    event = OrderEvent(order_id=order.id, status=status, reason=order.reason, source=source, occurred_at=when)
    session.add(event)
    session.flush()
    item = _record_on_timeline(session, actor, order, status, when)
    event.interaction_id = item.id if item is not None else None
    session.flush()
    audit.record(session, actor, "order.status", "order", order.id,
                 audit.diff(before, {"status": status, "reason": order.reason}), reason=source)
    return True


def timeline_hcp_ids(session: DbSession, order: Order) -> list[int]:
    """Whose timeline shows the order: its HCP; for an HCO order the HCP of the visit it was taken in,
    else the HCPs currently affiliated with the HCO (none: the order keeps its own history only)."""
    if order.hcp_id is not None:
        return [order.hcp_id]
    if order.visit_id is not None:
        visit = session.get(Visit, order.visit_id)
        if visit is not None:
            return [visit.hcp_id]
    now = utcnow()
    return list(session.scalars(
        select(Affiliation.hcp_id).where(
            Affiliation.hco_id == order.hco_id, Affiliation.valid_from <= now,
            or_(Affiliation.valid_to.is_(None), Affiliation.valid_to > now),
        ).order_by(Affiliation.hcp_id).distinct()
    ))


def _record_on_timeline(session: DbSession, actor: Any, order: Order, status: str, when: datetime) -> Any:
    hcp_ids = timeline_hcp_ids(session, order)
    if not hcp_ids:
        return None
    lines = ", ".join(f"{ln.sku} x {ln.quantity}" for ln in order.lines)
    customer = f" for {order.hco.name}" if order.hco is not None else ""
    summary = f"Order #{order.id}{customer} {status}: {lines}"
    if order.reason:
        summary += f" ({order.reason})"
    item, _created = record_interaction(
        session, actor if status in _CRM_STATUSES else None,
        hcp_ids=hcp_ids, occurred_at=when, channel="order", kind=f"order.{status}",
        source="crm" if status in _CRM_STATUSES else "erp", external_id=f"order:{order.id}:{status}",
        summary=summary, safe_summary=f"Order {status}",
        details={"order_id": order.id, "status": status, "reason": order.reason, "erp_order_id": order.erp_order_id,
                 "hco_id": order.hco_id, "visit_id": order.visit_id,
                 "lines": [{"sku": ln.sku, "quantity": ln.quantity} for ln in order.lines]},
        products=[ln.sku for ln in order.lines],
    )
    return item


def confirm_delivered(session: DbSession, order: Order, note: str) -> None:
    """The ERP knows this order (a status came back for it): its outbox message has arrived."""
    outbox = order.outbox
    if outbox is not None and outbox.state != "delivered":
        now = utcnow()
        outbox.state = "delivered"
        outbox.delivered_at = now
        outbox.last_error = note
        session.flush()


def apply_erp_callback(session: DbSession, data: dict[str, Any]) -> tuple[Order, bool]:
    """A status the ERP pushed (``POST /api/v1/integrations/erp/callback``, signature already checked).

    Idempotent and out-of-order safe through ``apply_status``. An ERP that reports on an order knows
    it, so an outbox message still waiting (the ERP timed out after taking it) counts as delivered.
    Returns ``(order, moved)``.
    """
    order_id = session.scalar(select(Order.id).where(Order.order_key == data["order_key"]))
    if order_id is None:
        raise NotFound(f"No order with key {data['order_key']}.")
    order = lock_order(session, order_id)
    if order.status == "draft":
        raise Conflict(f"Order {order.id} has not been submitted; the ERP cannot know it.")
    confirm_delivered(session, order, "confirmed by an ERP callback")
    moved = apply_status(session, None, order, erp_status_to_order_status(data["status"]), source="erp_callback",
                         occurred_at=data.get("occurred_at"), reason=data.get("reason"),
                         erp_order_id=data.get("erp_order_id"))
    return order, moved


def erp_status_to_order_status(erp_status: str) -> str:
    """The ERP's words to ours: the ERP's `received` is our `sent`."""
    return "sent" if erp_status == "received" else erp_status


def orders_to_poll(session: DbSession) -> list[tuple[int, str]]:
    """(id, order key) of submitted orders the ERP has that are not final yet: ``crm erp sync`` asks about these."""
    rows = session.execute(select(Order.id, Order.order_key)
                           .where(Order.status.in_(("sent", "backordered", "accepted"))).order_by(Order.id))
    return [(order_id, key) for order_id, key in rows]


def backoff_delay(attempts: int, base: float, cap: float) -> timedelta:
    """Exponential backoff: base, 2 x base, 4 x base ... up to ``cap`` seconds, after ``attempts`` failures."""
    seconds = min(cap, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=seconds)


def outbox_rows(session: DbSession, limit: int = 200) -> list[OrderOutbox]:
    """The admin's outbox view: messages not yet delivered first, then the newest."""
    undelivered_first = case((OrderOutbox.state == "delivered", 1), else_=0)
    return list(session.scalars(select(OrderOutbox).order_by(undelivered_first, OrderOutbox.id.desc()).limit(limit)))
