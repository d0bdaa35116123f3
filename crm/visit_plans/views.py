"""The field calendar: my week (a day list on a phone, seven columns on a desk), the team's week per
territory, plan / reschedule / cancel / start a visit, planned vs done per rep, and the panel on the HCP page.

Every plan time on these pages goes through the ``plan_time`` filter, and days are cut in
``services.plan_zone()``: the two places to change for a per-user time zone. The plan form takes the HCP
as the visit form does (an ``hcp_id`` input, hidden when the page was opened from the HCP).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from crm.access.policy import require_owner, require_write, write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.auth.models import User
from crm.db import utcnow
from crm.errors import Invalid, NotFound
from crm.extensions import db
from crm.hcps import picker
from crm.hcps.models import HCP, Territory
from crm.pageforms import form_time, page_id
from crm.products.models import Product
from crm.schemas import MAX_YEAR, MIN_YEAR
from crm.visit_plans import services
from crm.visit_plans.models import PLAN_MODES, VisitPlan
from crm.visit_plans.schemas import MAX_OBJECTIVE_CHARS, MAX_REASON_CHARS, parse_week
from crm.visits.models import Visit

bp = Blueprint("visit_plans_pages", __name__)

MODE_LABELS = {"in_person": "In person", "remote": "Remote"}
STATUS_LABELS = {"planned": "Planned", "started": "Visit started", "cancelled": "Cancelled"}
_WEEK_LIMIT = 200  # plans on one week page; a person with more is told so
_STYLES = {
    "datetime": "%a %d %b %Y %H:%M",
    "time": "%H:%M",
    "day": "%a %d %b",
    "date": "%Y-%m-%d",
    "input": "%Y-%m-%dT%H:%M",
    "zone": "%Z",
}


@bp.app_template_filter("plan_time")
def plan_time(value: datetime | date | None, style: str = "datetime") -> str:
    """A plan time as people read it, in ``services.plan_zone()``: ``datetime`` (default, with the zone),
    ``time``, ``day``, ``date``, ``input`` (a datetime-local value) or ``zone`` (its name). A date is shown
    as a day."""
    if value is None:
        return ""
    zone = services.plan_zone()
    if isinstance(value, datetime):
        local = value.astimezone(zone)
        text = local.strftime(_STYLES.get(style, _STYLES["datetime"]))
        return f"{text} {local.tzname()}" if style == "datetime" else text
    return value.strftime(_STYLES["date"] if style in ("date", "input") else _STYLES["day"])


@bp.app_context_processor
def _page_parts() -> dict[str, Any]:
    """For the HCP page: ``{% include "visit_plans/_hcp_panel.html" %}``."""
    return {"visit_plan_panel": visit_plan_panel, "plan_mode_labels": MODE_LABELS,
            "plan_status_labels": STATUS_LABELS, "plan_zone_label": plan_time(utcnow(), "zone"),
            "plan_week_limit": _WEEK_LIMIT}


def visit_plan_panel(hcp_id: int) -> dict[str, Any]:
    """Planned vs done for one HCP this quarter, the next planned visits, and whether the viewer may plan."""
    who = viewer()
    hcp = db.session.get(HCP, hcp_id)
    if hcp is None:
        return {"hcp_id": hcp_id, "totals": None, "upcoming": [], "can_plan": False}
    since, until = services.period(None, None)
    owner_id = services.planned_vs_done_owner(who, None, hcp)
    totals, _rows = services.planned_vs_done(db.session, since, until, owner_id=owner_id, hcp_id=hcp.id)
    upcoming, _cursor = services.list_plans(db.session, who, since=utcnow(), hcp_id=hcp.id, status="planned",
                                            owner_id=owner_id, limit=5)
    return {"hcp_id": hcp.id, "since": since, "until": until, "totals": totals, "own_only": owner_id is not None,
            "upcoming": services.visible_plans(db.session, who, upcoming),
            "can_plan": hcp.status == "active" and write_decision(who, "visit_plan.write", [hcp.territory_id]).allowed}


def _week_arg() -> date:
    raw = request.args.get("week", "").strip()
    if not raw:
        today = utcnow().astimezone(services.plan_zone()).date()
        return today - timedelta(days=today.weekday())
    try:
        return parse_week(raw)
    except ValueError as exc:
        raise Invalid(errors={"week": [str(exc)]}) from None


def _days(monday: date, plans: list[dict[str, Any]], visits: Sequence[Visit] = ()) -> list[dict[str, Any]]:
    """The seven days of the week from ``monday``, each with its plans and logged visits, in ``plan_zone()``."""
    today = utcnow().astimezone(services.plan_zone()).date()
    by_plan: list[list[dict[str, Any]]] = [[] for _ in range(7)]
    by_visit: list[list[Visit]] = [[] for _ in range(7)]
    for plan in plans:
        by_plan[(services.plan_day(plan["planned_start"]) - monday).days].append(plan)
    for visit in visits:
        by_visit[(services.plan_day(visit.occurred_at) - monday).days].append(visit)
    return [{"date": monday + timedelta(days=i), "plans": by_plan[i], "visits": by_visit[i],
             "today": monday + timedelta(days=i) == today} for i in range(7)]


def _week_links(monday: date, **args: Any) -> dict[str, str | None]:
    def link(day: date) -> str | None:
        if not MIN_YEAR <= day.year <= MAX_YEAR - 1:
            return None
        iso = day.isocalendar()
        return url_for(request.endpoint or "visit_plans_pages.week", week=f"{iso.year}-W{iso.week:02d}", **args)

    return {"previous": link(monday - timedelta(days=7)), "next": link(monday + timedelta(days=7)),
            "this": url_for(request.endpoint or "visit_plans_pages.week", **args)}


@bp.get("/calendar")
@page_auth()
def week():
    """My week: my planned visits and the visits I logged, Monday to Sunday."""
    monday = _week_arg()
    since, until = services.week_bounds(monday)
    rows, more = services.list_plans(db.session, viewer(), since=since, until=until, owner_id=actor().id,
                                     limit=_WEEK_LIMIT)
    visits = list(db.session.scalars(
        select(Visit).where(Visit.owner_id == actor().id, Visit.occurred_at >= since, Visit.occurred_at < until)
        .order_by(Visit.occurred_at, Visit.id).limit(_WEEK_LIMIT)))
    plans = services.visible_plans(db.session, viewer(), rows)
    return render_template(
        "visit_plans/week.html", monday=monday, days=_days(monday, plans, visits), more=more is not None,
        links=_week_links(monday), can_plan=write_decision(viewer(), "visit_plan.write").allowed,
        iso=monday.isocalendar())


def _team_territories() -> list[Territory]:
    query = select(Territory).order_by(Territory.code)
    if viewer().role == "field_rep":
        query = query.where(Territory.id.in_(sorted(viewer().territory_ids)))
    return list(db.session.scalars(query))


@bp.get("/calendar/team")
@page_auth()
def team():
    """The team's week for one territory: every planned visit for its HCPs, whoever planned it."""
    monday = _week_arg()
    choices = _team_territories()
    code = request.args.get("territory", "").strip()
    territory = None
    if code:
        if len(code) > 40 or not code.isprintable():
            raise Invalid(errors={"territory": ["unknown territory code"]})
        territory = services.territory_by_code(db.session, code)
    elif choices:
        territory = choices[0]
    days, more = [], False
    if territory is not None:
        since, until = services.week_bounds(monday)
        rows, cursor = services.list_plans(db.session, viewer(), since=since, until=until,
                                           territory_id=territory.id, limit=_WEEK_LIMIT)
        days, more = _days(monday, services.visible_plans(db.session, viewer(), rows)), cursor is not None
    return render_template(
        "visit_plans/team.html", monday=monday, days=days, more=more, territory=territory, choices=choices,
        links=_week_links(monday, territory=territory.code) if territory else _week_links(monday),
        iso=monday.isocalendar())


