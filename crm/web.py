"""The request boundary: request ids and the request log, size limits, JSON parsing, URL converters,
security headers, the transaction mode of a request (SQLite readers never wait for the write lock), one
commit per request, health check."""

from __future__ import annotations

import json
import logging
import re
import time
from functools import lru_cache
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask.json.provider import _default as flask_json_default
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import text
from werkzeug.exceptions import BadRequest, NotFound, RequestEntityTooLarge, RequestURITooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, UnicodeConverter

from crm.db import (
    DEFERRED,
    IMMEDIATE,
    StoredJSON,
    WriteInReadTransaction,
    drop_after_reads,
    set_sqlite_begin,
    sqlite_begin,
    write_after_reads,
    wrote_nothing,
)
from crm.extensions import db
from crm.logging import configure_logging, new_request_id, request_id_var, valid_request_id
from crm.schemas import DB_INT_MAX

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# What every response carries unless it sets its own (crm.web's ``_headers``).
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")  # production only
NO_STORE = ("Cache-Control", "no-store")  # everything but static assets


# Deeper JSON than this is not a shape any endpoint takes; refusing it early keeps the parser and the
# schemas out of deep recursion (a 1,000-deep body would otherwise end in a RecursionError, a 500).
MAX_JSON_DEPTH = 64
# Path and query together; longer is 414 (gunicorn refuses request lines over 4094 bytes itself).
MAX_URI_BYTES = 8192
# The range of the Integer id columns: a larger id in a path is an unknown id (404).
ID_MAX = DB_INT_MAX
# Requests that only read: on SQLite their transaction begins deferred and never waits for the write lock.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

request_log = logging.getLogger("crm.request")


class JSONRefused(ValueError):
    """The body parsed as JSON but is refused (too deep, a lone surrogate, NaN): a 400 with the reason."""


def _refuse_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not JSON.")


def loads_json(raw: str | bytes) -> Any:
    """Parse a JSON document as the API accepts it: standard JSON only (no NaN/Infinity), nested at most
    ``MAX_JSON_DEPTH`` deep, and no string holding a lone UTF-16 surrogate (``"\\ud800"``), which no
    database can store. Raises ``ValueError`` (``JSONRefused`` with a reason) otherwise."""
    # orjson first (a webhook batch parses several times faster): it takes only UTF-8 and refuses NaN
    # and lone surrogates itself. Whatever it refuses is read again by the standard library, which then
    # answers as it always did; so is a document holding a number it may have read differently (an
    # integer beyond 64 bits becomes a float in orjson, an exact int in the standard library).
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = _REFUSED
    if data is _REFUSED or not _plain(data):
        return _loads_json_stdlib(raw)
    return data


_REFUSED = object()


_BIG = float(2**63)


