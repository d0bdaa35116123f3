"""An ERP simulator that behaves like one, and the in-process ``stub`` adapter in front of it.

The simulator keeps its own state in its own tables (``crm.integrations.erp.models``), commits in
its own transactions (it is another system: what it committed stays committed whatever the CRM
does next), deduplicates by the CRM's order key, rejects unknown, inactive and sample-only skus,
backorders when its stock is short and ships after a configurable delay. It answers asynchronously:
an order is ``received`` first; each status query moves it at most one step on (``received`` ->
``accepted`` or ``backordered`` once ``accept_after`` has passed, ``backordered`` -> ``accepted``
when stock is back, ``accepted`` -> ``shipped`` once ``ship_after`` has passed).

It fails on request, by configuration or through ``StubFaults`` (the test hook): down for the next
N calls, slow, or timing out *after* committing an order (the caller never hears the answer, and a
retry must find the order by its key rather than place it twice).

The loopback HTTP server (``erp_server``) serves the same simulator, so both adapters share one
behaviour and one set of contract tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm.db import utcnow
from crm.integrations.erp.interface import (
    ErpCustomer,
    ErpLine,
    ErpProduct,
    ErpReceipt,
    ErpRejected,
    ErpStatus,
    ErpTimeout,
    ErpUnavailable,
    ErpUnknownOrder,
)
from crm.integrations.erp.models import ErpStubOrder, ErpStubProduct, ErpStubStock

# (sku, name, unit, price, currency, active, orderable, stock). The demo's products, with prices, plus a
# product that is short (backorders) and one that is discontinued (inactive).
DEFAULT_CATALOGUE: tuple[tuple[str, str, str, str | None, str | None, bool, bool, int], ...] = (
    ("CARD-10", "Cardiozol 10 mg", "pack of 28", "42.50", "USD", True, True, 5000),
    ("CARD-20", "Cardiozol 20 mg", "pack of 28", "58.00", "USD", True, True, 5000),
    ("ONCO-100", "Oncorex 100 mg", "vial", "1250.00", "USD", True, True, 10),
    ("NEURO-5", "Neurolin 5 mg", "pack of 30", "31.20", "USD", True, True, 2000),
    ("CARD-S", "Cardiozol starter sample", "sample pack", None, None, True, False, 10000),
    ("NEURO-2", "Neurolin 2 mg (discontinued)", "pack of 30", "24.00", "USD", False, True, 0),
)


class StubFaults:
    """How the simulated ERP misbehaves next. Thread-safe; counters are consumed by calls."""

    def __init__(self, down_next: int = 0, slow_seconds: float = 0.0, timeout_after_commit_next: int = 0) -> None:
        self._lock = threading.Lock()
        self.down_next = down_next
        self.slow_seconds = slow_seconds
        self.timeout_after_commit_next = timeout_after_commit_next

    def down(self, calls: int) -> None:
        """Answer the next ``calls`` calls (of any kind) with "unavailable"."""
        with self._lock:
            self.down_next = calls

    def slow(self, seconds: float) -> None:
        """Take ``seconds`` before answering every call (0 to stop)."""
        with self._lock:
            self.slow_seconds = seconds

    def time_out_after_commit(self, submits: int) -> None:
        """For the next ``submits`` order submissions: commit the order, then never answer."""
        with self._lock:
            self.timeout_after_commit_next = submits

    def reset(self) -> None:
        with self._lock:
            self.down_next = 0
            self.slow_seconds = 0.0
            self.timeout_after_commit_next = 0

    def take_down(self) -> bool:
        with self._lock:
            if self.down_next > 0:
                self.down_next -= 1
                return True
            return False

    def take_timeout_after_commit(self) -> bool:
        with self._lock:
            if self.timeout_after_commit_next > 0:
                self.timeout_after_commit_next -= 1
                return True
            return False


@dataclass
class SimulatorSettings:
    accept_after: float = 0.0  # seconds from receipt to the stock decision
    ship_after: float = 0.0  # seconds from acceptance to shipping
    seed: bool = True  # start with DEFAULT_CATALOGUE when the product table is empty


class ErpSimulator:
    """The simulated ERP. ``session_factory`` gives a fresh session on the simulator's database."""

    def __init__(self, session_factory: Callable[[], Session], settings: SimulatorSettings | None = None,
                 faults: StubFaults | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.session_factory = session_factory
        self.settings = settings or SimulatorSettings()
        self.faults = faults or StubFaults()
        self.clock = clock

    # -- the ERP's API --------------------------------------------------------------------------

    def submit(self, order_key: str, lines: list[ErpLine], customer: ErpCustomer) -> ErpReceipt:
        """Take an order once per ``order_key``. May raise ErpUnavailable, ErpRejected, ErpTimeout."""
        self._enter()
        with self.session_factory() as s:
            self._ensure_catalogue(s)
            existing = self._order(s, order_key)
            if existing is not None:
                return self._replay(existing)
            problem = self._validate(s, lines)
            now = self.clock()
            order = ErpStubOrder(order_key=order_key, customer=customer.as_dict(),
                                 lines=[{"sku": ln.sku, "quantity": ln.quantity} for ln in lines],
                                 status="rejected" if problem else "received", reason=problem,
                                 received_at=now, status_changed_at=now)
            try:
                s.add(order)
                s.flush()
                order.erp_order_id = f"SO-{order.id:06d}"
                receipt = ErpReceipt(order_key, order.erp_order_id, order.status, order.reason)
                s.commit()
            except IntegrityError:
                # The same order key arrived twice at once: the first one is the order.
                s.rollback()
                winner = self._order(s, order_key)
                if winner is None:
                    raise
                return self._replay(winner)
        if problem:
            raise ErpRejected(problem)
        if self.faults.take_timeout_after_commit():
            raise ErpTimeout("The ERP took the order but its answer never arrived.")
        return receipt

    def status(self, order_key: str) -> ErpStatus:
        """Where the order is, moving it one step on when its time has come."""
        self._enter()
        with self.session_factory() as s:
            order = self._order(s, order_key, for_update=True)
            if order is None:
                raise ErpUnknownOrder(f"The ERP has no order {order_key}.")
            self._advance(s, order)
            result = self._status_of(order)
            s.commit()
        return result

    def catalogue(self) -> list[ErpProduct]:
        self._enter()
        with self.session_factory() as s:
            self._ensure_catalogue(s)
            rows = s.scalars(select(ErpStubProduct).order_by(ErpStubProduct.sku)).all()
            out = [ErpProduct(sku=p.sku, name=p.name, unit=p.unit, price=p.price, currency=p.currency,
                              active=p.active, orderable=not p.sample_only) for p in rows]
            s.commit()
        return out

    # -- set-up hooks (tests, demo) ---------------------------------------------------------------

    def put_product(self, sku: str, name: str, *, unit: str = "pack", price: Decimal | str | None = None,
                    currency: str | None = None, active: bool = True, orderable: bool = True,
                    stock: int | None = None) -> None:
        """Create or change a product in the ERP's catalogue (and its stock when given)."""
        with self.session_factory() as s:
            self._ensure_catalogue(s)
            product = s.get(ErpStubProduct, sku) or ErpStubProduct(sku=sku)
            product.name, product.unit, product.active, product.sample_only = name, unit, active, not orderable
            product.price = Decimal(price) if price is not None else None
            product.currency = currency
            s.add(product)
            if stock is not None:
                self._put_stock(s, sku, stock)
            s.commit()

    def set_stock(self, sku: str, on_hand: int) -> None:
        with self.session_factory() as s:
            self._ensure_catalogue(s)
            self._put_stock(s, sku, on_hand)
            s.commit()

    def order_count(self, order_key: str | None = None) -> int:
        """How many orders the ERP holds (for one key, or in all): "exactly one ERP order" is checked here."""
        with self.session_factory() as s:
            stmt = select(func.count()).select_from(ErpStubOrder)
            if order_key is not None:
                stmt = stmt.where(ErpStubOrder.order_key == order_key)
            return int(s.scalar(stmt) or 0)

    # -- inside the ERP ---------------------------------------------------------------------------

    def _enter(self) -> None:
        if self.faults.take_down():
            raise ErpUnavailable("The ERP is down (503 Service Unavailable).")
        if self.faults.slow_seconds > 0:
            time.sleep(self.faults.slow_seconds)

    def _ensure_catalogue(self, s: Session) -> None:
        if not self.settings.seed or s.scalar(select(func.count()).select_from(ErpStubProduct)):
            return
        for sku, name, unit, price, currency, active, orderable, stock in DEFAULT_CATALOGUE:
            s.add(ErpStubProduct(sku=sku, name=name, unit=unit, price=Decimal(price) if price else None,
                                 currency=currency, active=active, sample_only=not orderable))
            if s.get(ErpStubStock, sku) is None:
                s.add(ErpStubStock(sku=sku, on_hand=stock))
        s.flush()

    @staticmethod
    def _put_stock(s: Session, sku: str, on_hand: int) -> None:
        stock = s.get(ErpStubStock, sku) or ErpStubStock(sku=sku)
        stock.on_hand = on_hand
        s.add(stock)

    @staticmethod
    def _order(s: Session, order_key: str, for_update: bool = False) -> ErpStubOrder | None:
        stmt = select(ErpStubOrder).where(ErpStubOrder.order_key == order_key)
        if for_update:
            stmt = stmt.with_for_update()
        return s.scalar(stmt)

    @staticmethod
    def _replay(order: ErpStubOrder) -> ErpReceipt:
        if order.status == "rejected":
            raise ErpRejected(order.reason or "rejected")
        return ErpReceipt(order.order_key, order.erp_order_id or "", order.status, order.reason, duplicate=True)

    @staticmethod
    def _validate(s: Session, lines: list[ErpLine]) -> str | None:
        if not lines:
            return "The order has no lines."
        for line in lines:
            product = s.get(ErpStubProduct, line.sku)
            if product is None:
                return f"Unknown sku {line.sku}."
            if not product.active:
                return f"Sku {line.sku} is no longer sold."
            if product.sample_only:
                return f"Sku {line.sku} is a sample-only product and cannot be ordered."
            if line.quantity <= 0:
                return f"Quantity for {line.sku} must be positive."
        return None

    def _advance(self, s: Session, order: ErpStubOrder) -> None:
        now = self.clock()
        if order.status == "received":
            if now - order.received_at >= timedelta(seconds=self.settings.accept_after):
                self._allocate(s, order, now)
        elif order.status == "backordered":
            self._allocate(s, order, now)
        elif order.status == "accepted" and order.accepted_at is not None:
            if now - order.accepted_at >= timedelta(seconds=self.settings.ship_after):
                self._move(order, "shipped", None, now)

    def _allocate(self, s: Session, order: ErpStubOrder, now: datetime) -> None:
        wanted: dict[str, int] = {}
        for line in order.lines:
            wanted[line["sku"]] = wanted.get(line["sku"], 0) + int(line["quantity"])
        stocks = {sku: s.scalar(select(ErpStubStock).where(ErpStubStock.sku == sku).with_for_update())
                  for sku in wanted}
        on_hand = {sku: stock.on_hand if stock is not None else 0 for sku, stock in stocks.items()}
        short = [f"{sku} (ordered {qty}, on hand {on_hand[sku]})" for sku, qty in wanted.items()
                 if on_hand[sku] < qty]
        if short:
            if order.status != "backordered":
                self._move(order, "backordered", "Short of stock: " + ", ".join(short), now)
            return
        for sku, qty in wanted.items():
            stock = stocks[sku]
            if stock is not None:
                stock.on_hand -= qty
        order.accepted_at = now
        self._move(order, "accepted", None, now)

    @staticmethod
    def _move(order: ErpStubOrder, status: str, reason: str | None, now: datetime) -> None:
        order.status = status
        order.reason = reason
        order.status_changed_at = now

    @staticmethod
    def _status_of(order: ErpStubOrder) -> ErpStatus:
        return ErpStatus(order.order_key, order.erp_order_id or "", order.status, order.reason,
                         order.status_changed_at)


class StubAdapter:
    """The ``stub`` adapter: the simulator called in-process, with the caller's timeout honoured."""

    name = "stub"

    def __init__(self, simulator: ErpSimulator, timeout_seconds: float = 10.0) -> None:
        self.simulator = simulator
        self.timeout_seconds = timeout_seconds

    @property
    def faults(self) -> StubFaults:
        return self.simulator.faults

    def _in_time(self) -> None:
        # Slower than our timeout: we give up waiting before the ERP got to the order.
        if self.faults.slow_seconds > self.timeout_seconds:
            time.sleep(self.timeout_seconds)
            raise ErpTimeout(f"No answer from the ERP within {self.timeout_seconds:g} s.")

    def submit_order(self, order_key: str, lines: list[ErpLine], customer: ErpCustomer) -> ErpReceipt:
        self._in_time()
        return self.simulator.submit(order_key, lines, customer)

    def order_status(self, order_key: str) -> ErpStatus:
        self._in_time()
        return self.simulator.status(order_key)

    def catalogue(self) -> list[ErpProduct]:
        self._in_time()
        return self.simulator.catalogue()


def simulator_settings(config: dict[str, Any]) -> SimulatorSettings:
    return SimulatorSettings(
        accept_after=float(config.get("CRM_ERP_STUB_ACCEPT_AFTER_SECONDS", 0)),
        ship_after=float(config.get("CRM_ERP_STUB_SHIP_AFTER_SECONDS", 0)),
        seed=bool(config.get("CRM_ERP_STUB_SEED", True)),
    )


def faults_from_config(config: dict[str, Any]) -> StubFaults:
    return StubFaults(
        down_next=int(config.get("CRM_ERP_STUB_FAIL_FIRST", 0)),
        slow_seconds=float(config.get("CRM_ERP_STUB_SLOW_SECONDS", 0)),
        timeout_after_commit_next=int(config.get("CRM_ERP_STUB_TIMEOUT_AFTER_COMMIT", 0)),
    )
