"""Planned visits over JSON: plan, list a week, read, reschedule, cancel, start (a draft visit), and
planned vs done per HCP."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request, url_for

from crm.auth.context import actor, api_auth, viewer
from crm.auth.models import User
from crm.db import utcnow
from crm.errors import NotFound
from crm.extensions import db
from crm.hcps.models import HCP
from crm.openapi import doc
from crm.schemas import load_args, load_body, page
from crm.visit_plans import services
from crm.visit_plans.models import VisitPlan
from crm.visit_plans.schemas import (
    PlannedVsDoneArgs,
    PlannedVsDoneOut,
    VisitPlanCancelSchema,
    VisitPlanCreateSchema,
    VisitPlanListArgs,
    VisitPlanOut,
    VisitPlanPage,
    VisitPlanUpdateSchema,
)
from crm.visits.schemas import VisitOutSchema
from crm.visits.services import visible_visit

bp = Blueprint("visit_plans_api", __name__, url_prefix="/api/v1/visit-plans")
_TAGS = ["planned visits"]


def _out(plan: VisitPlan, *, with_conflicts: bool = False) -> dict[str, Any]:
    shown = services.visible_plan(db.session, viewer(), plan, is_read=False)
    if with_conflicts:
        shown["conflicts"] = services.conflict_dicts(services.conflicts_for(db.session, plan))
    return VisitPlanOut().dump(shown)


@bp.post("")
@api_auth
@doc("Plan a visit", tags=_TAGS, body=VisitPlanCreateSchema, responses={201: VisitPlanOut},
     errors=(400, 401, 403, 404, 413, 415, 422))
def create():
    """Field force for HCPs of their own territories; Medical Affairs anywhere (the plan is `medical`).
    The start must not be in the past, at most 366 days ahead; the visit lasts up to 12 hours. Overlapping
    plans of the caller are listed in `conflicts` (a warning: the plan is saved). Plans never go on the
    timeline: they are not interactions."""
    data = load_body(VisitPlanCreateSchema())
    plan = services.create_plan(db.session, actor(), viewer(), data)
    return _out(plan, with_conflicts=True), 201


@bp.get("")
@api_auth
@doc("List planned visits (a week, or from today on)", tags=_TAGS, query=VisitPlanListArgs,
     responses={200: VisitPlanPage}, errors=(401, 403, 422))
def index():
    """Earliest first. `week=2026-W50` (or a day of it) gives Monday to Sunday (UTC); `territory=CODE`
    the team's plans for the HCPs of that territory (a field rep: own territories only, else 403). A
    field rep sees own plans and the plans for HCPs of own territories; other roles see every plan.
    The objective of a Medical Affairs plan is withheld from field force and marketing."""
    args = load_args(VisitPlanListArgs())
    if args["week"] is not None:
        since, until = services.week_bounds(args["week"])
    else:
        since, until = services.day_bounds(utcnow().date(), utcnow().date())[0], None
    territory_id = services.territory_by_code(db.session, args["territory"]).id if args["territory"] else None
    rows, cursor = services.list_plans(
        db.session, viewer(), since=since, until=until,
        owner_id=actor().id if args["mine"] else args["owner_id"], hcp_id=args["hcp_id"],
        territory_id=territory_id, status=args["status"], limit=args["limit"], cursor=args["cursor"])
    return page([VisitPlanOut().dump(p) for p in services.visible_plans(db.session, viewer(), rows)], cursor)


@bp.get("/planned-vs-done")
@api_auth
@doc("Planned vs done per HCP", tags=_TAGS, query=PlannedVsDoneArgs, responses={200: PlannedVsDoneOut},
     errors=(401, 403, 404, 422))
def planned_vs_done():
    """Plans starting in the period (default: this quarter) against submitted visits in it, per HCP.
    `hcp_id`: one HCP, everyone's plans and visits (a field rep: own only, for an HCP outside own
    territories). Otherwise one person's (`owner_id`, default the caller; a field rep: own only)."""
    args = load_args(PlannedVsDoneArgs())
    since, until = services.period(args["since"], args["until"])
    hcp = None
    if args["hcp_id"] is not None:
        hcp = db.session.get(HCP, args["hcp_id"])
        if hcp is None:
            raise NotFound(f"HCP {args['hcp_id']} does not exist.")
    if args["owner_id"] is not None and db.session.get(User, args["owner_id"]) is None:
        raise NotFound(f"User {args['owner_id']} does not exist.")
    owner_id = services.planned_vs_done_owner(viewer(), args["owner_id"], hcp)
    totals, rows = services.planned_vs_done(db.session, since, until, owner_id=owner_id,
                                            hcp_id=hcp.id if hcp else None)
    return PlannedVsDoneOut().dump({
        "since": since, "until": until, "owner_id": owner_id, "hcp_id": hcp.id if hcp else None,
        "totals": vars(totals),
        "items": [{"hcp_id": h.id, "hcp_name": h.full_name, **vars(c)} for h, c in rows]})


