"""Reading import runs: the list, one run, and its error report as formula-safe CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sqlalchemy import select

from crm.db import DbSession
from crm.errors import NotFound
from crm.integrations.masterdata.models import ImportRowError, ImportRun
from crm.reports import csv_safe

REPORT_COLUMNS = ("run_id", "row", "line", "npi", "severity", "field", "reason", "value")
def get_run(session: DbSession, run_id: int) -> ImportRun:
    run = session.get(ImportRun, run_id)
    if run is None:
        raise NotFound(f"No import run with id {run_id}.")
    return run


def list_runs(session: DbSession, limit: int = 50, before_id: int | None = None) -> list[ImportRun]:
    """The latest runs first; ``before_id`` pages back."""
    stmt = select(ImportRun).order_by(ImportRun.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(ImportRun.id < before_id)
    return list(session.scalars(stmt))


def row_errors(session: DbSession, run_id: int, limit: int | None = None) -> list[ImportRowError]:
    stmt = select(ImportRowError).where(ImportRowError.run_id == run_id).order_by(
        ImportRowError.row_number, ImportRowError.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def error_report_lines(session: DbSession, run_id: int, chunk: int = 2000) -> Iterator[str]:
    """The run's rejected and flagged rows as CSV text, header first, read in keyset chunks."""
    get_run(session, run_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    yield out.getvalue()
    last = (0, 0)
    table = ImportRowError.__table__
    while True:
        rows = session.execute(
            select(table).where(table.c.run_id == run_id,
                                (table.c.row_number > last[0])
                                | ((table.c.row_number == last[0]) & (table.c.id > last[1])))
            .order_by(table.c.row_number, table.c.id).limit(chunk)
        ).all()
        if not rows:
            return
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        for r in rows:
            writer.writerow([csv_safe(v) for v in (r.run_id, r.row_number, r.line_number, r.npi, r.severity, r.field,
                                                   r.reason, r.value)])
        yield out.getvalue()
        last = (rows[-1].row_number, rows[-1].id)
