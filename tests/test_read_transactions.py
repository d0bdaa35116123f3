"""Read-only requests never wait for the write lock on SQLite; writers still never see "database is
locked"; reads that write (the sensitive-read log, seeding) still write. Same tests on PostgreSQL, where
nothing changed: readers never waited there.

No timing assertions: the order is set with threading.Event, and joins carry a generous timeout only so
that a regression fails instead of hanging.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select, text

from crm import db as crm_db
from crm.access import reads as access_reads
from crm.auth.services import issue_token
from crm.db import DEFERRED, IMMEDIATE, WriteInReadTransaction, set_sqlite_begin
from crm.extensions import db as _db
from crm.guardrails.models import GuardrailRule
from crm.hcps.models import HCP, Territory
from crm.timeline.models import SensitiveRead
from crm.timeline.services import record_interaction
from tests.conftest import PASSWORD, AuthActions, Factory, utc

pytestmark = pytest.mark.committing

GUARD = 60  # seconds: only a failure guard, never what a test measures


def _world(app: Any) -> dict[str, Any]:
    """A territory with one HCP, a standard and a medical item on its timeline, and users with tokens."""
    with app.app_context():
        f = Factory(_db.session)
        t = f.territory()
        hcp = f.hcp(t)
        rep, medical, admin, agent = (f.user("field_rep", [t]), f.user("medical"), f.user("admin"),
                                      f.user("call_centre"))
        standard, _ = record_interaction(_db.session, rep, hcp_ids=[hcp.id], occurred_at=utc(2026, 1, 1, 9),
                                         channel="visit", kind="visit.submitted", summary="Discussed dosing")
        inquiry, _ = record_interaction(_db.session, agent, hcp_ids=[hcp.id], occurred_at=utc(2026, 1, 2, 9),
                                        channel="call_centre", kind="call_centre.medical_inquiry",
                                        summary="Asked about renal dosing", sensitivity="medical")
        tokens = {name: issue_token(_db.session, u.email, PASSWORD, "127.0.0.1")[0]
                  for name, u in (("rep", rep), ("medical", medical), ("admin", admin))}
        out = {"hcp_id": hcp.id, "territory": t.code, "standard_id": standard.id, "medical_item_id": inquiry.id,
               "medical_user_id": medical.id, "tokens": tokens, "compliance_email": f.user("compliance").email}
        _db.session.commit()
        _db.session.remove()
    return out


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _writer(app: Any) -> Any:
    """A connection of its own, in a write transaction that has written (holding the write lock on
    SQLite, a row lock on PostgreSQL) and is not committed."""
    with app.app_context():
        conn = _db.engine.connect()
    conn.begin()  # outside a request: IMMEDIATE on SQLite
    conn.execute(text("UPDATE territories SET name = name || '!'"))
    return conn


def _sensitive_reads(app: Any, viewer_id: int) -> list[tuple[Any, ...]]:
    with app.app_context():
        rows = _db.session.execute(select(SensitiveRead.interaction_id, SensitiveRead.what)
                                   .where(SensitiveRead.viewer_id == viewer_id)).all()
        _db.session.remove()
    return [tuple(r) for r in rows]


def test_a_timeline_read_completes_while_a_writer_holds_the_lock(committing_app):
    world = _world(committing_app)
    client = committing_app.test_client()
    writer = _writer(committing_app)
    result: dict[str, Any] = {}
    done = threading.Event()

    def read() -> None:
        try:
            resp = client.get(f"/api/v1/hcps/{world['hcp_id']}/timeline", headers=_bearer(world["tokens"]["rep"]))
            result["status"], result["ids"] = resp.status_code, [i["id"] for i in resp.get_json()["items"]]
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc
        finally:
            done.set()

    reader = threading.Thread(target=read)
    try:
        reader.start()
        finished = done.wait(GUARD)
        # The reader answered while the writer still held its lock: it never queued behind it.
        assert finished, "the read waited for the write lock"
        assert writer.in_transaction()
    finally:
        writer.rollback()
        writer.close()
        reader.join(GUARD)
    assert "error" not in result, result
    assert result["status"] == 200
    assert world["standard_id"] in result["ids"]


def test_eight_writers_at_once_never_see_database_is_locked(committing_app):
    world = _world(committing_app)
    client = committing_app.test_client()
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            barrier.wait(GUARD)
            resp = client.post("/api/v1/hcps", headers=_bearer(world["tokens"]["admin"]),
                               json={"first_name": f"Writer{n}", "last_name": "Concurrent", "profession": "gp",
                                     "territory": world["territory"]})
            statuses.append(resp.status_code)
            if resp.status_code != 201:
                errors.append(AssertionError(resp.get_data(as_text=True)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(GUARD)
    assert errors == [] and statuses == [201] * 8
    with committing_app.app_context():
        assert _db.session.scalar(select(func.count()).select_from(HCP).where(HCP.last_name == "Concurrent")) == 8
        _db.session.remove()


def test_a_logged_read_keeps_its_log_row_when_a_writer_commits_during_the_read(committing_app, monkeypatch):
    """The medical reader's transaction has read (its snapshot is older than the writer's commit) when its
    read log is produced; a deferred transaction could not write any more (SQLITE_BUSY_SNAPSHOT). The log
    is written in a write transaction of its own, and the answer waits for it."""
    world = _world(committing_app)
    client = committing_app.test_client()
    read_done, writer_done = threading.Event(), threading.Event()
    real = access_reads.insert_after_reads

    def between(session: Any, table: Any, rows: list[dict[str, Any]]) -> None:
        real(session, table, rows)
        read_done.set()
        writer_done.wait(GUARD)

    monkeypatch.setattr(access_reads, "insert_after_reads", between)
    result: dict[str, Any] = {}

    def read() -> None:
        try:
            resp = client.get(f"/api/v1/hcps/{world['hcp_id']}/timeline",
                              headers=_bearer(world["tokens"]["medical"]))
            result["status"] = resp.status_code
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert read_done.wait(GUARD), "the reader never got to its read log"
        writer = _writer(committing_app)
        writer.commit()
        writer.close()
    finally:
        writer_done.set()
        reader.join(GUARD)
    assert not reader.is_alive()
    assert "error" not in result, result
    assert result["status"] == 200
    assert _sensitive_reads(committing_app, world["medical_user_id"]) == [(world["medical_item_id"], "interaction")]


def test_a_read_log_that_cannot_be_written_fails_the_read(committing_app, monkeypatch):
    """Fail closed: the medical content was read, so a lost log row must not leave as a 200."""
    world = _world(committing_app)
    real = access_reads.insert_after_reads

    def broken(session: Any, table: Any, rows: list[dict[str, Any]]) -> None:
        real(session, table, [*rows, {**rows[0], "viewer_id": 2_000_000_000}])  # no such user: FK refuses

    monkeypatch.setattr(access_reads, "insert_after_reads", broken)
    committing_app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production, not raise in the test
    resp = committing_app.test_client().get(f"/api/v1/hcps/{world['hcp_id']}/timeline",
                                            headers=_bearer(world["tokens"]["medical"]))
    assert resp.status_code == 500
    assert _sensitive_reads(committing_app, world["medical_user_id"]) == []


@pytest.mark.parametrize("role", ["medical", "compliance", "admin"])
def test_full_reads_are_logged_per_role_after_a_read_only_request(committing_app, role):
    world = _world(committing_app)
    with committing_app.app_context():
        f = Factory(_db.session)
        user = f.user(role)
        token, user_id = issue_token(_db.session, user.email, PASSWORD, "127.0.0.1")[0], user.id
        _db.session.commit()
        _db.session.remove()
    resp = committing_app.test_client().get(f"/api/v1/interactions/{world['medical_item_id']}",
                                            headers=_bearer(token))
    assert resp.status_code == 200 and resp.get_json()["redacted"] is False
    assert _sensitive_reads(committing_app, user_id) == [(world["medical_item_id"], "interaction")]


def test_field_rep_read_of_a_medical_item_logs_nothing(committing_app):
    world = _world(committing_app)
    resp = committing_app.test_client().get(f"/api/v1/hcps/{world['hcp_id']}/timeline",
                                            headers=_bearer(world["tokens"]["rep"]))
    assert resp.status_code == 200
    with committing_app.app_context():
        assert _db.session.scalar(select(func.count()).select_from(SensitiveRead)) == 0
        _db.session.remove()


def test_a_page_that_writes_on_get_still_writes(committing_app):
    """GET /guardrails seeds the default rules into an empty table: the write is replayed as a writer."""
    world = _world(committing_app)
    with committing_app.app_context():
        assert _db.session.scalar(select(func.count()).select_from(GuardrailRule)) == 0
        _db.session.remove()
    client = committing_app.test_client()
    user = type("U", (), {"email": world["compliance_email"]})()
    assert AuthActions(client).login(user).status_code == 302
    assert client.get("/guardrails").status_code == 200
    with committing_app.app_context():
        assert _db.session.scalar(select(func.count()).select_from(GuardrailRule)) > 0
        _db.session.remove()


def test_a_write_in_a_read_transaction_is_refused_before_it_writes(committing_app):
    """Outside the request boundary's replay, a write in a deferred SQLite transaction raises a clear
    error and changes nothing; PostgreSQL has no deferred mode and writes as before."""
    with committing_app.app_context():
        sqlite = _db.engine.dialect.name == "sqlite"
        set_sqlite_begin(DEFERRED)
        try:
            assert _db.session.scalar(select(func.count()).select_from(Territory)) == 0
            _db.session.add(Territory(code="RO", name="Read only"))
            if sqlite:
                with pytest.raises(WriteInReadTransaction):
                    _db.session.flush()
                _db.session.rollback()
            else:
                _db.session.flush()
                _db.session.commit()
        finally:
            set_sqlite_begin(IMMEDIATE)
        # The next transaction (IMMEDIATE) on the same pooled connection writes again.
        expected = 0 if sqlite else 1
        assert _db.session.scalar(select(func.count()).select_from(Territory)) == expected
        _db.session.add(Territory(code="RW", name="Read write"))
        _db.session.commit()
        assert _db.session.scalar(select(func.count()).select_from(Territory)) == expected + 1
        _db.session.remove()


def test_reads_after_reads_run_no_pragma_and_a_write_after_them_still_writes(committing_app):
    """A pooled connection keeps its read-only mode between read requests: a flag PRAGMA expires SQLite's
    prepared statements, so a read after a read runs none; the first write after reads turns it off."""
    world = _world(committing_app)
    client = committing_app.test_client()
    statements: list[str] = []  # every statement the driver ran (SQLite's trace), BEGIN and PRAGMA included

    def trace(dbapi_conn: Any, *_args: Any) -> None:
        if hasattr(dbapi_conn, "set_trace_callback"):  # SQLite; PostgreSQL has no such mode to keep
            dbapi_conn.set_trace_callback(statements.append)

    def untrace(dbapi_conn: Any, *_args: Any) -> None:
        if hasattr(dbapi_conn, "set_trace_callback"):
            dbapi_conn.set_trace_callback(None)

    with committing_app.app_context():
        pool, sqlite = _db.engine.pool, _db.engine.dialect.name == "sqlite"
    path = f"/api/v1/hcps/{world['hcp_id']}/timeline"
    assert client.get(path, headers=_bearer(world["tokens"]["rep"])).status_code == 200
    with _listening(pool, "checkout", trace), _listening(pool, "checkin", untrace):
        for _ in range(3):
            assert client.get(path, headers=_bearer(world["tokens"]["rep"])).status_code == 200
    if sqlite:
        assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN"] * 3
    assert not [s for s in statements if "PRAGMA" in s.upper()]
    # Pages of the same session in between read too; a write request after the reads writes.
    response = client.post("/api/v1/hcps", headers=_bearer(world["tokens"]["admin"]),
                           json={"first_name": "Ada", "last_name": "Lovelace", "profession": "gp",
                                 "territory": world["territory"]})
    assert response.status_code == 201, response.get_json()
    with committing_app.app_context():
        assert _db.session.scalar(select(func.count()).select_from(HCP)) == 2
        _db.session.remove()


def _listening(engine: Any, name: str, fn: Any) -> Any:
    from contextlib import contextmanager

    from sqlalchemy import event

    @contextmanager
    def listening() -> Any:
        event.listen(engine, name, fn)
        try:
            yield
        finally:
            event.remove(engine, name, fn)

    return listening()


def test_a_get_view_that_writes_is_replayed_as_a_writer(committing_app):
    """A view that writes in a GET (not declared anywhere) is run again in a write transaction: its
    write is kept, once, and the answer is the second run's."""
    runs: list[str] = []

    @committing_app.get("/_test/reads-then-writes")
    def reads_then_writes() -> Any:
        runs.append(crm_db.sqlite_begin())
        count = _db.session.scalar(select(func.count()).select_from(Territory))
        _db.session.add(Territory(code=f"W{count}", name="Written by a GET"))
        _db.session.flush()
        return {"count": count}

    resp = committing_app.test_client().get("/_test/reads-then-writes")
    assert resp.status_code == 200 and resp.get_json() == {"count": 0}
    with committing_app.app_context():
        sqlite = _db.engine.dialect.name == "sqlite"
        assert _db.session.scalars(select(Territory.code)).all() == ["W0"]
        _db.session.remove()
    assert runs == ([DEFERRED, IMMEDIATE] if sqlite else [DEFERRED])