# -- plan a visit ----------------------------------------------------------------------------------

def _products() -> list[Product]:
    return list(db.session.scalars(select(Product).where(Product.active.is_(True)).order_by(Product.name)))


def _render_form(form: dict[str, Any], hcp: HCP | None, errors: dict[str, list[str]], status: int = 200) -> Any:
    return render_template("visit_plans/new.html", form=form, hcp=hcp, errors=errors, products=_products(),
                           modes=PLAN_MODES, max_objective=MAX_OBJECTIVE_CHARS), status


def _form_data(with_hcp: bool) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The plan form as the service's data, and what is wrong with it (all at once)."""
    errors: dict[str, list[str]] = {}
    data: dict[str, Any] = {}
    if with_hcp:
        hcp_id = page_id(request.form.get("hcp_id"))
        if hcp_id is None:
            errors["hcp_id"] = ["Which HCP will you visit? Give the HCP's id."]
        else:
            data["hcp_id"] = hcp_id
    try:
        start = form_time("planned_start", "Start")
    except Invalid as exc:
        errors.update(exc.errors)
        start = None
    if start is not None and not MIN_YEAR <= start.year <= MAX_YEAR:
        errors["planned_start"] = [f"Start: the year must be {MIN_YEAR} to {MAX_YEAR}."]
        start = None
    raw = request.form.get("duration_minutes", "").strip()
    minutes = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 4 else 0
    if not 1 <= minutes <= services.MAX_PLAN_HOURS * 60:
        errors["duration_minutes"] = [f"Minutes, a whole number from 1 to {services.MAX_PLAN_HOURS * 60}."]
    elif start is not None:
        data["planned_start"], data["planned_end"] = start, start + timedelta(minutes=minutes)
    mode = request.form.get("mode", "in_person")
    if mode not in PLAN_MODES:
        errors["mode"] = ["Choose in person or remote."]
    data["mode"] = mode
    objective = request.form.get("objective", "").strip()
    if len(objective) > MAX_OBJECTIVE_CHARS or "\x00" in objective:
        errors["objective"] = [f"At most {MAX_OBJECTIVE_CHARS} characters of text."]
    data["objective"] = objective
    products = [p for p in request.form.getlist("products") if p.strip()]
    if len(products) > 20 or any(len(p) > 40 or "\x00" in p for p in products):
        errors["products"] = ["Choose products from the list."]
    data["products"] = products
    return data, errors


