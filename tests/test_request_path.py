"""The fast request path (issue 15 item 1): one statement from bearer token to viewer, nothing cached
between requests (revocation, deactivation, role and territory changes hold from the very next request),
no User loaded for a read, no existence query when the page has rows, no COMMIT for a read that wrote
nothing (a read that logs a sensitive read still writes), orjson for responses, stored values passed
through unchanged (issue 15 item 2)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select

from crm.auth.services import assign_territory, end_territory, revoke_token, update_user
from crm.db import StoredJSON, utcnow
from crm.extensions import db as _db
from crm.timeline.models import SensitiveRead
from crm.timeline.queries import _iso_text
from crm.timeline.services import record_interaction
from tests.conftest import utc


class Statements:
    """The SQL statements a block runs (BEGIN and PRAGMA left out)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA", "SAVEPOINT", "RELEASE")):
            self.seen.append(" ".join(statement.split()))

    def __enter__(self) -> Statements:
        event.listen(_db.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *_exc: Any) -> None:
        event.remove(_db.engine, "before_cursor_execute", self)


def _timeline_world(factory: Any, db: Any, sensitivity: str = "standard") -> tuple[Any, Any]:
    t = factory.territory()
    hcp = factory.hcp(t)
    rep = factory.user("field_rep", [t])
    record_interaction(db, rep, hcp_ids=[hcp.id], occurred_at=utc(2026, 1, 5, 9, 30), channel="visit",
                       kind="visit.submitted", summary="Discussed dosing", details={"note": "ünïcode", "n": 1},
                       sensitivity=sensitivity)
    db.flush()
    return hcp, rep


def test_revoked_token_is_refused_on_the_next_request(api, factory, db):
    hcp, rep = _timeline_world(factory, db)
    c = api(rep)
    assert c.get(f"/api/v1/hcps/{hcp.id}/timeline").status_code == 200
    revoke_token(db, c.token)
    assert c.get(f"/api/v1/hcps/{hcp.id}/timeline").status_code == 401


def test_deactivated_user_is_refused_on_the_next_request(api, factory, db):
    hcp, rep = _timeline_world(factory, db)
    c = api(rep)
    assert c.get(f"/api/v1/hcps/{hcp.id}/timeline").status_code == 200
    update_user(db, None, rep, active=False)
    assert c.get(f"/api/v1/hcps/{hcp.id}/timeline").status_code == 401


def test_role_change_kills_the_token_on_the_next_request(api, factory, db):
    hcp, rep = _timeline_world(factory, db)
    c = api(rep)
    assert c.get(f"/api/v1/hcps/{hcp.id}/timeline").status_code == 200
    update_user(db, None, rep, role="marketer")
    assert c.get(f"/api/v1/hcps/{hcp.id}/timeline").status_code == 401


def test_a_token_whose_role_differs_from_the_users_is_refused(api, factory, db):
    # The same rule without the revocation that update_user adds: the statement itself compares them.
    hcp, rep = _timeline_world(factory, db)
    c = api(rep)
    rep.role = "medical"
    db.flush()
    assert c.get(f"/api/v1/hcps/{hcp.id}/timeline").status_code == 401


def test_territory_changes_apply_on_the_next_request(api, factory, db):
    """Contact data of an HCP outside the rep's territories is masked; assigning the territory unmasks it
    at once, ending the assignment masks it again."""
    home, elsewhere = factory.territory(), factory.territory()
    rep = factory.user("field_rep", [home])
    hcp = factory.hcp(elsewhere)
    c = api(rep)
    masked = c.get(f"/api/v1/hcps/{hcp.id}").get_json()["email"]
    assert masked != hcp.email and "***" in masked
    assign_territory(db, None, rep, elsewhere, valid_from=utcnow())
    assert c.get(f"/api/v1/hcps/{hcp.id}").get_json()["email"] == hcp.email
    end_territory(db, None, rep, elsewhere)
    assert "***" in c.get(f"/api/v1/hcps/{hcp.id}").get_json()["email"]


def test_a_timeline_page_with_rows_is_two_statements_and_loads_no_user(api, factory, db):
    hcp, rep = _timeline_world(factory, db)
    c = api(rep)
    db.expunge_all()  # nothing in the identity map: a User loaded by the request would be a statement
    with Statements() as statements:
        response = c.get(f"/api/v1/hcps/{hcp.id}/timeline")
    assert response.status_code == 200 and len(response.get_json()["items"]) == 1
    assert len(statements.seen) == 2, statements.seen  # the token's viewer, the page
    assert "api_tokens" in statements.seen[0] and "interaction_participants" in statements.seen[1]
    assert not any(s.startswith("SELECT users.id") for s in statements.seen)


