"""``crm campaigns send ID``: the same send as the page and the API, from the command line."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from crm.extensions import db

campaigns_cli = AppGroup("campaigns", help="Email campaigns.")


@campaigns_cli.command("send")
@click.argument("campaign_id", type=int)
@click.option("--as", "as_email", default=None,
              help="Send as this marketer (default: the marketer who created the campaign).")
def send_command(campaign_id: int, as_email: str | None) -> None:
    """Send campaign CAMPAIGN_ID to everyone in its audience who may be mailed now (prints the result)."""
    from crm.auth.models import User
    from crm.auth.services import find_user_by_email, viewer_for
    from crm.campaigns import services
    from crm.errors import DomainError

    session = db.session
    try:
        campaign = services.get_campaign(session, campaign_id)
        user = find_user_by_email(session, as_email) if as_email else session.get(User, campaign.created_by_id)
        if user is None:
            raise click.ClickException(f"no user {as_email or campaign.created_by_id} to send as")
        result = services.send_campaign(session, user, viewer_for(session, user), campaign)
    except DomainError as exc:
        session.rollback()
        raise click.ClickException(exc.detail) from exc
    session.commit()  # the mails are handed to the email adapter once this commit succeeded
    skipped: dict[str, int] = {}
    for s in result.skipped:
        skipped[s["reason"]] = skipped.get(s["reason"], 0) + 1
    click.echo(json.dumps({"campaign_id": campaign_id, "sent": len(result.sent), "skipped": skipped}))
