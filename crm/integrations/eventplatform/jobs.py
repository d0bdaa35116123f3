"""The attendance upload of an event page, as a job (kind ``attendance.import``).

The page stores the file under ``instance/uploads/`` (crm/jobs/uploads.py), refuses one that cannot be an
attendance export (encoding, header) at once, and makes the job; the job runs the same importer as
``crm import attendance`` with the uploader's rights (checked again when it runs), committing every
``PROGRESS_EVERY`` rows with its progress. Each row is idempotent on (event, attendee id), so a consumer
killed mid-file leaves nothing half-done: the job is taken over and the rows already imported read
"unchanged". The result holds the counts and the per-row report (row number, attendee id, outcome and
message: no names or emails), which the upload page shows; the file is deleted once the import is done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crm.errors import DomainError
from crm.jobs.services import JobFailed, JobRun, fresh_session

MAX_ROWS_KEPT = 500  # rows of the per-row report kept in the job's result (the page showed as many)


def subject(event_id: int) -> str:
    return f"event:{event_id}"


def run_import(run: JobRun) -> dict[str, Any]:
    from crm.auth.services import viewer_for
    from crm.events.services import get_event
    from crm.integrations.eventplatform.attendance import import_attendance

    path = Path(run.params["path"])
    if not path.exists():
        raise JobFailed("The uploaded file is no longer there; upload it again.")
    with fresh_session() as session:
        actor = run.actor(session)
        if actor is None:
            raise JobFailed("The user who uploaded the file no longer exists.")

        def progress(done: int, total: int) -> None:
            run.progress(done, total, session=session)
            session.commit()

        try:
            event = get_event(session, int(run.params["event_id"]))
            report = import_attendance(session, actor, viewer_for(session, actor), event, path.read_bytes(),
                                       progress=progress)
        except DomainError as exc:
            session.rollback()
            raise JobFailed(exc.detail) from exc
        rows = [{"row": r.row, "external_id": r.external_id, "outcome": r.outcome, "message": r.message}
                for r in report.rows[:MAX_ROWS_KEPT]]
        out = {"event_id": event.id, "summary": report.summary(), "rows": rows, "rows_in_file": len(report.rows)}
        session.commit()
    os.unlink(path)
    return out
