"""``crm import ...``: import data from files. ``crm import hcps FILE.csv`` reads the NPPES layout."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from flask.cli import AppGroup
from tqdm import tqdm

from crm.errors import DomainError
from crm.extensions import db
from crm.integrations.masterdata.importer import import_nppes_file
from crm.integrations.masterdata.report import error_report_lines, get_run

import_cli = AppGroup("import", help="Import data from files.")


@import_cli.command("hcps")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 5000),
              help="Rows per committed batch (the checkpoint interval).")
def import_hcps(path: Path, batch_size: int) -> None:
    """Import HCPs and HCOs from an NPPES NPI registry CSV file (resumes an interrupted run of the same file)."""
    size = path.stat().st_size
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc="NPPES import",
               disable=not sys.stderr.isatty(), file=sys.stderr)
    started = time.monotonic()

    def progress(rows: int, offset: int) -> None:
        bar.update(offset - bar.n)  # the bar is the file's bytes: a resumed run starts at its checkpoint
        elapsed = max(time.monotonic() - started, 1e-6)
        bar.set_postfix_str(f"{rows:,} rows, {rows / elapsed:,.0f} rows/s")

    try:
        run = import_nppes_file(db.session, None, path, batch_size=batch_size, progress=progress)
    except DomainError as exc:
        bar.close()
        click.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(1) from exc
    bar.close()
    elapsed = time.monotonic() - started
    rows = run.created + run.updated + run.unchanged + run.rejected
    resumed = f", resumed {run.resumed}x" if run.resumed else ""
    click.echo(f"import run {run.id} {run.status}: {rows} rows in {elapsed:.1f}s{resumed}")
    click.echo(f"  created {run.created}, updated {run.updated}, unchanged {run.unchanged}, "
               f"rejected {run.rejected}, flagged {run.flagged}")
    if rows == 0:
        click.echo("  the file has a header but no data rows")
    if run.rejected or run.flagged:
        click.echo(f"  error report: crm import errors {run.id} --output errors.csv")


@import_cli.command("errors")
@click.argument("run_id", type=int)
@click.option("--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the CSV to this file instead of standard output.")
def import_errors(run_id: int, output: Path | None) -> None:
    """The rejected and flagged rows of an import run, as CSV (safe to open in a spreadsheet)."""
    try:
        get_run(db.session, run_id)
    except DomainError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(1) from exc
    if output is None:
        for chunk in error_report_lines(db.session, run_id):
            click.echo(chunk, nl=False)
        return
    with output.open("w", encoding="utf-8", newline="") as fh:
        for chunk in error_report_lines(db.session, run_id):
            fh.write(chunk)
    click.echo(f"wrote {output}")
