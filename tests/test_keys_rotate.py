"""`crm keys rotate`: re-encryption under the newest key, resumable batches, column binding."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from crm.auth.models import User
from crm.extensions import db as _db
from crm.hcps.models import HCP
from crm.security.cli import encrypted_columns
from crm.security.crypto import DecryptionError, Keyring
from tests.conftest import TEST_KEYS

KEY_A = TEST_KEYS[0]  # what the test app writes with
KEY_B = Fernet.generate_key().decode()


@pytest.fixture
def use_keys(app, monkeypatch):
    """"Restart" the app with other keys (newest first); the test app's keys come back afterwards."""

    def use(*keys: str) -> None:
        monkeypatch.setitem(app.config, "CRM_ENCRYPTION_KEYS", list(keys))
        monkeypatch.setitem(app.extensions, "crm_keyring", Keyring(list(keys)))

    return use


def _raw(db, table, column, pk):
    return db.execute(text(f"SELECT {column} FROM {table} WHERE id = :id"), {"id": pk}).scalar_one()


def _all_ciphertexts(db):
    values = []
    for table, column in encrypted_columns(_db.metadata):
        rows = db.execute(text(f"SELECT {column.name} FROM {table.name} WHERE {column.name} IS NOT NULL"))
        values += [(f"{table.name}.{column.name}", r[0]) for r in rows]
    return values


def _people(factory):
    territory = factory.territory()
    users = [factory.user("field_rep", [territory]), factory.user("admin")]
    hcps = [factory.hcp(territory) for _ in range(3)] + [factory.hcp(phone=None, address_line=None)]
    clear = {
        **{("users", u.id): {"email": u.email} for u in users},
        **{("hcps", h.id): {"email": h.email, "phone": h.phone, "address_line": h.address_line} for h in hcps},
    }
    return users, hcps, clear


def _assert_readable(db, clear):
    db.expire_all()
    for (table, pk), values in clear.items():
        obj = db.get(User if table == "users" else HCP, pk)
        for column, value in values.items():
            assert getattr(obj, column) == value


def test_encrypted_columns_are_found_from_the_models(app):
    names = {f"{t.name}.{c.name}" for t, c in encrypted_columns(_db.metadata)}
    assert {"users.email", "hcps.email", "hcps.phone", "hcps.address_line", "visits.signature"} <= names