@pytest.mark.parametrize("role", ["compliance", "admin", "medical"])
def test_consent_evidence_reads_are_logged_from_a_read_only_request(committing_app, role):
    """Compliance and admin see the evidence and their read is logged (after the read, on SQLite); other
    roles see no evidence and log nothing."""
    from tests.consent_support import grant

    world = _world(committing_app)
    with committing_app.app_context():
        f = Factory(_db.session)
        user = f.user(role)
        grant(_db.session, _db.session.get(HCP, world["hcp_id"]), "visit", "events", "visit")
        token, user_id = issue_token(_db.session, user.email, PASSWORD, "127.0.0.1")[0], user.id
        _db.session.commit()
        _db.session.remove()
    resp = committing_app.test_client().get(f"/api/v1/hcps/{world['hcp_id']}/consents/history",
                                            headers=_bearer(token))
    assert resp.status_code == 200
    sees = role in ("compliance", "admin")
    assert any(i["evidence"] for i in resp.get_json()["items"]) is sees
    assert _sensitive_reads(committing_app, user_id) == ([(None, "consent_evidence")] if sees else [])


@pytest.mark.parametrize("role", ["compliance", "admin"])
def test_an_export_download_keeps_its_audit_record_and_read_log(committing_app, role, caplog):
    """The export's job audits it and logs the medical items it hands over; GET .../download audits the
    download (a write in a read request: replayed as a writer on SQLite)."""
    from crm.audit.models import AuditRecord
    from crm.jobs.models import Job

    world = _world(committing_app)
    with committing_app.app_context():
        user = Factory(_db.session).user(role)
        email, user_id = user.email, user.id
        _db.session.commit()
        _db.session.remove()
    client = committing_app.test_client()
    auth = AuthActions(client)
    assert auth.login(type("U", (), {"email": email})()).status_code == 302
    resp = client.post("/admin/masterdata/export", data={"csrf_token": auth.csrf_token("/admin/masterdata/export"),
                                                         "hcp_id": str(world["hcp_id"])})
    assert resp.status_code == 303
    with committing_app.app_context():
        job_id = _db.session.scalar(select(Job.id).where(Job.kind == "hcp.export"))
        _db.session.remove()
    link = f"/admin/masterdata/exports/{job_id}/download"
    assert client.get(link).status_code == 200
    with committing_app.app_context():
        exports = _db.session.scalars(select(AuditRecord.entity_id).where(AuditRecord.action == "hcp.export")).all()
        downloads = _db.session.scalars(select(AuditRecord.entity_id)
                                        .where(AuditRecord.action == "hcp.export.download")).all()
        _db.session.remove()
    assert exports == downloads == [str(world["hcp_id"])]
    assert _sensitive_reads(committing_app, user_id) == [(world["medical_item_id"], "export")]
    replays = [getattr(r, "path", None) for r in caplog.records if r.getMessage().startswith("read request wrote")]
    with committing_app.app_context():
        sqlite = _db.engine.dialect.name == "sqlite"
    assert replays == ([link] if sqlite else [])
