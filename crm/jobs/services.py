"""Jobs: create one in the business transaction, run it in a consumer, show it to its creator and admins.

``create(session, actor, kind, params, ...)`` writes a ``queued`` row and asks for it to be put on the queue
after the commit. A consumer's ``run_job`` then:

1. claims the row in a transaction of its own: ``queued``, or ``running`` whose lease ran out (its consumer
   died), becomes ``running`` with a lease and one more attempt. Two consumers never run one job at once;
   a job id that arrives twice runs once.
2. runs the kind's handler (``KINDS``) with a ``JobRun``; the handler commits its own steps and reports
   progress, which also extends the lease. A handler is idempotent: a step committed before a crash is not
   done again (campaign sends, crm/jobs/batches.py).
3. records the outcome: ``done`` with the result; or, after an error, ``queued`` again with the error and a
   backoff (huey retries), or ``failed`` after ``CRM_JOB_MAX_ATTEMPTS`` attempts (``JobFailed``: at once).

Every log line of a job carries its id (``crm.logging.job_context``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from crm.access.policy import Viewer
from crm.audit import services as audit
from crm.db import DbSession, on_commit, utcnow
from crm.errors import Conflict, Forbidden, NotFound
from crm.extensions import db
from crm.jobs.models import Job
from crm.logging import job_context

log = logging.getLogger("crm.jobs")

# kind -> (handler "module:function", what the jobs page calls it)
KINDS: dict[str, tuple[str, str]] = {
    "campaign.send": ("crm.campaigns.sending:run_send", "Campaign send"),
    "survey.send": ("crm.surveys.sending:run_send", "Survey send"),
    "consent.expire": ("crm.consent.jobs:run_expire", "Consent expiry"),
    "audit.verify": ("crm.audit.jobs:run_verify", "Audit trail verification"),
    "mail.sweep": ("crm.jobs.services:run_mail_sweep", "Mail hand-over"),
    "erp.sync": ("crm.jobs.services:run_erp_sync", "ERP orders and statuses"),
    "jobs.recover": ("crm.jobs.services:run_recover", "Recovery of interrupted jobs"),
    "nppes.import": ("crm.integrations.masterdata.jobs:run_import", "NPPES import of an uploaded file"),
    "attendance.import": ("crm.integrations.eventplatform.jobs:run_import", "Attendance upload of an event"),
    "hcp.export": ("crm.hcps.jobs:run_export", "Data-subject export of an HCP"),
}


class JobFailed(Exception):
    """A refusal that no retry can change: the job is ``failed`` at once with this message."""


@dataclass
class JobRun:
    """What a handler gets: the job's id, kind, parameters, who started it, and ``progress``."""

    app: Flask
    job_id: int
    kind: str
    params: dict[str, Any]
    created_by_id: int | None
    attempt: int
    progress_done: int = 0
    progress_total: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def actor(self, session: DbSession) -> Any:
        """The user who started the job (None for a scheduled one)."""
        from crm.auth.models import User

        return None if self.created_by_id is None else session.get(User, self.created_by_id)

    def progress(self, done: int, total: int | None = None, *, session: DbSession | None = None) -> bool:
        """Record how far the job is, and extend its lease. With ``session`` the update joins that
        transaction (a batch and its progress commit together); otherwise it is committed on its own.
        False when this run no longer holds the job (its lease ran out and another consumer took it)."""
        self.progress_done = done
        if total is not None:
            self.progress_total = total
        values: dict[str, Any] = {"progress_done": done, "locked_until": utcnow() + lease(self.app),
                                  "updated_at": utcnow()}
        if total is not None:
            values["progress_total"] = total
        statement = update(Job).where(Job.id == self.job_id, Job.state == "running",
                                      Job.attempts == self.attempt).values(**values)
        if session is not None:
            return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]
        with fresh_session() as s:
            held = bool(s.execute(statement).rowcount)  # type: ignore[attr-defined]
            s.commit()
        return held


