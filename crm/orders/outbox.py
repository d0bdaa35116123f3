"""The sender: carries outbox messages to the ERP, polls statuses, pulls the catalogue.

It runs after the submit transaction has committed (``crm.db.on_commit``), on ``crm erp sync``, and on
a schedule (``crm erp sync --every N``). It never holds a database transaction open while it talks to
the ERP: it takes a short lease on the message and commits, calls the ERP, then records the attempt and
its outcome in a second transaction. A process killed in between leaves a lease that runs out; the
next run sends again with the same order key, and the ERP (which deduplicates by it) answers with the
order it already has. So an order reaches the ERP exactly once, whatever fails.

Each step uses a fresh session made like the app's own (``db.session.session_factory()``), because
it runs where the request's session cannot be used (inside its after-commit hook) or must commit on
its own (one message at a time).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from crm.db import DbSession, utcnow
from crm.extensions import db
from crm.hcps.models import HCPIdentifier
from crm.integrations.erp import (
    ERP_STATUSES,
    ErpCustomer,
    ErpError,
    ErpLine,
    ErpReceipt,
    ErpRejected,
    ErpStatus,
    ErpTimeout,
    ErpUnavailable,
    ErpUnknownOrder,
    get_adapter,
)
from crm.orders import services
from crm.orders.models import Order, OrderAttempt, OrderOutbox
from crm.products.services import CatalogueSync, sync_catalogue


def fresh_session() -> Session:
    return db.session.session_factory()


def _lease(app: Flask) -> timedelta:
    # Longer than one ERP call can take with the client's own retries, so a live sender keeps its lease.
    timeout = float(app.config.get("CRM_ERP_TIMEOUT_SECONDS", 10))
    retries = int(app.config.get("CRM_ERP_HTTP_RETRIES", 2))
    return timedelta(seconds=timeout * (retries + 1) + 60)


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [OrderOutbox.state == "pending", OrderOutbox.next_attempt_at <= now,
            or_(OrderOutbox.locked_until.is_(None), OrderOutbox.locked_until < now)]


def _customer(session: DbSession, order: Order) -> ErpCustomer:
    if order.hcp is not None:
        hcp = order.hcp
        npi = session.scalar(select(HCPIdentifier.value).where(HCPIdentifier.hcp_id == hcp.id,
                                                               HCPIdentifier.kind == "npi"))
        return ErpCustomer(kind="hcp", id=hcp.id, name=hcp.full_name, npi=npi, city=hcp.city,
                           postal_code=hcp.postal_code, state=hcp.state, country=hcp.country)
    hco = order.hco
    return ErpCustomer(kind="hco", id=hco.id, name=hco.name, npi=hco.npi, city=hco.city,
                       postal_code=hco.postal_code, state=hco.state, country=hco.country)


def deliver(app: Flask, outbox_id: int, trigger: str, now: datetime | None = None) -> str:
    """Send one outbox message if it is due and nobody else is sending it; returns the outcome:
    ``delivered``, ``duplicate`` (the ERP already had it), ``rejected``, ``unavailable``, ``timeout``,
    ``error``, or ``skipped`` (not due, already delivered, or another sender holds it)."""
    now = now or utcnow()
    # 1. Take the lease (and count the attempt) in a transaction of its own.
    with fresh_session() as s:
        claimed = s.execute(
            update(OrderOutbox).where(OrderOutbox.id == outbox_id, *_due(now))
            .values(locked_until=now + _lease(app), attempts=OrderOutbox.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            s.rollback()
            return "skipped"
        outbox = s.get_one(OrderOutbox, outbox_id, populate_existing=True)
        order = outbox.order
        order_key, number = order.order_key, outbox.attempts
        lines = [ErpLine(ln.sku, ln.quantity) for ln in order.lines]
        customer = _customer(s, order)
        s.commit()

    # 2. Call the ERP with no transaction open.
    started = utcnow()
    receipt: ErpReceipt | None = None
    error: str | None = None
    try:
        receipt = _checked_receipt(get_adapter(app).submit_order(order_key, lines, customer), order_key)
        outcome = "duplicate" if receipt.duplicate else "delivered"
    except ErpRejected as exc:
        outcome, error = "rejected", exc.reason
    except ErpTimeout as exc:
        outcome, error = "timeout", str(exc)
    except ErpUnavailable as exc:
        outcome, error = "unavailable", str(exc)
    except ErpError as exc:
        outcome, error = "error", str(exc)
    except Exception as exc:
        # Anything else (a malformed answer, a bug in an adapter) is a failed attempt of this order only:
        # it is retried with backoff like any other failure and the sender goes on with the next order.
        # Left to propagate, it would stop every run at the same message, which never moves back in line.
        receipt, outcome, error = None, "error", f"{type(exc).__name__}: {exc}"[:1000]
        app.logger.warning("ERP submit of order %s (outbox %s) failed unexpectedly", order_key, outbox_id,
                           exc_info=True)
    finished = utcnow()

    # 3. Record the attempt and what it means for the order.
    with fresh_session() as s:
        outbox = s.get_one(OrderOutbox, outbox_id, populate_existing=True)
        order = services.lock_order(s, outbox.order_id)
        s.add(OrderAttempt(outbox_id=outbox.id, number=number, trigger=trigger, started_at=started,
                           finished_at=finished, outcome=outcome, error=error,
                           erp_order_id=receipt.erp_order_id if receipt is not None else None))
        outbox.locked_until = None
        if receipt is not None:
            _mark_delivered(outbox, finished, None)
            services.apply_status(s, None, order, "sent", source="erp_receipt", erp_order_id=receipt.erp_order_id)
            services.apply_status(s, None, order, services.erp_status_to_order_status(receipt.status),
                                  source="erp_receipt", reason=receipt.reason)
        elif outcome == "rejected":
            _mark_delivered(outbox, finished, error)
            services.apply_status(s, None, order, "rejected", source="erp_receipt", reason=error)
        else:
            outbox.last_error = f"{outcome}: {error}"
            if outbox.state == "pending":  # a callback may have confirmed it meanwhile
                if outbox.attempts >= int(app.config.get("CRM_ERP_MAX_ATTEMPTS", 12)):
                    outbox.state = "failed"
                else:
                    outbox.next_attempt_at = now + services.backoff_delay(
                        outbox.attempts, float(app.config.get("CRM_ERP_RETRY_BASE_SECONDS", 30)),
                        float(app.config.get("CRM_ERP_RETRY_MAX_SECONDS", 3600)))
        s.commit()
    return outcome


def _checked_receipt(receipt: object, order_key: str) -> ErpReceipt:
    """The adapter's answer, if it is one the order can be moved on by; ``ValueError`` otherwise."""
    if not isinstance(receipt, ErpReceipt):
        raise ValueError(f"the ERP adapter answered {type(receipt).__name__}, not a receipt")
    if receipt.status not in ERP_STATUSES or receipt.status == "rejected":
        raise ValueError(f"the ERP answered an unknown receipt status {receipt.status!r}")
    if not isinstance(receipt.erp_order_id, str) or not receipt.erp_order_id.strip():
        raise ValueError("the ERP's receipt has no order id")
    if receipt.order_key != order_key:
        raise ValueError(f"the ERP's receipt is for another order key ({receipt.order_key!r})")
    return receipt


