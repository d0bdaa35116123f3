"""The staff's data-subject export of an HCP (GDPR Art. 15), built by a job (kind ``hcp.export``).

The export page (admin and compliance) makes the job; the job builds the document with the same
``export_hcp`` as ``crm hcps export``, under the rights of the user who asked (checked again when it runs),
with its audit record and read log, and writes it to a file under ``instance/exports/``. The page lists the
user's exports and links the file once the job is done; the file is kept ``CRM_EXPORT_KEEP_DAYS`` days.
The job's parameters and result hold the HCP's id and the file's name only, never the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crm.errors import DomainError
from crm.jobs.services import JobFailed, JobRun, fresh_session
from crm.jobs.uploads import export_dir, new_export_path


def subject(hcp_id: int) -> str:
    return f"hcp:{hcp_id}"


def export_file(result: dict[str, Any] | None) -> Path | None:
    """The finished export's file, or None when the job has none (yet) or it was deleted since."""
    name = (result or {}).get("file")
    if not isinstance(name, str) or "/" in name or "\\" in name or not name.endswith(".json"):
        return None
    path = export_dir() / name
    return path if path.is_file() else None


def run_export(run: JobRun) -> dict[str, Any]:
    from crm.hcps.export import export_hcp
    from crm.hcps.models import HCP

    with fresh_session() as session:
        actor = run.actor(session)
        if actor is None:
            raise JobFailed("The user who asked for the export no longer exists.")
        hcp = session.get(HCP, int(run.params["hcp_id"]))
        if hcp is None:
            raise JobFailed(f"HCP {run.params['hcp_id']} no longer exists.")
        try:
            document = export_hcp(session, actor, hcp)
        except DomainError as exc:
            raise JobFailed(exc.detail) from exc
        hcp_id = hcp.id
        path = new_export_path(f"hcp-{hcp_id}-export")
        try:
            path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
            session.commit()  # the audit record and the read log, once the file is there
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return {"hcp_id": hcp_id, "file": path.name, "bytes": path.stat().st_size,
            "tables": len(document["records"])}
