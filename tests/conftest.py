"""Shared fixtures: app, db (rolled back per test), client, runner, users per role, factories.

SQLite by default (a temporary file, WAL); ``CRM_TEST_DATABASE_URL`` runs the same suite on
PostgreSQL. Tests marked ``committing`` commit for real (concurrency) against their own database.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy.session import Session as FSASession
from sqlalchemy import text
from sqlalchemy.engine import make_url

from crm import create_app
from crm.extensions import db as _db

_TMP = Path(tempfile.mkdtemp(prefix="crm-tests-"))
PASSWORD = "correct horse battery staple"
ROLES = ("field_rep", "marketer", "call_centre", "medical", "compliance", "admin")

os.environ.setdefault("CRM_INSTANCE_PATH", str(_TMP / "instance"))


class BoundSession(FSASession):
    """Flask-SQLAlchemy's session ignores a session-wide bind; tests need it (one outer transaction)."""

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kw: Any) -> Any:
        if bind is None and self.bind is not None:
            return self.bind
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kw)


def database_url(suffix: str = "") -> str:
    url = os.environ.get("CRM_TEST_DATABASE_URL", "").strip()
    if not url:
        return f"sqlite:///{_TMP / f'test{suffix}.sqlite3'}"
    if not suffix:
        return url
    # A sibling PostgreSQL database for tests that need their own (committing, migrations).
    from crm.dbcheck import create_database

    sibling = make_url(url)
    sibling = sibling.set(database=f"{sibling.database}{suffix}").render_as_string(hide_password=False)
    create_database(sibling)
    return sibling


class FreshContextClient(FlaskClient):
    """Each request gets its own app context (and so its own ``g`` and db session), as in a server.

    Without this, requests made while a test holds an app context would share ``g`` with each other.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        with self.application.app_context():
            return super().open(*args, **kwargs)


TEST_KEYS = [Fernet.generate_key().decode(), Fernet.generate_key().decode()]


def make_app(url: str, **extra: Any) -> Flask:
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": ({"connect_args": {"timeout": 30}} if url.startswith("sqlite")
                                      else {"pool_pre_ping": True}),
        "CRM_ENCRYPTION_KEYS": [TEST_KEYS[0]],
        "CRM_BLIND_INDEX_KEY": "test-blind-index-key",
        # The audit chain's key; no anchor file, since each test's records roll back (tests that anchor in
        # a file name their own).
        "CRM_AUDIT_KEY": "test-audit-key",
        "CRM_AUDIT_ANCHOR_FILE": "",
        "SECRET_KEY": "test-secret",
        "CRM_OUTBOX_DIR": str(_TMP / "outbox"),
        # cheap argon2 in tests only; production uses argon2-cffi's defaults
        "CRM_ARGON2_TIME_COST": 1,
        "CRM_ARGON2_MEMORY_KIB": 1024,
        # The ERP stub answers without waiting in tests (issue 6).
        "CRM_ERP_STUB_ACCEPT_AFTER_SECONDS": 0,
        "CRM_ERP_STUB_SHIP_AFTER_SECONDS": 0,
        # Jobs run at once, in the process that queued them (huey's immediate mode), after the commit;
        # the queue's own tests (tests/test_queue*.py) use real SQLite and Redis storage.
        "CRM_QUEUE_URL": "memory://",
        "CRM_QUEUE_IMMEDIATE": True,
        "CRM_QUEUE_PERIODIC": False,
    }
    config.update(extra)
    application = create_app(config)
    application.test_client_class = FreshContextClient
    return application


def reset_schema(app: Flask) -> None:
    with app.app_context():
        with _db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            else:
                _db.metadata.drop_all(conn)
                conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        _db.metadata.create_all(_db.engine)


@pytest.fixture(scope="session")
def app() -> Iterator[Flask]:
    application = make_app(database_url())
    reset_schema(application)
    yield application
    with application.app_context():
        _db.engine.dispose()


@pytest.fixture
def db(app: Flask) -> Iterator[Any]:
    """A session inside an outer transaction that is rolled back after the test."""
    with app.app_context():
        conn = _db.engine.connect()
        outer = conn.begin()
        original = _db.session
        _db.session = _db._make_scoped_session(
            {"class_": BoundSession, "bind": conn, "join_transaction_mode": "create_savepoint"}
        )
        try:
            yield _db.session
        finally:
            _db.session.remove()
            _db.session = original
            outer.rollback()
            conn.close()


@pytest.fixture
def client(app: Flask, db: Any) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask, db: Any) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def committing_app(request: pytest.FixtureRequest) -> Iterator[Flask]:
    """An app on its own database whose tests commit for real; emptied before each test."""
    application = make_app(database_url("_committing"))
    reset_schema(application)
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


# -- factories -------------------------------------------------------------------------------------

_seq = itertools.count(1)


class Factory:
    """Builds rows through the real services, so tests exercise the same code paths as the app."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def territory(self, code: str | None = None, name: str | None = None) -> Any:
        from crm.hcps.models import Territory

        code = code or f"T{next(_seq)}"
        t = Territory(code=code, name=name or f"Territory {code}")
        self.session.add(t)
        self.session.flush()
        return t

    def user(self, role: str, territories: list[Any] = (), email: str | None = None,  # type: ignore[assignment]
             name: str | None = None, password: str = PASSWORD) -> Any:
        from crm.auth.services import create_user

        n = next(_seq)
        return create_user(
            self.session, None, email=email or f"{role}{n}@pharma.example", name=name or f"{role.title()} {n}",
            role=role, password=password, territory_codes=[t.code for t in territories],
        )

    def hcp(self, territory: Any = None, **kw: Any) -> Any:
        from crm.hcps.models import HCP

        n = next(_seq)
        values: dict[str, Any] = {
            "first_name": f"Ada{n}", "last_name": f"Lovelace{n}", "profession": "gp", "specialty": "General Practice",
            "email": f"hcp{n}@clinic.example", "phone": f"+1 555 010 {n:04d}", "address_line": f"{n} Main St",
            "city": "Springfield", "postal_code": "12345", "state": "IL",
            "territory_id": territory.id if territory is not None else None,
        }
        values.update(kw)
        from crm.security.crypto import blind_index

        values.setdefault("email_bidx", blind_index(values.get("email")))
        h = HCP(**values)
        self.session.add(h)
        self.session.flush()
        return h


