"""``crm campaigns send ID``: the same send as the page and the API, from the command line."""

from __future__ import annotations

import json
from typing import Any

import click
from flask.cli import AppGroup

from crm.extensions import db

campaigns_cli = AppGroup("campaigns", help="Email campaigns.")


@campaigns_cli.command("send")
@click.argument("campaign_id", type=int)
@click.option("--as", "as_email", default=None,
              help="Send as this marketer (default: the marketer who created the campaign).")
@click.option("--now", "run_here", is_flag=True,
              help="Run the send job in this process instead of leaving it to a queue consumer.")
def send_command(campaign_id: int, as_email: str | None, run_here: bool) -> None:
    """Send campaign CAMPAIGN_ID to everyone in its audience who may be mailed now (prints the result). The
    recipients are handed to the mail outbox by a job: a queue consumer runs it (or this command, --now)."""
    from crm.campaigns import services
    from crm.errors import DomainError
    from crm.jobs.batches import send_from_cli

    session = db.session
    try:
        campaign = services.get_campaign(session, campaign_id)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc

    def send(user: Any, viewer: Any) -> Any:
        return services.send_campaign(session, user, viewer, campaign)

    out = send_from_cli(session, "campaign_id", campaign_id, send, campaign.created_by_id, as_email, run_here)
    click.echo(json.dumps(out))
