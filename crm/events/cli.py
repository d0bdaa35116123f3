"""``crm reports transfers YEAR``: the transparency report as CSV (Open Payments or EFPIA shape)."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from crm.events import reports
from crm.extensions import db

reports_cli = AppGroup("reports", help="Compliance reports as CSV.")


@reports_cli.command("transfers")
@click.argument("year", type=click.IntRange(2000, 2100))
@click.option("--format", "shape", type=click.Choice(["open_payments", "efpia"]), default="open_payments",
              show_default=True, help="Column shape: US Open Payments general payments, or the EFPIA template.")
@click.option("--country", default=None, help="EFPIA only: HCPs of this country (ISO 3166 code).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the CSV to this file instead of standard output.")
def transfers(year: int, shape: str, country: str | None, output: Path | None) -> None:
    """Transfers of value per HCP for YEAR, safe to open in a spreadsheet."""
    if shape == "efpia":
        report = reports.efpia(db.session, None, year, country.upper() if country else None)
    else:
        report = reports.open_payments(db.session, None, year)
    text = report.csv()
    if output is None:
        click.echo(text, nl=False)
    else:
        with output.open("w", encoding="utf-8-sig", newline="") as fh:
            fh.write(text)
        click.echo(f"wrote {output} ({len(report.rows)} rows)")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
