"""``crm surveys send ID [--now]``: the same send as the page and the API, from the command line."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from crm.extensions import db

surveys_cli = AppGroup("surveys", help="NPS and satisfaction surveys.")


@surveys_cli.command("send")
@click.argument("survey_id", type=int)
@click.option("--as", "as_email", default=None,
              help="Send as this marketer (default: the marketer who created the survey).")
@click.option("--now", "run_here", is_flag=True,
              help="Run the send job in this process instead of leaving it to a queue consumer.")
def send_command(survey_id: int, as_email: str | None, run_here: bool) -> None:
    """Send survey SURVEY_ID to everyone in its audience whose market-research consent holds now (prints the
    result). The recipients are handed to the mail outbox by a job: a queue consumer runs it (or this
    command, --now)."""
    from crm.auth.models import User
    from crm.auth.services import find_user_by_email, viewer_for
    from crm.errors import DomainError
    from crm.surveys import services

    session = db.session
    try:
        survey = services.get_survey(session, survey_id)
        user = find_user_by_email(session, as_email) if as_email else session.get(User, survey.created_by_id)
        if user is None:
            raise click.ClickException(f"no user {as_email or survey.created_by_id} to send as")
        result = services.send_survey(session, user, viewer_for(session, user), survey)
    except DomainError as exc:
        session.rollback()
        raise click.ClickException(exc.detail) from exc
    job_id = result.job.id if result.job is not None else None
    session.commit()  # the job is put on the queue once this commit succeeded
    skipped: dict[str, int] = {}
    for s in result.skipped:
        skipped[s["reason"]] = skipped.get(s["reason"], 0) + 1
    out: dict[str, object] = {"survey_id": survey_id, "sent": len(result.sent), "skipped": skipped,
                              "job_id": job_id}
    if run_here and job_id is not None:
        from flask import current_app

        from crm.jobs.services import RetryLater, run_job

        try:
            out["job"] = run_job(current_app._get_current_object(), job_id)  # type: ignore[attr-defined]
        except RetryLater:
            out["job"] = "retry"
    click.echo(json.dumps(out))
