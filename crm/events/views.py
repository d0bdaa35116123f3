"""Event pages: the list, a new event, the event page with its invitation screen and transfers, the
tablet tick list, the attendance upload, and the transparency report."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from crm.access.policy import require_write, write_decision
from crm.auth.context import actor, page_auth, viewer
from crm.db import utcnow
from crm.errors import Invalid, NotFound
from crm.events import reports, services
from crm.events.currencies import CURRENCIES
from crm.events.models import EVENT_TYPES, INVITED, TRANSFER_KINDS, Invitation
from crm.extensions import db
from crm.hcps.models import HCP
from crm.hcps.services import search_hcps
from crm.integrations.eventplatform import attendance as attendance_import
from crm.jobs.views import STATE_TEXT
from crm.navigation import url_if_known
from crm.pageforms import form_int_list, form_time, page_id

bp = Blueprint("events_pages", __name__)
MAX_UPLOAD_ROWS_SHOWN = 500


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"url_if_known": url_if_known, "type_labels": services.TYPE_LABELS, "kind_labels": services.KIND_LABELS}


@bp.app_context_processor
def _hcp_page_helpers() -> dict[str, Any]:
    """For the HCP page (another feature's template): ``{% include "events/_hcp_transfers.html" %}``."""
    return {"hcp_transfer_status": hcp_transfer_status}


def hcp_transfer_status(hcp: HCP) -> dict[str, Any]:
    """The HCP's transfers of value this year: totals per currency and the cap of their country."""
    return services.cap_statuses(db.session, [hcp], utcnow().year)[hcp.id]


def _can(action: str) -> bool:
    return write_decision(viewer(), action).allowed


def _names(ids: set[int]) -> dict[int, HCP]:
    if not ids:
        return {}
    return {h.id: h for h in db.session.scalars(select(HCP).where(HCP.id.in_(ids)))}


@bp.get("/events")
@page_auth()
def index():
    """Upcoming events first; past ones follow."""
    rows, _ = services.event_page(db.session, 200, None)
    events = services.visible_events(db.session, viewer(), rows)
    now = utcnow()
    upcoming = sorted((e for e in events if e["ends_at"] >= now), key=lambda e: e["starts_at"])
    past = [e for e in events if e["ends_at"] < now]
    return render_template("events/index.html", upcoming=upcoming, past=past, can_write=_can("event.write"))


@bp.route("/events/new", methods=["GET", "POST"])
@page_auth("marketer", "medical")
def new():
    form: dict[str, Any] = dict(request.form) if request.method == "POST" else {"country": "US"}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            data = {
                "name": form.get("name", ""), "type": form.get("type", ""),
                "starts_at": form_time("starts_at", "Start"), "ends_at": form_time("ends_at", "End"),
                "venue": form.get("venue"), "url": form.get("url"),
                "products": [p for p in form.get("products", "").replace(";", ",").split(",") if p.strip()],
                "organiser": form.get("organiser", ""), "sensitivity": form.get("sensitivity", "standard"),
                "country": form.get("country", "US"),
            }
            event, _ = services.create_event(db.session, actor(), viewer(), data)
        except Invalid as exc:
            errors = exc.errors
        else:
            flash(f"Event “{event.name}” created.")
            return redirect(url_for(".show", event_id=event.id))
    return render_template("events/new.html", form=form, errors=errors, types=EVENT_TYPES), 422 if errors else 200


def _invitation_context(event: Any) -> dict[str, Any]:
    q = request.args.get("q", "").strip()
    candidates: list[HCP] = []
    if q:
        candidates, _ = search_hcps(db.session, viewer(), q=q, limit=50)
    invitations = list(db.session.scalars(select(Invitation).where(Invitation.event_id == event.id)
                                          .order_by(Invitation.id)))
    invited_hcps = _names({i.hcp_id for i in invitations})
    everyone = {h.id: h for h in [*candidates, *invited_hcps.values()]}
    year = utcnow().year
    statuses = services.cap_statuses(db.session, list(everyone.values()), year)
    return {"q": q, "candidates": candidates, "invitations": invitations, "invited_hcps": invited_hcps,
            "statuses": statuses, "year": year, "invited_ids": {i.hcp_id for i in invitations if i.status in INVITED}}


@bp.get("/events/<int:event_id>")
@page_auth()
def show(event_id: int):
    event = services.get_event(db.session, event_id)
    transfers = services.visible_transfers(db.session, viewer(), services.transfers_for_event(db.session, event))
    tick = services.tick_list(db.session, event)
    return render_template(
        "events/show.html", event=services.visible_event(db.session, viewer(), event), transfers=transfers, tick=tick,
        transfer_hcps=_names({t["hcp_id"] for t in transfers}),
        attended=sum(1 for t in tick if t["status"] == "attended"),
        no_show=sum(1 for t in tick if t["status"] == "no_show"),
        can_write=_can("event.write"), can_transfer=_can("transfer.write"), kinds=TRANSFER_KINDS,
        currencies=sorted(CURRENCIES), today=utcnow().date().isoformat(), **_invitation_context(event),
    )


@bp.post("/events/<int:event_id>/invite")
@page_auth("marketer", "medical")
def invite(event_id: int):
    event = services.get_event(db.session, event_id)
    ids = form_int_list("hcp_ids")
    result = services.invite(db.session, actor(), viewer(), event, ids, request.form.get("channel", "email"))
    names = _names({*result.sent, *(s["hcp_id"] for s in result.skipped)})
    shown = services.visible_event(db.session, viewer(), event, log=False)
    return render_template("events/invited.html", event=shown, result=result, names=names)


@bp.route("/events/<int:event_id>/attendance", methods=["GET", "POST"])
@page_auth("marketer", "medical")
def attendance(event_id: int):
    """The tick list: big rows that work with a finger on a tablet. Ticked: attended; with "the rest did
    not come" also ticked, every unticked HCP is marked no-show."""
    event = services.get_event(db.session, event_id)
    if request.method == "POST":
        ticked = set(form_int_list("attended"))
        listed = set(form_int_list("listed"))
        changed = 0
        for hcp_id in sorted(ticked & listed):
            changed += services.record_attendance(db.session, actor(), viewer(), event, hcp_id, "attended").changed
        if request.form.get("rest_no_show"):
            for hcp_id in sorted(listed - ticked):
                changed += services.record_attendance(db.session, actor(), viewer(), event, hcp_id, "no_show").changed
        flash(f"Attendance saved: {changed} change(s).")
        return redirect(url_for(".attendance", event_id=event.id))
    return render_template("events/attendance.html", event=services.visible_event(db.session, viewer(), event),
                           tick=services.tick_list(db.session, event))


@bp.route("/events/<int:event_id>/attendance/import", methods=["GET", "POST"])
@page_auth("marketer", "medical")
def attendance_import_page(event_id: int):
    """The upload stores the file and leaves the import to a job (the request returns at once): the page
    then shows the job's progress and, once it is done, the per-row report. A file that cannot be an
    attendance export is refused here, with no job."""
    event = services.get_event(db.session, event_id)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        require_write(viewer(), "event.write")
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            errors = {"file": ["Choose the CSV file exported by the event platform."]}
        else:
            try:
                job_id = _start_attendance_import(event.id, upload)
            except Invalid as exc:  # the whole file: what is wrong, then the details
                errors = {"file": [exc.detail, *(m for msgs in exc.errors.values() for m in msgs)]}
            else:
                flash("The file is being imported in the background; this page shows how far it got.")
                return redirect(url_for(".attendance_import_page", event_id=event.id, job=job_id), code=303)
    job = _attendance_job(event.id, request.args.get("job")) if request.method == "GET" else None
    rows = attendance_import.unmatched_rows(db.session, event)
    status = 422 if errors else 200
    return render_template("events/import.html", event=services.visible_event(db.session, viewer(), event),
                           job=job, report=job.result if job is not None and job.state == "done" else None,
                           state_text=STATE_TEXT, errors=errors, unmatched=rows, shown=MAX_UPLOAD_ROWS_SHOWN), status


def _start_attendance_import(event_id: int, upload: Any) -> int:
    from crm.integrations.eventplatform.jobs import subject
    from crm.jobs import services as jobs
    from crm.jobs.uploads import store_upload

    path = store_upload(upload, "attendance", lambda p: attendance_import.check_file(p.read_bytes()))
    job = jobs.create(db.session, actor(), "attendance.import", {"path": str(path), "event_id": event_id},
                      subject=subject(event_id))
    return job.id


def _attendance_job(event_id: int, raw: str | None) -> Any:
    """The upload job named in the page's address: one of this event's, started by the viewer (or seen by
    an admin); any other id is a 404, like the job's own page."""
    from crm.integrations.eventplatform.jobs import subject
    from crm.jobs import services as jobs

    if raw is None:
        return None
    job_id = page_id(raw)
    if job_id is None:
        raise NotFound(f"There is no attendance upload {str(raw)[:20]} for this event.")
    job = jobs.get_job(db.session, viewer(), job_id)
    if job.kind != "attendance.import" or job.subject != subject(event_id):
        raise NotFound(f"There is no attendance upload {job_id} for this event.")
    return job


@bp.post("/events/<int:event_id>/attendance/unmatched/<int:row_id>")
@page_auth("marketer", "medical")
def resolve_row(event_id: int, row_id: int):
    event = services.get_event(db.session, event_id)
    key = request.form.get("picker_find", "")
    if key == f"hcp_id-{row_id}":  # the row's HCP picker without JavaScript: the page again, with the matches
        typed = request.form.get(f"{key}_q", "").strip()[:200]
        args: dict[str, Any] = {f"{key}_q": typed}
        return redirect(url_for(".attendance_import_page", event_id=event.id, **args))
    if request.form.get("action") == "dismiss":
        attendance_import.dismiss_unmatched(db.session, actor(), viewer(), event, row_id)
        flash(f"Row {row_id} dismissed.")
    else:
        raw = request.form.get("hcp_id", "").strip()
        if not raw.isdigit():
            raise Invalid(errors={"hcp_id": ["Search for the HCP and choose them, then Match."]})
        attendance_import.resolve_unmatched(db.session, actor(), viewer(), event, row_id, int(raw))
        matched = db.session.get(HCP, int(raw))
        flash(f"Row {row_id} matched to {matched.full_name if matched else 'the HCP'}.")
    return redirect(url_for(".attendance_import_page", event_id=event.id))


@bp.post("/events/<int:event_id>/transfers")
@page_auth("marketer", "medical")
def add_transfer(event_id: int):
    event = services.get_event(db.session, event_id)
    form = request.form
    errors: dict[str, list[str]] = {}
    try:
        amount = Decimal(form.get("amount", "").strip().replace(",", "."))
    except InvalidOperation:
        errors["amount"] = ["Not a number."]
    hcp_raw = form.get("hcp_id", "").strip()
    if not hcp_raw.isdigit():
        errors["hcp_id"] = ["Choose the HCP."]
    try:
        paid_on = date.fromisoformat(form.get("date", ""))
    except ValueError:
        errors["date"] = ["Not a date (YYYY-MM-DD)."]
    if errors:
        raise Invalid("The transfer cannot be recorded.", errors=errors)
    result = services.record_transfer(db.session, actor(), viewer(), event, hcp_id=int(hcp_raw),
                                      kind=form.get("kind", ""), amount=amount, currency=form.get("currency", ""),
                                      paid_on=paid_on, description=form.get("description"))
    flash(result.warning or f"Transfer of {result.transfer.currency} {result.transfer.amount} recorded.")
    return redirect(url_for(".show", event_id=event.id) + "#transfers")


@bp.get("/reports/transfers")
@page_auth("compliance", "admin")
def transfers_report():
    """On screen per HCP and year; downloads in the Open Payments and EFPIA shapes."""
    years = reports.report_years(db.session)
    raw_year = request.args.get("year", "")
    year = int(raw_year) if raw_year.isdigit() else years[0]
    shape = request.args.get("download")
    country = (request.args.get("country") or "").strip().upper() or None
    if shape in ("open_payments", "efpia"):
        report = (reports.efpia(db.session, viewer(), year, country) if shape == "efpia"
                  else reports.open_payments(db.session, viewer(), year))
        return Response(report.csv(), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="transfers-{shape}-{year}.csv"'})
    require_write(viewer(), "transparency_report.read")
    rows = reports.summary_by_hcp(db.session, year)
    return render_template("events/report.html", year=year, years=years, rows=rows, country=country or "")