def _mark_delivered(outbox: OrderOutbox, when: datetime, note: str | None) -> None:
    outbox.state = "delivered"
    outbox.delivered_at = outbox.delivered_at or when
    outbox.last_error = note


def deliver_quietly(app: Flask, outbox_id: int, trigger: str) -> None:
    """The after-commit hook: the order is safely queued already, so a failure here is logged and
    left to ``crm erp sync``; it must not turn the committed request into an error."""
    try:
        deliver(app, outbox_id, trigger)
    except Exception:
        app.logger.exception("ERP delivery of outbox message %s failed; crm erp sync will retry it", outbox_id)


def send_due(app: Flask, now: datetime | None = None, limit: int = 200) -> Counter[str]:
    """Send every message that is due, oldest first; counts per outcome."""
    now = now or utcnow()
    with fresh_session() as s:
        ids = list(s.scalars(select(OrderOutbox.id).where(*_due(now))
                             .order_by(OrderOutbox.next_attempt_at, OrderOutbox.id).limit(limit)))
        s.rollback()
    counts: Counter[str] = Counter()
    for outbox_id in ids:
        try:
            counts[deliver(app, outbox_id, "sync", now)] += 1
        except Exception:
            # Recording the outcome failed (the database, not the ERP): the lease runs out and the message
            # is sent again later, deduplicated by the ERP. The other messages must still go out.
            app.logger.exception("ERP outbox message %s could not be processed; it is retried later", outbox_id)
            counts["error"] += 1
    return counts


