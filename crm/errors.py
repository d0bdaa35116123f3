"""Domain exceptions and the one place that turns them into problem+json (API) or HTML pages.

The exceptions need nothing but Python (the NPPES reader process raises them without loading the
web stack); the handlers import Flask and friends when they are registered or used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask, Response


class DomainError(Exception):
    status = 400
    title = "Bad request"
    type_ = "about:blank"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Forbidden(DomainError):
    """Refused by a visibility, territory or role rule; ``detail`` names the rule."""

    status = 403
    title = "Forbidden"

    def __init__(self, detail: str, rule: str = "", **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.rule = rule
        if rule:
            self.extra.setdefault("rule", rule)


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Invalid(DomainError):
    """A rule that needs the database refused the input (422), optionally per field."""

    status = 422
    title = "Unprocessable content"

    def __init__(self, detail: str = "", errors: dict[str, list[str]] | None = None, **extra: Any) -> None:
        super().__init__(detail or "The request has invalid fields.", **extra)
        self.errors = errors or {}


class TooManyAttempts(DomainError):
    """Throttled; ``retry_after`` (whole seconds) becomes the Retry-After header."""

    status = 429
    title = "Too many attempts"

    def __init__(self, detail: str = "", retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    from flask import jsonify

    from crm.logging import request_id

    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    if request_id():
        body.setdefault("request_id", request_id())  # the id of the log lines about this answer
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = "application/problem+json"
    return resp


def _wants_json() -> bool:
    from flask import request

    return request.path.startswith("/api/") or request.path == "/healthz"


def flatten_messages(messages: Any) -> dict[str, list[str]]:
    """marshmallow nests messages for nested schemas; keep field paths readable (``samples.0.sku``)."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out.setdefault(prefix or "_schema", []).extend(value)
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                walk(f"{prefix}.{i}", sub)
        else:
            out.setdefault(prefix or "_schema", []).append(str(value))

    walk("", messages)
    return out


def register_error_handlers(app: Flask) -> None:
    from flask import render_template
    from marshmallow import ValidationError as SchemaValidationError
    from sqlalchemy.orm.exc import StaleDataError
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(DomainError)
    def _domain(err: DomainError):
        if _wants_json():
            extra = dict(err.extra)
            if isinstance(err, Invalid) and err.errors:
                extra["errors"] = err.errors
            resp = problem(err.status, err.title, err.detail, **extra)
            if isinstance(err, TooManyAttempts) and err.retry_after:
                resp.headers["Retry-After"] = str(err.retry_after)
            return resp
        return render_template("error.html", status=err.status, title=err.title, detail=err.detail), err.status

    @app.errorhandler(SchemaValidationError)
    def _schema(err: SchemaValidationError):
        errors = flatten_messages(err.messages)
        if _wants_json():
            return problem(422, "Unprocessable content", "The request has invalid fields.", errors=errors)
        detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items())
        return render_template("error.html", status=422, title="Invalid input", detail=detail), 422

    @app.errorhandler(StaleDataError)
    def _stale(err: StaleDataError):
        return _domain(Conflict("Someone else changed this record; reload it and apply your change again."))

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        status = err.code or 500
        detail = err.description or err.name
        if status == 413:
            detail = f"The request body is larger than {app.config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MB."
        if _wants_json():
            resp = problem(status, err.name, detail)
            if status == 405 and err.get_response().headers.get("Allow"):
                resp.headers["Allow"] = err.get_response().headers["Allow"]
            return resp
        return render_template("error.html", status=status, title=err.name, detail=detail), status

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        app.logger.exception("unhandled error")
        if _wants_json():
            return problem(500, "Internal server error", "An unexpected error occurred; it has been logged.")
        return (
            render_template("error.html", status=500, title="Internal server error",
                            detail="An unexpected error occurred; it has been logged."),
            500,
        )
