"""Demo data for planned visits: the next working week of each demo rep, three visits a day for HCPs of their
territories, one of them rescheduled and one cancelled, so the calendar, the team week and planned vs done
have something to show. Idempotent: a rep who already has plans from now on gets none.

``crm.demo`` calls ``load_visit_plan_demo(session, users, now)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from crm.auth.services import viewer_for
from crm.db import DbSession
from crm.hcps.models import HCP
from crm.visit_plans.models import VisitPlan
from crm.visit_plans.services import cancel_plan, create_plan, plan_zone, update_plan

REPS = ("rep.north@demo.example", "rep.west@demo.example")
SLOTS = ((time(9, 0), 30), (time(11, 0), 45), (time(14, 30), 30))
OBJECTIVES = ("Follow up on the outcomes data", "Introduce the patient support programme",
              "Check stock of starter samples", "")


def load_visit_plan_demo(session: DbSession, users: Mapping[str, Any], now: datetime) -> dict[str, int]:
    made = 0
    for email in REPS:
        rep = users.get(email)
        if rep is None or session.scalar(select(VisitPlan.id).where(VisitPlan.owner_id == rep.id,
                                                                    VisitPlan.planned_start >= now).limit(1)):
            continue
        viewer = viewer_for(session, rep)
        hcps = list(session.scalars(select(HCP).where(HCP.territory_id.in_(sorted(viewer.territory_ids)),
                                                      HCP.status == "active").order_by(HCP.id).limit(15)))
        if not hcps:
            continue
        plans: list[VisitPlan] = []
        day = now.astimezone(plan_zone()).date() + timedelta(days=1)
        while len(plans) < 5 * len(SLOTS):
            if day.weekday() < 5:
                for at, minutes in SLOTS:
                    start = datetime.combine(day, at, tzinfo=plan_zone())
                    n = len(plans)
                    plans.append(create_plan(session, rep, viewer, {
                        "hcp_id": hcps[n % len(hcps)].id, "planned_start": start,
                        "planned_end": start + timedelta(minutes=minutes),
                        "mode": "remote" if n % 5 == 4 else "in_person", "objective": OBJECTIVES[n % len(OBJECTIVES)],
                        "products": ["CARD-10"] if n % 2 == 0 else []}))
            day += timedelta(days=1)
        update_plan(session, rep, viewer, plans[1], {
            "planned_start": plans[1].planned_start + timedelta(hours=5),
            "reason": "The HCP asked for the afternoon"})
        cancel_plan(session, rep, viewer, plans[4], "The practice is closed for training")
        made += len(plans)
    return {"visit_plans": made}
