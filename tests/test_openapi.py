"""The OpenAPI document is generated from the code: valid, complete, and rendered."""

from __future__ import annotations

import re

import pytest

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture
def spec(client):
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    return resp.get_json()


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_document_is_openapi_3_with_info_and_paths(spec):
    assert re.fullmatch(r"3\.\d+\.\d+", spec["openapi"])
    assert spec["info"]["title"] and spec["info"]["version"]
    assert isinstance(spec["paths"], dict) and spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    for path, operations in spec["paths"].items():
        assert path.startswith("/api/v1/")
        for method, op in operations.items():
            assert method in HTTP_METHODS, (path, method)
            assert op["summary"], (path, method)
            assert op["responses"], (path, method)
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status) and response["description"], (path, method, status)
            # every path template parameter is declared, as OpenAPI requires
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{([a-z_]+)}", path)), (path, method)


def test_every_api_route_is_documented(app, spec):
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1") or rule.rule == "/api/v1/openapi.json":
            continue
        path = _openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if method.lower() not in spec["paths"].get(path, {}):
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
    assert not missing, "endpoints without @doc: " + ", ".join(missing)


def test_an_undocumented_endpoint_would_fail_the_check(app):
    from crm.openapi import build_spec

    documented = build_spec(app)["paths"]
    undocumented = [r for r in app.url_map.iter_rules()
                    if r.rule.startswith("/api/v1") and _openapi_path(r.rule) not in documented]
    assert [r.rule for r in undocumented] == ["/api/v1/openapi.json"]


def test_components_hold_the_schemas_and_every_ref_resolves(spec):
    schemas = spec["components"]["schemas"]
    for name in ("Problem", "AuditRecord", "AuditPage", "SensitiveRead", "SensitiveReadPage", "Token"):
        assert name in schemas, name
    assert set(schemas["AuditRecord"]["properties"]) >= {"id", "occurred_at", "actor", "action", "entity",
                                                          "entity_id", "changes", "reason", "prev_hash", "hash"}
    refs = set(_refs(spec))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/"), ref
        node = spec
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]


def test_documented_operations_show_their_query_and_errors(spec):
    audit = spec["paths"]["/api/v1/audit"]["get"]
    names = {p["name"] for p in audit["parameters"] if p["in"] == "query"}
    assert {"entity", "entity_id", "actor_id", "since", "until", "limit", "cursor"} <= names
    assert audit["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/AuditPage")
    assert audit["responses"]["403"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    assert audit["security"] == [{"bearer": []}]
    token = spec["paths"]["/api/v1/auth/token"]["post"]
    assert "security" not in token and "401" in token["responses"]
    assert token["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/TokenRequest")


def test_the_docs_page_renders(client, spec):
    resp = client.get("/api/docs")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert "Pharma CRM API" in page
    assert "/api/v1/audit" in page and "/api/v1/auth/token" in page
    assert " style=" not in page and not re.search(r"<script(?![^>]*\bsrc=)", page)


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def _problem_response(op, status):
    entry = op["responses"].get(str(status))
    assert entry is not None, status
    assert entry["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")


def test_every_operation_documents_the_errors_the_request_boundary_can_answer(spec):
    # What the fuzzer found undocumented (issue 11): 415 on bodies that are not JSON, 413, 414.
    for path, method, op in _operations(spec):
        _problem_response(op, 414)
        if "requestBody" in op or method in {"post", "put", "patch", "delete"}:
            for status in (400, 413, 415, 422):
                _problem_response(op, status)
        if "{" in path:
            _problem_response(op, 404)
        if op.get("security"):
            _problem_response(op, 401)


def test_problem_bodies_may_carry_extension_members(spec):
    # A 409 carries current_version; RFC 9457 allows extension members.
    assert spec["components"]["schemas"]["Problem"]["additionalProperties"] is True


def test_integer_path_ids_are_documented_with_the_database_range(spec):
    ids = [p for _path, _m, op in _operations(spec) for p in op.get("parameters", [])
           if p["in"] == "path" and p["schema"]["type"] == "integer"]
    assert ids
    assert all(p["schema"]["minimum"] == 0 and p["schema"]["maximum"] == 2**31 - 1 for p in ids)


def test_money_is_documented_as_the_decimal_string_it_is(spec):
    schemas = spec["components"]["schemas"]
    for name, prop in (("TransferOut", "amount"), ("TransferIn", "amount"), ("TransferCapIn", "annual_cap"),
                       ("Product", "price")):
        field = schemas[name]["properties"][prop]
        assert field["type"] == "string" and field["format"] == "decimal", (name, field)
        assert "maximum" not in field and "minimum" not in field
    assert "99999999999.999" in schemas["TransferIn"]["properties"]["amount"]["description"]
