"""Files of jobs. Uploads that a job processes: stored under ``instance/uploads/`` by the page, checked there
(a wrong file is refused at once, no job made), read by the job, deleted when it is done (the NPPES import,
the attendance upload). Files a job makes for a user to download (the data-subject export): written under
``instance/exports/``, deleted by the nightly run after ``CRM_EXPORT_KEEP_DAYS`` days (default 7)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from werkzeug.datastructures import FileStorage


def _folder(name: str) -> Path:
    from crm.config import _instance_dir

    folder = _instance_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def upload_dir() -> Path:
    return _folder("uploads")


def export_dir() -> Path:
    return _folder("exports")


def new_export_path(prefix: str, suffix: str = ".json") -> Path:
    return export_dir() / f"{prefix}-{uuid.uuid4().hex}{suffix}"


def purge_exports(keep_days: float, now: float | None = None) -> int:
    """Delete the export files older than ``keep_days``; returns how many went."""
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    gone = 0
    for path in export_dir().iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            gone += 1
    return gone


def new_upload_path(prefix: str, suffix: str = ".csv") -> Path:
    return upload_dir() / f"{prefix}-{uuid.uuid4().hex}{suffix}"


def store_upload(upload: FileStorage, prefix: str, check: Callable[[Path], object], suffix: str = ".csv") -> Path:
    """Save ``upload`` to a new file and run ``check`` on it; a check that raises (a ``DomainError`` for the
    page's message) deletes the file again, and so does anything else that goes wrong."""
    path = new_upload_path(prefix, suffix)
    try:
        with path.open("wb") as fh:
            upload.save(fh)
        upload.close()
        check(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
