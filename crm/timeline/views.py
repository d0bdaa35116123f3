"""Pages: the HCP page (profile, contact-fatigue strip, timeline) and the interaction feed."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import select

from crm.access.policy import ROLE_LABELS, write_decision
from crm.auth.context import page_auth, viewer
from crm.errors import Invalid, NotFound
from crm.extensions import db
from crm.hcps.models import HCP, Territory
from crm.hcps.professions import PROFESSIONS
from crm.hcps.services import hcp_public_dict
from crm.timeline import queries
from crm.timeline.models import CHANNELS

bp = Blueprint("timeline_pages", __name__)

CHANNEL_ICONS = {
    "visit": "🤝", "email": "✉️", "event": "🎤", "call_centre": "☎️", "order": "📦", "survey": "📝",
    "consent": "✅",
}
PAGE_SIZE = 50
FEED_DEFAULT_DAYS = 7


def _day(name: str) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise Invalid(errors={name: ["Not a valid date (YYYY-MM-DD)."]}) from None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _page_filters(default_since: date | None = None) -> tuple[queries.TimelineFilters, dict[str, Any]]:
    """Filters from the form (dates are whole UTC days; ``until`` is the last day shown, inclusive)
    and the values to put back into the form and the paging links."""
    channels = [c for c in request.args.getlist("channel") if c in CHANNELS]
    since_day = _day("since") or default_since
    until_day = _day("until")
    if since_day and until_day and until_day < since_day:
        raise Invalid(errors={"until": ["must not be before since"]})
    filters = queries.TimelineFilters(
        channels=channels,
        since=_midnight(since_day) if since_day else None,
        until=_midnight(until_day + timedelta(days=1)) if until_day else None,
    )
    form: dict[str, Any] = {
        "channel": channels,
        "since": since_day.isoformat() if since_day else "",
        "until": until_day.isoformat() if until_day else "",
    }
    return filters, form


def _hcp_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db.session.execute(select(HCP.id, HCP.first_name, HCP.last_name).where(HCP.id.in_(ids)))
    return {i: f"{first} {last}" for i, first, last in rows}


def _context() -> dict[str, Any]:
    return {"icons": CHANNEL_ICONS, "channels": CHANNELS, "role_labels": ROLE_LABELS}


@bp.get("/hcps/<int:hcp_id>")
@page_auth()
def hcp(hcp_id: int):
    """Profile, contact-fatigue strip and the timeline with filters and paging."""
    record = db.session.get(HCP, hcp_id)
    if record is None:
        raise NotFound(f"There is no HCP with id {hcp_id}.")
    who = viewer()
    filters, form = _page_filters()
    cursor = request.args.get("cursor") or None
    items, next_cursor = queries.timeline_page(db.session, who, hcp_id, filters, PAGE_SIZE, cursor)
    others = {h for item in items for h in item["hcp_ids"] if h != hcp_id}
    if record.merged_into_id:
        others.add(record.merged_into_id)
    return render_template(
        "timeline/hcp.html",
        hcp=record,
        profile=hcp_public_dict(db.session, who, record),
        strip=queries.fatigue_strip(db.session, hcp_id),
        items=items,
        next_cursor=next_cursor,
        cursor=cursor,
        form=form,
        names=_hcp_names(others),
        # The buttons follow the write rules: a rep logs visits only in own territories (policy.py).
        can_log_visit=write_decision(who, "visit.create", [record.territory_id]).allowed,
        can_log_contact=write_decision(who, "call_centre.contact").allowed,
        **_context(),
    )


@bp.get("/feed")
@page_auth()
def feed():
    """What happened across all HCPs (the last 7 days unless asked otherwise), with counts per channel."""
    filters, form = _page_filters(default_since=datetime.now(UTC).date() - timedelta(days=FEED_DEFAULT_DAYS))
    for key in ("product", "territory", "profession", "specialty"):
        form[key] = request.args.get(key, "").strip()
    if form["profession"] and form["profession"] not in PROFESSIONS:
        raise Invalid(errors={"profession": [f"must be one of {', '.join(PROFESSIONS)}"]})
    filters.products = [form["product"]] if form["product"] else []
    filters.territory = form["territory"] or None
    filters.profession = form["profession"] or None
    filters.specialty = form["specialty"] or None
    who = viewer()
    cursor = request.args.get("cursor") or None
    items, next_cursor = queries.feed_page(db.session, who, filters, PAGE_SIZE, cursor)
    return render_template(
        "timeline/feed.html",
        items=items,
        next_cursor=next_cursor,
        cursor=cursor,
        form=form,
        counts=queries.feed_channel_counts(db.session, who, filters),
        territories=db.session.execute(select(Territory.code, Territory.name).order_by(Territory.code)).all(),
        professions=PROFESSIONS,
        names=_hcp_names({h for item in items for h in item["hcp_ids"]}),
        **_context(),
    )
