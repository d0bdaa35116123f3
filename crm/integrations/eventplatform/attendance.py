"""Attendance import from an event platform's CSV export.

Each row is matched to an HCP by, in order: the platform's id for the person (an HCP identifier of
kind ``event_platform``, recorded when someone resolves an unmatched row), the NPI, or the email
(through the blind index, never in clear). Rows are idempotent on (event, external id): the same file
twice changes nothing. A row that matches nobody is kept, encrypted, for review; a row with a problem
gets its message in the per-row report and the rest of the file still imports. Each row runs in its
own savepoint, so a failing row leaves no half-written trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from crm.access.policy import Viewer, require_write
from crm.audit import services as audit
from crm.db import DbSession, utcnow
from crm.errors import Conflict, DomainError, NotFound
from crm.events import services as events
from crm.events.models import Attendance, Event
from crm.hcps.identifiers import npi_problem
from crm.hcps.models import HCP, HCPIdentifier
from crm.integrations import csvfile
from crm.integrations.eventplatform.models import UnmatchedAttendanceRow
from crm.security.crypto import blind_index

IDENTIFIER_KIND = "event_platform"
ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": ("external id", "attendee id", "registration id", "ticket id", "participant id"),
    "event": ("event id", "event code", "event external id"),
    "first_name": ("first name", "firstname", "given name", "forename"),
    "last_name": ("last name", "lastname", "surname", "family name"),
    "email": ("email address", "e-mail", "mail"),
    "npi": ("npi number", "national provider identifier"),
    "status": ("attendance", "attended", "attendance status", "checked in"),
}
REQUIRED = ("external_id",)
PROGRESS_EVERY = 100  # rows between two progress reports of the upload's job
_ATTENDED = {"attended", "yes", "y", "true", "1", "present", "checked in", "checkedin", "x"}
_NO_SHOW = {"no_show", "no show", "noshow", "no-show", "no", "n", "false", "0", "absent", "did not attend"}


@dataclass
class RowOutcome:
    row: int
    external_id: str
    outcome: str  # attended | no_show | unchanged | unmatched | error
    message: str = ""
    hcp_id: int | None = None


@dataclass
class AttendanceReport:
    event_id: int
    rows: list[RowOutcome] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.rows if r.outcome == outcome)

    @property
    def errors(self) -> list[RowOutcome]:
        return [r for r in self.rows if r.outcome == "error"]

    def summary(self) -> dict[str, int]:
        return {k: self.count(k) for k in ("attended", "no_show", "unchanged", "unmatched", "error")}


def _status(values: dict[str, str], has_column: bool) -> str:
    if not has_column:
        return "attended"  # an export without a status column lists the people who came
    raw = " ".join(values.get("status", "").replace("_", " ").split()).casefold()
    if raw in _ATTENDED:
        return "attended"
    if raw in _NO_SHOW:
        return "no_show"
    raise ValueError(f"status {values.get('status', '')!r} is neither attended nor no_show")


def _survivor(session: DbSession, hcp: HCP | None) -> HCP | None:
    seen: set[int] = set()
    while hcp is not None and hcp.merged_into_id is not None and hcp.id not in seen:
        seen.add(hcp.id)
        hcp = session.get(HCP, hcp.merged_into_id)
    return hcp


def match_hcp(session: DbSession, values: dict[str, str]) -> tuple[HCP | None, str]:
    """The HCP a row is about, and what matched it ("" when nothing did)."""
    ext = values.get("external_id", "")
    if ext:
        hcp_id = session.scalar(select(HCPIdentifier.hcp_id).where(HCPIdentifier.kind == IDENTIFIER_KIND,
                                                                   HCPIdentifier.value == ext))
        if hcp_id is not None:
            return _survivor(session, session.get(HCP, hcp_id)), "external id"
    npi = values.get("npi", "")
    if npi:
        hcp_id = session.scalar(select(HCPIdentifier.hcp_id).where(HCPIdentifier.kind == "npi",
                                                                   HCPIdentifier.value == npi))
        if hcp_id is not None:
            return _survivor(session, session.get(HCP, hcp_id)), "NPI"
    email = values.get("email", "")
    if email:
        hcp = session.scalar(select(HCP).where(HCP.email_bidx == blind_index(email)).order_by(HCP.id).limit(1))
        if hcp is not None:
            return _survivor(session, hcp), "email"
    return None, ""


def _row_problem(values: dict[str, str], event: Event, seen: dict[str, int], row: csvfile.Row) -> str | None:
    ext = values.get("external_id", "")
    nul = csvfile.nul_problem(values)
    if nul:  # before any query: PostgreSQL cannot even compare with a NUL
        return nul
    if not ext:
        return "external id is empty (it is what makes a re-import safe)"
    if len(ext) > 200:
        return "external id is longer than 200 characters"
    if ext in seen:
        return f"external id {ext!r} was already in row {seen[ext]} of this file"
    if row.extra_cells:
        return "has more cells than the header has columns (a separator inside an unquoted value?)"
    for name in ("first_name", "last_name", "email", "external_id"):
        problem = csvfile.formula_problem(values.get(name, ""))
        if problem:
            return f"{name} {problem}; fix the name in the export"
    row_event = values.get("event", "")
    if row_event and row_event not in {str(event.id), event.external_id or ""}:
        return f"is for event {row_event!r}, not this event (id {event.id}" + (
            f", platform id {event.external_id!r})" if event.external_id else ")")
    npi = values.get("npi", "")
    if npi and npi_problem(npi):
        return f"NPI {npi!r} {npi_problem(npi)}"
    return None


def check_file(data: bytes) -> None:
    """Refuses a file that cannot be an attendance export (encoding, header, the attendee id column) before
    any row is read: the upload page's check, so that no job is made for it."""
    csvfile.read(data, ALIASES, REQUIRED)


