"""Engagement plans: a marketer writes them; everyone reads them, a field rep those of own territories.

Rules (issue 12 item 2):
- A plan has a cycle (first and last day, inclusive), a scope (a segment and/or territories), goals per
  HCP per channel (``crm.insights.kpis.PLAN_CHANNELS``), optional goals per product and a target list of
  HCPs with goals of their own. Scope or target list: at least one; a goal: at least one.
- The plan's HCPs are those in the scope (the segment's HCPs, in the territories when both are given;
  active HCPs only) plus the target list.
- Attainment is computed from the timeline when it is read (``crm.plans.attainment``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from crm.access.policy import Viewer, require_plan_read, require_write
from crm.audit import services as audit
from crm.db import DbSession, utcnow
from crm.errors import Invalid, NotFound
from crm.hcps.models import HCP, Territory
from crm.insights.kpis import PLAN_CHANNELS
from crm.plans.models import EngagementPlan, PlanTarget, PlanTerritory
from crm.products.models import Product
from crm.schemas import decode_cursor, encode_cursor
from crm.segments.models import Segment

MAX_CYCLE_DAYS = 731  # two years: a cycle is a quarter, a half or a year


def get_plan(session: DbSession, plan_id: int) -> EngagementPlan:
    plan = session.get(EngagementPlan, plan_id)
    if plan is None:
        raise NotFound(f"Engagement plan {plan_id} does not exist.")
    return plan


def plan_territory_ids(plan: EngagementPlan) -> list[int]:
    return [t.territory_id for t in plan.territories]


def read_plan(session: DbSession, viewer: Viewer, plan_id: int) -> EngagementPlan:
    """The plan, if ``viewer`` may read it (a field rep: a plan of own territories); else 403 with the rule."""
    plan = get_plan(session, plan_id)
    require_plan_read(viewer, plan_territory_ids(plan))
    return plan


def _goals(raw: dict[str, Any] | None) -> dict[str, int]:
    """Goals in channel order, zeros left out."""
    raw = raw or {}
    return {c: int(raw[c]) for c in PLAN_CHANNELS if int(raw.get(c) or 0) > 0}


def create_plan(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> EngagementPlan:
    """Save an engagement plan (marketer); see the module's rules. Every problem is reported at once (422)."""
    require_write(viewer, "plan.write")
    errors: dict[str, list[str]] = {}
    name = (data.get("name") or "").strip()
    if not name:
        errors["name"] = ["must not be empty"]
    start, end = data["cycle_start"], data["cycle_end"]
    if end < start:
        errors["cycle_end"] = ["must not be before cycle_start"]
    elif (end - start).days + 1 > MAX_CYCLE_DAYS:
        errors["cycle_end"] = [f"a cycle lasts at most {MAX_CYCLE_DAYS} days"]
    segment_id = data.get("segment_id")
    if segment_id is not None and session.get(Segment, segment_id) is None:
        errors["segment_id"] = [f"no segment with id {segment_id}"]
    codes = list(dict.fromkeys(c.strip() for c in data.get("territory_codes") or [] if c.strip()))
    territories = list(session.scalars(select(Territory).where(Territory.code.in_(codes)))) if codes else []
    unknown = sorted(set(codes) - {t.code for t in territories})
    if unknown:
        errors["territory_codes"] = [f"unknown territory code(s) {', '.join(unknown)}"]
    channel_goals = _goals(data.get("channel_goals"))
    product_goals = []
    seen_products = set()
    for goal in data.get("product_goals") or []:
        key = (goal["sku"].strip(), goal["channel"])
        if key in seen_products:
            errors.setdefault("product_goals", []).append(f"{key[0]} on {key[1]} is listed twice")
        seen_products.add(key)
        product_goals.append({"sku": key[0], "channel": key[1], "touches": int(goal["touches"])})
    skus = sorted({g["sku"] for g in product_goals})
    if skus:
        known = set(session.scalars(select(Product.sku).where(Product.sku.in_(skus))))
        missing = [s for s in skus if s not in known]
        if missing:
            errors.setdefault("product_goals", []).append(f"unknown product(s): {', '.join(missing)}")
    targets: dict[int, dict[str, int]] = {}
    for target in data.get("targets") or []:
        if target["hcp_id"] in targets:
            errors.setdefault("targets", []).append(f"HCP {target['hcp_id']} is listed twice")
        targets[target["hcp_id"]] = _goals(target.get("goals"))
    if targets:
        known_ids = set(session.scalars(select(HCP.id).where(HCP.id.in_(list(targets)))))
        missing_ids = [str(i) for i in targets if i not in known_ids]
        if missing_ids:
            errors.setdefault("targets", []).append(f"no HCP with id {', '.join(missing_ids[:20])}")
    if segment_id is None and not codes and not targets:
        errors["scope"] = ["give a segment, territories or a target list (or several)"]
    if not channel_goals and not product_goals and not any(targets.values()):
        errors["channel_goals"] = ["set at least one goal (touches per HCP on a channel)"]
    if errors:
        raise Invalid("The engagement plan cannot be saved.", errors=errors)
    plan = EngagementPlan(name=name[:200], cycle_start=start, cycle_end=end, segment_id=segment_id,
                          channel_goals=channel_goals, product_goals=product_goals, created_by_id=actor.id)
    plan.territories = [PlanTerritory(territory_id=t.id) for t in territories]
    plan.targets = [PlanTarget(hcp_id=h, goals=g) for h, g in targets.items()]
    session.add(plan)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # an HCP or segment deleted meanwhile: say so, not 500
        raise Invalid("A segment, territory or HCP of the plan no longer exists.") from exc
    audit.record(session, actor, "plan.create", "engagement_plan", plan.id, audit.created({
        "name": plan.name, "cycle_start": start.isoformat(), "cycle_end": end.isoformat(),
        "segment_id": segment_id, "territory_codes": sorted(t.code for t in territories),
        "channel_goals": channel_goals, "product_goals": product_goals,
        "targets": len(targets),
    }))
    return plan


