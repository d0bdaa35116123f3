"""The ERP interface: what the CRM asks of an ERP, whichever one answers.

Three calls (``submit_order``, ``order_status``, ``catalogue``), plain value objects, and the failures
an ERP really has. ``ErpUnavailable`` and ``ErpTimeout`` are worth retrying with the same order key
(an ERP deduplicates by it); ``ErpRejected`` is a final answer about the order itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

# What an ERP may say about an order. `received` is the ERP's acknowledgement (the CRM's `sent`).
ERP_STATUSES = ("received", "accepted", "backordered", "rejected", "shipped")


class ErpError(RuntimeError):
    """The ERP call failed in a way the outbox retries (with backoff) unless a subclass says otherwise."""

    retryable = True


class ErpUnavailable(ErpError):
    """The ERP could not be reached or answered that it is down (connection refused, 5xx)."""


class ErpTimeout(ErpError):
    """No answer in time. The ERP may or may not have taken the order: retry with the same order key."""


class ErpRejected(ErpError):
    """The ERP refused the order (unknown or inactive sku, bad quantity); ``reason`` is its words."""

    retryable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ErpUnknownOrder(ErpError):
    """``order_status`` for an order key the ERP has never seen."""

    retryable = False


@dataclass(frozen=True)
class ErpLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class ErpCustomer:
    """Who the order is for: the CRM's customer kind and id, a name and where it ships, no contact data."""

    kind: str  # hcp | hco
    id: int
    name: str
    npi: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str = "US"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "npi": self.npi, "city": self.city,
                "postal_code": self.postal_code, "state": self.state, "country": self.country}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErpCustomer:
        return cls(kind=str(data["kind"]), id=int(data["id"]), name=str(data["name"]), npi=data.get("npi"),
                   city=data.get("city"), postal_code=data.get("postal_code"), state=data.get("state"),
                   country=str(data.get("country") or "US"))


@dataclass(frozen=True)
class ErpReceipt:
    """The ERP's answer to ``submit_order``. ``duplicate`` is true when it already had that order key."""

    order_key: str
    erp_order_id: str
    status: str
    reason: str | None = None
    duplicate: bool = False


@dataclass(frozen=True)
class ErpStatus:
    order_key: str
    erp_order_id: str
    status: str
    reason: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ErpProduct:
    sku: str
    name: str
    unit: str = "pack"
    price: Decimal | None = None
    currency: str | None = None
    active: bool = True
    # Sample-only products exist in the ERP (for stock) but cannot be ordered.
    orderable: bool = True


class ErpAdapter(Protocol):
    """One ERP. Implementations: ``stub`` (in-process simulator) and ``http`` (a signed HTTP client)."""

    name: str

    def submit_order(self, order_key: str, lines: list[ErpLine], customer: ErpCustomer) -> ErpReceipt:
        """Place the order once per ``order_key``: a repeat returns the first receipt (``duplicate``)."""
        ...

    def order_status(self, order_key: str) -> ErpStatus:
        """Where the order is now; ``ErpUnknownOrder`` when the ERP never received it."""
        ...

    def catalogue(self) -> list[ErpProduct]:
        """Every product the ERP knows, active or not."""
        ...