def _plain(data: Any) -> bool:
    """Whether orjson's ``data`` is what the standard library reads too: no float as large as an integer
    orjson could not hold (such a float may have been one). ``JSONRefused`` when it nests deeper than
    ``MAX_JSON_DEPTH``. Visits the values of containers only (no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    if type(data) is float:
        return -_BIG < data < _BIG
    if type(data) is not dict and type(data) is not list:  # null, true, a number or a string alone
        return True
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JSONRefused(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.")
        depth += 1
        for sub in value.values() if type(value) is dict else value:
            kind = type(sub)
            if kind is dict or kind is list:
                stack.append((sub, depth))
            elif kind is float and not -_BIG < sub < _BIG:
                return False
    return True


def _loads_json_stdlib(raw: str | bytes) -> Any:
    """``loads_json`` by the standard library (any encoding it detects, integers of any size)."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise JSONRefused(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.") from exc
    # A lone surrogate can only come from a \u escape of one (d800-dfff): without such an escape in the
    # text, the strings need no check, only the depth (a webhook batch holds a hundred thousand strings).
    if isinstance(raw, str):
        try:
            text = raw.encode("utf-8")
        except UnicodeEncodeError:  # the text itself holds one
            text = b"\\ud"
    else:
        text = raw
    strings = b"\\ud" in text or b"\\uD" in text
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if strings:
                _encodable(value)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JSONRefused(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels.")
            if isinstance(value, dict):
                if strings:
                    for key in value:
                        _encodable(key)
                stack.extend([(sub, depth + 1) for sub in value.values() if not isinstance(sub, str) or strings])
            else:
                stack.extend([(sub, depth + 1) for sub in value if not isinstance(sub, str) or strings])
    return data


def _encodable(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JSONRefused("The JSON holds a lone surrogate (an invalid \\u escape); send valid Unicode.") from exc


def parse_json_body(raw: bytes) -> Any:
    """``loads_json`` for a request body: a refused or malformed body is a 400 saying why."""
    try:
        return loads_json(raw)
    except JSONRefused as exc:
        raise BadRequest(str(exc)) from exc
    except ValueError as exc:  # includes UnicodeDecodeError
        raise BadRequest("The body is not valid JSON.") from exc


def _json_default(value: Any) -> Any:
    """What JSON cannot hold natively: stored JSON text as its value, the rest as Flask does (dates as
    HTTP dates, Decimal and UUID as strings, dataclasses as dicts)."""
    if isinstance(value, StoredJSON):
        return value.value()
    return flask_json_default(value)


def _orjson_default(value: Any) -> Any:
    if isinstance(value, StoredJSON):
        return orjson.Fragment(value.raw)  # written as stored, not parsed and encoded again
    return flask_json_default(value)


# Flask's output (sorted keys, non-string keys as strings, dates as Flask writes them), in orjson's encoder.
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME \
    | orjson.OPT_PASSTHROUGH_DATACLASS


class StrictJSONProvider(DefaultJSONProvider):
    """``request.get_json()`` everywhere parses with ``loads_json``; responses are written by orjson
    (several times faster than the standard library), with the standard library as the fallback for
    what orjson refuses (integers beyond 64 bits, nesting deeper than 254)."""

    default = staticmethod(_json_default)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_json(s)

    def _orjson(self, obj: Any) -> bytes | None:
        try:
            return orjson.dumps(obj, default=_orjson_default, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            return None

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if not kwargs:
            out = self._orjson(obj)
            if out is not None:
                return out.decode()
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Any:
        if self._app.debug or self.compact is False:
            return super().response(*args, **kwargs)  # indented, for reading
        out = self._orjson(self._prepare_response_obj(args, kwargs))
        if out is None:
            return super().response(*args, **kwargs)
        response_class: Any = self._app.response_class
        return response_class(out + b"\n", mimetype=self.mimetype)


class IdConverter(IntegerConverter):
    """``<int:...>`` for every route: ids beyond the Integer columns' range are unknown ids (404), not a
    database overflow (a 500 on PostgreSQL, and on SQLite beyond 2**63).

    It raises ``NotFound`` rather than werkzeug's ``ValidationError``: with the latter the router goes on
    to the rule of another method for the same path and answers 405 (GET on a path with a POST rule)."""

    def to_python(self, value: str) -> Any:
        digits = value.lstrip("0")  # werkzeug takes leading zeros; only the size of the number counts
        if len(digits) > len(str(ID_MAX)) or (digits and int(digits) > ID_MAX):
            raise NotFound(f"No such object: ids are at most {ID_MAX}.")
        return super().to_python(value)


class PathSegmentConverter(UnicodeConverter):
    """The default converter, refusing a NUL (``%00``) that PostgreSQL cannot compare with: 404 (raised
    as ``NotFound`` for the reason given in ``IdConverter``)."""

    def to_python(self, value: str) -> Any:
        if "\x00" in value:
            raise NotFound("No such object: a path segment holds a NUL character.")
        return value


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without their cost where there is no session: a request that
    carries no session cookie (every API call with a bearer token) gets an empty session without the
    signing serializer being built, and an empty session that nothing changed is not saved (Flask would
    only look up the cookie settings to do nothing). Same sessions, same cookies, same headers."""

    def open_session(self, app: Flask, request: Any) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)


def register_converters(app: Flask) -> None:
    """Before any blueprint: rules pick their converters when they are added."""
    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["default"] = PathSegmentConverter
    app.url_map.converters["string"] = PathSegmentConverter
    app.json = StrictJSONProvider(app)


def _loggable_path() -> str:
    """The path for the request log: the route with its integer ids, other parameters (link tokens,
    names) replaced by their names, so no token or personal datum reaches a log line."""
    rule = request.url_rule
    if rule is None:
        return request.path[:200]
    args = request.view_args or {}
    parts = []
    for literal, name in _route_parts(rule.rule):
        parts.append(literal)
        if name is not None:
            value = args.get(name)
            parts.append(str(value) if isinstance(value, int) else f"<{name}>")
    return "".join(parts)


_ROUTE_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@lru_cache(maxsize=2048)
def _route_parts(rule: str) -> tuple[tuple[str, str | None], ...]:
    """A route split once into (text before a parameter, the parameter's name or None at the end)."""
    out: list[tuple[str, str | None]] = []
    at = 0
    for match in _ROUTE_PARAMETER.finditer(rule):
        out.append((rule[at:match.start()], match.group(1)))
        at = match.end()
    out.append((rule[at:], None))
    return tuple(out)


def _cache_ensure_sync(app: Flask) -> None:
    """Flask asks ``inspect.iscoroutinefunction`` about every hook and view on every request (ten or more
    calls a request); the answer for a given function never changes, so it is kept (plain functions and
    methods: the hooks, views and error handlers, a bounded number)."""
    ensure_sync = app.ensure_sync
    known: dict[Any, Any] = {}

    def cached(func: Any) -> Any:
        try:
            return known[func]
        except KeyError:
            sync = ensure_sync(func)
            if len(known) < 4096:
                known[func] = sync
            return sync
        except TypeError:  # an unhashable callable
            return ensure_sync(func)

    app.ensure_sync = cached  # type: ignore[method-assign]


def register_lifecycle(app: Flask) -> None:
    configure_logging(app.config.get("CRM_LOG_LEVEL", "INFO"), app.config.get("CRM_LOG_FORMAT", "text"))
    hops = int(app.config.get("CRM_TRUSTED_PROXIES") or 0)
    if hops:
        # Believe X-Forwarded-For/-Proto only as far as the configured proxies set them, so remote_addr is
        # the client's. Host and port are not taken from headers: links use CRM_PUBLIC_URL, and a client
        # could pass X-Forwarded-Host through a proxy that does not overwrite it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    register_converters(app)
    app.session_interface = CookieSessions()
    _cache_ensure_sync(app)

    def _request_id() -> None:
        # An incoming id is kept when it is printable ASCII of at most 200 characters, else replaced.
        incoming = request.headers.get("X-Request-ID", "")
        request_id_var.set(incoming if valid_request_id(incoming) else new_request_id())
        g.crm_request_started = time.perf_counter()
        # A read-only request begins its SQLite transactions deferred (docs/architecture.md).
        set_sqlite_begin(DEFERRED if request.method in READ_METHODS else IMMEDIATE)

    # First of all before-request functions (CSRF's among them), so every answer carries the id.
    app.before_request_funcs.setdefault(None, []).insert(0, _request_id)

    view = app.dispatch_request

    def dispatch_request() -> Any:
        if sqlite_begin() != DEFERRED:
            return view()
        try:
            return view()
        except WriteInReadTransaction:
            # The view wrote in a read-only transaction; nothing was written (the statement was refused
            # before it ran). Replay the view from the start in a write transaction: a GET repeated
            # after a rollback sees the database as a first run would.
            db.session.rollback()
            drop_after_reads(db.session)
            set_sqlite_begin(IMMEDIATE)
            current_app.logger.info("read request wrote: replayed in a write transaction",
                                    extra={"method": request.method, "path": _loggable_path()})
            return view()

    app.dispatch_request = dispatch_request  # type: ignore[method-assign]

    @app.after_request
    def _log_request(response: Response) -> Response:
        # Registered first, so it runs last: the status is final, the id goes back to the client.
        rid = request_id_var.get()
        if rid:
            response.headers["X-Request-ID"] = rid
        started = g.get("crm_request_started")
        duration = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
        if request_log.isEnabledFor(logging.INFO):
            # As ``request_log.info`` would, without looking up the caller's file and line in the stack
            # (no format writes them): the same record through the same filters and handlers.
            path, method, status = _loggable_path(), request.method, response.status_code
            request_log.handle(request_log.makeRecord(
                request_log.name, logging.INFO, __file__, 0, "%s %s %s", (method, path, status), None,
                extra={"method": method, "path": path, "status": status, "duration_ms": duration}))
        return response

    @app.teardown_request
    def _end_request(_exc: BaseException | None) -> None:
        set_sqlite_begin(IMMEDIATE)
        request_id_var.set(None)

    @app.before_request
    def _limit_body() -> None:
        if len(request.full_path.encode()) > MAX_URI_BYTES:
            raise RequestURITooLarge(f"The URL is longer than {MAX_URI_BYTES} bytes.")
        # Refuse by the declared length before anything reads the body; Werkzeug also caps streams.
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise RequestEntityTooLarge()

    @app.after_request
    def _commit(response: Response) -> Response:
        session = db.session
        keep = session.info.pop("keep_on_error", False)
        if response.status_code < 400 and request.method in READ_METHODS and wrote_nothing(session):
            # A read that wrote nothing has nothing to commit: its transaction ends (rolled back, which
            # is the same for a read) when the session is released at the end of the request.
            return response
        if response.status_code < 400 or keep:
            session.commit()  # after-commit hooks (mail, ERP) run here, only once the data is safe
            # What a read-only transaction kept back (sensitive-read log rows): written now, in a short
            # write transaction, before the response leaves; if it fails, the response is an error.
            write_after_reads(session)
        else:
            session.rollback()
            drop_after_reads(session)
        return response

    @app.after_request
    def _headers(response: Response) -> Response:
        # Each header is set unless the response set its own (one pass over the headers, not one per name).
        h = response.headers
        have = {name.lower() for name in h.keys()}
        wanted = [*SECURITY_HEADERS]
        if current_app.config.get("CRM_ENV") == "production":
            wanted.append(HSTS)
        # Pages, API answers and downloads carry contact data, consent evidence or a session's view of them:
        # no browser or proxy keeps a copy. Only static assets (CSS, JS, images) may be cached.
        if request.endpoint != "static":
            wanted.append(NO_STORE)
        h.extend([(name, value) for name, value in wanted if name.lower() not in have])
        return response


health_bp = Blueprint("health", __name__)


@health_bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.exception("health check: database unreachable")
        db.session.rollback()
        resp = jsonify({"status": "error", "database": "unreachable"})
        resp.status_code = 503
        return resp
    return jsonify({"status": "ok", "database": "ok"})