@bp.route("/calendar/plans/new", methods=["GET", "POST"])
@page_auth()
def new():
    """Plan a visit. Opened from an HCP page (``?hcp_id=``) the HCP is fixed; otherwise chosen with the
    HCP picker (the rep's own territories only)."""
    require_write(viewer(), "visit_plan.write")
    hcp = None
    hcp_id = page_id(request.values.get("hcp_id"))
    if hcp_id is not None:
        hcp = db.session.get(HCP, hcp_id)
        if hcp is not None:
            # Refuse a rep at once for an HCP outside their territories, not after the form is filled.
            require_write(viewer(), "visit_plan.write", [hcp.territory_id])
    if request.method == "GET":
        return _render_form({"hcp_id": str(hcp_id or ""), "duration_minutes": "30", "mode": "in_person",
                             "products": []}, hcp, {})
    form: dict[str, Any] = {key: request.form.get(key, "") for key in (
        "hcp_id", "planned_start", "duration_minutes", "mode", "objective", "times_utc")}
    form["products"] = request.form.getlist("products")
    if picker.finding():  # "Find" in the HCP picker without JavaScript: the form again, with the matches
        return _render_form(form, hcp, {})
    data, errors = _form_data(with_hcp=True)
    if errors:
        return _render_form(form, hcp, errors, 422)
    try:
        plan = services.create_plan(db.session, actor(), viewer(), data)
    except (Invalid, NotFound) as exc:
        problems = getattr(exc, "errors", None) or {"hcp_id": [exc.detail]}
        return _render_form(form, hcp, problems, 422 if isinstance(exc, Invalid) else 404)
    _flash_conflicts(plan, "Visit planned.")
    return redirect(url_for("visit_plans_pages.show", visit_plan_id=plan.id))


def _flash_conflicts(plan: VisitPlan, done: str) -> None:
    conflicts = services.conflicts_for(db.session, plan)
    if not conflicts:
        flash(done)
        return
    names = "; ".join(f"{plan_time(c.planned_start, 'day')} {plan_time(c.planned_start, 'time')}-"
                      f"{plan_time(c.planned_end, 'time')} with {c.hcp.full_name}" for c in conflicts)
    flash(f"{done} Note: it overlaps {len(conflicts)} other planned visit(s) of yours: {names}.")


# -- one plan --------------------------------------------------------------------------------------

