"""The engagement-plan API: a marketer writes plans; everyone reads them and their attainment (a field rep:
the plans of own territories)."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select

from crm.auth.context import actor, api_auth, viewer
from crm.errors import Invalid
from crm.extensions import db
from crm.hcps.models import Territory
from crm.openapi import doc
from crm.plans import services
from crm.plans.attainment import attainment
from crm.plans.schemas import AttainmentArgs, AttainmentOut, PlanIn, PlanListArgs, PlanOut, PlanPage
from crm.schemas import load_args, load_body, page

bp = Blueprint("plans_api", __name__, url_prefix="/api/v1")
TAGS = ["engagement plans"]


@bp.post("/engagement-plans")
@doc("Create an engagement plan (a cycle plan with goals per channel)", tags=TAGS, body=PlanIn,
     responses={201: PlanOut}, errors=(400, 401, 403, 422))
@api_auth
def create_plan():
    """Marketer. A cycle (first and last day), a scope (`segment_id` and/or `territory_codes`) or a target list,
    goals per HCP per channel, optional product goals, and targets with their own goals."""
    data = load_body(PlanIn())
    plan = services.create_plan(db.session, actor(), viewer(), data)
    return PlanOut().dump(services.plan_dict(plan)), 201


@bp.get("/engagement-plans")
@doc("Engagement plans the caller may read, newest first", tags=TAGS, query=PlanListArgs,
     responses={200: PlanPage}, errors=(401, 422))
@api_auth
def list_plans():
    """A field rep sees the plans of own territories (and plans that name no territory)."""
    args = load_args(PlanListArgs())
    rows, cursor = services.list_plans(db.session, viewer(), limit=args["limit"], cursor=args["cursor"],
                                       current=args["current"])
    return page([PlanOut().dump(services.plan_dict(p)) for p in rows], cursor)


@bp.get("/engagement-plans/<int:plan_id>")
@doc("One engagement plan", tags=TAGS, responses={200: PlanOut}, errors=(401, 403, 404))
@api_auth
def get_plan(plan_id: int):
    return PlanOut().dump(services.plan_dict(services.read_plan(db.session, viewer(), plan_id)))


@bp.get("/engagement-plans/<int:plan_id>/attainment")
@doc("Plan vs actual, computed from the timeline now", tags=TAGS, query=AttainmentArgs,
     responses={200: AttainmentOut}, errors=(401, 403, 404, 422))
@api_auth
def plan_attainment(plan_id: int):
    """Totals, per channel, per product goal, per territory, per owner of the touches and per HCP (those
    behind plan first), with reach and frequency. What counts as a touch per channel, and every KPI, is
    defined on /glossary. Restricted (medical, pv) items count; their content is never part of it."""
    args = load_args(AttainmentArgs())
    plan = services.read_plan(db.session, viewer(), plan_id)
    territory_ids = None
    if args["territory"]:
        codes = sorted(set(args["territory"]))
        found = dict(db.session.execute(select(Territory.code, Territory.id).where(Territory.code.in_(codes))).all())
        unknown = [c for c in codes if c not in found]
        if unknown:
            raise Invalid(errors={"territory": [f"unknown territory code(s) {', '.join(unknown)}"]})
        territory_ids = list(found.values())
    result = attainment(db.session, plan, territory_ids=territory_ids, hcp_limit=args["hcp_limit"])
    return AttainmentOut().dump(result)