def import_attendance(session: DbSession, actor: Any, viewer: Viewer | None, event: Event,
                      data: bytes, progress: Callable[[int, int], None] | None = None) -> AttendanceReport:
    """Import one export file for ``event``; the caller commits (the command, or the upload's job, which
    may also commit in ``progress(rows done, rows in the file)``: each row is idempotent)."""
    if viewer is not None:
        require_write(viewer, "event.write")
    fields, row_iter = csvfile.read(data, ALIASES, REQUIRED)
    rows = list(row_iter)
    has_status = "status" in fields
    report = AttendanceReport(event.id)
    seen: dict[str, int] = {}
    for done, row in enumerate(rows):
        if progress is not None and done and done % PROGRESS_EVERY == 0:
            progress(done, len(rows))
        values = row.values
        ext = values.get("external_id", "")
        problem = _row_problem(values, event, seen, row)
        if problem is None:
            try:
                status = _status(values, has_status)
            except ValueError as exc:
                problem = str(exc)
        if ext and ext not in seen:
            seen[ext] = row.number
        if problem is not None:
            report.rows.append(RowOutcome(row.number, ext, "error", problem))
            continue
        try:
            with session.begin_nested():
                report.rows.append(_import_row(session, actor, event, row.number, values, status))
        except DomainError as exc:
            report.rows.append(RowOutcome(row.number, ext, "error", exc.detail))
    audit.record(session, actor, "event.attendance.import", "event", event.id, audit.created(report.summary()))
    if progress is not None:
        progress(len(rows), len(rows))
    return report


