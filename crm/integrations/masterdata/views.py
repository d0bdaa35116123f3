"""Master-data pages for the data steward: NPPES upload, import runs, suspected duplicates and merge,
and the data-subject export (also open to compliance, the data protection officer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from sqlalchemy import func, or_, select
from werkzeug.utils import secure_filename

from crm.access.policy import require_write
from crm.audit import services as audit
from crm.auth.context import actor, page_auth, viewer
from crm.errors import Conflict, DomainError, Invalid, NotFound
from crm.extensions import db
from crm.hcps.duplicates import RULES, suspected_duplicates
from crm.hcps.merge import hcp_references, identifier_conflicts, merge_hcps
from crm.hcps.models import HCP
from crm.integrations.masterdata import report
from crm.integrations.masterdata.models import ImportRowError
from crm.navigation import url_if_known
from crm.pageforms import page_id

bp = Blueprint("masterdata_pages", __name__, url_prefix="/admin/masterdata")


def hcp_link(hcp_id: int) -> str:
    return url_if_known("timeline_pages.hcp", hcp_id=hcp_id) or f"/hcps/{hcp_id}"


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"masterdata_hcp_link": hcp_link}


@bp.get("/")
@page_auth("admin")
def index():
    before = page_id(request.args.get("before"))  # out of range: the first page, not a database overflow
    runs = report.list_runs(db.session, limit=50, before_id=before)
    older = runs[-1].id if len(runs) == 50 else None
    return render_template("masterdata/index.html", runs=runs, older=older)


@bp.route("/import", methods=["GET", "POST"])
@page_auth("admin")
def upload():
    """Stores the upload and leaves the import to a job (the request returns at once); the job's page shows
    how far it got and links to the import run. A file that is not an NPPES CSV is refused here."""
    from crm.integrations.masterdata.nppes import NppesReader
    from crm.jobs import services as jobs
    from crm.jobs.uploads import store_upload

    if request.method == "GET":
        return render_template("masterdata/upload.html", error=None)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return render_template("masterdata/upload.html", error="Choose an NPPES CSV file."), 422
    filename = secure_filename(upload.filename) or "upload.csv"

    def check(path: Path) -> None:
        with path.open("rb") as fh:
            NppesReader(fh)  # the header: a wrong file is refused now, not in the job

    try:
        path = store_upload(upload, "nppes", check)
    except DomainError as exc:
        return render_template("masterdata/upload.html", error=exc.detail), exc.status
    job = jobs.create(db.session, actor(), "nppes.import", {"path": str(path), "filename": filename},
                      subject="nppes-upload", total=path.stat().st_size)
    flash(f"{filename} is being imported in the background; this page shows how far it got.")
    return redirect(url_for("jobs_pages.show", job_id=job.id))


@bp.get("/runs/<int:run_id>")
@page_auth("admin")
def run(run_id: int):
    found = report.get_run(db.session, run_id)
    errors = report.row_errors(db.session, run_id, limit=100)
    total_errors = db.session.scalar(
        select(func.count()).select_from(ImportRowError).where(ImportRowError.run_id == run_id))
    return render_template("masterdata/run.html", run=found, errors=errors, total_errors=total_errors)


@bp.get("/runs/<int:run_id>/errors.csv")
@page_auth("admin")
def run_errors_csv(run_id: int):
    report.get_run(db.session, run_id)
    lines = stream_with_context(report.error_report_lines(db.session, run_id))
    return Response(lines, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="import-run-{run_id}-errors.csv"'})


@bp.get("/duplicates")
@page_auth("admin")
def duplicates():
    rule = request.args.get("rule", "email")
    if rule not in RULES:
        raise Invalid(errors={"rule": [f"must be one of {', '.join(RULES)}"]})
    groups = suspected_duplicates(db.session, rule, limit=100)
    return render_template("masterdata/duplicates.html", rules=RULES, rule=rule, groups=groups)


def _hcp_or_404(raw: str | None, name: str) -> HCP:
    """The HCP a form field or link names: 422 when none is given, 404 when no HCP has that id (an id beyond
    the database's range included: ``page_id`` refuses it before it reaches the database)."""
    if not (raw or "").strip():
        raise Invalid(errors={name: ["Give an HCP id."]})
    hcp_id = page_id(raw)
    hcp = db.session.get(HCP, hcp_id) if hcp_id is not None else None
    if hcp is None:
        raise NotFound(f"No HCP with id {str(raw).strip()[:20]}.")
    return hcp


def _related_counts(hcp_id: int) -> dict[str, int]:
    counts = {}
    for table, columns in hcp_references():
        n = db.session.scalar(select(func.count()).select_from(table).where(or_(*[c == hcp_id for c in columns])))
        if n:
            counts["merged into this record" if table.name == "hcps" else table.name] = n
    return counts


@bp.get("/duplicates/compare")
@page_auth("admin")
def compare():
    a = _hcp_or_404(request.args.get("a"), "a")
    b = _hcp_or_404(request.args.get("b"), "b")
    return _compare_page(a, b)


def _compare_page(a: HCP, b: HCP, error: str | None = None, status: int = 200) -> Any:
    """Side by side; records with different national identifiers show the conflict, and the form then
    asks for the explicit override and its reason."""
    sides = [{"hcp": h, "related": _related_counts(h.id)} for h in (a, b)]
    form = request.form if request.method == "POST" else {}
    return render_template("masterdata/compare.html", sides=sides, error=error, reason=form.get("reason", ""),
                           conflicts=identifier_conflicts(a, b), override_reason=form.get("override_reason", ""),
                           ), status


@bp.post("/merge")
@page_auth("admin")
def merge():
    survivor_id, _, loser_id = request.form.get("pair", "").partition(":")
    if not (survivor_id.isdigit() and loser_id.isdigit()):
        raise Invalid(errors={"pair": ["Choose which record to keep."]})
    survivor = _hcp_or_404(survivor_id, "survivor")
    loser = _hcp_or_404(loser_id, "loser")
    reason = request.form.get("reason", "")
    try:
        result = merge_hcps(db.session, actor(), survivor, loser, reason,
                            override_identifier_conflict=request.form.get("override_identifier_conflict") == "1",
                            override_reason=request.form.get("override_reason"))
    except DomainError as exc:
        db.session.rollback()
        messages = [exc.detail, *(m for msgs in getattr(exc, "errors", {}).values() for m in msgs)]
        return _compare_page(survivor, loser, " ".join(messages), exc.status)
    flash(f"HCP {result.loser_id} was merged into HCP {result.survivor_id}.")
    return redirect(url_for("masterdata_pages.duplicates"))


EXPORTS_SHOWN = 20


def _export_page(errors: list[str] | None = None, status: int = 200) -> Any:
    """The export form and the viewer's recent exports (a job each: waiting, running, or done with its file)."""
    from crm.hcps.jobs import export_file
    from crm.jobs.models import Job
    from crm.jobs.views import STATE_TEXT

    mine = list(db.session.scalars(select(Job).where(Job.kind == "hcp.export", Job.created_by_id == actor().id)
                                   .order_by(Job.id.desc()).limit(EXPORTS_SHOWN)))
    ids = {int(j.params.get("hcp_id", 0)) for j in mine}
    names = {h.id: h.full_name for h in db.session.scalars(select(HCP).where(HCP.id.in_(ids)))} if ids else {}
    exports = [{"job": j, "hcp_id": j.params.get("hcp_id"), "name": names.get(int(j.params.get("hcp_id", 0))),
                "ready": j.state == "done" and export_file(j.result) is not None} for j in mine]
    return render_template("masterdata/export.html", errors=errors or [], exports=exports, state_text=STATE_TEXT,
                           keep_days=current_app.config.get("CRM_EXPORT_KEEP_DAYS", 7)), status


@bp.get("/export")
@page_auth("admin", "compliance")
def export_form():
    return _export_page()


@bp.post("/export")
@page_auth("admin", "compliance")
def export_start():
    """Leaves the export to a job (the request returns at once); the page lists it and links its file when
    it is done. The picker's "Find" without JavaScript shows the form again, with the matches."""
    from crm.hcps.jobs import subject
    from crm.jobs import services as jobs

    if request.form.get("picker_find"):
        return _export_page()
    if not (request.form.get("hcp_id") or "").strip():
        return _export_page(["Search for the HCP and choose them."], 422)
    hcp = _hcp_or_404(request.form.get("hcp_id"), "hcp_id")
    require_write(viewer(), "hcp.export")
    jobs.create(db.session, actor(), "hcp.export", {"hcp_id": hcp.id}, subject=subject(hcp.id))
    flash(f"The export of {hcp.full_name} is being built; it appears below when it is ready.")
    return redirect(url_for("masterdata_pages.export_form"), code=303)


@bp.get("/exports/<int:job_id>/download")
@page_auth("admin", "compliance")
def export_download(job_id: int):
    """The file of a finished export, for the user who asked for it (or an admin); audited."""
    from crm.hcps.jobs import export_file
    from crm.jobs import services as jobs

    job = jobs.get_job(db.session, viewer(), job_id)
    if job.kind != "hcp.export":
        raise NotFound(f"There is no export {job_id}.")
    if job.state != "done":
        raise Conflict(f"Export {job_id} is not ready yet.")
    path = export_file(job.result)
    if path is None:
        days = current_app.config.get("CRM_EXPORT_KEEP_DAYS", 7)
        raise NotFound(f"The file of export {job_id} was deleted after {days} days; make the export again.")
    hcp_id = int(job.params["hcp_id"])
    audit.record(db.session, actor(), "hcp.export.download", "hcp", hcp_id, {"job_id": job.id},
                 reason="data-subject export")
    return Response(path.read_bytes(), mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="hcp-{hcp_id}-export.json"', "Cache-Control": "no-store"})


@bp.get("/export/go")
@page_auth("admin", "compliance")
def export_go():
    """The form's search without JavaScript (older links): the form again, with the matches or the choice."""
    if request.args.get("picker_find") or not (request.args.get("hcp_id") or "").strip():
        errors = [] if request.args.get("picker_find") else ["Search for the HCP and choose them."]
        return _export_page(errors, 422 if errors else 200)
    hcp = _hcp_or_404(request.args.get("hcp_id"), "hcp_id")
    return redirect(url_for("masterdata_pages.export_form", hcp_id=hcp.id))
