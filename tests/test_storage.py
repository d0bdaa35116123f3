"""Storage that holds up: UTC-only times, SQLite pragmas and IMMEDIATE transactions, field encryption."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from crm.db import NaiveDatetimeError, UTCDateTime, iso_z
from crm.extensions import db as _db
from crm.security.crypto import DecryptionError, Keyring, blind_index, normalise_email


def test_times_are_converted_to_utc_and_naive_refused(db, factory):
    from crm.timeline.services import record_interaction

    h = factory.hcp()
    paris = timezone(timedelta(hours=2))
    item, _ = record_interaction(db, None, hcp_ids=[h.id], occurred_at=datetime(2026, 6, 1, 12, tzinfo=paris),
                                 channel="visit", kind="visit.submitted")
    db.expire_all()
    assert item.occurred_at == datetime(2026, 6, 1, 10, tzinfo=UTC)
    assert iso_z(item.occurred_at) == "2026-06-01T10:00:00Z"
    with pytest.raises(NaiveDatetimeError):
        UTCDateTime().process_bind_param(datetime(2026, 6, 1), db.get_bind().dialect)


def test_sqlite_times_read_fast_read_the_same():
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.types import DateTime

    dialect = sqlite.dialect()
    fast = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    generic = DateTime().dialect_impl(dialect).result_processor(dialect, None)
    for stored in ("2026-01-02 09:00:00.000000", "2026-01-02 09:00:00.123456", "1999-12-31 23:59:59.999999",
                   "2026-01-02 09:00:00", "2026-01-02"):
        assert fast(stored) == generic(stored).replace(tzinfo=UTC)
        assert fast(stored).tzinfo is UTC
    assert fast(None) is None


def test_sqlite_pragmas(app, db):
    if db.get_bind().dialect.name != "sqlite":
        assert db.execute(text("SELECT 1")).scalar() == 1  # PostgreSQL: nothing SQLite-specific to check
        return
    assert db.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert db.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert db.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    assert db.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL: durable on commit in WAL mode
    assert db.execute(text("PRAGMA cache_size")).scalar() == -32000
    assert db.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 10000


def test_encrypted_columns_hold_ciphertext_and_are_bound_to_their_column(db, factory):
    h = factory.hcp(email="Dr.Who@Clinic.example", phone="+1 555 123 4567")
    raw = db.execute(text("SELECT email, phone FROM hcps WHERE id = :i"), {"i": h.id}).one()
    assert "Clinic" not in raw.email and "555" not in raw.phone
    # copy the email ciphertext into the phone column: it must not decrypt as a phone number
    db.execute(text("UPDATE hcps SET phone = email WHERE id = :i"), {"i": h.id})
    db.expire_all()
    from crm.hcps.models import HCP

    with pytest.raises(DecryptionError):
        db.get(HCP, h.id).phone  # noqa: B018


def test_keyring_rotation_and_unknown_key():
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Keyring([old]).encrypt("hcps.email", "a@b.c")
    both = Keyring([new, old])
    assert both.decrypt("hcps.email", token) == "a@b.c" and not both.is_current(token)
    rotated = both.rotate(token, "hcps.email")
    assert both.is_current(rotated) and Keyring([new]).decrypt("hcps.email", rotated) == "a@b.c"
    with pytest.raises(DecryptionError):
        Keyring([Fernet.generate_key().decode()]).decrypt("hcps.email", token)


def test_blind_index_normalises_nfc_trim_and_case(app):
    composed, decomposed = "jos\u00e9@h.example", "jose\u0301@h.example"
    assert normalise_email(f"  {decomposed.upper()} ") == composed
    assert blind_index(composed, key="k") == blind_index(f" {decomposed.upper()}", key="k")
    assert blind_index("a@b.c", key="k") != blind_index("a@b.c", key="other")


@pytest.mark.committing
def test_concurrent_writers_never_see_database_is_locked(committing_app):
    """Several threads writing at once (as gunicorn workers would) all succeed: IMMEDIATE + busy timeout."""
    from crm.hcps.models import HCP
    from crm.timeline.services import record_interaction

    with committing_app.app_context():
        h = HCP(first_name="A", last_name="B", profession="gp")
        _db.session.add(h)
        _db.session.commit()
        hcp_id = h.id
        _db.session.remove()

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with committing_app.app_context():
                for i in range(10):
                    record_interaction(_db.session, None, hcp_ids=[hcp_id], occurred_at=datetime.now(UTC),
                                       channel="email", kind="email.opened", source="esp",
                                       external_id=f"w{n}-{i}")
                    _db.session.commit()
                _db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with committing_app.app_context():
        assert _db.session.execute(text("SELECT count(*) FROM interactions")).scalar() == 40
        _db.session.remove()


@pytest.mark.committing
def test_same_external_id_from_two_workers_at_once_is_recorded_once(committing_app):
    from crm.hcps.models import HCP
    from crm.timeline.services import record_interaction

    with committing_app.app_context():
        h = HCP(first_name="A", last_name="B", profession="gp")
        _db.session.add(h)
        _db.session.commit()
        hcp_id = h.id
        _db.session.remove()

    barrier = threading.Barrier(3)
    ids: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with committing_app.app_context():
                barrier.wait()
                item, _ = record_interaction(_db.session, None, hcp_ids=[hcp_id], occurred_at=datetime.now(UTC),
                                             channel="email", kind="email.opened", source="esp",
                                             external_id="same-event")
                _db.session.commit()
                ids.append(item.id)
                _db.session.remove()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 1
    with committing_app.app_context():
        n = _db.session.execute(text("SELECT count(*) FROM interactions WHERE external_id='same-event'")).scalar()
        assert n == 1
        _db.session.remove()
