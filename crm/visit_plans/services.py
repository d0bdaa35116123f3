"""Planned visits: plan, reschedule, cancel, and turn a plan into a draft visit with one tap.

Rules (issue 14 item 5):
- Whoever logs visits plans them (``visit_plan.write``): a field rep for HCPs of own territories, Medical
  Affairs anywhere (their plans are ``medical``: the objective is withheld from field force and marketing).
- A new plan, and a new time for a plan, is not in the past (a few minutes of clock drift allowed), at most
  ``MAX_AHEAD_DAYS`` ahead, and lasts more than nothing and at most ``MAX_PLAN_HOURS``.
- Overlapping plans of the same owner are a warning (``conflicts``), never a refusal: two visits in one
  practice at once are a real plan.
- Only the owner reschedules, cancels or starts a plan, and only while it is ``planned`` (409 after).
  Every reschedule is kept (``VisitPlanReschedule``) and audited, with its reason when given.
- Starting a plan creates a draft visit through ``crm.visits.services.create_visit`` (same rules as a
  visit typed in by hand), prefilled from the plan; the visit flow continues as before.
- A plan is not an interaction: nothing happened yet, so it never goes on the timeline. A visit that
  started from a plan reaches the timeline when it is submitted, as every visit does.
- Times are stored in UTC. The week is Monday to Sunday in ``plan_zone()`` (the user's zone on pages, one place to
  change for a per-user time zone).

Services take the actor and the policy viewer, audit every write, flush and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, or_, select

from crm.access.policy import Viewer, require_owner, require_write, team_week_decision, visit_plan_read_decision
from crm.access.reads import Redaction, Shape, Sight, read_records
from crm.audit import services as audit
from crm.db import DbSession, utcnow
from crm.errors import Conflict, Forbidden, Invalid, NotFound
from crm.hcps.models import HCP, Territory
from crm.products.models import Product
from crm.schemas import keyset_page
from crm.timezones import user_zone
from crm.visit_plans.models import PLAN_MODES, VisitPlan, VisitPlanReschedule
from crm.visits.models import Visit, VisitAttendee

MAX_AHEAD_DAYS = 366
MAX_PLAN_HOURS = 12
# A plan made "now" from a phone whose clock runs a little slow is not a plan for the past.
PAST_TOLERANCE = timedelta(minutes=5)
NOT_PLANNED = "Only a planned visit can be changed: this one was {status}."


def plan_zone() -> tzinfo:
    """The zone in which plan times are shown and weeks and days begin: the signed-in user's own
    (*Your settings*), UTC outside a page request (API, CLI)."""
    return user_zone()


def week_bounds(monday: date) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00 in ``plan_zone()``, as aware UTC times (end exclusive)."""
    start = datetime.combine(monday, time(0), tzinfo=plan_zone())
    return start.astimezone(UTC), (start + timedelta(days=7)).astimezone(UTC)


def plan_day(value: datetime) -> date:
    """The calendar day of ``value`` in ``plan_zone()`` (the column of the week it falls in)."""
    return value.astimezone(plan_zone()).date()


# -- reads -----------------------------------------------------------------------------------------

def get_plan(session: DbSession, plan_id: int) -> VisitPlan:
    plan = session.get(VisitPlan, plan_id)
    if plan is None:
        raise NotFound(f"Planned visit {plan_id} does not exist.")
    return plan


def read_plan(session: DbSession, viewer: Viewer, plan_id: int) -> VisitPlan:
    """The plan, if ``viewer`` may read it (a field rep: own plans and plans of own territories); else 403."""
    plan = get_plan(session, plan_id)
    decision = visit_plan_read_decision(viewer, plan.owner_id, plan.hcp.territory_id)
    if not decision.allowed:
        raise Forbidden(decision.reason, rule=decision.rule)
    return plan


def _dump(plan: VisitPlan, seen: Sight) -> dict[str, Any]:
    return {
        "id": plan.id, "status": plan.status, "hcp_id": plan.hcp_id, "hcp_name": plan.hcp.full_name,
        "owner": {"id": plan.owner.id, "name": plan.owner.name, "role": plan.owner.role},
        "planned_start": plan.planned_start, "planned_end": plan.planned_end, "mode": plan.mode,
        "objective": plan.objective, "products": list(plan.products), "sensitivity": plan.sensitivity,
        "visit_id": plan.visit_id, "started_at": plan.started_at, "cancelled_at": plan.cancelled_at,
        "cancel_reason": plan.cancel_reason,
        "reschedules": [{"from_start": r.from_start, "from_end": r.from_end, "to_start": r.to_start,
                         "to_end": r.to_end, "reason": r.reason, "changed_by_id": r.changed_by_id,
                         "changed_at": r.changed_at} for r in plan.reschedules],
        "version": plan.version, "created_at": plan.created_at, "updated_at": plan.updated_at,
        "rule": seen.rule, "why": seen.reason,
    }


