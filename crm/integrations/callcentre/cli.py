"""``crm import contacts FILE.csv``: a call-centre system's contact export, with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from crm.errors import DomainError
from crm.extensions import db
from crm.integrations.callcentre.contacts import import_rows, read_rows
from crm.integrations.masterdata.cli import import_cli


@import_cli.command("contacts")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000),
              help="Rows per committed batch. A killed run loses at most one batch; run it again.")
def import_contacts_command(path: Path, batch_size: int) -> None:
    """Import call-centre contacts. Contacts already imported (same external id) are skipped, so an
    interrupted import is finished by running it again. Exit status 2 when some rows were refused."""
    try:
        rows = read_rows(path.read_bytes())
    except DomainError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        for name, messages in (getattr(exc, "errors", None) or {}).items():
            click.echo(f"  {name}: {'; '.join(messages)}", err=True)
        raise SystemExit(1) from exc
    counts = {"created": 0, "skipped": 0, "error": 0}
    problems = []
    done = 0
    with tqdm(total=len(rows), unit="row", desc="contacts", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        for outcome in import_rows(db.session, None, rows):
            counts[outcome.outcome] += 1
            if outcome.outcome == "error":
                problems.append(outcome)
            done += 1
            bar.update(1)
            if done % batch_size == 0:
                db.session.commit()
        db.session.commit()
    click.echo(f"contacts: created {counts['created']}, already imported {counts['skipped']}, "
               f"refused {counts['error']}")
    for p in problems:
        click.echo(f"  row {p.row} [{p.external_id or '-'}]: {p.message}")
    if problems:
        raise SystemExit(2)
