"""Attainment of an engagement plan, computed from the timeline when it is read (issue 12 item 2).

Three grouped queries over the timeline, whatever the plan's size: touches per (HCP, channel, owner),
touches per (HCP, channel, product) when the plan has product goals, and the plan's HCPs. What counts as
a touch is the one table in ``crm.insights.kpis.TOUCHES``; a corrected item counts once (only items not
superseded are read); restricted (medical, pv) items count, and only their number ever leaves here.
Everything else (per channel, product, territory, rep and HCP; reach and frequency) is arithmetic on
those rows. The KPIs are defined in ``crm.insights.kpis.KPIS``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select

from crm.auth.models import User
from crm.db import DbSession, utcnow
from crm.hcps.models import HCP, Territory
from crm.insights.kpis import CHANNEL_LABELS, PLAN_CHANNELS, TOUCHES
from crm.plans.models import EngagementPlan, PlanTarget
from crm.segments.filters import current_hcps
from crm.segments.services import segment_where
from crm.timeline.models import Interaction, InteractionParticipant, InteractionProduct

NO_TERRITORY = "No territory"


def touch_condition(table: Any = Interaction) -> Any:
    """The touch table as one SQL condition on ``table``'s ``channel`` and ``kind``: ``Interaction``, or
    ``InteractionParticipant``, which carries its item's (never changed) channel and kind."""
    return or_(*[and_(table.channel == t.channel, table.kind.in_(t.kinds)) for t in TOUCHES])


def period_touches(since: datetime, until: datetime) -> tuple[Any, ...]:
    """The touches in [since, until) as conditions on ``InteractionParticipant`` alone (one row per HCP
    touched): the touch table on the participant's copy of its item's channel and kind, and the item is
    the latest version (the few corrected items of the period are left out by id, read from their partial
    index). Equal to joining each participant to its item and testing the item; without reading every item."""
    p, i = InteractionParticipant, Interaction
    corrected = select(i.id).where(i.superseded_by_id.is_not(None), i.occurred_at >= since, i.occurred_at < until)
    return (p.occurred_at >= since, p.occurred_at < until, touch_condition(p),
            p.interaction_id.not_in(corrected))


def cycle_window(plan: EngagementPlan) -> tuple[datetime, datetime]:
    """[first instant, end) of the cycle in UTC: the last day is included."""
    start = datetime.combine(plan.cycle_start, time.min, tzinfo=UTC)
    return start, datetime.combine(plan.cycle_end + timedelta(days=1), time.min, tzinfo=UTC)


def population_where(plan: EngagementPlan, territory_ids: Iterable[int] | None = None) -> Any:
    """The plan's HCPs as a condition on ``HCP``: the scope's active HCPs, plus the target list; with
    ``territory_ids``, only those of them in these territories."""
    scope: list[Any] = []
    if plan.segment is not None:
        where = segment_where(plan.segment)
        if where is not None:
            scope.append(where)
    if plan.territories:
        scope.append(HCP.territory_id.in_([t.territory_id for t in plan.territories]))
    targets = HCP.id.in_(select(PlanTarget.hcp_id).where(PlanTarget.plan_id == plan.id).scalar_subquery())
    where = or_(and_(current_hcps(), *scope), targets) if scope else targets
    if territory_ids is not None:
        where = and_(where, HCP.territory_id.in_(sorted(territory_ids) or [-1]))
    return where


def elapsed_share(plan: EngagementPlan, now: datetime) -> float:
    start, end = cycle_window(plan)
    share = (now - start) / (end - start)
    return min(max(share, 0.0), 1.0)


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


@dataclass
class _Tally:
    """Planned, touches, attained, and the HCPs touched, for any breakdown."""

    planned: int = 0
    touches: int = 0
    attained: int = 0
    reached: set[int] = field(default_factory=set)

    def add(self, hcp_id: int, goal: int, touches: int) -> None:
        self.planned += goal
        self.touches += touches
        self.attained += min(touches, goal)
        if touches:
            self.reached.add(hcp_id)

    def out(self) -> dict[str, Any]:
        reach = len(self.reached)
        return {"planned": self.planned, "touches": self.touches, "attained": self.attained,
                "attainment_pct": _pct(self.attained, self.planned), "reach": reach,
                "frequency": round(self.touches / reach, 2) if reach else 0.0}


