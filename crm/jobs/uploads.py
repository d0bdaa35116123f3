"""Uploaded files that a job processes: stored under ``instance/uploads/`` by the page, checked there (a wrong
file is refused at once, no job made), read by the job, deleted when it is done. The NPPES import and the
attendance upload use them; a stored file holds personal data only until its job has run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from werkzeug.datastructures import FileStorage


def upload_dir() -> Path:
    from crm.config import _instance_dir

    folder = _instance_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