# Below full: the free text (objective, reasons). Below summary: what the visit is about.
_PLAN_REDACTION = Redaction(
    below_full={"objective": None, "cancel_reason": None,
                "reschedules": lambda p: [{"from_start": r.from_start, "from_end": r.from_end, "to_start": r.to_start,
                                           "to_end": r.to_end, "reason": None, "changed_by_id": r.changed_by_id,
                                           "changed_at": r.changed_at} for r in p.reschedules]},
    below_summary={"products": lambda p: [], "mode": None},
)

_SHAPE: Shape[VisitPlan] = Shape(
    what="visit_plan",
    sensitivity=lambda p: p.sensitivity,
    dump=_dump,
    redaction=_PLAN_REDACTION,
    logged=lambda p: ((None, p.hcp_id),),
)


def visible_plans(session: DbSession, viewer: Viewer, plans: Sequence[VisitPlan], *,
                  is_read: bool = True) -> list[dict[str, Any]]:
    """The plans as ``viewer`` may see them, through the one read path (``crm.access.reads``): a Medical
    Affairs plan shows field force and marketing who, whom and when, and why the rest is withheld; full
    reads of medical plans are logged for compliance. ``is_read=False`` for the echo of a write."""
    return read_records(session, viewer, plans, _SHAPE, log=is_read)


def visible_plan(session: DbSession, viewer: Viewer, plan: VisitPlan, *, is_read: bool = True) -> dict[str, Any]:
    return visible_plans(session, viewer, [plan], is_read=is_read)[0]


def territory_by_code(session: DbSession, code: str) -> Territory:
    territory = session.scalar(select(Territory).where(Territory.code == code.strip()))
    if territory is None:
        raise Invalid(errors={"territory": [f"unknown territory code {code.strip()!r}"]})
    return territory


def list_plans(
    session: DbSession,
    viewer: Viewer,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    owner_id: int | None = None,
    hcp_id: int | None = None,
    territory_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[VisitPlan], str | None]:
    """Plans starting in ``[since, until)``, earliest first, keyset-paged, that ``viewer`` may read.

    ``territory_id``: plans for the HCPs of that territory now (the team week); a field rep asking for a
    territory not covered is 403. Without it, a field rep gets own plans and the plans of own territories.
    """
    query = select(VisitPlan)
    if territory_id is not None:
        decision = team_week_decision(viewer, territory_id)
        if not decision.allowed:
            raise Forbidden(decision.reason, rule=decision.rule)
        query = query.where(VisitPlan.hcp_id.in_(select(HCP.id).where(HCP.territory_id == territory_id)))
    elif viewer.role == "field_rep":
        ours = select(HCP.id).where(HCP.territory_id.in_(sorted(viewer.territory_ids)))
        query = query.where(or_(VisitPlan.owner_id == viewer.user_id, VisitPlan.hcp_id.in_(ours)))
    if since is not None:
        query = query.where(VisitPlan.planned_start >= since)
    if until is not None:
        query = query.where(VisitPlan.planned_start < until)
    if owner_id is not None:
        query = query.where(VisitPlan.owner_id == owner_id)
    if hcp_id is not None:
        query = query.where(VisitPlan.hcp_id == hcp_id)
    if status is not None:
        query = query.where(VisitPlan.status == status)
    return keyset_page(session, query, VisitPlan.planned_start, VisitPlan.id, limit, cursor, newest_first=False)


def conflicts_for(session: DbSession, plan: VisitPlan) -> list[VisitPlan]:
    """The owner's other planned visits that overlap ``plan`` (a warning, earliest first)."""
    if plan.status != "planned":
        return []
    return list(session.scalars(
        select(VisitPlan).where(
            VisitPlan.owner_id == plan.owner_id, VisitPlan.status == "planned", VisitPlan.id != plan.id,
            VisitPlan.planned_start < plan.planned_end, VisitPlan.planned_end > plan.planned_start)
        .order_by(VisitPlan.planned_start, VisitPlan.id)))