def readable_plans_query(viewer: Viewer) -> Any:
    """Plans ``viewer`` may read, as a select of ``EngagementPlan`` (the policy's rule, in SQL)."""
    query = select(EngagementPlan)
    if viewer.role == "field_rep":
        scoped = exists().where(PlanTerritory.plan_id == EngagementPlan.id)
        mine = exists().where(PlanTerritory.plan_id == EngagementPlan.id,
                              PlanTerritory.territory_id.in_(sorted(viewer.territory_ids) or [-1]))
        query = query.where(~scoped | mine)
    return query


def readable_plan_ids(session: DbSession, viewer: Viewer, plan_ids: Sequence[int]) -> set[int]:
    """Which of ``plan_ids`` ``viewer`` may read (``readable_plans_query``'s rule), in one statement."""
    if not plan_ids:
        return set()
    return set(session.scalars(readable_plans_query(viewer).with_only_columns(EngagementPlan.id)
                               .where(EngagementPlan.id.in_(list(plan_ids)))))


def list_plans(session: DbSession, viewer: Viewer, *, limit: int = 50, cursor: str | None = None,
               current: bool = False, today: date | None = None) -> tuple[list[EngagementPlan], str | None]:
    """Plans the viewer may read, newest first; ``current``: only those whose cycle includes today."""
    query = readable_plans_query(viewer)
    if current:
        today = today or utcnow().date()
        query = query.where(EngagementPlan.cycle_start <= today, EngagementPlan.cycle_end >= today)
    if cursor:
        (last_id,) = decode_cursor(cursor, (int,))
        query = query.where(EngagementPlan.id < last_id)
    rows = list(session.scalars(query.order_by(EngagementPlan.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)


def plan_dict(plan: EngagementPlan, glossary_url: str = "/glossary#term-engagement-plan") -> dict[str, Any]:
    user = plan.created_by
    return {
        "id": plan.id, "name": plan.name, "cycle_start": plan.cycle_start, "cycle_end": plan.cycle_end,
        "segment": None if plan.segment is None else {"id": plan.segment.id, "name": plan.segment.name},
        "territories": sorted(({"code": t.territory.code, "name": t.territory.name} for t in plan.territories),
                              key=lambda t: t["code"]),
        "channel_goals": _goals(plan.channel_goals),
        "product_goals": list(plan.product_goals or []),
        "targets": [{"hcp_id": t.hcp_id, "goals": _goals(t.goals)} for t in sorted(plan.targets,
                                                                                    key=lambda t: t.hcp_id)],
        "created_by": None if user is None else {"id": user.id, "name": user.name, "role": user.role},
        "created_at": plan.created_at,
        "glossary_url": glossary_url,
    }


def current_quarter(today: date) -> tuple[date, date]:
    """The calendar quarter holding ``today``: (first day, last day)."""
    first_month = 3 * ((today.month - 1) // 3) + 1
    start = date(today.year, first_month, 1)
    end = (date(today.year + (first_month == 10), (first_month + 3 - 1) % 12 + 1, 1) - timedelta(days=1))
    return start, end
