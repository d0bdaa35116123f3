"""Call-centre pages: the agent's fast contact page, the medical-inquiry queue and the adverse-event queue."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from crm.access.policy import require_write, write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.callcentre import services
from crm.callcentre.models import DIRECTIONS, MEDIA, REASONS, AdverseEventCase, MedicalInquiry
from crm.callcentre.schemas import ANSWER_MEDIA
from crm.db import utcnow
from crm.errors import Invalid
from crm.extensions import db
from crm.hcps.models import HCP
from crm.hcps.services import search_hcps
from crm.navigation import url_if_known
from crm.pageforms import form_time

bp = Blueprint("callcentre_pages", __name__)
QUEUE_SIZE = 100


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"url_if_known": url_if_known, "reason_labels": services.REASON_LABELS}


def _hcps(ids: set[int]) -> dict[int, HCP]:
    if not ids:
        return {}
    return {h.id: h for h in db.session.scalars(select(HCP).where(HCP.id.in_(ids)))}


@bp.route("/call-centre", methods=["GET", "POST"])
@page_auth("call_centre")
def agent():
    """Search the HCP, pick them, type the contact: one page, few clicks, times default to now."""
    q = request.args.get("q", "").strip()
    raw_id = request.values.get("hcp_id", "").strip()
    hcp = db.session.get(HCP, int(raw_id)) if raw_id.isdigit() else None
    matches: list[HCP] = []
    if q and hcp is None:
        matches, _ = search_hcps(db.session, viewer(), q=q, limit=20)
    form: dict[str, Any] = dict(request.form) if request.method == "POST" else {"direction": "inbound",
                                                                                "medium": "phone"}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        if hcp is None:
            errors["hcp_id"] = ["Search and pick the HCP first."]
        else:
            try:
                follow_raw = form.get("follow_up_date", "").strip()
                try:
                    follow_date = date.fromisoformat(follow_raw) if follow_raw else None
                except ValueError:
                    raise Invalid(errors={"follow_up_date": ["Not a date."]}) from None
                result = services.create_contact(
                    db.session, actor(), viewer(), hcp_id=hcp.id,
                    occurred_at=form_time("occurred_at", "When") or utcnow(),
                    direction=form.get("direction", ""), medium=form.get("medium", ""),
                    reason=form.get("reason", ""), summary=form.get("summary", ""), details=form.get("details", ""),
                    products=[p for p in form.get("products", "").replace(";", ",").split(",") if p.strip()],
                    follow_up_date=follow_date, follow_up_text=form.get("follow_up_text") or None,
                )
            except Invalid as exc:
                errors = exc.errors or {"_": [exc.detail]}
            else:
                return redirect(url_for(".contact", contact_id=result.contact.id))
    return render_template("callcentre/agent.html", q=q, matches=matches, hcp=hcp, form=form, errors=errors,
                           directions=DIRECTIONS, media=MEDIA, reasons=REASONS), 422 if errors else 200


@bp.get("/call-centre/contacts/<int:contact_id>")
@page_auth()
def contact(contact_id: int):
    """The saved contact, its guardrail hits, and what it opened (inquiry, case) or offers to open."""
    record = services.get_contact(db.session, contact_id)
    who = viewer()
    shown = services.contact_dict(db.session, who, record)
    case_id = db.session.scalar(select(AdverseEventCase.id).where(AdverseEventCase.contact_id == record.id))
    inquiry_id = db.session.scalar(select(MedicalInquiry.id).where(MedicalInquiry.contact_id == record.id))
    offer = (shown["visibility"]["level"] == "full" and case_id is None and record.reason != "adverse_event"
             and any(h.get("category") == "adverse_event" for h in record.guardrail_hits or [])
             and write_decision(who, "adverse_event.open").allowed)
    return render_template("callcentre/contact.html", c=shown, hcp=db.session.get(HCP, record.hcp_id),
                           case_id=case_id, inquiry_id=inquiry_id, offer=offer)


@bp.post("/call-centre/contacts/<int:contact_id>/adverse-event-case")
@page_auth("call_centre", "medical")
def open_case(contact_id: int):
    record = services.get_contact(db.session, contact_id)
    case = services.open_case_from_contact(db.session, actor(), viewer(), record,
                                           reporter=request.form.get("reporter"), product=request.form.get("product"))
    flash(f"Adverse-event case {case.id} opened; due {case.due_at:%Y-%m-%d %H:%M} UTC.")
    return redirect(url_for(".case", case_id=case.id))


@bp.get("/medical-inquiries")
@page_auth()
def inquiries():
    require_write(viewer(), "medical_inquiry.queue")
    status = request.args.get("status", "open")
    rows, _ = services.inquiry_page(db.session, status if status in ("open", "answered", "closed") else None,
                                    QUEUE_SIZE, None)
    who = viewer()
    return render_template("callcentre/inquiries.html", rows=services.inquiry_dicts(db.session, who, rows),
                           hcps=_hcps({r.hcp_id for r in rows}), status=status)


@bp.route("/medical-inquiries/<int:inquiry_id>", methods=["GET", "POST"])
@page_auth()
def inquiry(inquiry_id: int):
    record = services.get_inquiry(db.session, inquiry_id)
    who = viewer()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            services.answer_inquiry(db.session, actor(), who, record, answer=request.form.get("answer", ""),
                                    medium=request.form.get("medium", ""))
        except Invalid as exc:
            errors = exc.errors
        else:
            flash("Answer recorded.")
            return redirect(url_for(".inquiry", inquiry_id=record.id))
    return render_template("callcentre/inquiry.html", i=services.inquiry_dict(db.session, who, record),
                           hcp=db.session.get(HCP, record.hcp_id), errors=errors, media=ANSWER_MEDIA,
                           can_answer=write_decision(who, "medical_inquiry.answer").allowed), 422 if errors else 200


@bp.get("/adverse-events")
@page_auth()
def cases():
    require_write(viewer(), "adverse_event.queue")
    status = request.args.get("status", "open")
    rows, _ = services.case_page(db.session, status if status in ("open", "closed") else None, None, QUEUE_SIZE,
                                 None)
    who = viewer()
    shown = services.case_dicts(db.session, who, rows)
    return render_template("callcentre/cases.html", rows=shown, hcps=_hcps({r.hcp_id for r in rows}), status=status,
                           overdue=sum(1 for r in shown if r["overdue"] and r["status"] == "open"))


@bp.route("/adverse-events/<int:case_id>", methods=["GET", "POST"])
@page_auth()
def case(case_id: int):
    record = services.get_case(db.session, case_id)
    who = viewer()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            services.close_case(db.session, actor(), who, record, forwarded_by=request.form.get("forwarded_by"),
                                forwarded_at=form_time("forwarded_at", "Forwarded at", required=False),
                                pv_reference=request.form.get("pv_reference"))
        except Invalid as exc:
            errors = exc.errors
        else:
            flash(f"Case {record.id} closed.")
            return redirect(url_for(".case", case_id=record.id))
    return render_template("callcentre/case.html", k=services.case_dict(db.session, who, record),
                           hcp=db.session.get(HCP, record.hcp_id), errors=errors, form=request.form,
                           can_close=write_decision(who, "adverse_event.close").allowed), 422 if errors else 200
