"""``crm audit verify`` as a job (kind ``audit.verify``): run every night by the queue's scheduler. A broken or
truncated chain is a failed job, with the first broken record, on the admins' jobs page."""

from __future__ import annotations

from typing import Any

from crm.audit import services
from crm.jobs.services import JobFailed, JobRun, fresh_session


def run_verify(run: JobRun) -> dict[str, Any]:
    with fresh_session() as session:
        report, _row = services.verify_and_store(session, None)
        session.commit()  # the outcome is kept either way: the audit page shows the latest
    if not report.ok:
        raise JobFailed(f"The audit chain is broken at record {report.broken_id}: {report.problem}")
    return {"checked": report.checked}
