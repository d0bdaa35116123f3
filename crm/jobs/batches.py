"""Resumable batch hand-over, never twice: the machinery of campaign sends (and of any later bulk send,
such as a survey send).

A bulk send is split in two. The request decides who is sent to (consent, set-based) and stores one row per
recipient in a *pending* state, in one set-based statement, unique per (send, recipient); it creates a job
and answers at once. The job then calls ``hand_over_in_batches`` with two functions of the feature:

- ``take(session, n)``: the keys of at most ``n`` pending rows, locked for this transaction (PostgreSQL
  ``FOR UPDATE SKIP LOCKED``, see ``lock_pending``; SQLite's write lock, taken when the transaction begins),
  an empty list when none is left;
- ``hand_over(session, keys)``: moves exactly those rows out of pending (writes their mail to the outbox and
  marks them ``queued``, say), in that same transaction.

Each batch commits together with the job's progress. A consumer killed mid-batch leaves nothing of that batch
(rolled back), so its rows are still pending and the job, taken over once its lease runs out, hands them over
then; a batch that committed is not pending any more and is never taken again. The unique constraint on the
rows and the idempotency keys of what ``hand_over`` writes (outbox rows, timeline items) make a replay a
no-op even for a careless ``take``.

A survey send would: store ``survey_recipients`` rows as pending in its request, create a ``survey.send`` job
(add it to ``crm.jobs.services.KINDS``), and in that job's handler call
``hand_over_in_batches(run, take_pending_survey_rows, enqueue_survey_mails)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

from crm.db import DbSession
from crm.jobs.services import JobRun, fresh_session


class LeaseLost(RuntimeError):
    """This run no longer holds its job; nothing of the current batch was written."""


def lock_pending(session: DbSession, query: Select[Any]) -> Select[Any]:
    """``query`` (rows still pending) locked for the batch: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
    consumers take different rows; on SQLite the transaction already holds the write lock."""
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def hand_over_in_batches(run: JobRun, take: Callable[[Session, int], list[Any]],
                         hand_over: Callable[[Session, list[Any]], None], *, batch_size: int | None = None,
                         after_batch: Callable[[int], None] | None = None) -> int:
    """Hand pending rows over in committed batches until none is left (see the module); returns how many rows
    this run handed over. The job's ``progress_done`` grows by each batch, in the batch's transaction."""
    size = int(batch_size or run.app.config.get("CRM_SEND_BATCH_SIZE", 500))
    done = run.progress_done
    handed = 0
    while True:
        with fresh_session() as session:
            keys = take(session, size)
            if not keys:
                session.rollback()
                break
            done += len(keys)
            if not run.progress(done, session=session):
                # Another consumer took the job over (this one's lease ran out): it carries on, not us.
                session.rollback()
                raise LeaseLost(f"job {run.job_id} was taken over by another consumer")
            hand_over(session, keys)
            session.commit()
        handed += len(keys)
        if after_batch is not None:
            after_batch(handed)
    return handed


def start_send(run: JobRun, model: Any, record_id: int, what: str, pending: Callable[[Session], int]) -> int:
    """The opening of a bulk-send job (campaign, survey): the record must exist and the job must have a sender
    to act for (else the job fails, not retried); the job's total is set once, from the rows still pending.
    Returns the sender's user id, for ``hand_over`` to load in each batch's session."""
    from crm.jobs.services import JobFailed

    with fresh_session() as s:
        if s.get(model, record_id) is None:
            raise JobFailed(f"{what} {record_id} does not exist.")
        actor = run.actor(s)
        if actor is None:
            raise JobFailed("The send has no sender to act for.")
        if run.progress_total is None:
            run.progress(run.progress_done, pending(s), session=s)
            s.commit()
        return int(actor.id)


def send_from_cli(session: Any, key: str, record_id: int, send: Callable[[Any, Any], Any],
                  created_by_id: int | None, as_email: str | None, run_here: bool) -> dict[str, object]:
    """``crm campaigns send`` / ``crm surveys send``: ``send(user, viewer)`` as ``as_email`` (default: the
    record's creator), committed (the job goes on the queue once the commit succeeded), then with ``run_here``
    the job run in this process. Returns the summary the command prints."""
    import click

    from crm.auth.models import User
    from crm.auth.services import find_user_by_email, viewer_for
    from crm.errors import DomainError

    try:
        user = find_user_by_email(session, as_email) if as_email else session.get(User, created_by_id)
        if user is None:
            raise click.ClickException(f"no user {as_email or created_by_id} to send as")
        result = send(user, viewer_for(session, user))
    except DomainError as exc:
        session.rollback()
        raise click.ClickException(exc.detail) from exc
    job_id = result.job.id if result.job is not None else None
    session.commit()
    skipped: dict[str, int] = {}
    for s in result.skipped:
        skipped[s["reason"]] = skipped.get(s["reason"], 0) + 1
    out: dict[str, object] = {key: record_id, "sent": len(result.sent), "skipped": skipped, "job_id": job_id}
    if run_here and job_id is not None:
        from flask import current_app

        from crm.jobs.services import RetryLater, run_job

        try:
            out["job"] = run_job(current_app._get_current_object(), job_id)  # type: ignore[attr-defined]
        except RetryLater:
            out["job"] = "retry"
    return out
