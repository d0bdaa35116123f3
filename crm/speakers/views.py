"""Speaker pages: the KOL profile and speaker qualifications on the HCP page, the speaker picker on the event
page. Both pages belong to other features; they include this feature's parts (``kol_panel``,
``event_speakers``) and post here."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from sqlalchemy import select

from crm.access.policy import write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.db import utcnow
from crm.errors import Invalid
from crm.events.models import Event
from crm.events.services import get_event
from crm.extensions import db
from crm.hcps.models import HCP
from crm.hcps.services import get_hcp
from crm.navigation import url_if_known
from crm.pageforms import page_id
from crm.schemas import MAX_YEAR, MIN_YEAR
from crm.speakers import services
from crm.speakers.models import INFLUENCE_TIERS

bp = Blueprint("speakers_pages", __name__)


@bp.app_context_processor
def _page_parts() -> dict[str, Any]:
    """For the HCP page and the event page: ``{% include "speakers/_hcp_kol.html" %}`` and
    ``{% include "speakers/_event_speakers.html" %}``."""
    return {"kol_panel": kol_panel, "event_speakers": event_speakers}


def _can(action: str) -> bool:
    return write_decision(viewer(), action).allowed


def kol_panel(hcp_id: int) -> dict[str, Any]:
    hcp = db.session.get(HCP, hcp_id)
    today = utcnow().date()
    quals = services.qualifications(db.session, hcp_id)
    return {
        "hcp_id": hcp_id, "tier": hcp.influence_tier if hcp else None, "tiers": INFLUENCE_TIERS,
        "tier_labels": services.TIER_LABELS, "expertise": list(hcp.expertise or []) if hcp else [],
        "qualifications": [{"q": q, "valid_today": q.trained_on <= today <= q.valid_until} for q in quals],
        "engagements": services.speaking_engagements(db.session, hcp_id),
        "can_edit_kol": _can("kol.write"), "can_qualify": _can("speaker.qualify"), "today": today.isoformat(),
    }


def event_speakers(event_id: int) -> dict[str, Any]:
    event = db.session.get(Event, event_id)
    rows = services.speakers(db.session, event) if event else []
    hcps = {h.id: h for h in db.session.scalars(select(HCP).where(HCP.id.in_([s.hcp_id for s in rows])))} \
        if rows else {}
    return {"speakers": [(s, hcps.get(s.hcp_id)) for s in rows], "can_add": _can("event.write"),
            "hcp_url": lambda i: url_if_known("timeline_pages.hcp", hcp_id=i) or f"/hcps/{i}"}


def _hcp_page(hcp_id: int) -> str:
    return (url_if_known("timeline_pages.hcp", hcp_id=hcp_id) or f"/hcps/{hcp_id}") + "#kol"


def _form_date(name: str, label: str) -> date:
    raw = request.form.get(name, "").strip()
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise Invalid(errors={name: [f"{label}: enter a date (YYYY-MM-DD)."]}) from None
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise Invalid(errors={name: [f"{label}: the year must be {MIN_YEAR} to {MAX_YEAR}."]})
    return value


def _clean(text: str) -> str:
    return text.replace("\x00", "")


def _messages(exc: Invalid) -> str:
    return " ".join(m for ms in exc.errors.values() for m in ms) or exc.detail


@bp.post("/hcps/<int:hcp_id>/kol-profile")
@page_auth("medical", "admin")
def kol_profile(hcp_id: int):
    hcp = get_hcp(db.session, hcp_id)
    tier = request.form.get("influence_tier", "").strip() or None
    areas = [a for a in _clean(request.form.get("expertise", "")).replace(";", ",").split(",") if a.strip()]
    try:
        services.set_kol_profile(db.session, actor(), viewer(), hcp, influence_tier=tier, expertise=areas)
    except Invalid as exc:
        flash("KOL profile not saved: " + _messages(exc))
    else:
        flash("KOL profile saved.")
    return redirect(_hcp_page(hcp_id))


@bp.post("/hcps/<int:hcp_id>/speaker-qualifications")
@page_auth("medical", "admin")
def qualify(hcp_id: int):
    hcp = get_hcp(db.session, hcp_id)
    topics = [t for t in _clean(request.form.get("topics", "")).replace(";", ",").split(",") if t.strip()]
    try:
        services.add_qualification(db.session, actor(), viewer(), hcp, topics=topics,
                                   trained_on=_form_date("trained_on", "Trained on"),
                                   valid_until=_form_date("valid_until", "Valid until"),
                                   note=_clean(request.form.get("note", ""))[:2000])
    except Invalid as exc:
        flash("Qualification not recorded: " + _messages(exc))
    else:
        flash("Speaker qualification recorded.")
    return redirect(_hcp_page(hcp_id))


@bp.post("/events/<int:event_id>/speakers")
@page_auth("marketer", "medical")
def add_speaker(event_id: int):
    event = get_event(db.session, event_id)
    back = url_for("events_pages.show", event_id=event.id) + "#speakers"
    hcp_id = page_id(request.form.get("hcp_id"))
    if hcp_id is None or db.session.get(HCP, hcp_id) is None:
        flash("Speaker not added: give the id of an existing HCP.")
        return redirect(back)
    fee_raw = request.form.get("fee", "").strip()
    fee = None
    if fee_raw:
        try:
            fee = Decimal(fee_raw)
        except InvalidOperation:
            fee = None
        if fee is None or not fee.is_finite() or not 0 <= fee < Decimal("99999999999"):
            flash("Speaker not added: the fee is not an amount.")
            return redirect(back)
    try:
        speaker = services.add_speaker(db.session, actor(), viewer(), event, hcp_id=hcp_id,
                                       topic=_clean(request.form.get("topic", ""))[:200], fee_amount=fee,
                                       fee_currency=_clean(request.form.get("currency", ""))[:3] or None)
    except Invalid as exc:
        flash("Speaker refused: " + _messages(exc))
    else:
        flash(f"Speaker added on “{speaker.topic}”.")
    return redirect(back)