def conflict_dicts(conflicts: Sequence[VisitPlan]) -> list[dict[str, Any]]:
    return [{"id": c.id, "hcp_id": c.hcp_id, "planned_start": c.planned_start, "planned_end": c.planned_end}
            for c in conflicts]


# -- writes ----------------------------------------------------------------------------------------

def _check_times(start: datetime, end: datetime, errors: dict[str, list[str]]) -> None:
    now = utcnow()
    if start < now - PAST_TOLERANCE:
        errors.setdefault("planned_start", []).append("A visit is planned for the future: this time has passed.")
    elif start > now + timedelta(days=MAX_AHEAD_DAYS):
        errors.setdefault("planned_start", []).append(f"Plan at most {MAX_AHEAD_DAYS} days ahead.")
    if end <= start:
        errors.setdefault("planned_end", []).append("The end must be after the start.")
    elif end - start > timedelta(hours=MAX_PLAN_HOURS):
        errors.setdefault("planned_end", []).append(f"A planned visit lasts at most {MAX_PLAN_HOURS} hours.")


def _check_products(session: DbSession, skus: Sequence[str], errors: dict[str, list[str]]) -> list[str]:
    wanted = list(dict.fromkeys(skus))
    if wanted:
        active = set(session.scalars(select(Product.sku).where(Product.sku.in_(wanted), Product.active.is_(True))))
        for sku in wanted:
            if sku not in active:
                errors.setdefault("products", []).append(f"{sku}: not an active product")
    return wanted


def _hcp_to_plan(session: DbSession, hcp_id: int) -> HCP:
    hcp = session.get(HCP, hcp_id)
    if hcp is None:
        raise NotFound(f"HCP {hcp_id} does not exist.")
    if hcp.status == "merged":
        raise Invalid(errors={"hcp_id": [f"HCP {hcp.id} was merged into HCP {hcp.merged_into_id}; plan the visit "
                                         "there"]})
    if hcp.status == "erased":
        raise Invalid(errors={"hcp_id": [f"HCP {hcp.id} was erased"]})
    return hcp


def _snapshot(plan: VisitPlan) -> dict[str, Any]:
    return {"status": plan.status, "owner_id": plan.owner_id, "hcp_id": plan.hcp_id,
            "planned_start": plan.planned_start, "planned_end": plan.planned_end, "mode": plan.mode,
            "objective": plan.objective, "products": list(plan.products), "sensitivity": plan.sensitivity,
            "visit_id": plan.visit_id, "cancel_reason": plan.cancel_reason}