def attainment(session: DbSession, plan: EngagementPlan, *, territory_ids: Iterable[int] | None = None,
               hcp_limit: int = 200, now: datetime | None = None) -> dict[str, Any]:
    """Plan vs actual: totals, per channel, per product goal, per territory (with its channels, for a
    side-by-side view), per owner of the touches (rep), and per HCP (those behind plan first)."""
    now = now or utcnow()
    start, end = cycle_window(plan)
    elapsed = elapsed_share(plan, now)
    wanted = None if territory_ids is None else sorted(set(territory_ids))
    population = population_where(plan, wanted)
    hcps = session.execute(
        select(HCP.id, HCP.first_name, HCP.last_name, HCP.tier, HCP.territory_id).where(population)
    ).all()
    in_plan = select(HCP.id).where(population).scalar_subquery()
    p, i = InteractionParticipant, Interaction
    window = (p.occurred_at >= start, p.occurred_at < end, i.superseded_by_id.is_(None), touch_condition(),
              p.hcp_id.in_(in_plan))
    per_owner = session.execute(
        select(p.hcp_id, i.channel, i.owner_id, func.count())
        .select_from(p).join(i, i.id == p.interaction_id).where(*window)
        .group_by(p.hcp_id, i.channel, i.owner_id)
    ).all()
    product_goals = [g for g in plan.product_goals or [] if g.get("channel") in PLAN_CHANNELS]
    per_product: dict[tuple[int, str, str], int] = {}
    if product_goals:
        skus = sorted({g["sku"] for g in product_goals})
        for hcp_id, channel, sku, n in session.execute(
                select(p.hcp_id, i.channel, InteractionProduct.sku, func.count())
                .select_from(p).join(i, i.id == p.interaction_id)
                .join(InteractionProduct, InteractionProduct.interaction_id == i.id)
                .where(*window, InteractionProduct.sku.in_(skus))
                .group_by(p.hcp_id, i.channel, InteractionProduct.sku)):
            per_product[(hcp_id, channel, sku)] = int(n)

    touches: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_owner: dict[int | None, dict[str, Any]] = {}
    for hcp_id, channel, owner_id, n in per_owner:
        touches[hcp_id][channel] += int(n)
        row = by_owner.setdefault(owner_id, {"touches": 0, "reached": set(), "channels": defaultdict(int)})
        row["touches"] += int(n)
        row["reached"].add(hcp_id)
        row["channels"][channel] += int(n)

    target_goals = {t.hcp_id: t.goals or {} for t in plan.targets}
    base_goals = plan.channel_goals or {}
    territory_ids_seen = {h.territory_id for h in hcps if h.territory_id is not None}
    territory_rows = {t.id: t for t in session.scalars(
        select(Territory).where(Territory.id.in_(sorted(territory_ids_seen))))} if territory_ids_seen else {}

    totals = _Tally()
    channels = {c: _Tally() for c in PLAN_CHANNELS}
    territories: dict[int | None, dict[str, Any]] = {}
    products = [(g, _Tally()) for g in product_goals]
    progress = []
    for h in hcps:
        own = target_goals.get(h.id, {})
        goals = {c: int(own.get(c, base_goals.get(c, 0)) or 0) for c in PLAN_CHANNELS}
        done = touches.get(h.id, {})
        terr = territories.setdefault(h.territory_id, {"tally": _Tally(), "hcps": 0, "behind": 0,
                                                       "channels": {c: _Tally() for c in PLAN_CHANNELS}})
        terr["hcps"] += 1
        planned = attained = touched = 0
        for c in PLAN_CHANNELS:
            n = done.get(c, 0)
            channels[c].add(h.id, goals[c], n)
            terr["channels"][c].add(h.id, goals[c], n)
            planned += goals[c]
            attained += min(n, goals[c])
            touched += n
        totals.planned, totals.touches, totals.attained = (totals.planned + planned, totals.touches + touched,
                                                           totals.attained + attained)
        terr["tally"].planned += planned
        terr["tally"].touches += touched
        terr["tally"].attained += attained
        if touched:
            totals.reached.add(h.id)
            terr["tally"].reached.add(h.id)
        for goal, tally in products:
            tally.add(h.id, int(goal["touches"]), per_product.get((h.id, goal["channel"], goal["sku"]), 0))
        # whole touches due by now: a goal of 2 expects the first at mid-cycle, not a fraction on day one
        expected = math.floor(planned * elapsed + 1e-9)
        behind = attained < expected
        terr["behind"] += behind
        territory = territory_rows.get(h.territory_id) if h.territory_id is not None else None
        progress.append({
            "hcp_id": h.id, "name": f"{h.first_name} {h.last_name}", "tier": h.tier,
            "territory": territory.code if territory is not None else None,
            "goals": {c: g for c, g in goals.items() if g}, "touches": {c: n for c, n in done.items() if n},
            "planned": planned, "attained": attained, "attainment_pct": _pct(attained, planned),
            "expected_by_now": expected, "behind": behind,
        })
    progress.sort(key=lambda r: (not r["behind"], r["attainment_pct"] if r["attainment_pct"] is not None else 101,
                                 r["name"], r["hcp_id"]))
    behind_count = sum(1 for r in progress if r["behind"])

    owners = {u.id: u for u in session.execute(
        select(User.id, User.name, User.role).where(User.id.in_([o for o in by_owner if o is not None])))
    } if any(o is not None for o in by_owner) else {}
    reps = []
    for owner_id, row in by_owner.items():
        user = owners.get(owner_id) if owner_id is not None else None
        reps.append({"user_id": owner_id, "name": user.name if user else "Outside systems (no user)",
                     "role": user.role if user else "system", "touches": row["touches"],
                     "reach": len(row["reached"]), "channels": dict(row["channels"])})
    reps.sort(key=lambda r: (-r["touches"], r["name"]))

    def territory_out(tid: int | None, row: dict[str, Any]) -> dict[str, Any]:
        t = territory_rows.get(tid) if tid is not None else None
        return {"code": t.code if t else None, "name": t.name if t else NO_TERRITORY, "hcps": row["hcps"],
                "behind": row["behind"], **row["tally"].out(),
                "channels": [{"channel": c, "label": CHANNEL_LABELS[c], **row["channels"][c].out()}
                             for c in PLAN_CHANNELS]}

    total_out = totals.out()
    return {
        "plan_id": plan.id, "as_of": now, "cycle_start": plan.cycle_start, "cycle_end": plan.cycle_end,
        "elapsed_pct": round(100 * elapsed, 1),
        "territories_filter": sorted(session.scalars(select(Territory.code).where(Territory.id.in_(wanted))))
        if wanted else [],
        "totals": {**total_out, "hcps": len(hcps), "reach_rate_pct": _pct(total_out["reach"], len(hcps)),
                   "behind": behind_count},
        "channels": [{"channel": c, "label": CHANNEL_LABELS[c], **channels[c].out()} for c in PLAN_CHANNELS],
        "products": [{"sku": g["sku"], "channel": g["channel"], **tally.out()} for g, tally in products],
        "territories": sorted((territory_out(tid, row) for tid, row in territories.items()),
                              key=lambda t: (t["code"] is None, t["code"] or "")),
        "reps": reps,
        "hcps": progress[:hcp_limit],
        "hcps_shown": min(hcp_limit, len(progress)),
        "glossary_url": "/glossary#kpi-attainment",
    }


