"""Declarative base, naming convention, UTC time type, SQLite hardening and after-commit hooks."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session
from sqlalchemy.types import TypeDecorator

# Stable constraint names on SQLite and PostgreSQL alike, so Alembic can find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class NaiveDatetimeError(ValueError):
    """A datetime without an offset reached the database layer."""


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive values are refused, never guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError("naive datetime refused: times must carry an offset")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


def iso_z(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, the one time format the API returns."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- SQLite: WAL, foreign keys, busy timeout, BEGIN IMMEDIATE ------------------------------------

def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from pysqlite so that we can BEGIN IMMEDIATE ourselves.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_on_begin(conn: Any) -> None:
    # Every transaction takes the write lock up front: a deferred transaction that later writes can
    # fail at once with "database is locked" instead of waiting; IMMEDIATE waits its turn (busy timeout).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _dispose_after_fork() -> None:
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_dispose_after_fork)


def harden_engine(engine: Engine) -> None:
    """Apply the per-dialect settings once per engine; remember it for disposal after fork."""
    if engine in _engines:
        return
    _engines.add(engine)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)


# -- after-commit side effects -------------------------------------------------------------------

def on_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` after the session's outermost transaction commits; drop it on rollback.

    Emails, ERP calls and other side effects go through here, so they never happen for data that
    was rolled back. Releasing a SAVEPOINT is not a commit: hooks wait for the root transaction, and
    a hook registered inside a savepoint that rolls back is dropped with it.
    """
    if isinstance(session, scoped_session):
        session = session()  # the proxy does not expose the transaction accessors
    if session.get_transaction() is None:
        session.begin()  # the hook belongs to a transaction: the one that would start with the next write
    current = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault("after_commit", []).append((current, fn))


def keep_on_error(session: Session) -> None:
    """Ask the request boundary to commit this transaction even though the response is an error.

    For records that exist because of the error, such as a failed login kept for the throttle.
    """
    session.info["keep_on_error"] = True


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    # SQLAlchemy also sends after_commit when a SAVEPOINT is released; only the root commit counts.
    if session.in_nested_transaction():
        return
    pending = session.info.pop("after_commit", [])
    for _transaction, fn in pending:
        fn()


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_rollback(session: Session, previous_transaction: Any) -> None:
    pending = session.info.get("after_commit")
    if not pending:
        return
    if previous_transaction.parent is None:
        session.info.pop("after_commit", None)
        return

    def inside_rolled_back(transaction: Any) -> bool:
        while transaction is not None:
            if transaction is previous_transaction:
                return True
            transaction = transaction.parent
        return False

    session.info["after_commit"] = [(t, fn) for t, fn in pending if not inside_rolled_back(t)]


def insert_ignoring_conflicts(
    session: Session,
    table: Any,
    rows: list[dict[str, Any]],
    conflict_columns: list[str],
    returning: list[str],
) -> list[Any]:
    """Insert many rows in a few statements, skipping rows that collide on ``conflict_columns``.

    Returns the ``returning`` columns of the rows actually inserted, so a caller can tell its own rows
    from those a concurrent writer (or an earlier replay) put there first. Works on SQLite (3.35+)
    and PostgreSQL through ``INSERT ... ON CONFLICT DO NOTHING RETURNING``.
    """
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:  # pragma: no cover - only the two supported engines
        raise RuntimeError(f"insert_ignoring_conflicts does not support {dialect}")
    stmt = (
        dialect_insert(table)
        .on_conflict_do_nothing(index_elements=conflict_columns)
        .returning(*[table.c[name] for name in returning])
    )
    # executemany with RETURNING: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
    return list(session.execute(stmt, rows).all())