def create_plan(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> VisitPlan:
    """Plan a visit, owned by ``actor``. See the module's rules; every problem at once (422).
    ``conflicts_for`` then says which of the owner's plans it overlaps."""
    require_write(viewer, "visit_plan.write")
    hcp = _hcp_to_plan(session, data["hcp_id"])
    require_write(viewer, "visit_plan.write", [hcp.territory_id])
    errors: dict[str, list[str]] = {}
    _check_times(data["planned_start"], data["planned_end"], errors)
    products = _check_products(session, data.get("products") or [], errors)
    if data.get("mode", "in_person") not in PLAN_MODES:
        errors["mode"] = [f"must be one of {', '.join(PLAN_MODES)}"]
    if errors:
        raise Invalid("The visit cannot be planned.", errors=errors)
    plan = VisitPlan(owner_id=actor.id, hcp_id=hcp.id, status="planned", planned_start=data["planned_start"],
                     planned_end=data["planned_end"], mode=data.get("mode") or "in_person",
                     objective=(data.get("objective") or "").strip(), products=products,
                     sensitivity="medical" if viewer.role == "medical" else "standard")
    plan.hcp, plan.owner = hcp, actor
    session.add(plan)
    session.flush()
    audit.record(session, actor, "visit_plan.create", "visit_plan", plan.id, audit.created(_snapshot(plan)))
    return plan


def _require_planned(viewer: Viewer, plan: VisitPlan, action: str, expected_version: int | None = None) -> None:
    require_owner(viewer, plan.owner_id, action)
    if plan.status != "planned":
        raise Conflict(NOT_PLANNED.format(status=plan.status))
    if expected_version is not None and expected_version != plan.version:
        raise Conflict("Someone else changed this plan; reload it and apply your change again.")


def update_plan(session: DbSession, actor: Any, viewer: Viewer, plan: VisitPlan, data: dict[str, Any], *,
                expected_version: int | None = None) -> VisitPlan:
    """Reschedule a plan (new ``planned_start``/``planned_end``; a start alone keeps the duration) and/or
    change its mode, objective or products. Owner only, while planned. The HCP's territory is checked
    again (a rep no longer covering it cannot move the visit). A move is kept in the plan's history with
    ``reason``; a change that changes nothing is 422."""
    _require_planned(viewer, plan, "visit_plan.edit", expected_version)
    require_write(viewer, "visit_plan.write", [plan.hcp.territory_id])
    errors: dict[str, list[str]] = {}
    start = data.get("planned_start", plan.planned_start)
    if "planned_end" in data:
        end = data["planned_end"]
    else:
        end = start + (plan.planned_end - plan.planned_start)
    moved = (start, end) != (plan.planned_start, plan.planned_end)
    if moved:
        _check_times(start, end, errors)
    products = _check_products(session, data["products"], errors) if "products" in data else list(plan.products)
    if errors:
        raise Invalid("The plan was not changed.", errors=errors)
    before = _snapshot(plan)
    reason = (data.get("reason") or "").strip() or None
    if moved:
        plan.reschedules.append(VisitPlanReschedule(
            from_start=plan.planned_start, from_end=plan.planned_end, to_start=start, to_end=end, reason=reason,
            changed_by_id=actor.id, changed_at=utcnow()))
        plan.planned_start, plan.planned_end = start, end
    if "mode" in data:
        plan.mode = data["mode"]
    if "objective" in data:
        plan.objective = data["objective"].strip()
    plan.products = products
    changes = audit.diff(before, _snapshot(plan))
    if not changes:
        raise Invalid("Nothing would change.", errors={"_schema": ["The plan already says this."]})
    plan.updated_at = utcnow()
    session.flush()
    audit.record(session, actor, "visit_plan.reschedule" if moved else "visit_plan.update", "visit_plan", plan.id,
                 changes, reason=reason if moved else None)
    return plan


def cancel_plan(session: DbSession, actor: Any, viewer: Viewer, plan: VisitPlan, reason: str = "",
                expected_version: int | None = None) -> VisitPlan:
    """Cancel a planned visit (owner, while planned). The plan stays, marked cancelled, with the reason."""
    _require_planned(viewer, plan, "visit_plan.cancel", expected_version)
    before = _snapshot(plan)
    plan.status = "cancelled"
    plan.cancelled_at = utcnow()
    plan.cancel_reason = reason.strip() or None
    session.flush()
    audit.record(session, actor, "visit_plan.cancel", "visit_plan", plan.id, audit.diff(before, _snapshot(plan)),
                 reason=plan.cancel_reason)
    return plan


def start_plan(session: DbSession, actor: Any, viewer: Viewer, plan: VisitPlan,
               expected_version: int | None = None) -> Visit:
    """Turn a plan into a draft visit (the "one tap"): owner, while planned; a second tap is 409.

    The draft comes from ``crm.visits.services.create_visit`` (so the visit rules apply as for any visit)
    with the plan's HCP, mode, duration, products still active, and the objective as its first notes. Its
    time is the planned start, or now when the plan is started ahead of its time (a visit is submitted
    after it happened). The plan becomes ``started`` and points at the draft.
    """
    from crm.visits.services import create_visit

    _require_planned(viewer, plan, "visit_plan.start", expected_version)
    now = utcnow()
    active = set(session.scalars(select(Product.sku).where(Product.sku.in_(list(plan.products) or [""]),
                                                           Product.active.is_(True))))
    minutes = int((plan.planned_end - plan.planned_start).total_seconds() // 60)
    visit = create_visit(session, actor, viewer, {
        "hcp_id": plan.hcp_id,
        "occurred_at": min(plan.planned_start, now),
        "duration_minutes": max(1, min(minutes, 24 * 60)),
        "mode": plan.mode,
        "products": [sku for sku in plan.products if sku in active],
        "notes": plan.objective,
    })
    before = _snapshot(plan)
    plan.status = "started"
    plan.visit_id = visit.id
    plan.started_at = now
    session.flush()
    audit.record(session, actor, "visit_plan.start", "visit_plan", plan.id, audit.diff(before, _snapshot(plan)))
    return visit


# -- planned vs done -------------------------------------------------------------------------------

@dataclass
class Counts:
    planned: int = 0
    started: int = 0
    missed: int = 0
    upcoming: int = 0
    cancelled: int = 0
    done: int = 0

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def day_bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """``[since 00:00, the day after until 00:00)`` in ``plan_zone()``, as aware UTC times."""
    start = datetime.combine(since, time(0), tzinfo=plan_zone())
    end = datetime.combine(until + timedelta(days=1), time(0), tzinfo=plan_zone())
    return start.astimezone(UTC), end.astimezone(UTC)


def planned_vs_done(session: DbSession, since: date, until: date, *, owner_id: int | None = None,
                    hcp_id: int | None = None) -> tuple[Counts, list[tuple[HCP, Counts]]]:
    """Plans starting in the period against submitted visits that took place in it, per HCP (most planned
    first), and the totals. ``owner_id``: that person's plans and visits; ``hcp_id``: one HCP, everyone's.

    A visit counts once however often it was amended (its latest version), and for each HCP it names
    (the visited HCP and the other HCPs present). Medical visits count too: that a visit happened is
    shared with everyone; what was said is not part of a count.
    """
    start, end = day_bounds(since, until)
    now = utcnow()
    plan_filter = [VisitPlan.planned_start >= start, VisitPlan.planned_start < end]
    if owner_id is not None:
        plan_filter.append(VisitPlan.owner_id == owner_id)
    if hcp_id is not None:
        plan_filter.append(VisitPlan.hcp_id == hcp_id)
    rows: dict[int, Counts] = {}
    for pid, status, plan_end in session.execute(
            select(VisitPlan.hcp_id, VisitPlan.status, VisitPlan.planned_end).where(*plan_filter)):
        row = rows.setdefault(pid, Counts())
        if status == "cancelled":
            row.cancelled += 1
            continue
        row.planned += 1
        if status == "started":
            row.started += 1
        elif plan_end <= now:
            row.missed += 1
        else:
            row.upcoming += 1

    amended = select(Visit.amends_id).where(Visit.amends_id.is_not(None))
    visit_filter = [Visit.status == "submitted", Visit.occurred_at >= start, Visit.occurred_at < end,
                    Visit.id.not_in(amended)]
    if owner_id is not None:
        visit_filter.append(Visit.owner_id == owner_id)
    # A visit's own HCP, then the other HCPs present: each (visit, HCP) once.
    visited = select(Visit.hcp_id.label("hcp_id"), Visit.id.label("visit_id")).where(*visit_filter)
    present = (select(VisitAttendee.hcp_id.label("hcp_id"), Visit.id.label("visit_id"))
               .join(Visit, Visit.id == VisitAttendee.visit_id).where(*visit_filter))
    both = visited.union(present).subquery()
    done = select(both.c.hcp_id, func.count()).group_by(both.c.hcp_id)
    if hcp_id is not None:
        done = done.where(both.c.hcp_id == hcp_id)
    for vid, count in session.execute(done):
        rows.setdefault(vid, Counts()).done += count

    hcps = {h.id: h for h in session.scalars(select(HCP).where(HCP.id.in_(list(rows))))} if rows else {}
    totals = Counts()
    for counts in rows.values():
        totals.add(counts)
    ordered = sorted(rows.items(), key=lambda kv: (-kv[1].planned, -kv[1].done, hcps[kv[0]].full_name, kv[0]))
    return totals, [(hcps[i], counts) for i, counts in ordered]


def period(since: date | None, until: date | None) -> tuple[date, date]:
    """The period asked for, the current quarter filling what is not given (one day given alone past the
    quarter's other end: that day alone)."""
    from crm.plans.services import current_quarter

    quarter_start, quarter_end = current_quarter(utcnow().astimezone(plan_zone()).date())
    first, last = since or quarter_start, until or quarter_end
    if last < first:
        first, last = (since, since) if since else (last, last)
    return first, last


def planned_vs_done_owner(viewer: Viewer, owner_id: int | None, hcp: HCP | None) -> int | None:
    """Whose plans and visits ``viewer`` gets in planned vs done (None: everyone's, for one HCP).

    One HCP: everyone's, but a field rep gets only own plans and visits for an HCP outside own territories
    (the team's plans there are not theirs to read). No HCP: ``owner_id`` or the caller; a field rep
    asking for someone else is 403."""
    if viewer.role == "field_rep":
        if owner_id is not None and owner_id != viewer.user_id:
            raise Forbidden("A field rep sees own planned vs done only", rule="visit_plan.read:owner")
        if hcp is not None and hcp.territory_id in viewer.territory_ids:
            return None
        return viewer.user_id
    if hcp is not None:
        return owner_id
    return owner_id if owner_id is not None else viewer.user_id