def fresh_session() -> Session:
    return db.session.session_factory()


def lease(app: Flask) -> timedelta:
    return timedelta(seconds=float(app.config.get("CRM_JOB_LEASE_SECONDS", 300)))


def backoff(app: Flask, attempts: int) -> timedelta:
    base = float(app.config.get("CRM_JOB_RETRY_BASE_SECONDS", 30))
    return timedelta(seconds=base * 2 ** max(0, attempts - 1))


def label(kind: str) -> str:
    return KINDS.get(kind, (None, kind))[1]


# -- creating and starting ---------------------------------------------------------------------------

def create(session: DbSession, actor: Any, kind: str, params: dict[str, Any] | None = None, *,
           subject: str | None = None, total: int | None = None) -> Job:
    """A ``queued`` job in the caller's transaction, put on the queue once that transaction commits.
    ``params`` must be JSON and free of personal data (ids, not names or addresses)."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    job = Job(kind=kind, subject=subject, state="queued", params=params or {}, progress_total=total,
              created_by_id=None if actor is None else actor.id, next_attempt_at=utcnow())
    session.add(job)
    session.flush()
    start_after_commit(session, job.id)
    return job


def start_after_commit(session: DbSession, job_id: int) -> None:
    from crm.jobs.queue import enqueue_job

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    on_commit(session, lambda: enqueue_job(app, job_id))


# -- running -----------------------------------------------------------------------------------------

def _handler(kind: str) -> Callable[[JobRun], dict[str, Any] | None]:
    module, _, name = KINDS[kind][0].partition(":")
    fn: Callable[[JobRun], dict[str, Any] | None] = getattr(importlib.import_module(module), name)
    return fn


def claim(app: Flask, job_id: int) -> JobRun | None:
    """Step 1: take the job (see the module), or None when it is done, failed, or another consumer holds it."""
    now = utcnow()
    with fresh_session() as s:
        taken = s.execute(
            update(Job).where(Job.id == job_id, or_(Job.state == "queued",
                                                    and_(Job.state == "running", Job.locked_until < now)))
            .values(state="running", attempts=Job.attempts + 1, locked_until=now + lease(app),
                    started_at=func.coalesce(Job.started_at, now), updated_at=now)
            .execution_options(synchronize_session=False))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            s.rollback()
            return None
        job = s.get_one(Job, job_id, populate_existing=True)
        run = JobRun(app, job.id, job.kind, dict(job.params or {}), job.created_by_id, job.attempts,
                     job.progress_done, job.progress_total)
        s.commit()
    return run


def finish(app: Flask, run: JobRun, *, result: dict[str, Any] | None = None, error: str | None = None,
           final: bool = False) -> str:
    """Step 3; returns ``done``, ``retry``, ``failed``, or ``lost`` (another consumer took the job over
    after this one's lease ran out: it decides)."""
    now = utcnow()
    with fresh_session() as s:
        job = s.get(Job, run.job_id, with_for_update=True, populate_existing=True)
        if job is None or job.state != "running" or job.attempts != run.attempt:
            s.rollback()
            return "lost"
        job.locked_until = None
        job.updated_at = now
        if error is None:
            job.state, job.result, job.error, job.finished_at = "done", result or {}, None, now
            if job.progress_total is not None and run.notes.get("complete", True):
                job.progress_done = max(job.progress_done, job.progress_total)
            outcome = "done"
        elif final or job.attempts >= int(app.config.get("CRM_JOB_MAX_ATTEMPTS", 5)):
            job.state, job.error, job.finished_at, outcome = "failed", error[:4000], now, "failed"
            if result is not None:
                job.result = result
        else:
            job.state, job.error, outcome = "queued", error[:4000], "retry"
            job.next_attempt_at = now + backoff(app, job.attempts)
        s.commit()
    return outcome


class RetryLater(Exception):
    """Raised to huey so that it runs the job again after its backoff (the row says ``queued``)."""


def run_job(app: Flask, job_id: int) -> str:
    """Run one job (the queue's ``run_job`` task). Returns the outcome; raises ``RetryLater`` for a retry."""
    with app.app_context(), job_context(str(job_id)):
        run = claim(app, job_id)
        if run is None:
            log.info("job %s not run: done, failed, or held by another consumer", job_id)
            return "skipped"
        log.info("job %s (%s) started, attempt %s", job_id, run.kind, run.attempt)
        try:
            result = _handler(run.kind)(run)
        except JobFailed as exc:
            outcome = finish(app, run, error=str(exc), final=True)
            log.warning("job %s failed: %s", job_id, exc)
            return outcome
        except Exception as exc:
            log.exception("job %s attempt %s raised", job_id, run.attempt)
            db.session.remove()
            outcome = finish(app, run, error=f"{type(exc).__name__}: {exc}")
            if outcome == "retry":
                raise RetryLater(f"job {job_id} attempt {run.attempt} failed; retried after a backoff") from exc
            return outcome
        finally:
            db.session.remove()
        outcome = finish(app, run, result=result)
        log.info("job %s %s", job_id, outcome)
        return outcome


def run_now(app: Flask, actor_id: int | None, kind: str, params: dict[str, Any] | None = None) -> Job:
    """Create a job and run it in this process at once (the nightly jobs, CLI); returns the finished row."""
    with fresh_session() as s:
        job = Job(kind=kind, state="queued", params=params or {}, created_by_id=actor_id, next_attempt_at=utcnow())
        s.add(job)
        s.commit()
        job_id = job.id
    try:
        run_job(app, job_id)
    except RetryLater:
        pass
    with fresh_session() as s:
        done = s.get_one(Job, job_id)
        s.expunge(done)
        s.rollback()
    return done


# -- recovery and the periodic work ------------------------------------------------------------------

def recover(app: Flask, now: datetime | None = None) -> list[int]:
    """Put back on the queue the jobs whose consumer died (``running``, lease run out) and the ``queued``
    ones whose message never arrived (due for longer than a lease). Returns their ids."""
    from crm.jobs.queue import enqueue_job

    now = now or utcnow()
    with fresh_session() as s:
        ids = list(s.scalars(select(Job.id).where(or_(
            and_(Job.state == "running", Job.locked_until < now),
            and_(Job.state == "queued", Job.next_attempt_at < now - lease(app)))).order_by(Job.id).limit(500)))
        if ids:
            # Not again at the next sweep: the message now on the queue takes it (or this comes round again).
            s.execute(update(Job).where(Job.id.in_(ids), Job.state == "queued").values(next_attempt_at=now)
                      .execution_options(synchronize_session=False))
        s.commit()
    for job_id in ids:
        log.info("job %s put on the queue again (its consumer died or its message was lost)", job_id)
        enqueue_job(app, job_id)
    return ids


def _record_failure(app: Flask, kind: str, error: str) -> None:
    with fresh_session() as s:
        s.add(Job(kind=kind, state="failed", error=error[:4000], attempts=1, finished_at=utcnow()))
        s.commit()


def run_recover(run: JobRun) -> dict[str, Any]:
    return {"requeued": recover(run.app)}


def run_mail_sweep(run: JobRun) -> dict[str, Any]:
    from crm.mail.services import deliver_pending

    return dict(deliver_pending(run.app, trigger="sweep"))


def run_erp_sync(run: JobRun) -> dict[str, Any]:
    from crm.orders.outbox import run_sync

    report = run_sync(run.app, catalogue=bool(run.params.get("catalogue", False)))
    if not report.ok:
        raise RuntimeError("the ERP could not be reached for some orders or statuses; they are retried")
    return {"sent": dict(report.sent), "statuses": dict(report.statuses)}


def sweep(app: Flask) -> None:
    """Every minute: jobs to recover, mail that is due, ERP orders and statuses. A sweep that raises leaves
    a ``failed`` job on the jobs page; a quiet one leaves nothing (a row a minute would bury the others)."""
    with app.app_context(), job_context("sweep"):
        for kind, step in (("jobs.recover", lambda: recover(app)), ("mail.sweep", lambda: _mail_due(app)),
                           ("erp.sync", lambda: _erp_due(app))):
            try:
                step()
            except Exception as exc:
                log.exception("sweep step %s failed", kind)
                db.session.remove()
                _record_failure(app, kind, f"{type(exc).__name__}: {exc}")
            finally:
                db.session.remove()


def _mail_due(app: Flask) -> None:
    from crm.mail.services import deliver_pending

    deliver_pending(app, trigger="sweep")


def _erp_due(app: Flask) -> None:
    from crm.orders.outbox import run_sync

    report = run_sync(app, catalogue=False)
    if not report.ok:
        raise RuntimeError("the ERP could not be reached; queued orders and status polls are retried")


def nightly(app: Flask) -> None:
    """Every night: consent expiry and the audit chain's verification, each a job on the jobs page; done
    jobs older than 90 days are deleted, and data-subject export files older than ``CRM_EXPORT_KEEP_DAYS``."""
    from crm.jobs.uploads import purge_exports

    with app.app_context():
        for kind in ("consent.expire", "audit.verify"):
            run_now(app, None, kind)
        purge_exports(float(app.config.get("CRM_EXPORT_KEEP_DAYS", 7)))
        with fresh_session() as s:
            old = utcnow() - timedelta(days=90)
            s.execute(delete(Job).where(Job.state == "done", Job.finished_at < old))
            s.commit()


# -- reading and retrying ----------------------------------------------------------------------------

def get_job(session: DbSession, viewer: Viewer, job_id: int) -> Job:
    """One job, for its creator or an admin; anyone else is told it does not exist."""
    job = session.get(Job, job_id)
    if job is None or not may_read(viewer, job):
        raise NotFound(f"Job {job_id} does not exist.")
    return job


def may_read(viewer: Viewer, job: Job) -> bool:
    return viewer.role == "admin" or (job.created_by_id is not None and job.created_by_id == viewer.user_id)


def latest_for(session: DbSession, subject: str) -> Job | None:
    return session.scalar(select(Job).where(Job.subject == subject).order_by(Job.id.desc()).limit(1))


def list_jobs(session: DbSession, viewer: Viewer, *, state: str | None = None, limit: int = 100,
              before_id: int | None = None) -> list[Job]:
    if viewer.role != "admin":
        raise Forbidden("Only admins see the jobs of everyone.")
    query = select(Job).options(joinedload(Job.created_by)).order_by(Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    if before_id is not None:
        query = query.where(Job.id < before_id)
    return list(session.scalars(query))


def counts(session: DbSession) -> dict[str, int]:
    return {state: n for state, n in session.execute(select(Job.state, func.count()).group_by(Job.state))}


def retry(session: DbSession, actor: Any, viewer: Viewer, job_id: int) -> Job:
    """An admin runs a failed job again: attempts from zero, queued now. Audited."""
    if viewer.role != "admin":
        raise Forbidden("Only admins retry jobs.")
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise NotFound(f"Job {job_id} does not exist.")
    if job.state != "failed":
        raise Conflict(f"Only a failed job can be retried; job {job_id} is {job.state}.")
    before = {"state": job.state, "attempts": job.attempts, "error": job.error}
    job.state, job.attempts, job.next_attempt_at, job.finished_at = "queued", 0, utcnow(), None
    session.flush()
    audit.record(session, actor, "job.retry", "job", job.id,
                 audit.diff(before, {"state": "queued", "attempts": 0, "error": job.error}))
    start_after_commit(session, job.id)
    return job
