"""Shared setup for the visit tests: two territories, a user per role, HCPs, products, a signature."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from crm.auth.services import viewer_for
from crm.products.models import Product

# A real 1x1 PNG: what a signature pad produces, only smaller.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
SIGNATURE = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()
WHEN = datetime(2026, 1, 12, 9, 30, tzinfo=UTC)


class World:
    """Territories, HCPs and products at once; users only when a test asks for them (hashing is slow)."""

    _ROLES = {"rep": ("field_rep", "north"), "rep2": ("field_rep", "north"), "rep_south": ("field_rep", "south"),
              "marketer": ("marketer", None), "call_centre": ("call_centre", None), "medical": ("medical", None),
              "medical2": ("medical", None), "compliance": ("compliance", None), "admin": ("admin", None)}

    def __init__(self, db: Any, factory: Any) -> None:
        self.db, self.factory = db, factory
        self.north, self.south = factory.territory(), factory.territory()
        for sku, name, active in (("CARDIO-10", "Cardiozen 10 mg", True), ("CARDIO-20", "Cardiozen 20 mg", True),
                                  ("OLD-1", "Retired product", False)):
            db.add(Product(sku=sku, name=name, active=active))
        db.flush()
        self.hcp, self.hcp2, self.hcp_south = factory.hcp(self.north), factory.hcp(self.north), factory.hcp(self.south)
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


def make_world(db: Any, factory: Any) -> World:
    return World(db, factory)


def visit_data(hcp_id: int, **kw: Any) -> dict[str, Any]:
    """A create payload as the schema loads it (aware datetime, parsed follow-up date)."""
    data: dict[str, Any] = {
        "hcp_id": hcp_id, "occurred_at": WHEN, "duration_minutes": 20, "mode": "in_person",
        "products": ["CARDIO-10"], "key_messages": ["Once daily dosing"], "samples": [], "notes": "Asked about dosing",
        "follow_up": None, "attendee_hcp_ids": [],
    }
    data.update(kw)
    return data


def visit_json(hcp_id: int, **kw: Any) -> dict[str, Any]:
    """A create body as a client sends it."""
    data: dict[str, Any] = {
        "hcp_id": hcp_id, "occurred_at": "2026-01-12T10:30:00+01:00", "duration_minutes": 20, "mode": "in_person",
        "products": ["CARDIO-10"], "key_messages": ["Once daily dosing"], "samples": [],
        "notes": "Asked about dosing", "follow_up": {"date": "2026-02-01", "text": "Bring the study"},
    }
    data.update(kw)
    return data
