"""``GET /api/v1/jobs/{id}``: a job's state, progress and result, for the user who started it and admins."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from crm.auth.context import api_auth, viewer
from crm.extensions import db
from crm.jobs import services
from crm.jobs.models import Job
from crm.jobs.schemas import JobOut
from crm.openapi import doc

bp = Blueprint("jobs_api", __name__, url_prefix="/api/v1")
TAGS = ["jobs"]


def job_out(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = JobOut().dump({
        "id": job.id, "kind": job.kind, "label": services.label(job.kind), "subject": job.subject,
        "state": job.state, "progress": {"done": job.progress_done, "total": job.progress_total},
        "result": job.result, "error": job.error, "attempts": job.attempts, "created_by_id": job.created_by_id,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "next_attempt_at": job.next_attempt_at if job.state == "queued" else None,
    })
    return out


@bp.get("/jobs/<int:job_id>")
@doc("A background job: state, progress, result or error", tags=TAGS, responses={200: JobOut}, errors=(401, 404))
@api_auth
def get_job(job_id: int):
    """The user who started the job, and admins. Anyone else gets 404, as for a job that does not exist."""
    return job_out(services.get_job(db.session, viewer(), job_id))
