"""Contract tests: the same assertions against both ERP adapters.

``stub``: the in-process simulator on the CRM's database. ``http``: the signed HTTP client talking over
a real socket to the ERP server on 127.0.0.1 (a free port), which serves the simulator from its own
database. Client-side retries are off here so that both adapters see every fault once; the http
client's own retries are tested below.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from crm.extensions import db as _db
from crm.integrations.erp import (
    ErpCustomer,
    ErpError,
    ErpLine,
    ErpRejected,
    ErpSimulator,
    ErpTimeout,
    ErpUnavailable,
    ErpUnknownOrder,
    HttpAdapter,
    StubAdapter,
)
from crm.integrations.erp.erp_server import ErpServer, simulator_on
from crm.integrations.erp.http import sign, signature_ok
from crm.integrations.erp.stub import SimulatorSettings

SECRET = "contract-test-secret"
TIMEOUT = 5.0  # ordinary calls: generous, so a busy machine does not fail them
QUICK = 0.3  # the caller's patience in the timeout tests
HANG = 1.0  # how long the ERP stays silent or slow there; longer than QUICK
CUSTOMER = ErpCustomer(kind="hcp", id=7, name="Ada Lovelace", npi="1234567893", city="Boston", postal_code="02115",
                       state="MA")


@dataclass
class Erp:
    adapter: Any  # the adapter under test
    quick: Any  # the same adapter, with a short timeout
    simulator: ErpSimulator


@pytest.fixture(params=["stub", "http"])
def erp(request, db, tmp_path):
    settings = SimulatorSettings(accept_after=0, ship_after=0)
    if request.param == "stub":
        simulator = ErpSimulator(lambda: _db.session.session_factory(), settings)
        yield Erp(StubAdapter(simulator, timeout_seconds=TIMEOUT), StubAdapter(simulator, timeout_seconds=QUICK),
                  simulator)
        return
    simulator = simulator_on(f"sqlite:///{tmp_path / 'erp.sqlite3'}", settings)
    with ErpServer(simulator, SECRET, hang_seconds=HANG) as server:
        yield Erp(HttpAdapter(server.url, SECRET, timeout=TIMEOUT, retries=0),
                  HttpAdapter(server.url, SECRET, timeout=QUICK, retries=0), simulator)


def _key(name: str) -> str:
    return f"contract-{name}-{time.monotonic_ns()}"


def test_catalogue_lists_every_product_with_price_and_orderability(erp):
    products = {p.sku: p for p in erp.adapter.catalogue()}
    assert products["CARD-10"].price == Decimal("42.50") and products["CARD-10"].currency == "USD"
    assert products["CARD-10"].active and products["CARD-10"].orderable
    assert products["CARD-S"].orderable is False and products["CARD-S"].price is None
    assert products["NEURO-2"].active is False


def test_an_order_is_received_once_per_order_key(erp):
    key = _key("once")
    first = erp.adapter.submit_order(key, [ErpLine("CARD-10", 3)], CUSTOMER)
    assert first.status == "received" and not first.duplicate and first.erp_order_id.startswith("SO-")
    again = erp.adapter.submit_order(key, [ErpLine("CARD-10", 3)], CUSTOMER)
    assert again.duplicate and again.erp_order_id == first.erp_order_id
    assert erp.simulator.order_count(key) == 1


@pytest.mark.parametrize("sku, words", [("NOPE-9", "Unknown sku"), ("NEURO-2", "no longer sold"),
                                        ("CARD-S", "sample-only")])
def test_unknown_inactive_and_sample_only_skus_are_rejected_every_time(erp, sku, words):
    key = _key("rejected")
    with pytest.raises(ErpRejected) as first:
        erp.adapter.submit_order(key, [ErpLine("CARD-10", 1), ErpLine(sku, 1)], CUSTOMER)
    assert words in first.value.reason
    with pytest.raises(ErpRejected):
        erp.adapter.submit_order(key, [ErpLine("CARD-10", 1), ErpLine(sku, 1)], CUSTOMER)
    assert erp.simulator.order_count(key) == 1
    assert erp.adapter.order_status(key).status == "rejected"


def test_status_walks_from_received_to_accepted_to_shipped(erp):
    key = _key("walk")
    erp.adapter.submit_order(key, [ErpLine("CARD-20", 2)], CUSTOMER)
    walk = [erp.adapter.order_status(key).status for _ in range(3)]
    assert walk == ["accepted", "shipped", "shipped"]
    status = erp.adapter.order_status(key)
    assert status.order_key == key and status.updated_at is not None and status.updated_at.tzinfo is not None


def test_short_stock_backorders_until_it_is_restocked(erp):
    key = _key("short")
    erp.adapter.submit_order(key, [ErpLine("ONCO-100", 11)], CUSTOMER)  # 10 on hand
    status = erp.adapter.order_status(key)
    assert status.status == "backordered" and "ONCO-100 (ordered 11, on hand 10)" in status.reason
    assert erp.adapter.order_status(key).status == "backordered"
    erp.simulator.set_stock("ONCO-100", 11)
    assert erp.adapter.order_status(key).status == "accepted"


def test_unknown_order_key(erp):
    with pytest.raises(ErpUnknownOrder):
        erp.adapter.order_status(_key("never-sent"))


def test_down_for_the_next_calls_then_up(erp):
    erp.simulator.faults.down(2)
    with pytest.raises(ErpUnavailable):
        erp.adapter.catalogue()
    key = _key("down")
    with pytest.raises(ErpUnavailable):
        erp.adapter.submit_order(key, [ErpLine("CARD-10", 1)], CUSTOMER)
    assert erp.simulator.order_count(key) == 0
    assert erp.adapter.submit_order(key, [ErpLine("CARD-10", 1)], CUSTOMER).status == "received"


def test_timeout_after_commit_then_the_retry_finds_the_order(erp):
    key = _key("timeout")
    erp.simulator.faults.time_out_after_commit(1)
    with pytest.raises(ErpTimeout):
        erp.quick.submit_order(key, [ErpLine("CARD-10", 1)], CUSTOMER)
    assert erp.simulator.order_count(key) == 1  # committed before the answer was lost
    retry = erp.adapter.submit_order(key, [ErpLine("CARD-10", 1)], CUSTOMER)
    assert retry.duplicate
    assert erp.simulator.order_count(key) == 1


def test_a_slow_erp_times_out_and_a_retry_still_makes_one_order(erp):
    key = _key("slow")
    erp.simulator.faults.slow(HANG)
    with pytest.raises(ErpTimeout):
        erp.quick.submit_order(key, [ErpLine("CARD-10", 1)], CUSTOMER)
    erp.simulator.faults.slow(0)
    erp.adapter.submit_order(key, [ErpLine("CARD-10", 1)], CUSTOMER)
    # the slow call may still land in the ERP after we gave up: it finds the order and adds nothing
    time.sleep(HANG)
    assert erp.simulator.order_count(key) == 1


def test_a_little_slowness_within_the_timeout_is_fine(erp):
    erp.simulator.faults.slow(0.01)
    assert erp.adapter.submit_order(_key("bit-slow"), [ErpLine("CARD-10", 1)], CUSTOMER).status == "received"


# -- the http adapter's own behaviour ----------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    simulator = simulator_on(f"sqlite:///{tmp_path / 'erp.sqlite3'}", SimulatorSettings())
    with ErpServer(simulator, SECRET, hang_seconds=HANG) as srv:
        yield srv


def test_the_http_client_retries_transient_failures_itself(server):
    server.simulator.faults.down(1)
    client = HttpAdapter(server.url, SECRET, timeout=TIMEOUT, retries=1, retry_pause=0.01)
    key = _key("client-retry")
    assert client.submit_order(key, [ErpLine("CARD-10", 1)], CUSTOMER).status == "received"
    server.simulator.faults.time_out_after_commit(1)
    key2 = _key("client-retry-timeout")
    impatient = HttpAdapter(server.url, SECRET, timeout=QUICK, retries=1, retry_pause=0.01)
    receipt = impatient.submit_order(key2, [ErpLine("CARD-10", 1)], CUSTOMER)
    assert receipt.duplicate  # the first try committed and timed out; the second found it
    assert server.simulator.order_count(key2) == 1


def test_the_server_refuses_unsigned_and_badly_signed_requests(server):
    wrong = HttpAdapter(server.url, "not-the-secret", timeout=TIMEOUT, retries=0)
    with pytest.raises(ErpError) as info:
        wrong.catalogue()
    assert "signature" in str(info.value) and not isinstance(info.value, ErpUnavailable)
    assert server.simulator.order_count() == 0


def test_signatures_cover_method_path_time_and_body():
    now = time.time()
    ts = str(int(now))
    good = sign(SECRET, "POST", "/orders", ts, b'{"a":1}')
    assert signature_ok(SECRET, "POST", "/orders", ts, good, b'{"a":1}', now=now)
    assert not signature_ok(SECRET, "POST", "/orders", ts, good, b'{"a":2}', now=now)
    assert not signature_ok(SECRET, "GET", "/orders", ts, good, b'{"a":1}', now=now)
    assert not signature_ok(SECRET, "POST", "/catalogue", ts, good, b'{"a":1}', now=now)
    assert not signature_ok(SECRET, "POST", "/orders", ts, good, b'{"a":1}', now=now + 301)  # replayed later
    assert not signature_ok(SECRET, "POST", "/orders", None, good, b'{"a":1}', now=now)
    assert not signature_ok(SECRET, "POST", "/orders", "soon", good, b'{"a":1}', now=now)
    assert not signature_ok("", "POST", "/orders", ts, good, b'{"a":1}', now=now)


def test_an_erp_that_cannot_be_reached_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = HttpAdapter(f"http://127.0.0.1:{port}", SECRET, timeout=TIMEOUT, retries=0)
    with pytest.raises(ErpUnavailable):
        client.catalogue()


def test_the_http_adapter_wants_an_http_url():
    with pytest.raises(ValueError):
        HttpAdapter("ftp://erp.example", SECRET)
