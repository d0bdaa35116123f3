"""The NPPES import of a file uploaded on the master-data page, as a job (kind ``nppes.import``).

The page stores the upload under ``instance/uploads/`` (crm/jobs/uploads.py), checks its header (a wrong file
is refused on the page at once) and creates the job; the job runs the same resumable importer as ``crm import
hcps``, reporting the bytes read as its progress. A consumer killed mid-import leaves the run to resume: the
job is taken over and the importer continues from the run's last checkpoint. The file is deleted once the
import is done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crm.errors import DomainError
from crm.jobs.services import JobFailed, JobRun, fresh_session


def run_import(run: JobRun) -> dict[str, Any]:
    from crm.integrations.masterdata.importer import import_nppes_file

    path = Path(run.params["path"])
    if not path.exists():
        raise JobFailed("The uploaded file is no longer there; upload it again.")
    size = path.stat().st_size
    with fresh_session() as session:
        actor = run.actor(session)

        def progress(_rows: int, offset: int) -> None:
            # Joins the importer's next batch transaction (no second writer on SQLite's lock).
            run.progress(offset, size, session=session)

        try:
            result = import_nppes_file(session, actor, path, filename=run.params.get("filename"),
                                       progress=progress)
        except DomainError as exc:
            raise JobFailed(exc.detail) from exc
        out = {"import_run_id": result.id, "status": result.status, "created": result.created,
               "updated": result.updated, "rejected": result.rejected}
        session.commit()
    os.unlink(path)
    return out