@pytest.fixture
def factory(db: Any) -> Factory:
    return Factory(db)


class ApiClient:
    """A test client that sends the bearer token of one user."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.token = token

    def _h(self, headers: dict[str, str] | None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"}
        h.update(headers or {})
        return h

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers=self._h(kw.pop("headers", None)), **kw)

    def post(self, url: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(url, json=json, headers=self._h(kw.pop("headers", None)), **kw)

    def patch(self, url: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(url, json=json, headers=self._h(kw.pop("headers", None)), **kw)

    def put(self, url: str, json: Any = None, **kw: Any) -> Any:
        return self.client.put(url, json=json, headers=self._h(kw.pop("headers", None)), **kw)

    def delete(self, url: str, **kw: Any) -> Any:
        return self.client.delete(url, headers=self._h(kw.pop("headers", None)), **kw)


@pytest.fixture
def api(client: FlaskClient, db: Any) -> Any:
    """``api(user)`` -> an ApiClient holding a fresh token for that user."""

    def make(user: Any) -> ApiClient:
        from crm.auth.services import issue_token

        raw, _tok, _user = issue_token(db, user.email, PASSWORD, "127.0.0.1")
        return ApiClient(client, raw)

    return make


class AuthActions:
    """Log in and out of the web pages as a given user (flaskr's pattern)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def csrf_token(self, path: str = "/login") -> str:
        import re

        page = self.client.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, user: Any, password: str = PASSWORD, next_url: str | None = None) -> Any:
        token = self.csrf_token()
        url = "/login" + (f"?next={next_url}" if next_url else "")
        return self.client.post(url, data={"email": user.email, "password": password, "csrf_token": token})

    def logout(self) -> Any:
        token = self.csrf_token("/")
        return self.client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def days_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)
