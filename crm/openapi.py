"""The OpenAPI document, generated from the marshmallow schemas that the endpoints really use.

Each API view is decorated with ``@doc(...)`` naming its request, query and response schemas; the
document is built by walking the URL map, so an endpoint cannot exist without appearing in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, jsonify, render_template
from marshmallow import Schema
from marshmallow import fields as ma_fields

from crm.schemas import DB_INT_MAX, ProblemSchema

_ERROR_TEXT = {
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing, bad, expired or revoked token",
    403: "Refused by a visibility, territory or role rule (the rule is in `detail` and `rule`)",
    404: "No such object",
    409: "Version conflict or duplicate",
    413: "Body over CRM_MAX_BODY_MB",
    414: "URL (path and query) over 8 KB",
    415: "Body is not application/json",
    422: "Invalid fields (per-field messages in `errors`)",
    429: "Too many failed attempts; wait and try again",
}


def _implied_errors(meta: dict[str, Any], method: str, has_path_params: bool) -> set[int]:
    """Errors every operation of this shape can answer, whatever its view says: the request boundary
    (crm.web) refuses long URLs (414) and big bodies (413); a body that is not JSON is 415, malformed
    JSON 400; an id in the path can be unknown (404); input that fails its schema is 422."""
    implied = {414}
    if meta["auth"]:
        implied.add(401)
    if has_path_params:
        implied.add(404)
    if meta["body"] is not None or method in _WRITES:
        implied.update({400, 413, 415, 422})
    if meta["query"] is not None:
        implied.add(422)
    return implied


def _decimal_as_string(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """``fields.Decimal(as_string=True)`` is a decimal string ("48.500") on the wire, never a number; its
    range (a JSON Schema keyword for numbers only) goes into the description instead."""
    if not (isinstance(field, ma_fields.Decimal) and field.as_string):
        return {}
    low, high = ret.pop("minimum", None), ret.pop("maximum", None)
    update = {"type": "string", "format": "decimal", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
    if low is not None or high is not None:
        bounds = f"from {low} to {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        update["description"] = " ".join(filter(None, [ret.get("description"), f"(a decimal {bounds})"]))
    return update


_DEFAULT_ERRORS = (400, 401, 403, 404, 422)
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def doc(
    summary: str,
    *,
    tags: list[str] | None = None,
    body: Schema | type[Schema] | None = None,
    query: Schema | type[Schema] | None = None,
    responses: dict[int, Schema | type[Schema] | str | None] | None = None,
    errors: tuple[int, ...] | None = None,
    auth: bool = True,
    description: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._openapi = {  # type: ignore[attr-defined]
            "summary": summary, "tags": tags or [], "body": body, "query": query,
            "responses": responses or {200: None}, "auth": auth,
            # Listed errors are documented as given; by default the usual ones (401 only behind auth).
            "errors": errors if errors is not None else tuple(
                s for s in _DEFAULT_ERRORS if s != 401 or auth),
            "description": description or (fn.__doc__ or "").strip(),
        }
        return fn
    return wrap


def _schema_name(schema: Any) -> Any:
    return schema


def build_spec(app: Flask) -> dict[str, Any]:
    marshmallow_plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Pharma CRM API",
        version="1",
        openapi_version="3.0.3",
        plugins=[marshmallow_plugin],
        info={"description": "One timeline per HCP, consent as evidence, role-based visibility."},
    )
    assert marshmallow_plugin.converter is not None  # noqa: S101 - set by APISpec when the plugin is registered
    marshmallow_plugin.converter.add_attribute_function(_decimal_as_string)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Problem", schema=ProblemSchema)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        meta = getattr(view, "_openapi", None)
        if meta is None:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        # Ids beyond the Integer columns match no route (crm.web.IdConverter): 404.
        id_schema = {"type": "integer", "format": "int32", "minimum": 0, "maximum": DB_INT_MAX}
        params = [
            {"in": "path", "name": name, "required": True,
             "schema": dict(id_schema) if conv == "int" else {"type": "string"}}
            for conv, name in re.findall(r"<(?:([a-z]+):)?([a-z_]+)>", rule.rule)
        ]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {"summary": meta["summary"], "tags": meta["tags"], "responses": {}}
            if meta["description"]:
                op["description"] = meta["description"]
            if meta["auth"]:
                op["security"] = [{"bearer": []}]
            op_params = list(params)
            if meta["query"] is not None:
                op_params.append({"in": "query", "schema": meta["query"]})
            if op_params:
                op["parameters"] = op_params
            if meta["body"] is not None:
                op["requestBody"] = {"required": True,
                                     "content": {"application/json": {"schema": meta["body"]}}}
            for status, schema in meta["responses"].items():
                entry: dict[str, Any] = {"description": "OK" if status < 300 else str(status)}
                if isinstance(schema, str):
                    entry["description"] = schema
                elif schema is not None:
                    entry["content"] = {"application/json": {"schema": schema}}
                op["responses"][str(status)] = entry
            for status in sorted(set(meta["errors"]) | _implied_errors(meta, method, bool(params))):
                if str(status) in op["responses"]:
                    continue
                op["responses"][str(status)] = {
                    "description": _ERROR_TEXT.get(status, str(status)),
                    "content": {"application/problem+json": {"schema": "Problem"}},
                }
            paths.setdefault(path, {})[method.lower()] = op
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


bp = Blueprint("openapi", __name__)


@bp.get("/api/v1/openapi.json")
def openapi_json():
    spec = current_app.extensions.get("crm_openapi")
    if spec is None:
        spec = current_app.extensions["crm_openapi"] = build_spec(current_app)
    return jsonify(spec)


@bp.get("/api/docs")
def openapi_page():
    spec = current_app.extensions.get("crm_openapi") or build_spec(current_app)
    return render_template("openapi.html", spec=spec)
