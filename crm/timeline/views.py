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
from crm.icons import CHANNEL_ICONS
from crm.navigation import url_if_known
from crm.timeline import queries
from crm.timeline.models import CHANNELS, Interaction

bp = Blueprint("timeline_pages", __name__)

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


def record_links(items: list[dict[str, Any]]) -> dict[int, tuple[str, str]]:
    """``{item id: (url, label)}``: the page of the record each item came from (a visit, a call-centre
    contact or inquiry answer, an order, an event, a campaign), where that feature is installed.

    Found from the stored records (their links to their items, or the stored item's event or campaign id),
    not from the item as the viewer sees it, so a redacted item links too: every target page reads
    through ``crm.access.reads`` and redacts for the viewer itself (tests/test_sensitive_reads.py walks
    each of them), and every role may open them.
    """
    ids = [item["id"] for item in items]
    if not ids:
        return {}
    from crm.callcentre.models import Contact, MedicalInquiry
    from crm.orders.models import OrderEvent
    from crm.visits.models import Visit

    found: dict[int, tuple[str, int]] = {}  # item id -> (endpoint, record id)
    lookups: list[tuple[Any, Any, str]] = [
        (Visit.interaction_id, Visit.id, "visits_pages.edit"),
        (Contact.interaction_id, Contact.id, "callcentre_pages.contact"),
        (MedicalInquiry.answer_interaction_id, MedicalInquiry.id, "callcentre_pages.inquiry"),
        (OrderEvent.interaction_id, OrderEvent.order_id, "orders_pages.show"),
    ]
    for item_column, record_column, endpoint in lookups:
        for item_id, record_id in db.session.execute(select(item_column, record_column).where(item_column.in_(ids))):
            found.setdefault(item_id, (endpoint, record_id))
    # Event items (invited, registered, attended, no-show; attended items are superseded as attendance
    # grows) and campaign mails name their event or campaign in their details: only that id is used.
    by_channel = {"event": ("event_id", "events_pages.show"), "email": ("campaign_id", "campaigns_pages.show"),
                  "survey": ("survey_id", "surveys_pages.show")}
    rows = db.session.execute(select(Interaction.id, Interaction.channel, Interaction.details)
                              .where(Interaction.id.in_(ids), Interaction.channel.in_(by_channel)))
    for item_id, channel, details in rows:
        key, endpoint = by_channel[channel]
        record_id = (details or {}).get(key)
        if isinstance(record_id, int) and not isinstance(record_id, bool):
            found.setdefault(item_id, (endpoint, record_id))
    links = {}
    for item_id, (endpoint, record_id) in found.items():
        url = url_if_known(endpoint, **{_ID_ARGS[endpoint]: record_id})
        if url is not None:
            links[item_id] = (url, _LINK_LABELS[endpoint])
    return links


_ID_ARGS = {"visits_pages.edit": "visit_id", "callcentre_pages.contact": "contact_id",
            "callcentre_pages.inquiry": "inquiry_id", "orders_pages.show": "order_id",
            "events_pages.show": "event_id", "campaigns_pages.show": "campaign_id",
            "surveys_pages.show": "survey_id"}
_LINK_LABELS = {"visits_pages.edit": "Open the visit", "callcentre_pages.contact": "Open the contact",
                "callcentre_pages.inquiry": "Open the medical inquiry", "orders_pages.show": "Open the order",
                "events_pages.show": "Open the event", "campaigns_pages.show": "Open the campaign",
                "surveys_pages.show": "Open the survey"}


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
    queries.for_pages(items)
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
        links=record_links(items),
        # The buttons follow the write rules: a rep logs visits only in own territories (policy.py).
        can_log_visit=write_decision(who, "visit.create", [record.territory_id]).allowed,
        can_log_contact=write_decision(who, "call_centre.contact").allowed,
        can_capture_survey=write_decision(who, "survey.capture", [record.territory_id]).allowed,
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
    queries.for_pages(items)
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
        links=record_links(items),
        **_context(),
    )
