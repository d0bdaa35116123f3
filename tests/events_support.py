"""Helpers shared by the events and call-centre tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crm.access.policy import Viewer
from crm.db import utcnow
from crm.events import services as events


def viewer_of(user: Any, territory_ids: frozenset[int] = frozenset()) -> Viewer:
    return Viewer(user.id, user.role, territory_ids)


def make_event(db: Any, user: Any, **overrides: Any) -> Any:
    start = overrides.pop("starts_at", utcnow() - timedelta(days=2))
    data: dict[str, Any] = {
        "name": "Cardiology Update 2026", "type": "congress", "starts_at": start,
        "ends_at": overrides.pop("ends_at", start + timedelta(hours=8)), "venue": "Hilton Chicago",
        "url": None, "products": ["CARDIO-10"], "organiser": "Medical Education", "sensitivity": "standard",
        "country": "US",
    }
    data.update(overrides)
    event, _ = events.create_event(db, user, viewer_of(user), data)
    return event


def event_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Heart Failure Round Table", "type": "round_table", "starts_at": "2026-03-10T17:00:00Z",
        "ends_at": "2026-03-10T19:30:00+00:00", "venue": "Palmer House, Chicago", "products": ["CARDIO-10"],
        "organiser": "Marketing Cardio",
    }
    body.update(overrides)
    return body