@bp.get("/<int:visit_plan_id>")
@api_auth
@doc("One planned visit", tags=_TAGS, responses={200: VisitPlanOut}, errors=(401, 403, 404))
def show(visit_plan_id: int):
    """With its reschedule history. A field rep reads own plans and plans for HCPs of own territories."""
    plan = services.read_plan(db.session, viewer(), visit_plan_id)
    return VisitPlanOut().dump(services.visible_plan(db.session, viewer(), plan))


@bp.patch("/<int:visit_plan_id>")
@api_auth
@doc("Reschedule or change a planned visit (owner only)", tags=_TAGS, body=VisitPlanUpdateSchema,
     responses={200: VisitPlanOut}, errors=(400, 401, 403, 404, 409, 413, 415, 422))
def update(visit_plan_id: int):
    """New times are not in the past; a new start alone keeps the duration. Each move is kept in
    `reschedules` with its `reason`, and audited. A started or cancelled plan is 409; a stale `version`
    is 409. Overlaps come back in `conflicts`."""
    data = load_body(VisitPlanUpdateSchema())
    expected = data.pop("version", None)
    plan = services.get_plan(db.session, visit_plan_id)
    services.update_plan(db.session, actor(), viewer(), plan, data, expected_version=expected)
    return _out(plan, with_conflicts=True)


@bp.post("/<int:visit_plan_id>/cancel")
@api_auth
@doc("Cancel a planned visit (owner only)", tags=_TAGS, body=VisitPlanCancelSchema, responses={200: VisitPlanOut},
     errors=(400, 401, 403, 404, 409, 413, 415, 422))
def cancel(visit_plan_id: int):
    """The plan stays, cancelled, with the reason. The body may be left out."""
    data = load_body(VisitPlanCancelSchema()) if request.content_length or request.is_json else {"reason": ""}
    plan = services.get_plan(db.session, visit_plan_id)
    services.cancel_plan(db.session, actor(), viewer(), plan, data["reason"])
    return _out(plan)


@bp.post("/<int:visit_plan_id>/start")
@api_auth
@doc("Turn a planned visit into a draft visit", tags=_TAGS, responses={201: VisitOutSchema},
     errors=(401, 403, 404, 409, 422))
def start(visit_plan_id: int):
    """Owner only, while planned (a second start is 409). Creates a draft visit prefilled from the plan
    (HCP, mode, duration, active products, the objective as notes; the time is the planned start, or now
    when started ahead of time) and answers with it; edit and submit it as any visit
    (`PATCH /api/v1/visits/{id}`, `POST /api/v1/visits/{id}/submit`)."""
    plan = services.get_plan(db.session, visit_plan_id)
    visit = services.start_plan(db.session, actor(), viewer(), plan)
    body = VisitOutSchema().dump(visible_visit(db.session, viewer(), visit, is_read=False))
    return body, 201, {"Location": url_for("visits_api.show", visit_id=visit.id)}
