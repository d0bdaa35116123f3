"""``crm consent expire``: write `expired` events for consents past their validity (idempotent)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from crm.consent.services import expire_due
from crm.extensions import db

consent_cli = AppGroup("consent", help="Consent ledger.")


@consent_cli.command("expire")
def expire() -> None:
    """Record the expiry of every granted consent past its validity. Running it again changes nothing."""
    count = expire_due(db.session)
    db.session.commit()
    click.echo(f"expired: {count} consent(s)")