def test_an_empty_page_checks_that_the_hcp_exists(api, factory, db):
    hcp, rep = _timeline_world(factory, db)
    other = factory.hcp()
    c = api(rep)
    with Statements() as statements:
        assert c.get(f"/api/v1/hcps/{other.id}/timeline").get_json()["items"] == []
    assert len(statements.seen) == 3  # viewer, page, the HCP's existence
    assert c.get("/api/v1/hcps/2147483000/timeline").status_code == 404


def test_writes_still_load_the_actor(api, factory, db):
    """``actor()`` loads the User when a view needs it: a write is attributed to its author."""
    t = factory.territory()
    rep = factory.user("field_rep", [t])
    c = api(rep)
    response = c.post("/api/v1/hcps", json={"first_name": "Grace", "last_name": "Hopper", "profession": "gp",
                                            "territory": t.code})
    assert response.status_code == 201, response.get_json()


def _committed_world(app: Any, sensitivity: str) -> dict[str, Any]:
    from crm.auth.services import issue_token
    from tests.conftest import PASSWORD, Factory

    with app.app_context():
        f = Factory(_db.session)
        hcp, rep = _timeline_world(f, _db.session, sensitivity)
        medical = f.user("medical")
        tokens = {name: issue_token(_db.session, u.email, PASSWORD, "127.0.0.1")[0]
                  for name, u in (("rep", rep), ("medical", medical))}
        _db.session.commit()
        out = {"hcp_id": hcp.id, "medical_id": medical.id, "tokens": tokens}
        _db.session.remove()
    return out


def _commits(monkeypatch: Any) -> list[int]:
    from sqlalchemy.orm import Session

    calls: list[int] = []
    original = Session.commit

    def counting(self: Any) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(Session, "commit", counting)
    return calls


def _logged_reads(app: Any, viewer_id: int) -> int:
    with app.app_context():
        n = _db.session.scalar(select(func.count()).select_from(SensitiveRead)
                               .where(SensitiveRead.viewer_id == viewer_id))
        _db.session.remove()
    return int(n or 0)


@pytest.mark.committing
def test_a_read_that_wrote_nothing_is_not_committed(committing_app, monkeypatch):
    world = _committed_world(committing_app, "standard")
    commits = _commits(monkeypatch)
    client = committing_app.test_client()
    response = client.get(f"/api/v1/hcps/{world['hcp_id']}/timeline",
                          headers={"Authorization": f"Bearer {world['tokens']['rep']}"})
    assert response.status_code == 200 and len(response.get_json()["items"]) == 1
    assert commits == []


@pytest.mark.committing
def test_a_read_that_logs_a_sensitive_read_still_writes_it(committing_app, monkeypatch):
    world = _committed_world(committing_app, "medical")
    commits = _commits(monkeypatch)
    client = committing_app.test_client()
    response = client.get(f"/api/v1/hcps/{world['hcp_id']}/timeline",
                          headers={"Authorization": f"Bearer {world['tokens']['medical']}"})
    assert response.status_code == 200 and response.get_json()["items"][0]["redacted"] is False
    assert commits, "the read wrote its log row: it is committed"
    assert _logged_reads(committing_app, world["medical_id"]) == 1


