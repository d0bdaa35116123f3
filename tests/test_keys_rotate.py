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
        def rotate(self, token: str) -> str:
            # the app saves a new phone number between our read and our write
            db.execute(text("UPDATE hcps SET phone = :v WHERE id = :id"),
                       {"v": self.encrypt("hcps.phone", "+1 555 0123"), "id": hcp_id})
            return super().rotate(token)

    report, batches = rotate_column(db, AppWritesMeanwhile([KEY_B, KEY_A]), table, table.c.phone, 10)
    assert (report.rotated, report.current, batches, report.done) == (0, 1, 1, True)
    db.expire_all()
    assert db.get(HCP, hcp_id).phone == "+1 555 0123"  # the app's write won
