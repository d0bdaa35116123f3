"""The default backend: one ``.eml`` file per message in a folder, written atomically."""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from crm.integrations.email.base import EmailMessage, build_mime


class FileOutboxSender:
    """Writes each message to ``<outbox>/<utc time>-<uuid>.eml``: temp file, fsync, rename.

    A reader of the folder never sees half a message, and two processes never overwrite each other.
    """

    def __init__(self, outbox_dir: str | os.PathLike[str], from_addr: str) -> None:
        self.outbox = Path(outbox_dir)
        self.from_addr = from_addr

    def send(self, message: EmailMessage) -> str:
        mime = build_mime(message, self.from_addr)
        self.outbox.mkdir(parents=True, exist_ok=True)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}.eml"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.outbox)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(mime.as_bytes())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.outbox / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(mime["Message-ID"])