@pytest.mark.committing
def test_a_write_is_still_committed(committing_app, monkeypatch):
    world = _committed_world(committing_app, "standard")
    commits = _commits(monkeypatch)
    client = committing_app.test_client()
    token = world["tokens"]["rep"]
    assert client.delete("/api/v1/auth/token", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    assert commits
    assert client.get(f"/api/v1/hcps/{world['hcp_id']}/timeline",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_stored_values_pass_through_unchanged(api, factory, db):
    hcp, rep = _timeline_world(factory, db)
    item = api(rep).get(f"/api/v1/hcps/{hcp.id}/timeline").get_json()["items"][0]
    assert item["occurred_at"] == "2026-01-05T09:30:00Z"
    assert item["details"] == {"note": "ünïcode", "n": 1}
    from crm.timeline.models import Interaction

    stored = db.get(Interaction, item["id"])
    assert item["consent_gap"] is stored.consent_gap  # a bool, not SQLite's 0/1


def test_iso_text_matches_iso_z():
    assert _iso_text("2026-01-05 09:30:00.000000") == "2026-01-05T09:30:00Z"
    assert _iso_text("2026-01-05 09:30:00.000120") == "2026-01-05T09:30:00.000120Z"
    assert _iso_text("2026-01-05 09:30:00") == "2026-01-05T09:30:00Z"
    assert _iso_text("2026-01-05T09:30:00+02:00") == "2026-01-05T07:30:00Z"


@dataclasses.dataclass
class _Point:
    x: int


def test_json_provider_writes_what_flask_wrote(app):
    from flask.json.provider import DefaultJSONProvider

    flask_provider = DefaultJSONProvider(app)
    value = {"b": Decimal("1.50"), "a": utc(2026, 1, 2, 3, 4), "c": [None, True, 1.5, "é"], "p": _Point(1),
             "stored": StoredJSON('{"k": [1, 2]}')}
    with app.app_context():
        ours = app.json.dumps(value)
        reference = flask_provider.dumps({**value, "stored": {"k": [1, 2]}})
        assert json.loads(ours) == json.loads(reference)
        assert list(json.loads(ours)) == sorted(json.loads(ours), key=str)  # keys sorted, as Flask sorts them
        assert json.loads(app.json.dumps({3: "x"})) == {"3": "x"}  # non-string keys as strings, like json
        big = {"n": 2**70}  # beyond orjson: the standard library writes it
        assert json.loads(app.json.response(big).get_data()) == big
        response = app.json.response({"stored": StoredJSON('{"k": 1}')})
        assert response.mimetype == "application/json" and json.loads(response.get_data()) == {"stored": {"k": 1}}


def test_stored_json_compares_as_its_value():
    assert StoredJSON('{"a": 1}') == {"a": 1}
    assert StoredJSON('{"a": 1}') == StoredJSON('{"a":1}')
    assert StoredJSON("{}") != {"a": 1}


def test_driver_rows_are_the_rows_sqlalchemy_returns(factory, db):
    """A statement run on the driver's cursor (crm.db.driver_rows) sends the same bound values (a time
    through its type's bind processor) and returns the same rows as SQLAlchemy; one with an expanding
    parameter, which cannot run that way, goes through SQLAlchemy and returns the same rows too."""
    from sqlalchemy import bindparam

    from crm.db import DriverStatement, driver_rows
    from crm.timeline.models import Interaction

    hcp, _rep = _timeline_world(factory, db)
    by_time = (select(Interaction.id, Interaction.kind)
               .where(Interaction.occurred_at >= bindparam("since", type_=Interaction.occurred_at.type))
               .order_by(Interaction.id))
    params = {"since": utc(2026, 1, 5, 9, 30)}
    expected = [tuple(r) for r in db.execute(by_time, params).all()]
    assert expected and driver_rows(db, "test-by-time", lambda _d: by_time, params) == expected
    assert driver_rows(db, "test-by-time", lambda _d: by_time, {"since": utc(2026, 1, 6)}) == []
    by_kind = select(Interaction.id).where(Interaction.kind.in_(bindparam("kinds", expanding=True)))
    assert DriverStatement.of(by_kind, db.get_bind().dialect) is None
    assert driver_rows(db, "test-by-kind", lambda _d: by_kind, {"kinds": ["visit.submitted"]}) == [
        tuple(r) for r in db.execute(by_kind, {"kinds": ["visit.submitted"]}).all()]


def test_a_driver_statement_error_is_raised_as_sqlalchemy_raises_it(db):
    """A driver error on the cursor path is SQLAlchemy's DBAPIError (the handle_error listeners ran), and
    the session can roll back and go on."""
    from sqlalchemy import Column, Integer, MetaData, Table
    from sqlalchemy.exc import DBAPIError

    from crm.db import driver_rows

    missing = Table("no_such_table_here", MetaData(), Column("id", Integer))
    with pytest.raises(DBAPIError):
        driver_rows(db, "test-missing", lambda _d: select(missing.c.id), {})
    db.rollback()
    assert db.scalar(select(func.count()).select_from(SensitiveRead)) == 0


def test_query_strings_loaded_once_are_the_callers_own_copy(app):
    """``load_args(..., pure=True)`` keeps a loaded query string; each caller gets its own copy, and a
    refused query string is refused every time."""
    from marshmallow import ValidationError

    from crm.schemas import load_args
    from crm.timeline.schemas import TimelineQuerySchema

    schema = TimelineQuerySchema()
    for _ in range(2):
        with app.test_request_context("/?channel=visit&channel=email&limit=5"):
            args = load_args(schema, pure=True)
            assert args["channel"] == ["visit", "email"] and args["limit"] == 5
            args["channel"].append("survey")  # the caller's own list
        with app.test_request_context("/?limit=0"), pytest.raises(ValidationError):
            load_args(schema, pure=True)


def test_an_api_request_without_a_cookie_sets_none_and_a_sign_in_still_does(api, client, factory, db):
    hcp, rep = _timeline_world(factory, db)
    response = api(rep).get(f"/api/v1/hcps/{hcp.id}/timeline")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Frame-Options"] == "DENY"
    from tests.conftest import AuthActions

    assert AuthActions(client).login(rep).status_code == 302
    assert client.get_cookie(client.application.config["SESSION_COOKIE_NAME"]) is not None
