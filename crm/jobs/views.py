"""Job pages: the admins' list of every job (queued, running, failed with the error, Retry), and one job's
page (state, progress, result) for the user who started it and admins."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from crm.auth.context import actor, page_auth, viewer
from crm.extensions import db
from crm.jobs import services
from crm.jobs.models import JOB_STATES
from crm.pageforms import page_id

bp = Blueprint("jobs_pages", __name__)
PAGE_SIZE = 100
STATE_TEXT = {"queued": "Waiting", "running": "Running", "done": "Finished", "failed": "Failed"}


@bp.get("/admin/jobs")
@page_auth("admin")
def index():
    state = request.args.get("state")
    state = state if state in JOB_STATES else None
    before = page_id(request.args.get("before"))
    jobs = services.list_jobs(db.session, viewer(), state=state, limit=PAGE_SIZE + 1, before_id=before)
    more = len(jobs) > PAGE_SIZE
    jobs = jobs[:PAGE_SIZE]
    return render_template("jobs/index.html", jobs=jobs, state=state, counts=services.counts(db.session),
                           states=JOB_STATES, state_text=STATE_TEXT, label=services.label,
                           next_before=jobs[-1].id if more and jobs else None)


@bp.get("/jobs/<int:job_id>")
@page_auth()
def show(job_id: int):
    job = services.get_job(db.session, viewer(), job_id)
    return render_template("jobs/show.html", job=job, state_text=STATE_TEXT, label=services.label,
                           can_retry=viewer().role == "admin")


@bp.post("/admin/jobs/<int:job_id>/retry")
@page_auth("admin")
def retry(job_id: int):
    job = services.retry(db.session, actor(), viewer(), job_id)
    flash(f"Job {job.id} ({services.label(job.kind)}) is queued again.")
    return redirect(url_for(".index"), code=303)
