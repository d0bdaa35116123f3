"""Structured logs: one JSON object per line (or plain text), each naming its request and its job.

Standard library only: a ``Formatter`` subclass for the JSON lines, a ``Filter`` that copies the request
id and job id from context variables onto every record, and one handler on the root logger, so the
app's logger, the libraries' and gunicorn's (crm/gunicorn_conf.py) all write the same lines.

``request_id`` is set by the request boundary (crm/web.py) for the length of a request; ``job_id`` is
null until a job runner sets it (``job_context``) around the job it runs.

Nothing here logs request bodies, query strings or headers other than the request id: callers must not
put personal data (emails, tokens, names) in messages either.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("json", "text")
MAX_REQUEST_ID = 200
# Printable ASCII only: the id goes back out in a response header and into every log line.
_REQUEST_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]*")
# The request log's own fields, written when a record carries them (``extra=``).
REQUEST_FIELDS = ("method", "path", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [request=%(request_id)s job=%(job_id)s] %(message)s"

request_id_var: ContextVar[str | None] = ContextVar("crm_request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("crm_job_id", default=None)


def valid_request_id(value: str | None) -> bool:
    """An incoming ``X-Request-ID`` is kept only when it is printable ASCII of at most 200 characters."""
    return bool(value) and len(value or "") <= MAX_REQUEST_ID and bool(_REQUEST_ID.fullmatch(value or ""))


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id() -> str | None:
    """The id of the request being served in this context (None outside requests)."""
    return request_id_var.get()


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every line logged inside carries ``job_id`` (for the job runner of a future queue)."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)


class ContextFilter(logging.Filter):
    """Puts the current request id and job id on every record (unless the record has its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        return True


# One encoder for every line (``json.dumps`` with options builds a new one per call).
_JSON_LINE = json.JSONEncoder(default=str, ensure_ascii=False)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, job_id, the request fields
    when present, and the exception as text. Newlines inside are escaped, so a line is a record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "job_id": getattr(record, "job_id", None),
        }
        for name in REQUEST_FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return _JSON_LINE.encode(out)


class TextFormatter(logging.Formatter):
    """The human format for development: the same facts, one line per record (plus a traceback)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        # The date and time to the second is the same for every line of that second: formatted once.
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        known, text = self._second
        if known != second:
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"  # logging's default_msec_format, "%s,%03d"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{n}={getattr(record, n)}" for n in REQUEST_FIELDS if hasattr(record, n))
        return f"{line} {fields}" if fields else line


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it), marked as ours."""

    crm_handler = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    return JSONFormatter() if fmt == "json" else TextFormatter()


def configure_logging(level: str, fmt: str) -> None:
    """One handler on the root logger with the chosen format and the context filter, at ``level``.
    Replaces the handler an earlier call (or gunicorn's logconfig) installed; leaves others alone."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "crm_handler", False):
            root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # Flask gives its app logger a handler of its own when no handler is found at first use; records
    # go to the root's instead (and are not written twice).
    from flask.logging import default_handler

    for name in ("crm",):
        logging.getLogger(name).removeHandler(default_handler)
    # huey logs a line per task executed; the job runner's own lines (with the job id) say more.
    logging.getLogger("huey").setLevel("WARNING" if level in ("DEBUG", "INFO") else level)


def gunicorn_logconfig(level: str, fmt: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error log through the same handler and format as the app."""
    formatter = {"()": "crm.logging.JSONFormatter"} if fmt == "json" else {"()": "crm.logging.TextFormatter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "crm.logging.ContextFilter"}},
        "formatters": {"crm": formatter},
        "handlers": {"stderr": {"()": "crm.logging.StderrHandler", "formatter": "crm", "filters": ["context"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            # The app's request log (logger crm.request) replaces the access log: it has the request id
            # and no client address.
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
