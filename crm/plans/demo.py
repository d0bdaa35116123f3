"""Demo data for segments and engagement plans: three segments and a plan for the current quarter, so the
rep's start page shows "my plan" with progress. Idempotent: segments and plans are found by name.

``crm.demo`` calls ``load_plan_demo(session, users, now)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from crm.auth.services import viewer_for
from crm.db import DbSession
from crm.hcps.models import HCP
from crm.plans.models import EngagementPlan
from crm.plans.services import create_plan, current_quarter
from crm.segments.models import Segment
from crm.segments.services import create_segment

MARKETER = "marketer@demo.example"
SEGMENTS = [
    {"name": "Priority HCPs (tiers A and B)", "description": "Where the field force spends most of its time",
     "tiers": ["A", "B"]},
    {"name": "Tier A cardiologists", "description": "Key accounts for Cardiozol", "specialties": ["Cardiology"],
     "tiers": ["A"]},
    {"name": "Key opinion leaders", "description": "Tagged kol", "tags": ["kol"]},
]
# The demo's HCPs get a tier by their position: a fifth A, two fifths B, two fifths C.
TIER_CYCLE = ("A", "B", "B", "C", "C")


def demo_tier(index: int) -> str:
    return TIER_CYCLE[index % len(TIER_CYCLE)]


def load_plan_demo(session: DbSession, users: Mapping[str, Any], now: datetime) -> dict[str, int]:
    marketer = users[MARKETER]
    viewer = viewer_for(session, marketer)
    counts = {"segments": 0, "plans": 0}
    segments = {}
    for spec in SEGMENTS:
        segment = session.scalar(select(Segment).where(Segment.name == spec["name"]))
        if segment is None:
            segment = create_segment(session, marketer, viewer, spec)
            counts["segments"] += 1
        segments[spec["name"]] = segment
    start, end = current_quarter(now.date())
    quarter = f"Q{(start.month - 1) // 3 + 1} {start.year}"
    name = f"{quarter}: priority HCPs"
    if session.scalar(select(EngagementPlan.id).where(EngagementPlan.name == name)) is None:
        # The three A-tier HCPs that come first get a goal of their own: one more visit each.
        targets = list(session.scalars(select(HCP.id).where(HCP.tier == "A", HCP.status == "active")
                                       .order_by(HCP.id).limit(3)))
        create_plan(session, marketer, viewer, {
            "name": name, "cycle_start": start, "cycle_end": end,
            "segment_id": segments["Priority HCPs (tiers A and B)"].id, "territory_codes": [],
            "channel_goals": {"visit": 2, "email": 2, "event": 1},
            "product_goals": [{"sku": "CARD-10", "channel": "visit", "touches": 1}],
            "targets": [{"hcp_id": h, "goals": {"visit": 3}} for h in targets],
        })
        counts["plans"] += 1
    kol_name = f"{quarter}: key opinion leaders in the North-East"
    if session.scalar(select(EngagementPlan.id).where(EngagementPlan.name == kol_name)) is None:
        create_plan(session, marketer, viewer, {
            "name": kol_name, "cycle_start": start, "cycle_end": end,
            "segment_id": segments["Key opinion leaders"].id, "territory_codes": ["NE-01"],
            "channel_goals": {"visit": 3, "event": 1, "call_centre": 1}, "product_goals": [], "targets": [],
        })
        counts["plans"] += 1
    return counts
