"""A rep's submitted visit, run through the guardrails (the listener fires on submit)."""

from __future__ import annotations

from typing import Any

from crm.visits import services as visits
from tests.visits_support import make_world, visit_data


def submit_rep_visit(db: Any, factory: Any, notes: str) -> Any:
    world = make_world(db, factory)
    viewer = world.viewer(world.rep)
    visit = visits.create_visit(db, world.rep, viewer, visit_data(world.hcp.id, notes=notes))
    world.visit = visits.submit_visit(db, world.rep, viewer, visit)
    return world
