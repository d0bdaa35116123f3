"""Schema building blocks shared by every feature: UTC times, cursors, list envelopes, query args.

Every input schema derives from ``StrictSchema`` (bodies) or ``QuerySchema`` (query strings), and both
bound their fields to what the databases can hold (``bound_field``): integers to the 32-bit range of the
``Integer`` columns (every id is one, on PostgreSQL and SQLite alike), dates and times to years
1900..2200, and no string may carry a NUL character (PostgreSQL cannot store one). Out of range is a 422
on the field, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, date, datetime
from typing import Any

from flask import request
from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from crm.db import iso_z

# The range of the ``Integer`` columns (INTEGER on PostgreSQL; SQLite would take 64 bits, but the
# column type and so the contract is 32-bit on both engines). Every id column is an Integer.
DB_INT_MIN = -(2**31)
DB_INT_MAX = 2**31 - 1
# Dates and times both engines store and Python can still shift by a day or a time zone.
MIN_YEAR = 1900
MAX_YEAR = 2200


def _int_in_range(value: Any) -> None:
    if isinstance(value, int) and not DB_INT_MIN <= value <= DB_INT_MAX:
        raise ValidationError(f"Must be between {DB_INT_MIN} and {DB_INT_MAX} (the integer range of the database).")


def _time_in_range(value: Any) -> None:
    if isinstance(value, date) and not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValidationError(f"Must be in the years {MIN_YEAR} to {MAX_YEAR}.")


def _no_nul(value: Any) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise ValidationError("Must not contain a NUL character.")


def has_nul(value: Any) -> bool:
    """True when a NUL character is in a string anywhere inside a JSON value (keys included)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _no_nul_inside(value: Any) -> None:
    """Free-form JSON values (``fields.Raw``, ``fields.Dict`` without typed values): no NUL anywhere."""
    if has_nul(value):
        raise ValidationError("Must not contain a NUL character.")


def bound_field(field: fields.Field) -> None:
    """Add the database bounds to one field and to the fields inside it (list items, dict keys/values)."""
    extra: list[Any] = []
    if isinstance(field, fields.Integer):
        extra.append(_int_in_range)
    elif isinstance(field, fields.Date | fields.DateTime):
        extra.append(_time_in_range)
    elif isinstance(field, fields.String):
        extra.append(_no_nul)
    elif isinstance(field, fields.List):
        bound_field(field.inner)
    elif isinstance(field, fields.Tuple):
        for inner in field.tuple_fields:
            bound_field(inner)
    elif isinstance(field, fields.Dict):
        for sub in (field.key_field, field.value_field):
            if sub is not None:
                bound_field(sub)
        if field.value_field is None:
            extra.append(_no_nul_inside)
    elif type(field) is fields.Raw:
        extra.append(_no_nul_inside)
    if extra and not getattr(field, "_crm_bounded", False):
        field.validators = [*field.validators, *extra]
        field._crm_bounded = True  # type: ignore[attr-defined]


class _BoundedSchema(Schema):
    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        bound_field(field_obj)


class UTCDateTime(fields.AwareDateTime):
    """ISO 8601 in, aware UTC out; naive input refused (never guessed); output always ends in ``Z``."""

    default_error_messages = {
        "invalid": "Not a valid ISO 8601 datetime.",
        "invalid_awareness": "Naive datetime refused: include an offset or Z (times are UTC).",
    }

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return iso_z(value)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and "\x00" in value:  # the ISO parser would skip it and read the rest
            raise self.make_error("invalid")
        result = super()._deserialize(value, attr, data, **kwargs)
        try:
            converted = result.astimezone(UTC)
        except OverflowError as exc:  # year 1 with a positive offset, year 9999 with a negative one
            raise self.make_error("invalid") from exc
        _time_in_range(converted)
        return converted


class StrictSchema(_BoundedSchema):
    """Input schema: unknown fields are an error (422), as API.md says."""

    class Meta:
        ordered = True


class QuerySchema(_BoundedSchema):
    """Query-string schema: unknown parameters are ignored (tracking params, cache busters)."""

    class Meta:
        unknown = EXCLUDE


