"""Insights pages: the one insights page for every role (each chart with its table and a CSV export), and
the glossary (the lexicon ``crm.glossary``, the KPI definitions and the touch table ``crm.insights.kpis``,
generated from the code that the product itself counts with)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, Response, render_template, request
from markupsafe import Markup
from sqlalchemy import select

from crm.auth.context import page_auth, viewer
from crm.errors import Invalid
from crm.extensions import db
from crm.glossary import TERMS
from crm.insights import charts, services
from crm.insights.kpis import KPIS, TOUCHES
from crm.pageforms import page_id
from crm.plans.services import readable_plan_ids
from crm.reports import to_csv
from crm.schemas import MAX_YEAR, MIN_YEAR
from crm.segments.models import Segment

bp = Blueprint("insights_pages", __name__)


@bp.get("/glossary")
@page_auth()
def glossary():
    return render_template("insights/glossary.html", terms=TERMS, kpis=KPIS, touches=TOUCHES)


# -- the period and segment of a page or CSV link -------------------------------------------------------

def _day(name: str, label: str, errors: dict[str, list[str]]) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw[:10]) if raw.isascii() and len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        errors[name] = [f"{label}: enter a date as YYYY-MM-DD"]
    elif not MIN_YEAR <= day.year <= MAX_YEAR - 1:
        errors[name] = [f"{label}: choose a date in the years {MIN_YEAR} to {MAX_YEAR - 1}"]
        day = None
    return day


def _window() -> services.Window:
    """``?since=YYYY-MM-DD&until=YYYY-MM-DD`` (both days included, UTC) and ``?segment_id=``; ``Invalid``
    with a message per field otherwise."""
    errors: dict[str, list[str]] = {}
    first, last = _day("since", "From", errors), _day("until", "To", errors)
    raw_segment = request.args.get("segment_id", "").strip()
    segment_id = page_id(raw_segment) if raw_segment else None
    if raw_segment and segment_id is None:
        errors["segment_id"] = ["Segment: not a segment id"]
    if errors:
        raise Invalid("The period or segment cannot be used for insights.", errors=errors)
    since = datetime.combine(first, time.min, tzinfo=UTC) if first else None
    until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC) if last else None
    return services.window(db.session, since=since, until=until, segment_id=segment_id)


def _messages(exc: Invalid) -> list[str]:
    labels = {"since": "From", "until": "To", "segment_id": "Segment"}
    out = []
    for key, values in exc.errors.items():
        for v in values:
            out.append(v if v.split(":")[0] in labels.values() else f"{labels.get(key, key)}: {v}")
    return out or [exc.detail]


# -- charts and tables -------------------------------------------------------------------------------

def _week_label(day: date) -> str:
    return f"{day:%d %b}".lstrip("0")


def _period_text(data: dict[str, Any]) -> str:
    last = data["until"] - timedelta(microseconds=1)
    segment = f", {data['segment']['name']}" if data["segment"] else ""
    return f"{data['since']:%Y-%m-%d} to {last:%Y-%m-%d}{segment}"


def _label(value: str) -> str:
    return value.replace("_", " ")


def chart_channel_mix(data: dict[str, Any]) -> Markup:
    weeks = data["weeks"]
    index = {(i["week_start"], i["channel"]): i["interactions"] for i in data["items"]}
    used = [t for t in data["totals"] if t["interactions"]]
    series = [charts.Series(t["label"], [index[(wk, t["channel"])] for wk in weeks]) for t in used]
    totals = ", ".join(f"{t['label']} {t['interactions']}" for t in used) or "no interactions"
    return charts.columns("Interactions per channel per week",
                          f"Stacked columns, one per week, {_period_text(data)}. Totals: {totals}.",
                          [_week_label(wk) for wk in weeks], series)


def chart_reach(data: dict[str, Any]) -> Markup:
    items = data["items"]
    return charts.hbar("Reach rate by segment",
                       "Bars: share of each segment's HCPs touched at least once, " + _period_text(data) + ". "
                       + "; ".join(f"{r['segment']} {r['reach']} of {r['hcps']}" for r in items) + ".",
                       [r["segment"] for r in items],
                       [charts.Series("Reach rate", [r["reach_rate_pct"] for r in items])], unit=" %", max_value=100)


def chart_funnel(data: dict[str, Any]) -> Markup:
    steps = services.FUNNEL_STEPS
    totals = data["totals"]
    return charts.hbar("Campaign funnel",
                       f"Bars: HCPs per step over {data['campaigns']} campaign(s) sent {_period_text(data)}. "
                       + ", ".join(f"{services.FUNNEL_LABELS[s]} {totals[s]}" for s in steps) + ".",
                       [services.FUNNEL_LABELS[s] for s in steps] if data["campaigns"] else [],
                       [charts.Series("HCPs", [totals[s] for s in steps])])


def chart_coverage(data: dict[str, Any]) -> Markup:
    rows = [r for r in data["items"] if r["granted"] + r["pending"] + r["withdrawn"] + r["expired"]]
    labels = [f"{_label(r['channel'])}, {_label(r['purpose'])}" for r in rows]
    series = [charts.Series(state.capitalize(), [r[state] for r in rows]) for state in services.COVERAGE_STATES]
    return charts.hbar("Consent coverage per channel and purpose",
                       f"Stacked bars: {data['hcps']} HCPs per consent state now, for the channel and purpose "
                       "pairs that hold any consent. " + "; ".join(
                           f"{lab}: {r['coverage_pct']} % granted" for lab, r in zip(labels, rows, strict=True)),
                       labels, series)


def chart_plans(data: dict[str, Any]) -> Markup:
    items = data["items"]
    return charts.hbar("Engagement plan attainment",
                       "Bars: attainment of each plan whose cycle meets " + _period_text(data) + ". "
                       + "; ".join(f"{p['name']} {p['attainment_pct']} %" for p in items),
                       [p["name"] for p in items],
                       [charts.Series("Attainment", [p["attainment_pct"] for p in items])], unit=" %", max_value=100)


def chart_nps(data: dict[str, Any]) -> Markup:
    items = data["items"]
    return charts.line("NPS per month",
                       f"Line from -100 to 100, one point per month with answers, {_period_text(data)}. "
                       + "; ".join(f"{m['month']}: {m['nps'] if m['nps'] is not None else 'no answers'}"
                                   for m in items),
                       [m["month"] for m in items], [charts.Series("NPS", [m["nps"] for m in items])], lo=-100, hi=100)


CHART_OF: dict[str, Callable[[dict[str, Any]], Markup]] = {
    "channel-mix": chart_channel_mix, "reach": chart_reach, "campaign-funnel": chart_funnel,
    "consent-coverage": chart_coverage, "plan-attainment": chart_plans, "nps-trend": chart_nps,
}


def csv_table(name: str, data: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The chart's figures as a CSV header and rows (the same figures as its table on the page)."""
    if name == "channel-mix":
        return (["week_start", "channel", "interactions", "restricted"],
                [[i["week_start"].isoformat(), i["channel"], i["interactions"], i["restricted"]]
                 for i in data["items"]])
    if name == "reach":
        keys = ["segment_id", "segment", "hcps", "reach", "reach_rate_pct", "touches", "frequency"]
        return keys, [[r[k] for k in keys] for r in data["items"]]
    if name == "campaign-funnel":
        keys = ["campaign_id", "name", "sent_at", *services.FUNNEL_STEPS]
        return keys, [[r[k] for k in keys] for r in data["items"]]
    if name == "consent-coverage":
        keys = ["channel", "purpose", *services.COVERAGE_STATES, "coverage_pct"]
        return keys, [[r[k] for k in keys] for r in data["items"]]
    if name == "plan-attainment":
        keys = ["plan_id", "name", "cycle_start", "cycle_end", "hcps", "planned", "attained", "touches",
                "attainment_pct", "reach", "reach_rate_pct", "behind"]
        return keys, [[r[k].isoformat() if isinstance(r[k], date) else r[k] for k in keys] for r in data["items"]]
    keys = ["month", "responses", "promoters", "passives", "detractors", "nps"]
    return keys, [[m[k] for k in keys] for m in data["items"]]


