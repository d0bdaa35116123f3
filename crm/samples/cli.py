"""``crm samples verify``: every rep's inventory equals the sum of their sample movements."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from crm.extensions import db
from crm.samples import services

samples_cli = AppGroup("samples", help="Sample accountability.")


@samples_cli.command("verify")
def verify() -> None:
    """Compare each balance with its ledger; non-zero exit and the mismatches when they differ."""
    mismatches = services.verify_ledger(db.session)
    if not mismatches:
        click.echo("sample ledger ok: every balance equals the sum of its movements")
        return
    labels = services.lot_labels(db.session, (m["lot_id"] for m in mismatches))
    for m in mismatches:
        sku, lot, _exp = labels.get(m["lot_id"], ("?", "?", None))
        click.echo(f"user {m['user_id']} {sku} lot {lot}: balance {m['balance']}, movements add up to "
                   f"{m['movements']}", err=True)
    raise SystemExit(1)