class PageArgs(QuerySchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None)


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([iso_z(v) if isinstance(v, datetime) else v for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def keyset_page(session: Any, stmt: Any, order_col: Any, id_col: Any, limit: int, cursor: str | None, *,
                newest_first: bool = True) -> tuple[list[Any], str | None]:
    """One page of ``stmt`` (a select of one entity) ordered by a time column and then id, newest first
    (a list) or oldest first (a queue), and the cursor to the next page (None on the last)."""
    if cursor:
        at, last_id = decode_cursor(cursor, (datetime, int))
        if newest_first:
            stmt = stmt.where((order_col < at) | ((order_col == at) & (id_col < last_id)))
        else:
            stmt = stmt.where((order_col > at) | ((order_col == at) & (id_col > last_id)))
    order = (order_col.desc(), id_col.desc()) if newest_first else (order_col, id_col)
    rows = list(session.scalars(stmt.order_by(*order).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(getattr(rows[-1], order_col.key), getattr(rows[-1], id_col.key))


def decode_cursor(cursor: str, types: tuple[type, ...]) -> list[Any]:
    """Decode an opaque cursor made by ``encode_cursor``; a tampered one is a 422 on ``cursor``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError
        out: list[Any] = []
        for value, typ in zip(values, types, strict=True):
            if typ is datetime:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    raise ValueError
                parsed = parsed.astimezone(UTC)
                if not MIN_YEAR <= parsed.year <= MAX_YEAR:
                    raise ValueError
                out.append(parsed)
            elif typ is int:
                # Bounded like every id: a forged 2**63 must not reach the database as a parameter.
                if not isinstance(value, int) or isinstance(value, bool) or not DB_INT_MIN <= value <= DB_INT_MAX:
                    raise ValueError
                out.append(value)
            elif typ is str:
                if not isinstance(value, str) or "\x00" in value:
                    raise ValueError
                value.encode()  # a lone surrogate raises UnicodeEncodeError (a ValueError)
                out.append(value)
            else:
                out.append(typ(value))
        return out
    except (ValueError, TypeError, AttributeError, OverflowError, binascii.Error, UnicodeDecodeError,
            json.JSONDecodeError) as exc:
        raise ValidationError({"cursor": ["Not a valid cursor."]}) from exc


def json_body() -> Any:
    """The request's JSON: 415 when it is not JSON, 400 when malformed, too deep or not valid Unicode."""
    from crm.web import parse_json_body

    if not request.is_json:
        raise UnsupportedMediaType("Send the body as application/json.")
    data = parse_json_body(request.get_data(cache=True))
    if data is None:
        raise BadRequest("The body is not valid JSON.")
    return data


def load_body(schema: Schema, **kwargs: Any) -> Any:
    data = json_body()
    if not isinstance(data, dict) and not kwargs.get("many"):
        raise ValidationError({"_schema": ["Expected a JSON object."]})
    return schema.load(data, **kwargs)


# Loaded query args of the schemas ``load_args(..., pure=True)`` is asked for, by schema and query string.
_PURE_LOADS: dict[tuple[Schema, bytes], dict[str, Any]] = {}
_PURE_LOADS_MAX = 512
_PURE_QUERY_MAX = 256  # bytes: longer query strings are loaded every time


def load_args(schema: Schema, *, pure: bool = False) -> Any:
    """Query-string args; repeated params (``channel=a&channel=b``) become lists for List fields.

    ``pure=True`` for a schema whose load depends on the query string alone (no clock, no request
    state in its validators): a query string loaded before is not loaded again (the timeline's
    ``?limit=50`` on every request); the caller gets its own copy. A refused query string is not kept:
    it is refused again, the same way."""
    if pure:
        key = (schema, request.query_string)
        known = _PURE_LOADS.get(key)
        if known is None:
            known = _load_args(schema)
            if len(key[1]) <= _PURE_QUERY_MAX:
                if len(_PURE_LOADS) >= _PURE_LOADS_MAX:
                    _PURE_LOADS.clear()
                _PURE_LOADS[key] = known
        return {name: value.copy() if isinstance(value, list | dict) else value for name, value in known.items()}
    return _load_args(schema)


def _load_args(schema: Schema) -> Any:
    data: dict[str, Any] = {}
    for key in request.args:
        field = schema.fields.get(key)
        values = request.args.getlist(key)
        data[key] = values if isinstance(field, fields.List) else values[-1]
    return schema.load(data)


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor}


class ProblemSchema(Schema):
    """RFC 9457 problem details; some carry extension members (e.g. ``current_version`` on a 409)."""

    class Meta:
        unknown = INCLUDE

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    rule = fields.String()
    request_id = fields.String()  # the X-Request-ID of the request, also on its log lines
