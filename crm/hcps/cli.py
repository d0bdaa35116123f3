"""``crm hcps ...``: HCP master-data commands."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from crm.errors import DomainError
from crm.extensions import db
from crm.hcps.erasure import erase_hcp
from crm.hcps.models import HCP

hcps_cli = AppGroup("hcps", help="HCP master data.")


@hcps_cli.command("erase")
@click.argument("hcp_id", type=int)
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
def erase(hcp_id: int, reason: str) -> None:
    """Pseudonymise HCP_ID's personal data everywhere; the consent ledger's proof is kept."""
    hcp = db.session.get(HCP, hcp_id)
    if hcp is None:
        click.echo(f"error: HCP {hcp_id} does not exist", err=True)
        raise SystemExit(1)
    try:
        erase_hcp(db.session, None, hcp, reason)
    except DomainError as exc:
        db.session.rollback()
        click.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(1) from exc
    db.session.commit()
    click.echo(f"erased: HCP {hcp_id}")


@hcps_cli.command("merge")
@click.argument("survivor_id", type=int)
@click.argument("loser_id", type=int)
@click.option("--reason", required=True, help="Why the two records are one person (kept in the audit trail).")
@click.option("--override-identifier-conflict", "override_reason", metavar="REASON", default=None,
              help="Merge although the records carry different NPIs or national ids; REASON says why "
                   "(kept in the audit trail).")
def merge(survivor_id: int, loser_id: int, reason: str, override_reason: str | None) -> None:
    """Merge HCP LOSER_ID into SURVIVOR_ID: the survivor takes its history, the loser points to it."""
    from crm.hcps.merge import merge_hcps

    survivor, loser = _hcp_or_exit(survivor_id), _hcp_or_exit(loser_id)
    try:
        result = merge_hcps(db.session, None, survivor, loser, reason,
                            override_identifier_conflict=override_reason is not None,
                            override_reason=override_reason)
    except DomainError as exc:
        db.session.rollback()
        click.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(1) from exc
    db.session.commit()
    moved = ", ".join(f"{k} {v}" for k, v in sorted(result.moved.items()) if v) or "nothing"
    click.echo(f"merged: HCP {loser_id} into HCP {survivor_id} (moved: {moved})")
    if result.conflicts_overridden:
        from crm.hcps.merge import describe_conflicts

        click.echo("  identifier conflict overridden: "
                   + describe_conflicts(result.conflicts_overridden, survivor_id, loser_id))
    if result.dropped:
        click.echo("  dropped duplicates: " + ", ".join(f"{k} {v}" for k, v in sorted(result.dropped.items())))


@hcps_cli.command("export")
@click.argument("hcp_id", type=int)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Write the JSON to this file.")
def export(hcp_id: int, output: str | None) -> None:
    """Everything held about HCP_ID as JSON (data-subject access request)."""
    import json

    from crm.hcps.export import export_hcp

    document = export_hcp(db.session, None, _hcp_or_exit(hcp_id))
    db.session.commit()
    text = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False)
    if output is None:
        click.echo(text)
        return
    with open(output, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    click.echo(f"wrote {output}", err=True)


def _hcp_or_exit(hcp_id: int) -> HCP:
    hcp = db.session.get(HCP, hcp_id)
    if hcp is None:
        click.echo(f"error: HCP {hcp_id} does not exist", err=True)
        raise SystemExit(1)
    return hcp
