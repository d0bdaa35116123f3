"""Engagement-plan pages: the list, a marketer's form, one plan with plan vs actual (channels, products,
territories side by side, reps, HCPs behind plan), and the marketer's view per segment. The rep's "my plan"
is a section of the rep's start page (``crm.home``), built by ``my_plan`` here."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from marshmallow import ValidationError
from sqlalchemy import select

from crm.access.policy import Viewer, write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.db import DbSession, utcnow
from crm.errors import Invalid
from crm.extensions import db
from crm.hcps.models import Territory
from crm.insights.kpis import CHANNEL_LABELS, PLAN_CHANNELS
from crm.navigation import url_if_known
from crm.plans import services
from crm.plans.attainment import attainment
from crm.plans.schemas import PlanIn
from crm.products.models import Product
from crm.segments.models import Segment

bp = Blueprint("plans_pages", __name__, url_prefix="/plans")
HCPS_SHOWN = 200
MY_PLAN_HCPS = 25
PRODUCT_ROWS = 3
_TARGET_LINE = re.compile(r"^\s*(\d{1,10})\s*(?::\s*(.*))?$")
_GOAL = re.compile(r"^\s*([a-z_]+)\s*=\s*(\d{1,4})\s*$")


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"channel_labels": CHANNEL_LABELS, "plan_channels": PLAN_CHANNELS,
            "hcp_page": lambda hcp_id: url_if_known("timeline_pages.hcp", hcp_id=hcp_id) or f"/hcps/{hcp_id}"}


def _may_write() -> bool:
    return write_decision(viewer(), "plan.write").allowed


@bp.get("")
@page_auth()
def index():
    plans, _ = services.list_plans(db.session, viewer(), limit=200)
    today = utcnow().date()
    return render_template("plans/index.html", plans=plans, today=today, can_write=_may_write())


# -- the form ---------------------------------------------------------------------------------------

def _form_page(errors: list[str] | None = None, status: int = 200):
    start, end = services.current_quarter(utcnow().date())
    return render_template(
        "plans/new.html", errors=errors or [], form=request.form, default_start=start, default_end=end,
        segments=list(db.session.scalars(select(Segment).order_by(Segment.name).limit(500))),
        territories=list(db.session.scalars(select(Territory).order_by(Territory.code))),
        products=list(db.session.scalars(select(Product).order_by(Product.sku).limit(500))),
        product_rows=PRODUCT_ROWS), status


@bp.get("/new")
@page_auth("marketer")
def new():
    return _form_page()


def _targets(raw: str) -> tuple[list[dict[str, Any]], list[str]]:
    """``123`` or ``123: visit=4, email=2``, one HCP per line."""
    targets, errors = [], []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        match = _TARGET_LINE.match(line)
        if match is None:
            errors.append(f"target list, line {number}: write an HCP id, optionally followed by : visit=4, email=2")
            continue
        goals: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in (match.group(2) or "").split(","))):
            goal = _GOAL.match(part)
            if goal is None:
                errors.append(f"target list, line {number}: {part!r} is not channel=touches")
                continue
            goals[goal.group(1)] = int(goal.group(2))
        targets.append({"hcp_id": int(match.group(1)), "goals": goals})
    return targets, errors


def _form_data() -> tuple[dict[str, Any], list[str]]:
    form = request.form
    targets, errors = _targets(form.get("targets", ""))
    data: dict[str, Any] = {
        "name": form.get("name", ""), "cycle_start": form.get("cycle_start", ""),
        "cycle_end": form.get("cycle_end", ""), "territory_codes": form.getlist("territory_codes"),
        "channel_goals": {}, "product_goals": [], "targets": targets,
    }
    segment = form.get("segment_id", "").strip()
    if segment:
        data["segment_id"] = int(segment) if segment.isdigit() and len(segment) <= 10 else -1
    for channel in PLAN_CHANNELS:
        raw = form.get(f"goal_{channel}", "").strip()
        if raw:
            if not raw.isdigit() or len(raw) > 4:
                errors.append(f"{CHANNEL_LABELS[channel]}: touches per HCP must be a whole number")
            else:
                data["channel_goals"][channel] = int(raw)
    for row in range(PRODUCT_ROWS):
        sku = form.get(f"product_{row}_sku", "").strip()
        touches = form.get(f"product_{row}_touches", "").strip()
        if not sku:
            continue
        if not touches.isdigit() or len(touches) > 4:
            errors.append(f"product goal {sku}: touches per HCP must be a whole number")
            continue
        data["product_goals"].append({"sku": sku, "channel": form.get(f"product_{row}_channel", "visit"),
                                      "touches": int(touches)})
    return data, errors


def _messages(errors: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in errors.items():
        label = f"{prefix}{key}".replace("_", " ")
        if isinstance(value, dict):
            out.extend(_messages(value, f"{label} "))
        else:
            out.append(f"{label}: {'; '.join(str(v) for v in value)}")
    return out


@bp.post("/new")
@page_auth("marketer")
def create():
    raw, errors = _form_data()
    if errors:
        return _form_page(errors, 422)
    try:
        data = PlanIn().load(raw)
        plan = services.create_plan(db.session, actor(), viewer(), data)
    except ValidationError as exc:
        return _form_page(_messages(exc.normalized_messages()), 422)
    except Invalid as exc:
        return _form_page(_messages(exc.errors) or [exc.detail], 422)
    return redirect(url_for(".show", plan_id=plan.id), code=303)


# -- one plan ---------------------------------------------------------------------------------------

@bp.get("/<int:plan_id>")
@page_auth()
def show(plan_id: int):
    who = viewer()
    plan = services.read_plan(db.session, who, plan_id)
    # A rep starts with own territories; "whole plan" is one click away. Others start with the whole plan.
    scope = request.args.get("scope") or ("mine" if who.role == "field_rep" and who.territory_ids else "all")
    territory_ids = sorted(who.territory_ids) if scope == "mine" and who.territory_ids else None
    result = attainment(db.session, plan, territory_ids=territory_ids, hcp_limit=HCPS_SHOWN)
    return render_template("plans/show.html", plan=plan, plan_out=services.plan_dict(plan), a=result,
                           scope="mine" if territory_ids is not None else "all",
                           offer_mine=bool(who.territory_ids))


# -- the marketer's view per segment ----------------------------------------------------------------

@bp.get("/segments")
@page_auth()
def by_segment():
    """Plan vs actual per segment: every current plan (or all, ``?all=1``) grouped by its segment."""
    who = viewer()
    show_all = request.args.get("all") == "1"
    plans, _ = services.list_plans(db.session, who, limit=200, current=not show_all)
    groups: dict[str, list[dict[str, Any]]] = {}
    for plan in sorted(plans, key=lambda p: (p.segment.name if p.segment else "~", p.name)):
        label = plan.segment.name if plan.segment is not None else "No segment (territories or target list)"
        groups.setdefault(label, []).append({"plan": plan, "a": attainment(db.session, plan, hcp_limit=0)})
    return render_template("plans/segments.html", groups=groups, show_all=show_all)


def my_plan(session: DbSession, who: Viewer, limit: int = 3) -> list[dict[str, Any]]:
    """A rep's current plans, restricted to the HCPs of the rep's territories: progress per HCP, those
    behind plan first. For the start page."""
    if not who.territory_ids:
        return []
    plans, _ = services.list_plans(session, who, limit=limit, current=True)
    out = []
    for plan in plans:
        result = attainment(session, plan, territory_ids=sorted(who.territory_ids), hcp_limit=MY_PLAN_HCPS)
        out.append({"plan": plan, "a": result})
    return out

