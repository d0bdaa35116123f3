"""``crm surveys send ID [--now]``: the same send as the page and the API, from the command line."""

from __future__ import annotations

import json
from typing import Any

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
    from crm.errors import DomainError
    from crm.jobs.batches import send_from_cli
    from crm.surveys import services

    session = db.session
    try:
        survey = services.get_survey(session, survey_id)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc

    def send(user: Any, viewer: Any) -> Any:
        return services.send_survey(session, user, viewer, survey)

    out = send_from_cli(session, "survey_id", survey_id, send, survey.created_by_id, as_email, run_here)
    click.echo(json.dumps(out))