def test_rotate_moves_everything_to_the_newest_key(runner, db, factory, use_keys):
    _users, hcps, clear = _people(factory)
    before = {h.id: db.execute(text("SELECT version, updated_at FROM hcps WHERE id = :id"), {"id": h.id}).one()
              for h in hcps}
    old_tokens = dict(((n, t), t) for n, t in _all_ciphertexts(db))

    use_keys(KEY_B, KEY_A)  # restarted with a new key in front
    result = runner.invoke(args=["crm", "keys", "rotate", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "users.email: rotated 2, already current 0" in result.output
    assert "hcps.email: rotated 4, already current 0" in result.output
    assert "hcps.phone: rotated 3, already current 0" in result.output
    assert "stopped" not in result.output

    use_keys(KEY_B)  # the old key is gone: everything must read under the new one alone
    _assert_readable(db, clear)
    ring_b = Keyring([KEY_B])
    for name, token in _all_ciphertexts(db):
        assert ring_b.is_current(token) and (name, token) not in old_tokens
        ring_b.decrypt(name, token)  # the table.column context is still inside
    # No business data changed: no new version, no new updated_at.
    after = {h.id: db.execute(text("SELECT version, updated_at FROM hcps WHERE id = :id"), {"id": h.id}).one()
             for h in hcps}
    assert after == before


def test_a_second_run_changes_nothing(runner, db, factory, use_keys):
    _users, _hcps, clear = _people(factory)
    use_keys(KEY_B, KEY_A)
    assert runner.invoke(args=["crm", "keys", "rotate"]).exit_code == 0
    tokens = _all_ciphertexts(db)
    again = runner.invoke(args=["crm", "keys", "rotate"])
    assert again.exit_code == 0
    assert "users.email: rotated 0, already current 2" in again.output
    assert _all_ciphertexts(db) == tokens


def test_an_interrupted_run_resumes(runner, db, factory, use_keys):
    _users, _hcps, clear = _people(factory)
    use_keys(KEY_B, KEY_A)
    first = runner.invoke(args=["crm", "keys", "rotate", "--batch-size", "1", "--max-batches", "1"])
    assert first.exit_code == 0, first.output
    assert "stopped after 1 batches; run the command again to continue" in first.output
    ring_b = Keyring([KEY_B])
    current = [name for name, token in _all_ciphertexts(db) if ring_b.is_current(token)]
    assert len(current) == 1  # exactly one batch of one row was committed

    rest = runner.invoke(args=["crm", "keys", "rotate", "--batch-size", "1"])
    assert rest.exit_code == 0, rest.output
    assert f"{current[0]}: rotated" in rest.output and "already current 1" in rest.output
    assert "stopped" not in rest.output
    use_keys(KEY_B)
    _assert_readable(db, clear)


def test_a_value_under_an_unknown_key_is_reported_and_left_alone(runner, db, factory, use_keys):
    hcp_id = factory.hcp().id
    stranger = Keyring([Fernet.generate_key().decode()]).encrypt("hcps.phone", "+1 555 0100")
    db.execute(text("UPDATE hcps SET phone = :v WHERE id = :id"), {"v": stranger, "id": hcp_id})
    use_keys(KEY_B, KEY_A)
    result = runner.invoke(args=["crm", "keys", "rotate"])
    assert result.exit_code == 1
    assert "hcps.phone: rotated 0, already current 0, unreadable 1" in result.output
    assert "hcps.email: rotated 1" in result.output  # the rest of the row still moved
    assert "+1 555 0100" not in result.output
    assert _raw(db, "hcps", "phone", hcp_id) == stranger


def test_bad_options_are_refused(runner):
    assert runner.invoke(args=["crm", "keys", "rotate", "--batch-size", "0"]).exit_code == 2
    assert runner.invoke(args=["crm", "keys", "rotate", "--max-batches", "0"]).exit_code == 2


def test_a_ciphertext_copied_to_another_column_does_not_decrypt(db, factory):
    users, hcps, clear = _people(factory)
    hcp_id, user_id = hcps[0].id, users[0].id
    email_token = _raw(db, "hcps", "email", hcp_id)
    db.execute(text("UPDATE hcps SET phone = :v WHERE id = :id"), {"v": email_token, "id": hcp_id})
    db.execute(text("UPDATE users SET email = :v WHERE id = :id"), {"v": email_token, "id": user_id})
    db.expire_all()
    with pytest.raises(DecryptionError, match="hcps.phone: value belongs to another column"):
        db.get(HCP, hcp_id).phone  # noqa: B018
    with pytest.raises(DecryptionError, match="users.email: value belongs to another column"):
        db.get(User, user_id).email  # noqa: B018
    # in its own column it still reads
    assert Keyring([KEY_A]).decrypt("hcps.email", email_token) == clear[("hcps", hcp_id)]["email"]


def test_column_binding_survives_rotation(runner, db, factory, use_keys):
    _users, hcps, _clear = _people(factory)
    h = hcps[0]
    use_keys(KEY_B, KEY_A)
    assert runner.invoke(args=["crm", "keys", "rotate"]).exit_code == 0
    rotated_email = _raw(db, "hcps", "email", h.id)
    db.execute(text("UPDATE hcps SET address_line = :v WHERE id = :id"), {"v": rotated_email, "id": h.id})
    db.expire_all()
    with pytest.raises(DecryptionError, match="another column"):
        db.get(HCP, h.id).address_line  # noqa: B018


def test_a_value_the_app_rewrites_during_the_batch_is_not_overwritten(app, db, factory, use_keys):
    from crm.security.cli import rotate_column

    hcp_id = factory.hcp().id
    use_keys(KEY_B, KEY_A)
    table = _db.metadata.tables["hcps"]

    class AppWritesMeanwhile(Keyring):
        def rotate(self, token: str, context: str) -> str:
            # the app saves a new phone number between our read and our write
            db.execute(text("UPDATE hcps SET phone = :v WHERE id = :id"),
                       {"v": self.encrypt("hcps.phone", "+1 555 0123"), "id": hcp_id})
            return super().rotate(token, context)

    report, batches = rotate_column(db, AppWritesMeanwhile([KEY_B, KEY_A]), table, table.c.phone, 10)
    assert (report.rotated, report.current, batches, report.done) == (0, 1, 1, True)
    db.expire_all()
    assert db.get(HCP, hcp_id).phone == "+1 555 0123"  # the app's write won


# -- every encrypted column, the append-only ledger, the audit trail, concurrent writers -----------------

def _every_encrypted_column(db, factory):
    """One row (or more) in every EncryptedString column; returns {(table.column, pk): plaintext}."""
    from crm.campaigns.models import EmailEvent
    from crm.db import utcnow
    from crm.integrations.eventplatform.models import UnmatchedAttendanceRow
    from crm.mail.models import MailOutbox
    from crm.visits.models import Visit
    from tests.consent_support import grant
    from tests.events_support import make_event

    territory = factory.territory()
    rep = factory.user("field_rep", [territory])
    marketer = factory.user("marketer")
    hcps = [factory.hcp(territory) for _ in range(2)]
    events = [grant(db, hcps[0], "visit", "events", "visit"), grant(db, hcps[1], "phone", "events", "call_centre")]
    visit = Visit(owner_id=rep.id, hcp_id=hcps[0].id, occurred_at=utcnow(), signature="data:image/png;base64,AAAA")
    event = make_event(db, marketer)
    unmatched = UnmatchedAttendanceRow(event_id=event.id, external_id="row-1", row_number=2,
                                       attendance_status="attended", data='{"name": "Unknown Person"}')
    email_event = EmailEvent(sg_event_id="sg-rot-1", event_type="bounce", platform_type="bounce",
                             occurred_at=utcnow(), email="nobody@unknown.example")
    mail = MailOutbox(kind="other", idempotency_key="rot-1", hcp_id=hcps[0].id, recipient="dr.rot@clinic.example",
                      message='{"subject": "s", "text": "t"}', message_id="<rot-1@crm.example>")
    db.add_all([visit, unmatched, email_event, mail])
    db.flush()
    clear: dict[tuple[str, int], str] = {}
    for obj, table, columns in [(u, "users", ["email"]) for u in (rep, marketer)] + [
            (h, "hcps", ["email", "phone", "address_line"]) for h in hcps] + [
            (e, "consent_events", ["evidence"]) for e in events] + [
            (visit, "visits", ["signature"]), (unmatched, "unmatched_attendance_rows", ["data"]),
            (email_event, "email_events", ["email"]), (mail, "mail_outbox", ["recipient", "message"])]:
        for column in columns:
            clear[(f"{table}.{column}", obj.id)] = getattr(obj, column)
    return clear


def _by_pk(db):
    out = {}
    for table, column in encrypted_columns(_db.metadata):
        rows = db.execute(text(f"SELECT id, {column.name} FROM {table.name} WHERE {column.name} IS NOT NULL"))
        out.update({(f"{table.name}.{column.name}", r[0]): r[1] for r in rows})
    return out


def test_the_test_data_covers_every_encrypted_column(db, factory):
    clear = _every_encrypted_column(db, factory)
    assert {name for name, _pk in clear} == {f"{t.name}.{c.name}" for t, c in encrypted_columns(_db.metadata)}


def test_rotate_covers_every_encrypted_column_including_the_consent_ledger(runner, db, factory, use_keys):
    from crm.audit.models import AuditRecord
    from crm.audit.services import verify_chain
    from crm.consent.models import ConsentEvent
    from crm.consent.services import verify_evidence

    clear = _every_encrypted_column(db, factory)
    hashes = {e.id: e.evidence_hash for e in db.query(ConsentEvent)}
    use_keys(KEY_B, KEY_A)
    result = runner.invoke(args=["crm", "keys", "rotate", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "consent_events.evidence: rotated 2, already current 0" in result.output
    assert "visits.signature: rotated 1" in result.output and "email_events.email: rotated 1" in result.output
    assert "unmatched_attendance_rows.data: rotated 1" in result.output

    use_keys(KEY_B)  # the old key is retired: every value still decrypts, under the new key alone
    ring_b = Keyring([KEY_B])
    stored = _by_pk(db)
    assert set(stored) == set(clear)
    for (name, pk), token in stored.items():
        assert ring_b.is_current(token)
        assert ring_b.decrypt(name, token) == clear[(name, pk)]
    db.expire_all()
    for e in db.query(ConsentEvent):  # the ledger's proof still holds: same evidence, same hash
        assert e.evidence_hash == hashes[e.id] and verify_evidence(e) is True

    # one audit record per batch that rewrote values: column, counts, key ids; never a value
    recs = db.query(AuditRecord).filter_by(action="keys.rotate").order_by(AuditRecord.id).all()
    assert sum(1 for r in recs if r.entity_id == "consent_events.evidence") == 2  # batch size 1
    ids = (Keyring([KEY_B, KEY_A]).key_id(0), Keyring([KEY_B, KEY_A]).key_id(1))
    for r in recs:
        assert r.entity == "encrypted_column" and r.actor_label == "system" and r.reason == "crm keys rotate"
        assert r.changes == {"rows_rotated": 1, "from_keys": {ids[1]: 1}, "to_key": ids[0]}
    raw = str([r.changes for r in recs])
    assert all(str(v) not in raw for v in clear.values()) and KEY_A not in raw and KEY_B not in raw
    assert verify_chain(db).ok


def _refused(db, statement, params=None):
    from sqlalchemy.exc import DatabaseError

    with pytest.raises(DatabaseError, match="append-only"), db.begin_nested():
        db.execute(text(statement), params or {})


def test_the_ledger_stays_append_only_outside_the_rotation_path(db, factory, use_keys):
    from crm.consent.models import ConsentEvent
    from crm.security.cli import rotation_allowed
    from tests.consent_support import grant

    event = grant(db, factory.hcp(), "visit", "events", "visit")
    token = _raw(db, "consent_events", "evidence", event.id)
    # a valid re-encryption, as the rotation would write it
    other = Keyring([KEY_A]).rotate(token, "consent_events.evidence")
    # without the flag: no UPDATE at all, not even of the evidence alone, and no DELETE
    _refused(db, "UPDATE consent_events SET evidence = :v WHERE id = :id", {"v": other, "id": event.id})
    _refused(db, "UPDATE consent_events SET source = 'import' WHERE id = :id", {"id": event.id})
    _refused(db, "DELETE FROM consent_events WHERE id = :id", {"id": event.id})
    with rotation_allowed(db):
        # with it: still no change of any other column, no erasing the evidence, no DELETE
        _refused(db, "UPDATE consent_events SET source = 'import' WHERE id = :id", {"id": event.id})
        _refused(db, "UPDATE consent_events SET evidence = :v, evidence_hash = 'x' WHERE id = :id",
                 {"v": other, "id": event.id})
        _refused(db, "UPDATE consent_events SET evidence = NULL WHERE id = :id", {"id": event.id})
        _refused(db, "DELETE FROM consent_events WHERE id = :id", {"id": event.id})
    # the flag is off again after the block
    _refused(db, "UPDATE consent_events SET evidence = :v WHERE id = :id", {"v": other, "id": event.id})
    assert _raw(db, "consent_events", "evidence", event.id) == token
    with rotation_allowed(db):  # the one UPDATE allowed: the encrypted column alone
        db.execute(text("UPDATE consent_events SET evidence = :v WHERE id = :id"), {"v": other, "id": event.id})
    db.expire_all()
    assert _raw(db, "consent_events", "evidence", event.id) == other
    assert db.get(ConsentEvent, event.id).evidence is not None


def test_the_ledger_trigger_knows_every_column(app):
    """SQLite compares the other columns one by one: a new ledger column must be named there."""
    from crm.consent import ddl

    table = _db.metadata.tables["consent_events"]
    encrypted = {c.name for t, c in encrypted_columns(_db.metadata) if t is table}
    assert set(ddl.ROTATABLE_COLUMNS) == encrypted
    assert set(ddl.LEDGER_COLUMNS) == {c.name for c in table.columns} - encrypted


@pytest.mark.committing
def test_rotate_while_the_app_writes(committing_app):
    """Writers keep adding HCPs, consent events and signed visits while every column is rotated; afterwards
    the old key is dropped and every value, old or new, decrypts under the new key alone."""
    import threading
    import time

    from crm.consent import services as consent
    from crm.hcps.models import HCP as HCPModel
    from tests.conftest import Factory
    from tests.consent_support import EVIDENCE

    app = committing_app
    with app.app_context():
        clear = _every_encrypted_column(_db.session, Factory(_db.session))
        rep_id = _db.session.scalar(text("SELECT id FROM users WHERE role = 'field_rep'"))
        _db.session.commit()
        notice = consent.active_notice(_db.session, "en").version
        _db.session.remove()

    app.config["CRM_ENCRYPTION_KEYS"] = [KEY_B, KEY_A]
    app.extensions["crm_keyring"] = Keyring([KEY_B, KEY_A])
    stop = threading.Event()
    started = threading.Event()
    errors: list[BaseException] = []
    written: dict[tuple[str, int], str] = {}

    def writer() -> None:
        from crm.db import utcnow
        from crm.visits.models import Visit

        n = 0
        try:
            while not stop.is_set() or n < 3:
                n += 1
                with app.app_context():
                    s = _db.session
                    h = HCPModel(first_name="W", last_name=f"Writer{n}", profession="gp",
                                 email=f"w{n}@writers.example", phone=f"+1 555 77{n:04d}")
                    s.add(h)
                    s.flush()
                    e, _ = consent.grant_consent(s, None, h, "visit", "events", "visit", notice_version=notice,
                                                 evidence=EVIDENCE["visit"])
                    v = Visit(owner_id=rep_id, hcp_id=h.id, occurred_at=utcnow(), signature=f"sig-{n}")
                    s.add(v)
                    s.flush()
                    written.update({("hcps.email", h.id): h.email, ("hcps.phone", h.id): h.phone,
                                    ("consent_events.evidence", e.id): e.evidence,
                                    ("visits.signature", v.id): v.signature})
                    s.commit()
                    s.remove()
                started.set()
                # Pace the writer like a user: a thread that re-takes SQLite's write lock the instant it lets
                # go starves the rotation, whose busy handler sleeps between tries (not fair queueing).
                time.sleep(0.005)
        except BaseException as exc:  # reported below
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        started.wait(timeout=60)
        runner = app.test_cli_runner()
        with app.app_context():
            result = runner.invoke(args=["crm", "keys", "rotate", "--batch-size", "2"])
            _db.session.remove()
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not errors, errors
    assert result.exit_code == 0, result.output
    assert "unreadable" not in result.output

    app.config["CRM_ENCRYPTION_KEYS"] = [KEY_B]
    app.extensions["crm_keyring"] = Keyring([KEY_B])
    ring_b = Keyring([KEY_B])
    with app.app_context():
        stored = _by_pk(_db.session)
        _db.session.remove()
    expected = {**clear, **written}
    assert set(expected) <= set(stored) and len(written) >= 12
    for key, plaintext in expected.items():
        assert ring_b.decrypt(key[0], stored[key]) == plaintext
