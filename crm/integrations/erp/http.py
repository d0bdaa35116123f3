"""The ``http`` adapter: a signed JSON-over-HTTP client for an ERP gateway (stdlib only).

The protocol (served by ``erp_server`` for tests and local use; an ERP gateway implements the same):

- ``POST /orders`` ``{"order_key", "customer": {...}, "lines": [{"sku", "quantity"}]}`` -> ``201`` (new) or
  ``200`` (an order with that key already exists) ``{"order_key", "erp_order_id", "status", "reason"}``;
  ``422 {"error": "rejected", "reason"}`` when the ERP refuses the order.
- ``GET /orders/{order_key}`` -> ``200 {"order_key", "erp_order_id", "status", "reason", "updated_at"}``, or 404.
- ``GET /catalogue`` -> ``200 {"items": [{"sku", "name", "unit", "price", "currency", "active", "orderable"}]}``.
- ``503`` (or any 5xx) when the ERP is down.

Every request is signed: ``X-ERP-Timestamp: <unix seconds>`` and ``X-ERP-Signature: sha256=<hex>``, the
HMAC-SHA256 with the shared secret over ``METHOD\\nPATH\\nTIMESTAMP\\n`` followed by the raw body. A
receiver refuses a bad signature or a timestamp more than five minutes away with 401.

Timeouts and retries: each attempt waits at most ``timeout`` seconds; connection failures, 5xx and
timeouts are retried ``retries`` times with a short exponential pause. Retrying an order is safe because
the ERP deduplicates by the order key.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

from crm.integrations.erp.interface import (
    ErpCustomer,
    ErpError,
    ErpLine,
    ErpProduct,
    ErpReceipt,
    ErpRejected,
    ErpStatus,
    ErpTimeout,
    ErpUnavailable,
    ErpUnknownOrder,
)

SIGNATURE_HEADER = "X-ERP-Signature"
TIMESTAMP_HEADER = "X-ERP-Timestamp"
MAX_SKEW_SECONDS = 300


def sign(secret: str, method: str, path: str, timestamp: str, body: bytes) -> str:
    """The value of ``X-ERP-Signature`` for one request."""
    message = f"{method.upper()}\n{path}\n{timestamp}\n".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_ok(secret: str, method: str, path: str, timestamp: str | None, signature: str | None,
                 body: bytes, now: float | None = None) -> bool:
    """Check a request's signature and that its timestamp is recent (replays of old requests fail)."""
    if not secret or not timestamp or not signature:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - sent) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, method, path, timestamp, body), signature)


class HttpAdapter:
    name = "http"

    def __init__(self, base_url: str, secret: str, timeout: float = 10.0, retries: int = 2,
                 retry_pause: float = 0.2) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"CRM_ERP_HTTP_URL must be an http(s) URL, not {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.retry_pause = retry_pause

    # -- the interface ----------------------------------------------------------------------------

    def submit_order(self, order_key: str, lines: list[ErpLine], customer: ErpCustomer) -> ErpReceipt:
        body = {"order_key": order_key, "customer": customer.as_dict(),
                "lines": [{"sku": ln.sku, "quantity": ln.quantity} for ln in lines]}
        status, data = self._request("POST", "/orders", body)
        if status == 422:
            raise ErpRejected(str(data.get("reason") or "rejected by the ERP"))
        if status not in (200, 201):
            raise ErpError(f"The ERP answered {status} to an order.")
        return ErpReceipt(order_key=str(data["order_key"]), erp_order_id=str(data["erp_order_id"]),
                          status=str(data["status"]), reason=data.get("reason"), duplicate=status == 200)

    def order_status(self, order_key: str) -> ErpStatus:
        status, data = self._request("GET", f"/orders/{quote(order_key, safe='')}")
        if status == 404:
            raise ErpUnknownOrder(f"The ERP has no order {order_key}.")
        if status != 200:
            raise ErpError(f"The ERP answered {status} to a status query.")
        updated = data.get("updated_at")
        return ErpStatus(order_key=str(data["order_key"]), erp_order_id=str(data["erp_order_id"]),
                         status=str(data["status"]), reason=data.get("reason"),
                         updated_at=datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None)

    def catalogue(self) -> list[ErpProduct]:
        status, data = self._request("GET", "/catalogue")
        if status != 200:
            raise ErpError(f"The ERP answered {status} to a catalogue query.")
        return [_product(item) for item in data.get("items", [])]

    # -- the wire ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        last: ErpError = ErpUnavailable("The ERP could not be reached.")
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_pause * 2 ** (attempt - 1))
            try:
                status, payload = self._once(method, self.prefix + path, raw)
            except TimeoutError:
                last = ErpTimeout(f"No answer from the ERP within {self.timeout:g} s.")
                continue
            except (OSError, http.client.HTTPException) as exc:
                last = ErpUnavailable(f"The ERP could not be reached: {exc.__class__.__name__}: {exc}")
                continue
            if status >= 500:
                last = ErpUnavailable(f"The ERP is unavailable ({status}).")
                continue
            if status == 401:
                raise ErpError("The ERP refused our signature (401): check CRM_ERP_HTTP_SECRET.")
            try:
                data = json.loads(payload.decode() or "{}")
            except (ValueError, UnicodeDecodeError) as exc:
                raise ErpError(f"The ERP sent a response that is not JSON ({status}).") from exc
            if not isinstance(data, dict):
                raise ErpError(f"The ERP sent an unexpected response ({status}).")
            return status, data
        raise last

    def _once(self, method: str, path: str, raw: bytes) -> tuple[int, bytes]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, method, path, timestamp, raw),
        }
        conn_class = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = conn_class(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=raw if method != "GET" else None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def _product(item: dict[str, Any]) -> ErpProduct:
    price = item.get("price")
    try:
        amount = Decimal(str(price)) if price is not None else None
    except InvalidOperation as exc:
        raise ErpError(f"The ERP sent a price that is not a number for {item.get('sku')!r}.") from exc
    return ErpProduct(sku=str(item["sku"]), name=str(item["name"]), unit=str(item.get("unit") or "pack"),
                      price=amount, currency=item.get("currency"), active=bool(item.get("active", True)),
                      orderable=bool(item.get("orderable", True)))