def _import_row(session: DbSession, actor: Any, event: Event, number: int, values: dict[str, str],
                status: str) -> RowOutcome:
    ext = values["external_id"]
    existing = session.scalar(select(Attendance).where(Attendance.event_id == event.id, Attendance.external_id == ext))
    hcp, matched_by = (session.get(HCP, existing.hcp_id), "earlier import") if existing else match_hcp(session, values)
    pending = session.scalar(select(UnmatchedAttendanceRow).where(UnmatchedAttendanceRow.event_id == event.id,
                                                                  UnmatchedAttendanceRow.external_id == ext))
    if hcp is None:
        if pending is None:
            session.add(UnmatchedAttendanceRow(event_id=event.id, external_id=ext, row_number=number,
                                               attendance_status=status, data=json.dumps(values, ensure_ascii=False)))
            session.flush()
            return RowOutcome(number, ext, "unmatched", "no HCP with this external id, NPI or email; kept for review")
        return RowOutcome(number, ext, "unmatched", f"already kept for review ({pending.status})")
    result = events.record_attendance(session, actor, None, event, hcp.id, status, external_id=ext,
                                      source="event_platform")
    if pending is not None and pending.status == "open":
        pending.status, pending.resolved_hcp_id, pending.resolved_at = "resolved", hcp.id, utcnow()
    if not result.changed:
        return RowOutcome(number, ext, "unchanged", "already imported", hcp.id)
    return RowOutcome(number, ext, status, f"matched by {matched_by}", hcp.id)


# -- review of unmatched rows ----------------------------------------------------------------------

def unmatched_rows(session: DbSession, event: Event, status: str = "open") -> list[tuple[UnmatchedAttendanceRow,
                                                                                     dict[str, Any]]]:
    rows = session.scalars(select(UnmatchedAttendanceRow).where(
        UnmatchedAttendanceRow.event_id == event.id, UnmatchedAttendanceRow.status == status)
        .order_by(UnmatchedAttendanceRow.id))
    return [(r, json.loads(r.data)) for r in rows]


def _open_row(session: DbSession, event: Event, row_id: int) -> UnmatchedAttendanceRow:
    row = session.get(UnmatchedAttendanceRow, row_id)
    if row is None or row.event_id != event.id:
        raise NotFound(f"There is no unmatched row {row_id} for event {event.id}.")
    if row.status != "open":
        raise Conflict(f"Row {row_id} is already {row.status}.")
    return row


def resolve_unmatched(session: DbSession, actor: Any, viewer: Viewer, event: Event, row_id: int,
                      hcp_id: int) -> events.AttendanceResult:
    """Someone found the HCP of an unmatched row: record the attendance, and remember the platform's id
    for that HCP so that the next export matches by itself."""
    require_write(viewer, "event.write")
    row = _open_row(session, event, row_id)
    result = events.record_attendance(session, actor, viewer, event, hcp_id, row.attendance_status,
                                      external_id=row.external_id, source="event_platform")
    taken = session.scalar(select(HCPIdentifier.hcp_id).where(HCPIdentifier.kind == IDENTIFIER_KIND,
                                                              HCPIdentifier.value == row.external_id))
    if taken is None:
        session.add(HCPIdentifier(hcp_id=hcp_id, kind=IDENTIFIER_KIND, value=row.external_id))
    row.status, row.resolved_hcp_id, row.resolved_by_id, row.resolved_at = (
        "resolved", hcp_id, getattr(actor, "id", None), utcnow())
    session.flush()
    audit.record(session, actor, "event.attendance.resolve", "event", event.id,
                 audit.created({"row_id": row.id, "external_id": row.external_id, "hcp_id": hcp_id}))
    return result


def dismiss_unmatched(session: DbSession, actor: Any, viewer: Viewer, event: Event, row_id: int) -> None:
    """Not an HCP (a colleague, a journalist): keep the row, marked dismissed."""
    require_write(viewer, "event.write")
    row = _open_row(session, event, row_id)
    row.status, row.resolved_by_id, row.resolved_at = "dismissed", getattr(actor, "id", None), utcnow()
    session.flush()
    audit.record(session, actor, "event.attendance.dismiss", "event", event.id,
                 audit.created({"row_id": row.id, "external_id": row.external_id}))