def pull_statuses(app: Flask) -> Counter[str]:
    """Ask the ERP about every submitted order that is not final; apply what moved. Stops at the
    first sign that the ERP is down (the next run asks again)."""
    adapter = get_adapter(app)
    with fresh_session() as s:
        pending = services.orders_to_poll(s)
        s.rollback()
    counts: Counter[str] = Counter()
    for order_id, order_key in pending:
        try:
            status = adapter.order_status(order_key)
        except ErpUnknownOrder:
            app.logger.warning("the ERP does not know order %s (%s)", order_id, order_key)
            counts["unknown"] += 1
            continue
        except ErpError as exc:
            app.logger.warning("status poll stopped: %s", exc)
            counts["error"] += 1
            break
        except Exception:
            # One order's answer that cannot be read does not stop the poll of the others.
            app.logger.warning("status poll of order %s (%s) failed unexpectedly", order_id, order_key,
                               exc_info=True)
            counts["malformed"] += 1
            continue
        if not isinstance(status, ErpStatus) or status.status not in ERP_STATUSES:
            app.logger.warning("the ERP answered a malformed status for order %s (%s): %r", order_id, order_key,
                               status)
            counts["malformed"] += 1
            continue
        with fresh_session() as s:
            order = services.lock_order(s, order_id)
            moved = services.apply_status(
                s, None, order, services.erp_status_to_order_status(status.status), source="erp_poll",
                occurred_at=status.updated_at, reason=status.reason, erp_order_id=status.erp_order_id or None)
            s.commit()
        counts["updated" if moved else "unchanged"] += 1
    return counts


def pull_catalogue(app: Flask) -> CatalogueSync:
    with fresh_session() as s:
        result = sync_catalogue(s, None, get_adapter(app))
        s.commit()
    return result


@dataclass
class SyncReport:
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    catalogue: CatalogueSync | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


_RETRYING = ("unavailable", "timeout", "error")


def run_sync(app: Flask, catalogue: bool = True) -> SyncReport:
    """``crm erp sync``: send what is due, pull statuses, pull the catalogue."""
    report = SyncReport()
    report.sent = send_due(app)
    failed = sum(report.sent[o] for o in _RETRYING)
    if failed:
        report.problems.append(f"{failed} order(s) could not be delivered yet; they are retried with backoff")
    report.statuses = pull_statuses(app)
    if report.statuses["error"]:
        report.problems.append("the ERP did not answer a status query")
    if report.statuses["malformed"]:
        report.problems.append(f"{report.statuses['malformed']} status answer(s) could not be read")
    if catalogue:
        try:
            report.catalogue = pull_catalogue(app)
        except ErpError as exc:
            report.problems.append(f"catalogue not updated: {exc}")
    return report


def run_forever(app: Flask, every: float, runs: int | None = None, say: Callable[[str], None] = print) -> None:
    """The worker: ``run_sync`` every ``every`` seconds (``runs`` times, or until stopped)."""
    done = 0
    while runs is None or done < runs:
        report = run_sync(app)
        say(describe(report))
        done += 1
        if runs is None or done < runs:
            time.sleep(every)


def describe(report: SyncReport) -> str:
    sent = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.sent.items())) or "nothing due"
    statuses = ", ".join(f"{n} {what}" for what, n in sorted(report.statuses.items())) or "no open orders"
    parts = [f"orders sent: {sent}", f"statuses: {statuses}"]
    if report.catalogue is not None:
        c = report.catalogue
        parts.append(f"catalogue: {c.total} products ({len(c.created)} new, {len(c.changed)} changed)")
    parts.extend(f"problem: {p}" for p in report.problems)
    return "\n".join(parts)
