"""A small ERP server speaking the ``http`` adapter's protocol, backed by the ERP simulator.

It stands in for an ERP gateway: in the tests (started on 127.0.0.1 on a free port, so the http
client is exercised over a real socket) and locally (``flask --app wsgi crm erp stub-server``). It
keeps its state in a database of its own, checks every request's HMAC signature, and fails the way
the simulator is told to: 503 when down, a late answer when slow, and, for "time out after commit",
it commits the order and then holds the connection without answering until the client gives up.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from crm.db import Base, harden_engine, iso_z
from crm.integrations.erp.http import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_ok
from crm.integrations.erp.interface import (
    ErpCustomer,
    ErpLine,
    ErpReceipt,
    ErpRejected,
    ErpTimeout,
    ErpUnavailable,
    ErpUnknownOrder,
)
from crm.integrations.erp.models import ErpStubOrder, ErpStubProduct, ErpStubStock
from crm.integrations.erp.stub import ErpSimulator, SimulatorSettings, StubFaults

MAX_BODY_BYTES = 1024 * 1024


def simulator_on(database_url: str, settings: SimulatorSettings | None = None,
                 faults: StubFaults | None = None) -> ErpSimulator:
    """A simulator with its own database (only the simulator's tables are created there)."""
    engine = create_engine(database_url, connect_args={"timeout": 30} if database_url.startswith("sqlite") else {})
    harden_engine(engine)
    tables = [ErpStubProduct.__table__, ErpStubStock.__table__, ErpStubOrder.__table__]
    Base.metadata.create_all(engine, tables=tables)  # type: ignore[arg-type]
    return ErpSimulator(sessionmaker(bind=engine, expire_on_commit=False), settings, faults)


class ErpServer:
    """``with ErpServer(simulator, secret) as server: server.url`` -> ``http://127.0.0.1:<port>``."""

    def __init__(self, simulator: ErpSimulator, secret: str, host: str = "127.0.0.1", port: int = 0,
                 hang_seconds: float = 5.0) -> None:
        self.simulator = simulator
        self.secret = secret
        # How long a "timed out after commit" request is held unanswered; longer than the client waits.
        self.hang_seconds = hang_seconds
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ErpServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="erp-stub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ErpServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _receipt(receipt: ErpReceipt) -> dict[str, Any]:
    return {"order_key": receipt.order_key, "erp_order_id": receipt.erp_order_id, "status": receipt.status,
            "reason": receipt.reason}


def _handler_for(server: ErpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ErpStub/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            """Quiet: the tests and the CLI say what matters."""

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if not self._signed(b""):
                return
            if self.path == "/catalogue":
                products = self._call(server.simulator.catalogue)
                if products is not None:
                    self._send(200, {"items": [
                        {"sku": p.sku, "name": p.name, "unit": p.unit,
                         "price": str(p.price) if p.price is not None else None, "currency": p.currency,
                         "active": p.active, "orderable": p.orderable} for p in products]})
                return
            if self.path.startswith("/orders/"):
                key = unquote(self.path[len("/orders/"):])
                status = self._call(lambda: server.simulator.status(key))
                if status is not None:
                    self._send(200, {"order_key": status.order_key, "erp_order_id": status.erp_order_id,
                                     "status": status.status, "reason": status.reason,
                                     "updated_at": iso_z(status.updated_at)})
                return
            self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, {"error": "too_large"})
                return
            raw = self.rfile.read(length)
            if not self._signed(raw):
                return
            if self.path != "/orders":
                self._send(404, {"error": "not_found"})
                return
            try:
                data = json.loads(raw.decode())
                lines = [ErpLine(str(x["sku"]), int(x["quantity"])) for x in data["lines"]]
                customer = ErpCustomer.from_dict(data["customer"])
                key = str(data["order_key"])
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": "bad_request"})
                return
            receipt = self._call(lambda: server.simulator.submit(key, lines, customer))
            if receipt is not None:
                self._send(200 if receipt.duplicate else 201, _receipt(receipt))

        # -- helpers ------------------------------------------------------------------------------

        def _signed(self, raw: bytes) -> bool:
            ok = signature_ok(server.secret, self.command, self.path, self.headers.get(TIMESTAMP_HEADER),
                              self.headers.get(SIGNATURE_HEADER), raw)
            if not ok:
                self._send(401, {"error": "bad_signature"})
            return ok

        def _call(self, fn: Any) -> Any:
            try:
                return fn()
            except ErpUnavailable as exc:
                self._send(503, {"error": "unavailable", "reason": str(exc)})
            except ErpRejected as exc:
                self._send(422, {"error": "rejected", "reason": exc.reason})
            except ErpUnknownOrder as exc:
                self._send(404, {"error": "unknown_order", "reason": str(exc)})
            except ErpTimeout:
                # Committed, but the answer never leaves: hold the line until the client has given up.
                time.sleep(server.hang_seconds)
                self.close_connection = True
            return None

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up waiting (a slow answer): the order stands, nobody hears of it.
                self.close_connection = True

    return Handler