def _render_show(plan: VisitPlan, errors: dict[str, list[str]] | None = None, status: int = 200,
                 form: dict[str, Any] | None = None) -> Any:
    shown = services.visible_plan(db.session, viewer(), plan)
    mine = plan.owner_id == actor().id and plan.status == "planned"
    conflicts = services.conflicts_for(db.session, plan) if mine else []
    names = {u.id: u.name for u in db.session.scalars(select(User).where(
        User.id.in_([r["changed_by_id"] for r in shown["reschedules"] if r["changed_by_id"]] or [0])))}
    minutes = int((plan.planned_end - plan.planned_start).total_seconds() // 60)
    return render_template(
        "visit_plans/show.html", plan=shown, hcp=plan.hcp, can_change=mine and not shown["redacted"],
        conflicts=conflicts, names=names, errors=errors or {}, max_reason=MAX_REASON_CHARS,
        form=form or {"planned_start": plan_time(plan.planned_start, "input"), "duration_minutes": str(minutes),
                      "times_utc": "1"}), status


@bp.get("/calendar/plans/<int:visit_plan_id>")
@page_auth()
def show(visit_plan_id: int):
    return _render_show(services.read_plan(db.session, viewer(), visit_plan_id))


def _owned_plan(visit_plan_id: int) -> VisitPlan:
    """The plan for a change from its page; the service refuses anyone but the owner (403), before the form
    is read again."""
    plan = services.get_plan(db.session, visit_plan_id)
    require_owner(viewer(), plan.owner_id, "visit_plan.edit")
    return plan


@bp.post("/calendar/plans/<int:visit_plan_id>/reschedule")
@page_auth()
def reschedule(visit_plan_id: int):
    plan = _owned_plan(visit_plan_id)
    form = {key: request.form.get(key, "") for key in ("planned_start", "duration_minutes", "times_utc", "reason")}
    data, errors = _form_data(with_hcp=False)
    data = {k: v for k, v in data.items() if k in ("planned_start", "planned_end")}
    reason = form["reason"].strip()
    if len(reason) > MAX_REASON_CHARS or "\x00" in reason:
        errors["reason"] = [f"At most {MAX_REASON_CHARS} characters of text."]
    if errors:
        return _render_show(plan, errors, 422, form)
    try:
        services.update_plan(db.session, actor(), viewer(), plan, {**data, "reason": reason},
                             expected_version=page_id(request.form.get("version")))
    except Invalid as exc:
        return _render_show(plan, exc.errors or {"_schema": [exc.detail]}, 422, form)
    _flash_conflicts(plan, "Visit rescheduled.")
    return redirect(url_for("visit_plans_pages.show", visit_plan_id=plan.id))


@bp.post("/calendar/plans/<int:visit_plan_id>/cancel")
@page_auth()
def cancel(visit_plan_id: int):
    plan = _owned_plan(visit_plan_id)
    reason = request.form.get("reason", "").strip()
    if len(reason) > MAX_REASON_CHARS or "\x00" in reason:
        return _render_show(plan, {"reason": [f"At most {MAX_REASON_CHARS} characters of text."]}, 422)
    services.cancel_plan(db.session, actor(), viewer(), plan, reason,
                         expected_version=page_id(request.form.get("version")))
    flash("Planned visit cancelled.")
    return redirect(url_for("visit_plans_pages.week", week=plan_time(plan.planned_start, "date")))


@bp.post("/calendar/plans/<int:visit_plan_id>/start")
@page_auth()
def start(visit_plan_id: int):
    """The one tap: the plan becomes a draft visit, and the visit form opens on it."""
    plan = _owned_plan(visit_plan_id)
    try:
        visit = services.start_plan(db.session, actor(), viewer(), plan,
                                    expected_version=page_id(request.form.get("version")))
    except Invalid as exc:
        return _render_show(plan, exc.errors or {"_schema": [exc.detail]}, 422)
    flash("Draft visit started from your plan: complete it and submit.")
    return redirect(url_for("visits_pages.edit", visit_id=visit.id))


# -- planned vs done -------------------------------------------------------------------------------

def _form_date(name: str) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise Invalid(errors={name: ["Enter a date (YYYY-MM-DD)."]}) from None
    if not MIN_YEAR <= value.year <= MAX_YEAR - 1:
        raise Invalid(errors={name: [f"The year must be {MIN_YEAR} to {MAX_YEAR - 1}."]})
    return value


@bp.get("/calendar/planned-vs-done")
@page_auth()
def planned_vs_done():
    """Per HCP: plans in the period against submitted visits, for one person (a rep: themselves)."""
    since_arg, until_arg = _form_date("since"), _form_date("until")
    if since_arg and until_arg and until_arg < since_arg:
        raise Invalid(errors={"until": ["must not be before since"]})
    if since_arg and until_arg and (until_arg - since_arg).days > 366:
        raise Invalid(errors={"until": ["a period lasts at most 367 days"]})
    since, until = services.period(since_arg, until_arg)
    raw_owner = request.args.get("owner_id", "").strip()
    owner_id = page_id(raw_owner)
    if raw_owner and owner_id is None:
        raise Invalid(errors={"owner_id": ["Choose a person from the list."]})
    if owner_id is not None and db.session.get(User, owner_id) is None:
        raise NotFound(f"User {owner_id} does not exist.")
    owner_id = services.planned_vs_done_owner(viewer(), owner_id, None)
    totals, rows = services.planned_vs_done(db.session, since, until, owner_id=owner_id)
    people = [] if viewer().role == "field_rep" else list(db.session.scalars(
        select(User).where(User.role.in_(("field_rep", "medical"))).order_by(User.name)))
    return render_template("visit_plans/planned_vs_done.html", since=since, until=until, totals=totals, rows=rows,
                           owner=db.session.get(User, owner_id) if owner_id else None, people=people,
                           now=datetime.now(UTC))

