"""Shared setup for the order tests: territories, HCPs, an HCO, the catalogue pulled from the ERP stub."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from flask import Flask

from crm.auth.services import viewer_for
from crm.hcps.models import HCO, Affiliation
from crm.integrations.erp import get_adapter
from crm.integrations.erp.stub import StubAdapter
from crm.products.services import sync_catalogue


def stub(app: Flask) -> StubAdapter:
    adapter = get_adapter(app)
    assert isinstance(adapter, StubAdapter)
    return adapter


class OrderWorld:
    """Two territories, HCPs in each, a pharmacy with a pharmacist, the stub's catalogue synced into the
    CRM; users only when a test asks for them (password hashing is slow)."""

    _ROLES = {"rep": ("field_rep", "north"), "rep2": ("field_rep", "north"), "rep_south": ("field_rep", "south"),
              "marketer": ("marketer", None), "call_centre": ("call_centre", None), "medical": ("medical", None),
              "compliance": ("compliance", None), "admin": ("admin", None)}

    def __init__(self, db: Any, factory: Any, app: Flask) -> None:
        self.db, self.factory, self.app = db, factory, app
        self.north, self.south = factory.territory(), factory.territory()
        self.hcp, self.hcp_south = factory.hcp(self.north), factory.hcp(self.south)
        self.pharmacist = factory.hcp(self.north, profession="pharmacist")
        self.pharmacy = HCO(name="Harbor Community Pharmacy", kind="pharmacy", city="Boston",
                            territory_id=self.north.id)
        db.add(self.pharmacy)
        db.flush()
        db.add(Affiliation(hcp_id=self.pharmacist.id, hco_id=self.pharmacy.id, role="pharmacist"))
        db.flush()
        self.catalogue = sync_catalogue(db, None, stub(app))
        self._users: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in self._ROLES:
            raise AttributeError(name)
        if name not in self._users:
            role, territory = self._ROLES[name]
            self._users[name] = self.factory.user(role, territories=[getattr(self, territory)] if territory else [])
        return self._users[name]

    def viewer(self, user: Any) -> Any:
        return viewer_for(self.db, user)


def signed(secret: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A callback body and its headers, signed the way an ERP signs it."""
    body = json.dumps(payload).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-ERP-Signature": f"sha256={signature}"}


def timeline_kinds(api_client: Any, hcp_id: int) -> list[str]:
    """The order kinds on an HCP's timeline, oldest first."""
    resp = api_client.get(f"/api/v1/hcps/{hcp_id}/timeline?channel=order")
    assert resp.status_code == 200, resp.get_json()
    return [item["kind"] for item in reversed(resp.get_json()["items"])]
