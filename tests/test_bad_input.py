"""Hostile input is a 4xx problem, never a 500 (issue 11 item 9), on SQLite and PostgreSQL alike.

Each class of bad input goes to representative routes: ids beyond the Integer columns (path, query,
body, cursor), JSON nested 1,000 deep, lone surrogates, NaN, NUL characters, times at the ends of the
range, over-long URLs, amounts beyond the money columns.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from crm.schemas import encode_cursor
from tests.conftest import ROLES

BIG = [2**31, 2**53 + 1, 2**63, 2**64 + 7, 10**30]


@pytest.fixture
def world(db, factory, api):
    territory = factory.territory()
    users = {role: factory.user(role, territories=[territory] if role == "field_rep" else []) for role in ROLES}
    hcp = factory.hcp(territory=territory)
    return {"hcp": hcp, "users": users, "client": {role: api(u) for role, u in users.items()}}


def _problem(resp, *statuses):
    assert resp.status_code in statuses, (resp.status_code, resp.get_data(as_text=True)[:500])
    assert resp.mimetype == "application/problem+json", resp.mimetype
    body = resp.get_json()
    assert body["status"] == resp.status_code and body["title"] and body["detail"]
    return body


def _visit(hcp_id, **changes):
    body = {"hcp_id": hcp_id, "occurred_at": "2026-11-02T09:30:00Z", "mode": "in_person", "notes": "ok"}
    body.update(changes)
    return body


# -- ids beyond the database's integer range -----------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("number", BIG)
@pytest.mark.parametrize("path", ["/api/v1/hcps/{}", "/api/v1/hcps/{}/timeline", "/api/v1/interactions/{}",
                                  "/api/v1/visits/{}", "/api/v1/orders/{}", "/api/v1/events/{}/attendance"])
def test_a_path_id_beyond_the_integer_range_is_an_unknown_id(world, role, number, path):
    body = _problem(world["client"][role].get(path.format(number)), 404)
    assert body["title"] == "Not Found"


@pytest.mark.parametrize("number", BIG)
def test_a_path_id_beyond_the_range_on_a_write_is_404_too(world, number):
    rep = world["client"]["field_rep"]
    _problem(rep.patch(f"/api/v1/visits/{number}", json={"notes": "x"}), 404)
    _problem(rep.post(f"/api/v1/visits/{number}/submit", json={}), 404)
    _problem(world["client"]["admin"].patch(f"/api/v1/hcps/{number}", json={"version": 1}), 404)


def test_the_largest_id_in_range_is_an_ordinary_unknown_id(world):
    _problem(world["client"]["admin"].get(f"/api/v1/hcps/{2**31 - 1}"), 404)


@pytest.mark.parametrize("number", BIG)
@pytest.mark.parametrize("url, field", [
    ("/api/v1/visits?hcp_id={}", "hcp_id"),
    ("/api/v1/orders?hco_id={}", "hco_id"),
    ("/api/v1/audit/sensitive-reads?interaction_id={}", "interaction_id"),
    ("/api/v1/audit?actor_id={}", "actor_id"),
    ("/api/v1/interactions?owner={}", "owner"),
])
def test_a_query_id_beyond_the_range_is_422_on_that_field(world, number, url, field):
    body = _problem(world["client"]["admin"].get(url.format(number)), 422)
    assert field in body["errors"]


@pytest.mark.parametrize("number", BIG)
def test_a_body_id_beyond_the_range_is_422_on_that_field(world, number):
    rep, admin, marketer = (world["client"][r] for r in ("field_rep", "admin", "marketer"))
    assert "hcp_id" in _problem(rep.post("/api/v1/visits", json=_visit(number)), 422)["errors"]
    body = _problem(rep.post("/api/v1/visits", json=_visit(world["hcp"].id, attendee_hcp_ids=[number])), 422)
    assert "attendee_hcp_ids.0" in body["errors"]
    body = _problem(rep.post("/api/v1/orders", json={"hcp_id": number, "lines": [{"sku": "X", "quantity": 1}]}), 422)
    assert "hcp_id" in body["errors"]
    body = _problem(admin.post("/api/v1/call-centre/contacts", json={
        "hcp_id": number, "occurred_at": "2026-11-02T09:30:00Z", "direction": "inbound", "medium": "phone",
        "reason": "other", "summary": "s"}), 422)
    assert "hcp_id" in body["errors"]
    body = _problem(marketer.post("/api/v1/audiences", json={"name": "a", "hcp_ids": [1, number]}), 422)
    assert "hcp_ids.1" in body["errors"]


def _raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), 2**31),
    encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), 2**63),
    encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), -(2**63) - 1),
    encode_cursor("0001-01-01T00:00:00+01:00", 5),
    encode_cursor("9999-12-31T23:59:59-01:00", 5),
    encode_cursor("1066-10-14T00:00:00Z", 5),
    _raw_cursor('["2026-01-01T00:00:00Z", 1e400]'),
])
def test_a_forged_time_and_id_cursor_is_422_on_cursor(world, cursor):
    for url in (f"/api/v1/hcps/{world['hcp'].id}/timeline?cursor={cursor}", f"/api/v1/interactions?cursor={cursor}",
                f"/api/v1/events?cursor={cursor}"):
        body = _problem(world["client"]["admin"].get(url), 422)
        assert body["errors"] == {"cursor": ["Not a valid cursor."]}


@pytest.mark.parametrize("cursor", [encode_cursor(2**31), encode_cursor(2**63), encode_cursor(10**30)])
def test_an_id_only_cursor_beyond_the_range_is_422(world, cursor):
    for url in ("/api/v1/orders", "/api/v1/audit", "/api/v1/campaigns"):
        body = _problem(world["client"]["admin"].get(f"{url}?cursor={cursor}"), 422)
        assert "cursor" in body["errors"]


def test_a_name_cursor_with_nul_or_surrogate_is_422(world):
    for text in ('["a\\u0000","b",1]', '["\\ud800","b",1]'):
        body = _problem(world["client"]["admin"].get(f"/api/v1/hcps?cursor={_raw_cursor(text)}"), 422)
        assert "cursor" in body["errors"]


# -- JSON the parser must not choke on ------------------------------------------------------------

def _raw(client, method, url, text):
    return getattr(client.client, method)(url, data=text.encode("utf-8"), content_type="application/json",
                                          headers={"Authorization": f"Bearer {client.token}"})


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_json_nested_too_deep_is_400(world, depth):
    admin = world["client"]["admin"]
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        body = _problem(_raw(admin, "post", "/api/v1/hcps", text), 400)
        assert "nested deeper than 64" in body["detail"]


def test_json_nested_at_the_limit_is_parsed(world):
    # 64 levels parse; the schema then refuses the shape (422), it is not refused as JSON (400).
    text = '{"first_name":' + "[" * 63 + "]" * 63 + "}"
    _problem(_raw(world["client"]["admin"], "post", "/api/v1/hcps", text), 422)


@pytest.mark.parametrize("text", [
    '{"first_name": "\\ud800", "last_name": "x", "profession": "gp"}',
    '{"first_name": "a\\udfffb", "last_name": "x", "profession": "gp"}',
    '{"\\ud83d": 1}',
    '{"first_name": ["ok", {"deeper": "\\udc00"}]}',
])
def test_a_lone_surrogate_is_400(world, text):
    body = _problem(_raw(world["client"]["admin"], "post", "/api/v1/hcps", text), 400)
    assert "surrogate" in body["detail"]


def test_a_proper_surrogate_pair_is_fine(world):
    text = '{"first_name": "Ana \\ud83d\\ude00", "last_name": "Lima", "profession": "gp"}'
    resp = _raw(world["client"]["admin"], "post", "/api/v1/hcps", text)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["first_name"] == "Ana \U0001f600"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_400(world, constant):
    hcp = world["hcp"]
    body = _problem(_raw(world["client"]["admin"], "patch", f"/api/v1/hcps/{hcp.id}", f'{{"version": {constant}}}'),
                    400)
    assert "not JSON" in body["detail"]


@pytest.mark.parametrize("text", ["null", "true", "0", "1.5", '"text"', "1e400", str(2**70)])
def test_a_body_that_is_json_but_not_an_object_is_a_clear_4xx_not_500(world, client, text):
    # JSON alone at the top level (null, a number, a string) parses; then it is no body (400) or the
    # wrong shape (422), never a server error
    for url in ("/api/v1/hcps", "/api/v1/templates", "/api/v1/guardrails/rules", "/api/v1/samples/counts"):
        _problem(_raw(world["client"]["admin"], "post", url, text), 400, 422)
    _problem(client.post("/api/v1/integrations/email/events", data=text, content_type="application/json"), 422)


def test_the_email_webhook_refuses_deep_json_and_surrogates(client, db):
    deep = client.post("/api/v1/integrations/email/events", data="[" * 1000 + "]" * 1000,
                       content_type="application/json")
    assert "nested" in _problem(deep, 400)["detail"]
    lone = client.post("/api/v1/integrations/email/events", content_type="application/json",
                       data='[{"sg_event_id": "\\ud800", "event": "open", "timestamp": 1700000000}]')
    assert "surrogate" in _problem(lone, 400)["detail"]


def test_the_email_webhook_makes_a_nul_or_a_huge_id_an_event_error(client, db):
    nul = client.post("/api/v1/integrations/email/events", content_type="application/json",
                      json=[{"sg_event_id": "e1", "event": "open", "timestamp": 1700000000, "url": "a\x00b"}])
    # The bad event is rejected on its own (the rest of a batch is kept, issue 11 item 12), never a 500.
    assert nul.status_code == 200, nul.get_data(as_text=True)
    assert nul.get_json()["rejected"] == [
        {"index": 0, "sg_event_id": "e1", "reason": "Must not contain a NUL character."}]
    assert nul.get_json()["recorded"] == 0
    huge = client.post("/api/v1/integrations/email/events", json=[
        {"sg_event_id": "e2", "event": "open", "timestamp": 1700000000, "hcp_id": 2**63, "campaign_id": "²"}])
    assert huge.status_code == 200, huge.get_json()


# -- NUL characters (PostgreSQL stores none) ------------------------------------------------------

@pytest.mark.parametrize("field, value", [("first_name", "Ada\x00"), ("city", "\x00"), ("tags", ["a\x00"])])
def test_nul_in_a_body_string_is_422_on_the_field(world, field, value):
    body = {"first_name": "Ada", "last_name": "Byron", "profession": "gp", field: value}
    errors = _problem(world["client"]["admin"].post("/api/v1/hcps", json=body), 422)["errors"]
    assert any(k.startswith(field) for k in errors), errors
    assert "NUL" in " ".join(m for ms in errors.values() for m in ms)


def _messages(body):
    return " ".join(m for ms in body["errors"].values() for m in ms)


def test_nul_in_a_dict_value_or_free_form_value_is_422(world):
    admin = world["client"]["admin"]
    body = {"first_name": "Ada", "last_name": "Byron", "profession": "gp", "identifiers": {"npi": "12\x00"}}
    assert "NUL" in _messages(_problem(admin.post("/api/v1/hcps", json=body), 422))
    consent = {"channel": "email", "purpose": "promotional", "action": "grant", "source": "paper_form",
               "notice_version": "v1"}
    for evidence in ({"note": "x\x00"}, {"signature": "\x00"}):
        problem = _problem(admin.post(f"/api/v1/hcps/{world['hcp'].id}/consents",
                                      json={**consent, "evidence": evidence}), 422)
        assert "NUL" in _messages(problem), problem


@pytest.mark.parametrize("value", [{"a": ["ok", {"deep": "x\x00"}]}, {"ke\x00y": 1}, ["\x00"]])
def test_every_input_schema_refuses_nul_in_free_form_json(value):
    # The rule sits in the base classes, so a schema written tomorrow inherits it.
    from marshmallow import ValidationError, fields

    from crm.schemas import QuerySchema, StrictSchema

    class Body(StrictSchema):
        raw = fields.Raw()
        loose = fields.Dict()
        nested = fields.List(fields.List(fields.String()))

    class Args(QuerySchema):
        raw = fields.Raw()

    for schema, field in ((Body(), "raw"), (Body(), "loose"), (Args(), "raw")):
        if field == "loose" and not isinstance(value, dict):
            continue
        with pytest.raises(ValidationError) as err:
            schema.load({field: value})
        assert err.value.messages == {field: ["Must not contain a NUL character."]}
    with pytest.raises(ValidationError) as err:
        Body().load({"nested": [["ok"], ["a\x00"]]})
    assert err.value.messages == {"nested": {1: {0: ["Must not contain a NUL character."]}}}
    assert Body().load({"raw": {"fine": ["text"]}, "nested": [["ok"]]}) == {"raw": {"fine": ["text"]},
                                                                           "nested": [["ok"]]}


@pytest.mark.parametrize("url", ["/api/v1/hcps?q=a%00b", "/api/v1/interactions?kind=visit%00",
                                 "/api/v1/hcos?territory=%00", "/api/v1/products?q=%00"])
def test_nul_in_a_query_string_is_422(world, url):
    _problem(world["client"]["admin"].get(url), 422)


def test_nul_in_a_path_segment_is_404(world):
    _problem(world["client"]["admin"].put("/api/v1/transfer-caps/U%00", json={
        "currency": "USD", "annual_cap": "100.00", "action": "warn"}), 404)


# -- times at the ends of the range ---------------------------------------------------------------

@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                  "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1899-12-31T23:59:59Z",
                                  "2201-01-01T00:00:00Z"])
def test_a_time_outside_the_range_is_422(world, when):
    rep, admin = world["client"]["field_rep"], world["client"]["admin"]
    assert "occurred_at" in _problem(rep.post("/api/v1/visits", json=_visit(world["hcp"].id, occurred_at=when)),
                                     422)["errors"]
    assert "since" in _problem(admin.get(f"/api/v1/interactions?since={when.replace('+', '%2B')}"), 422)["errors"]
    assert "at" in _problem(admin.get(f"/api/v1/hcps/{world['hcp'].id}/consents/history?at="
                                      f"{when.replace('+', '%2B')}"), 422)["errors"]


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1899-12-31", "2201-01-01"])
def test_a_date_outside_the_range_is_422(world, day):
    rep = world["client"]["field_rep"]
    body = _problem(rep.post("/api/v1/visits", json=_visit(world["hcp"].id, follow_up={"date": day, "text": "x"})),
                    422)
    assert "follow_up.date" in body["errors"]


def test_times_at_the_edges_of_the_range_are_accepted(world):
    rep = world["client"]["field_rep"]
    for when in ("1900-01-01T00:00:00Z", "2200-12-31T23:59:59Z"):
        resp = rep.post("/api/v1/visits", json=_visit(world["hcp"].id, occurred_at=when))
        assert resp.status_code == 201, resp.get_json()


# -- sizes ----------------------------------------------------------------------------------------

def test_an_overlong_url_is_414_problem(world):
    body = _problem(world["client"]["admin"].get("/api/v1/hcps?q=" + "a" * 9000), 414)
    assert "8192" in body["detail"]


@pytest.mark.parametrize("amount", ["1e20", "100000000000", "-1e30"])
def test_an_amount_beyond_the_money_column_is_422(world, amount):
    admin, marketer = world["client"]["admin"], world["client"]["marketer"]
    event = marketer.post("/api/v1/events", json={
        "name": "Congress", "type": "congress", "starts_at": "2026-11-02T09:00:00Z",
        "ends_at": "2026-11-02T17:00:00Z", "organiser": "Med", "venue": "Hall"})
    assert event.status_code == 201, event.get_json()
    body = _problem(marketer.post(f"/api/v1/events/{event.get_json()['id']}/transfers", json={
        "hcp_id": world["hcp"].id, "kind": "meal", "amount": amount, "currency": "USD", "date": "2026-11-02"}), 422)
    assert "amount" in body["errors"]
    cap = admin.put("/api/v1/transfer-caps/US", json={"currency": "USD", "annual_cap": amount, "action": "warn"})
    assert "annual_cap" in _problem(cap, 422)["errors"]


# -- CSV importers: a bad row is a row error in the report, never a traceback ---------------------

CONTACTS_HEADER = "Contact ID;HCP ID;Occurred At;Direction;Medium;Reason;Summary;Follow Up Date\r\n"


def _contact(ext, hcp_id, when="2026-11-02T09:30:00Z", summary="Asked for SmPC", follow_up=""):
    return f"{ext};{hcp_id};{when};inbound;phone;product_information;{summary};{follow_up}\r\n"


def test_the_call_centre_import_makes_bad_values_row_errors(db, factory):
    from crm.callcentre.models import Contact
    from crm.integrations.callcentre.contacts import import_rows, read_rows

    hcp = factory.hcp()
    rows = [
        _contact("HUGE", 2**63),
        _contact("BIG", 2**31),
        _contact("SUPER", "²"),
        _contact("NUL", hcp.id, summary="rash\x00"),
        _contact("NUL\x00ID", hcp.id),
        _contact("YEAR1", hcp.id, when="0001-01-01T00:00:00+01:00"),
        _contact("YEAR9999", hcp.id, when="9999-12-31T23:59:59-01:00"),
        _contact("OLD", hcp.id, when="1800-01-01T00:00:00Z"),
        _contact("FOLLOW", hcp.id, follow_up="9999-12-31"),
        _contact("LONG", hcp.id, summary="x" * 2001),
        _contact("E" * 201, hcp.id),
        _contact("OK", hcp.id),
    ]
    outcomes = list(import_rows(db, None, read_rows((CONTACTS_HEADER + "".join(rows)).encode())))
    by_ext = {o.external_id: o for o in outcomes}
    assert [o.outcome for o in outcomes] == ["error"] * 11 + ["created"], outcomes
    assert "not a number from 1 to 2147483647" in by_ext["HUGE"].message
    assert "not a number" in by_ext["BIG"].message and "not a number" in by_ext["SUPER"].message
    assert "NUL" in by_ext["NUL"].message and "NUL" in by_ext["NULID"].message
    for ext in ("YEAR1", "YEAR9999", "OLD"):
        assert "outside the years 1900 to 2200" in by_ext[ext].message, by_ext[ext]
    assert "follow_up_date" in by_ext["FOLLOW"].message
    assert "summary" in by_ext["LONG"].message and "external_id" in by_ext["E" * 201].message
    assert [c.external_id for c in db.query(Contact).all()] == ["OK"]


def test_the_attendance_import_makes_a_nul_a_row_error(db, factory):
    from crm.integrations.eventplatform.attendance import import_attendance
    from tests.events_support import make_event, viewer_of

    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    factory.hcp(email="ada@clinic.example")
    text = ("Attendee ID,First Name,Last Name,Email,NPI,Status\n"
            "A1,Ada\x00,L,ada@clinic.example,,yes\n"
            "A\x002,Ada,L,ada@clinic.example,,yes\n"
            "A3,Ada,L,ada@clinic.example\x00,,yes\n"
            "A4,Ada,L,ada@clinic.example,,yes\n")
    report = import_attendance(db, marketer, viewer_of(marketer), event, text.encode())
    assert [r.outcome for r in report.rows] == ["error", "error", "error", "attended"], report.rows
    assert all("NUL" in r.message for r in report.rows[:3])


def test_the_nppes_import_makes_nul_and_extreme_dates_row_errors(db, tmp_path):
    from crm.integrations.masterdata.importer import import_nppes_file
    from crm.integrations.masterdata.models import ImportRowError
    from tests.masterdata_helpers import row, write_file

    bad_npi = row(1)
    bad_npi[0] = bad_npi[0][:5] + "\x00" + bad_npi[0][5:]
    rows = [bad_npi, row(2, **{"Provider First Name": "AN\x00A"}),
            row(3, **{"Provider Enumeration Date": "01/01/0001"}),
            row(4, **{"Last Update Date": "12/31/9999"}), row(5)]
    run = import_nppes_file(db, None, write_file(tmp_path / "bad.csv", rows))
    assert (run.status, run.created, run.rejected) == ("completed", 1, 4)
    reasons = {e.row_number: e.reason for e in db.query(ImportRowError).filter_by(run_id=run.id)}
    assert reasons[1] == reasons[2] == "contains a NUL character"
    assert "outside the years 1900 to 2200" in reasons[3] and "outside the years 1900 to 2200" in reasons[4]


@pytest.mark.parametrize("number", [2**31, 2**63, 10**30])
def test_the_steward_pages_treat_a_huge_id_as_unknown(client, auth, factory, number):
    auth.login(factory.user("admin"))
    other = factory.hcp()
    assert client.get(f"/admin/masterdata/duplicates/compare?a={number}&b={other.id}").status_code == 404
    assert client.get(f"/admin/masterdata/export/go?hcp_id={number}").status_code == 404
    assert client.get(f"/admin/masterdata/?before={number}").status_code == 200


@pytest.mark.parametrize("number", [2**31, 2**63, 10**30])
def test_pages_read_a_huge_id_in_a_link_as_absent(client, auth, factory, number):
    """Ids in page links and forms go through crm.pageforms.page_id: beyond the database's range they are
    absent (the page shows as without them), never an overflow in the database (500 on PostgreSQL)."""
    auth.login(factory.user("compliance"))
    assert client.get(f"/audit?actor={number}").status_code == 200
    assert client.get(f"/audit/sensitive-reads?viewer_id={number}&hcp_id={number}").status_code == 200
    auth.login(factory.user("marketer"))
    campaign = client.get(f"/campaigns/1?after={number}")
    assert campaign.status_code in (200, 404)
    assert client.get(f"/campaigns/email-events/unmatched?before={number}").status_code == 200
    created = client.post("/campaigns/new", data={"name": "x", "template_id": str(number)})
    assert created.status_code < 500
