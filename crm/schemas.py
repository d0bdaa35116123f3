"""Schema building blocks shared by every feature: UTC times, cursors, list envelopes, query args."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from flask import request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from crm.db import iso_z


class UTCDateTime(fields.AwareDateTime):
    """ISO 8601 in, aware UTC out; naive input refused (never guessed); output always ends in ``Z``."""

    default_error_messages = {
        "invalid": "Not a valid ISO 8601 datetime.",
        "invalid_awareness": "Naive datetime refused: include an offset or Z (times are UTC).",
    }

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return iso_z(value)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        result = super()._deserialize(value, attr, data, **kwargs)
        return result.astimezone(UTC)


class StrictSchema(Schema):
    """Input schema: unknown fields are an error (422), as API.md says."""

    class Meta:
        ordered = True


class QuerySchema(Schema):
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
                out.append(parsed.astimezone(UTC))
            elif typ is int:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError
                out.append(value)
            else:
                out.append(typ(value))
        return out
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError,
            json.JSONDecodeError) as exc:
        raise ValidationError({"cursor": ["Not a valid cursor."]}) from exc


def json_body() -> Any:
    """The request's JSON: 415 when it is not JSON, 400 when malformed."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as application/json.")
    data = request.get_json(silent=True)
    if data is None:
        raise BadRequest("The body is not valid JSON.")
    return data


def load_body(schema: Schema, **kwargs: Any) -> Any:
    data = json_body()
    if not isinstance(data, dict) and not kwargs.get("many"):
        raise ValidationError({"_schema": ["Expected a JSON object."]})
    return schema.load(data, **kwargs)


def load_args(schema: Schema) -> Any:
    """Query-string args; repeated params (``channel=a&channel=b``) become lists for List fields."""
    data: dict[str, Any] = {}
    for key in request.args:
        field = schema.fields.get(key)
        values = request.args.getlist(key)
        data[key] = values if isinstance(field, fields.List) else values[-1]
    return schema.load(data)


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor}


class ProblemSchema(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    rule = fields.String()