# -- the page and the CSV exports ---------------------------------------------------------------------

def _page(errors: list[str] | None = None, status: int = 200) -> Any:
    segments = list(db.session.scalars(select(Segment).order_by(Segment.name).limit(500)))
    if errors:
        return render_template("insights/index.html", errors=errors, segments=segments, args=request.args,
                               w=None, data={}, svg={}, channel_labels=services.CHANNEL_LABELS, label=_label,
                               funnel_labels=services.FUNNEL_LABELS), status
    w = _window()
    data = services.all_insights(db.session, w)
    svg = {name: CHART_OF[name](figures) for name, figures in data.items()}
    last_day = (w.until - timedelta(microseconds=1)).date()
    return render_template("insights/index.html", errors=[], segments=segments, args=request.args, w=w,
                           first_day=w.since.date(), last_day=last_day, data=data, svg=svg,
                           openable_plans=readable_plan_ids(  # only links a viewer can follow
                               db.session, viewer(), [p["plan_id"] for p in data["plan-attainment"]["items"]]),
                           channel_labels=services.CHANNEL_LABELS, label=_label,
                           funnel_labels=services.FUNNEL_LABELS), status


@bp.get("/insights")
@page_auth()
def index():
    """Every role: the same figures for the period and segment chosen (counts only, never content)."""
    try:
        return _page()
    except Invalid as exc:
        return _page(_messages(exc), 422)


def _csv_view(name: str) -> Callable[[], Any]:
    def export() -> Any:
        try:
            w = _window()
        except Invalid as exc:
            return _page(_messages(exc), 422)
        header, rows = csv_table(name, services.CHARTS[name](db.session, w))
        stamp = f"{w.since:%Y%m%d}-{(w.until - timedelta(microseconds=1)):%Y%m%d}"
        return Response(to_csv(header, rows), mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="insights-{name}-{stamp}.csv"'})
    export.__name__ = f"csv_{name.replace('-', '_')}"
    export.__doc__ = f"The {name} figures of the insights page as CSV (same period and segment arguments)."
    return export


for _name in services.CHARTS:
    bp.add_url_rule(f"/insights/{_name}.csv", view_func=page_auth()(_csv_view(_name)), methods=["GET"])
