"""Shared setup for the visit tests: two territories, a user per role, HCPs, products, a signature."""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from crm.auth.services import viewer_for
from crm.products.models import Product, SampleLot


def png(width: int, height: int, pixel: Callable[[int, int], tuple[int, ...]], colour: int = 6,
        filter_type: int = 0) -> bytes:
    """A PNG (8-bit, not interlaced) of ``pixel(x, y)`` values in colour type ``colour``."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(bytes([filter_type]) + bytes(v for x in range(width) for v in pixel(x, y))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def drawn(x: int, y: int) -> tuple[int, int, int, int]:
    """A dark-blue wavy stroke, 3 px thick, on a transparent pad: what a signature looks like."""
    on_stroke = abs(y - (20 + 10 * math.sin(x / 9))) <= 1.5 and 10 <= x < 150
    return (20, 30, 90, 255) if on_stroke else (0, 0, 0, 0)


def data_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


SIGNED_PNG = png(160, 40, drawn)
SIGNATURE = data_url(SIGNED_PNG)
# Another signature (a second signing replaces the first).
SIGNATURE_2 = data_url(png(160, 40, lambda x, y: drawn(x, y + 3)))
BLANK_SIGNATURE = data_url(png(160, 40, lambda x, y: (0, 0, 0, 0)))
# Lots the visit tests give samples from: good until long after the visits they are used in.
LOTS = ("LOT-7", "LOT-42", "L1", "L9", "A", "Z", "x")
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
            db.add(Product(sku=sku, name=name, active=active, is_sample=True))
        db.add(Product(sku="PROMO-1", name="Not a sample", is_sample=False))
        db.flush()
        self.products = {p.sku: p for p in db.scalars(select(Product))}
        for sku in ("CARDIO-10", "CARDIO-20"):
            db.add_all(SampleLot(product_id=self.products[sku].id, lot_number=lot, expires_on=date(2099, 12, 31))
                       for lot in LOTS)
        db.flush()
        self.hcp, self.hcp2, self.hcp_south = factory.hcp(self.north), factory.hcp(self.north), factory.hcp(self.south)
        self._users: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in self._ROLES:
            raise AttributeError(name)
        if name not in self._users:
            role, territory = self._ROLES[name]
            self._users[name] = self.factory.user(role, territories=[getattr(self, territory)] if territory else [])
            if role == "field_rep":
                stock(self.db, self._users[name])
        return self._users[name]

    def viewer(self, user: Any) -> Any:
        return viewer_for(self.db, user)


STOCK = 1000  # units of every lot a rep of the visit tests carries (sample accountability, issue 14)


def stock(db: Any, user: Any, units: int = STOCK, lots: Any = None) -> None:
    """Put ``units`` of every sample lot (or of ``lots``) in ``user``'s inventory, as a received movement, so
    submitting visits with samples has units to disburse."""
    from crm.samples.models import SampleInventory, SampleMovement

    for lot in lots if lots is not None else db.scalars(select(SampleLot)):
        db.add(SampleInventory(user_id=user.id, lot_id=lot.id, quantity=units))
        db.add(SampleMovement(user_id=user.id, lot_id=lot.id, kind="received", quantity=units))
    db.flush()


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
