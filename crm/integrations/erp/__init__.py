"""The ERP behind one interface; the adapter is chosen by ``CRM_ERP_ADAPTER`` (``stub`` or ``http``).

``get_adapter(app).submit_order(...)``. Application code calls the ERP only after its own commit
(the order outbox in ``crm.orders.outbox`` does), never inside a request's transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from sqlalchemy.orm import Session

from crm.integrations.erp.http import HttpAdapter
from crm.integrations.erp.interface import (
    ERP_STATUSES,
    ErpAdapter,
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
from crm.integrations.erp.stub import ErpSimulator, StubAdapter, StubFaults, faults_from_config, simulator_settings

_ADAPTERS: dict[str, Callable[[Flask], ErpAdapter]] = {}


def register_adapter(name: str, factory: Callable[[Flask], ErpAdapter]) -> None:
    _ADAPTERS[name] = factory


def get_adapter(app: Flask) -> ErpAdapter:
    """The configured adapter, built once per app (the stub's fault hooks live on that instance)."""
    adapter: ErpAdapter | None = app.extensions.get("crm_erp_adapter")
    if adapter is None:
        name = app.config.get("CRM_ERP_ADAPTER", "stub")
        try:
            factory = _ADAPTERS[name]
        except KeyError as exc:
            raise ErpError(f"unknown CRM_ERP_ADAPTER {name!r}; known: {', '.join(sorted(_ADAPTERS))}") from exc
        adapter = app.extensions["crm_erp_adapter"] = factory(app)
    return adapter


def _crm_database_session() -> Session:
    """A fresh session like the app's own (same database, same binding), for the in-process simulator."""
    from crm.extensions import db

    return db.session.session_factory()


def _stub(app: Flask) -> ErpAdapter:
    simulator = ErpSimulator(_crm_database_session, simulator_settings(app.config), faults_from_config(app.config))
    return StubAdapter(simulator, timeout_seconds=float(app.config.get("CRM_ERP_TIMEOUT_SECONDS", 10)))


def _http(app: Flask) -> ErpAdapter:
    return HttpAdapter(app.config["CRM_ERP_HTTP_URL"], app.config["CRM_ERP_HTTP_SECRET"],
                       timeout=float(app.config.get("CRM_ERP_TIMEOUT_SECONDS", 10)),
                       retries=int(app.config.get("CRM_ERP_HTTP_RETRIES", 2)))


register_adapter("stub", _stub)
register_adapter("http", _http)

__all__ = ["ERP_STATUSES", "ErpAdapter", "ErpCustomer", "ErpError", "ErpLine", "ErpProduct", "ErpReceipt",
           "ErpRejected", "ErpSimulator", "ErpStatus", "ErpTimeout", "ErpUnavailable", "ErpUnknownOrder",
           "HttpAdapter", "StubAdapter", "StubFaults", "get_adapter", "register_adapter"]
