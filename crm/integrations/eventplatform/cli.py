"""``crm import attendance EVENT_ID FILE.csv``: an event platform's attendance export."""

from __future__ import annotations

from pathlib import Path

import click

from crm.errors import DomainError
from crm.events.services import get_event
from crm.extensions import db
from crm.integrations.eventplatform.attendance import import_attendance
from crm.integrations.masterdata.cli import import_cli


@import_cli.command("attendance")
@click.argument("event_id", type=int)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_attendance_command(event_id: int, path: Path) -> None:
    """Import attendance for one event. The whole file is one transaction; importing it again changes
    nothing. Exit status 1 when the file cannot be read, 2 when some rows were refused."""
    try:
        event = get_event(db.session, event_id)
        report = import_attendance(db.session, None, None, event, path.read_bytes())
    except DomainError as exc:
        db.session.rollback()
        click.echo(f"error: {exc.detail}", err=True)
        for name, messages in (getattr(exc, "errors", None) or {}).items():
            click.echo(f"  {name}: {'; '.join(messages)}", err=True)
        raise SystemExit(1) from exc
    db.session.commit()
    counts = report.summary()
    click.echo(f"event {event_id}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    for row in report.rows:
        if row.outcome in ("error", "unmatched"):
            click.echo(f"  row {row.row} [{row.external_id or '-'}] {row.outcome}: {row.message}")
    if report.errors:
        raise SystemExit(2)