def attainment_totals(session: DbSession, plan: EngagementPlan, *, now: datetime | None = None) -> dict[str, Any]:
    """The plan's totals only (what ``attainment(...)["totals"]`` gives, and ``elapsed_pct``), summed in
    SQL: touches per (HCP, plan channel) are pivoted, each HCP's goal per channel is its target goal or the
    plan's, capped per HCP and channel with ``CASE`` (the SQL ``LEAST``), and the HCPs are grouped by
    (planned, attained, touched at all), a handful of rows whatever the plan's size. Behind plan is then
    worked out per group with the same arithmetic as ``attainment``."""
    now = now or utcnow()
    start, end = cycle_window(plan)
    elapsed = elapsed_share(plan, now)
    p = InteractionParticipant
    per_channel = (select(p.hcp_id.label("hcp_id"),
                          *[func.sum(case((p.channel == c, 1), else_=0)).label(f"n_{c}") for c in PLAN_CHANNELS])
                   .where(*period_touches(start, end))
                   .group_by(p.hcp_id).subquery())
    t = PlanTarget
    base = plan.channel_goals or {}
    goals = {c: func.coalesce(t.goals[c].as_integer(), int(base.get(c, 0) or 0)) for c in PLAN_CHANNELS}
    touched = {c: func.coalesce(per_channel.c[f"n_{c}"], 0) for c in PLAN_CHANNELS}
    planned = sum((goals[c] for c in PLAN_CHANNELS), literal(0))
    attained = sum((case((touched[c] < goals[c], touched[c]), else_=goals[c]) for c in PLAN_CHANNELS), literal(0))
    touches = sum((touched[c] for c in PLAN_CHANNELS), literal(0))
    per_hcp = (select(planned.label("planned"), attained.label("attained"), touches.label("touches"))
               .select_from(HCP)
               .outerjoin(t, and_(t.plan_id == plan.id, t.hcp_id == HCP.id))
               .outerjoin(per_channel, per_channel.c.hcp_id == HCP.id)
               .where(population_where(plan)).subquery())
    reached = case((per_hcp.c.touches > 0, 1), else_=0)
    rows = session.execute(
        select(per_hcp.c.planned, per_hcp.c.attained, reached, func.count(), func.sum(per_hcp.c.touches))
        .group_by(per_hcp.c.planned, per_hcp.c.attained, reached)).all()
    hcps = total_planned = total_attained = total_touches = reach = behind = 0
    for planned_n, attained_n, was_reached, n, touches_n in rows:
        planned_n, attained_n, n = int(planned_n), int(attained_n), int(n)
        hcps += n
        total_planned += planned_n * n
        total_attained += attained_n * n
        total_touches += int(touches_n or 0)
        reach += n if was_reached else 0
        # the same whole touches due by now as ``attainment``
        if attained_n < math.floor(planned_n * elapsed + 1e-9):
            behind += n
    return {
        "plan_id": plan.id, "as_of": now, "elapsed_pct": round(100 * elapsed, 1),
        "totals": {"planned": total_planned, "touches": total_touches, "attained": total_attained,
                   "attainment_pct": _pct(total_attained, total_planned), "reach": reach,
                   "frequency": round(total_touches / reach, 2) if reach else 0.0, "hcps": hcps,
                   "reach_rate_pct": _pct(reach, hcps), "behind": behind},
    }
