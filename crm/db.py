"""Declarative base, naming convention, UTC time type, SQLite hardening and after-commit hooks."""

from __future__ import annotations

import json
import os
import sqlite3
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any

import orjson
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session
from sqlalchemy.types import TypeDecorator

# What services take: a plain Session or Flask-SQLAlchemy's scoped_session proxy (``db.session``).
DbSession = Session | scoped_session[Any]


def as_session(session: DbSession) -> Session:
    """The Session itself behind a scoped_session proxy (for the accessors the proxy does not offer)."""
    return session() if isinstance(session, scoped_session) else session

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

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # SQLite holds the text this type wrote ("YYYY-MM-DD HH:MM:SS.ffffff", UTC): the C ISO parser
        # reads it several times faster than the generic regex-based one (timeline pages read many).
        generic = super().result_processor(dialect, coltype)

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    return datetime.fromisoformat(value).replace(tzinfo=UTC)
                except ValueError:
                    pass
            return generic(value) if generic is not None else value

        return process


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


class StoredJSON:
    """A JSON value as the database stores it (its text), passed through unparsed: the API's JSON
    provider (crm.web) writes the text into the response as it is. Compares equal to the value it
    holds, for code that looks inside (it parses then)."""

    __slots__ = ("raw",)

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def value(self) -> Any:
        return json.loads(self.raw)

    def __eq__(self, other: object) -> bool:
        return self.value() == (other.value() if isinstance(other, StoredJSON) else other)

    __hash__ = None  # type: ignore[assignment]  # like the dict it stands for

    def __repr__(self) -> str:
        return f"StoredJSON({self.raw!r})"


# -- SQLite: WAL, foreign keys, busy timeout, IMMEDIATE writers and DEFERRED readers -------------

def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from pysqlite so that we can BEGIN IMMEDIATE ourselves.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    # 32 MB of page cache per connection instead of SQLite's 2 MB: the random keys of the unique
    # indexes (event ids, blind indexes) otherwise miss the cache on most inserts once tables grow.
    cur.execute("PRAGMA cache_size=-32000")
    # Checkpoint every ~40 MB of WAL instead of ~4 MB: pages that every batch touches (index pages
    # of random keys) are copied into the database once per checkpoint, not once per few batches.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()
    # The flag the consent ledger's trigger reads to let `crm keys rotate` re-encrypt evidence (and nothing
    # else); off unless crm.security.cli turns it on around its own statements on this connection.
    flag = _record.info["crm_key_rotation"] = {"on": False}
    dbapi_conn.create_function("crm_key_rotation", 0, lambda: 1 if flag["on"] else 0)


# How SQLite transactions begin (docs/architecture.md, "Transaction modes"). IMMEDIATE takes the write
# lock up front: a deferred transaction that later writes can fail at once with "database is locked"
# (another writer holds the lock, or committed since this transaction's snapshot), and SQLite's busy
# handler does not help there; IMMEDIATE waits its turn (busy timeout). DEFERRED is for transactions
# that only read: they never wait for the write lock. A deferred transaction runs with
# ``PRAGMA query_only`` on, so a write in it fails before it changes anything, raised as
# ``WriteInReadTransaction``; the request boundary (crm/web.py) then replays the request as a writer.
IMMEDIATE = "IMMEDIATE"
DEFERRED = "DEFERRED"
_sqlite_begin: ContextVar[str] = ContextVar("crm_sqlite_begin", default=IMMEDIATE)


class WriteInReadTransaction(RuntimeError):
    """A statement tried to write inside a read-only (deferred) SQLite transaction; nothing was written."""


def set_sqlite_begin(mode: str) -> None:
    """How SQLite transactions begun from now on in this context start: ``IMMEDIATE`` (the default,
    outside requests: CLI, jobs, tests) or ``DEFERRED`` (read-only; set by the request boundary for
    GET/HEAD/OPTIONS). A transaction already begun keeps its mode. No effect on PostgreSQL."""
    if mode not in (IMMEDIATE, DEFERRED):
        raise ValueError(f"unknown SQLite begin mode {mode!r}")
    _sqlite_begin.set(mode)


def sqlite_begin() -> str:
    """The mode SQLite transactions begun now in this context take."""
    return _sqlite_begin.get()


def _sqlite_on_begin(conn: Any) -> None:
    # ``PRAGMA query_only`` is run only when a connection changes mode, and a pooled connection keeps
    # its mode between checkouts: every flag PRAGMA run (even one that changes nothing) expires SQLite's
    # prepared statements, and re-preparing a timeline page costs a quarter of the page. So a read
    # after a read runs no PRAGMA; the first write transaction after reads turns it off. Code that takes
    # a raw DBAPI connection from the pool (no begin: ``engine.raw_connection()``) may find it read-only.
    deferred = _sqlite_begin.get() == DEFERRED
    info = conn.info  # the DBAPI connection's: the pragma's state outlives the checkout
    if deferred:
        # Neither statement can wait or fail on a lock: straight to the driver, without the statement
        # machinery (every read request begins this way).
        driver = conn.connection.driver_connection
        if not info.get("crm_query_only", False):
            driver.execute("PRAGMA query_only=ON")
            info["crm_query_only"] = True
        driver.execute("BEGIN")
        return
    if info.get("crm_query_only", False):
        conn.exec_driver_sql("PRAGMA query_only=OFF")
        info["crm_query_only"] = False
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_on_error(ctx: Any) -> None:
    if (ctx.connection is not None and ctx.connection.info.get("crm_query_only")
            and isinstance(ctx.original_exception, sqlite3.OperationalError)
            and "readonly" in str(ctx.original_exception)):
        raise WriteInReadTransaction(
            "a write in a read-only (deferred) SQLite transaction; nothing was written: "
            f"{str(ctx.statement).split(None, 1)[0] if ctx.statement else ''}"
        ) from ctx.original_exception


def in_read_transaction(session: DbSession) -> bool:
    """Whether ``session``'s transaction is a read-only (deferred) SQLite one: writes must wait for
    ``write_after_reads``. Always False on PostgreSQL."""
    real = as_session(session)
    if real.get_bind().dialect.name != "sqlite":
        return False
    return bool(real.connection().info.get("crm_query_only"))


def insert_after_reads(session: DbSession, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` now, or, inside a read-only transaction, in a short write
    transaction of its own at the end of the request (``write_after_reads``), before the response
    leaves. For records a read produces (the sensitive-read log), so that reads never wait for the
    write lock."""
    from sqlalchemy import insert

    if not rows:
        return
    if in_read_transaction(session):
        as_session(session).info.setdefault("after_reads", []).append((table, rows))
        return
    session.execute(insert(table), rows)


def write_after_reads(session: DbSession) -> int:
    """Write what ``insert_after_reads`` kept back, in one IMMEDIATE transaction, and commit it.
    Returns the number of rows written. Called by the request boundary after the read committed."""
    from sqlalchemy import insert

    real = as_session(session)
    pending = real.info.pop("after_reads", [])
    if not pending:
        return 0
    mode = _sqlite_begin.get()
    _sqlite_begin.set(IMMEDIATE)
    try:
        if real.get_transaction() is not None:
            real.commit()  # the read transaction is over: the writes need a transaction of their own
        for table, rows in pending:
            real.execute(insert(table), rows)
        real.commit()
    except BaseException:
        real.rollback()
        raise
    finally:
        _sqlite_begin.set(mode)
    return sum(len(rows) for _table, rows in pending)


def drop_after_reads(session: DbSession) -> None:
    """Forget what ``insert_after_reads`` kept back (the request failed, or is replayed)."""
    as_session(session).info.pop("after_reads", None)


# -- did this transaction write? -----------------------------------------------------------------

# Statements that change nothing; anything else (INSERT, UPDATE, DELETE, a CTE, a SAVEPOINT) counts as a
# write, so an unknown statement errs on the side of committing.
_READ_STATEMENTS = ("SELECT", "PRAGMA", "BEGIN", "SHOW", "EXPLAIN")


def _on_begin_clear_writes(conn: Any) -> None:
    conn.info["crm_wrote"] = False


def _on_execute_note_write(conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any,
                           _executemany: bool) -> None:
    if not statement.lstrip()[:7].upper().startswith(_READ_STATEMENTS):
        conn.info["crm_wrote"] = True


def wrote_nothing(session: DbSession) -> bool:
    """Whether ``session``'s transaction has nothing to commit: no statement that writes was run in it,
    no change waits to be flushed and no after-commit hook waits. The request boundary then skips the
    COMMIT; the transaction ends when the session is released."""
    real = as_session(session)
    if real.get_transaction() is None:
        return True
    if real.info.get("after_commit") or real.info.get("after_reads") or real.new or real.dirty or real.deleted:
        return False
    return not real.connection().info.get("crm_wrote", True)


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
    event.listen(engine, "begin", _on_begin_clear_writes)
    event.listen(engine, "before_cursor_execute", _on_execute_note_write)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        event.listen(engine, "handle_error", _sqlite_on_error)


# -- after-commit side effects -------------------------------------------------------------------

def on_commit(session: DbSession, fn: Callable[[], None]) -> None:
    """Run ``fn`` after the session's outermost transaction commits; drop it on rollback.

    Emails, ERP calls and other side effects go through here, so they never happen for data that
    was rolled back. Releasing a SAVEPOINT is not a commit: hooks wait for the root transaction, and
    a hook registered inside a savepoint that rolls back is dropped with it.
    """
    real = as_session(session)  # the proxy does not expose the transaction accessors
    if real.get_transaction() is None:
        real.begin()  # the hook belongs to a transaction: the one that would start with the next write
    current = real.get_nested_transaction() or real.get_transaction()
    real.info.setdefault("after_commit", []).append((current, fn))


def keep_on_error(session: DbSession) -> None:
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
def _drop_after_rollback(session: DbSession, previous_transaction: Any) -> None:
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


def among(session: DbSession, column: Any, values: Any) -> Any:
    """``column IN (values)`` for a large set of values, as one bound parameter: ``= ANY(:array)`` on
    PostgreSQL, ``IN (SELECT value FROM json_each(:json))`` on SQLite. The statement text stays the
    same whatever the number of values, so it is neither rebuilt nor re-parsed per call, and no
    engine limit on bound parameters applies. Values must be strings or integers."""
    from sqlalchemy import String, any_, bindparam, func, select
    from sqlalchemy.dialects.postgresql import ARRAY

    if session.get_bind().dialect.name == "postgresql":
        # An array, not a subquery: the planner can combine "= ANY" conditions with OR on indexes.
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    rows = func.json_each(bindparam(None, json.dumps(list(values)), type_=String())).table_valued("value")
    return column.in_(select(rows.c.value))


def insert_ignoring_conflicts(
    session: DbSession,
    table: Any,
    rows: list[dict[str, Any]],
    conflict_columns: list[str],
    returning: list[str],
) -> list[tuple[Any, ...]]:
    """Insert many rows in a few statements, skipping rows that collide on ``conflict_columns``.

    Returns the ``returning`` columns of the rows actually inserted, so a caller can tell its own rows
    from those a concurrent writer (or an earlier replay) put there first. Works on SQLite (3.35+)
    and PostgreSQL through multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING``. The rows must
    have the same keys; values go through the columns' own types (``bulk_parameters``), and the
    returned values are as the driver gives them (meant for ids and plain strings).
    """
    if not rows:
        return []
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name not in ("postgresql", "sqlite"):  # pragma: no cover - only the two supported engines
        raise RuntimeError(f"insert_ignoring_conflicts does not support {dialect.name}")
    keys, params = bulk_parameters(table, rows, dialect)
    return _insert_returning(conn, table, keys, params, conflict_columns, returning)


def insert_driver_rows(
    session: DbSession,
    table: Any,
    keys: Sequence[str],
    rows: list[tuple[Any, ...]],
    conflict_columns: list[str],
    returning: list[str],
    *,
    json_keys: Collection[str] = (),
) -> list[tuple[Any, ...]]:
    """``insert_ignoring_conflicts`` for rows already in the driver's form, for the hot bulk writers
    (the email webhook, ``record_interactions``) that build their parameters straight from their input:
    one tuple per row in the order of ``keys``, times as ``driver_time`` gives them, JSON columns
    (``json_keys``) as JSON text (``dump_json``), no other type processing (so no encrypted column
    unless its values are already ciphertexts). The same answer as ``insert_ignoring_conflicts``: the
    ``returning`` columns of the rows inserted, not of those skipped."""
    if not rows:
        return []
    return _insert_returning(session.connection(), table, keys, rows, conflict_columns, returning,
                             json_keys=json_keys, single_row_first=True)


def _insert_returning(conn: Any, table: Any, keys: Sequence[str], rows: list[tuple[Any, ...]],
                      conflict_columns: list[str], returning: list[str], *, json_keys: Collection[str] = (),
                      single_row_first: bool = False) -> list[tuple[Any, ...]]:
    """The statements of ``insert_ignoring_conflicts`` and ``insert_driver_rows``, for ``rows`` of driver
    values in the order of ``keys``: ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, on PostgreSQL one
    binary array per column unnested into rows (a short statement psycopg and the server parse once; JSON
    columns of ``json_keys`` travel as text), on SQLite multi-row ``VALUES`` (first, with
    ``single_row_first``, one prepared single-row statement when the answer can be known without
    ``RETURNING``: ``_sqlite_executemany``). Runs on the driver's cursor inside the session's transaction,
    so it marks the transaction as written itself (the statement events do not see it: ``wrote_nothing``)."""
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    # Names and types come from the table's metadata, quoted; every value is a bound parameter.
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(table.c[k].name) for k in keys)}) "
    skip = f" ON CONFLICT ({', '.join(quote(table.c[c].name) for c in conflict_columns)}) DO NOTHING"
    tail = f"{skip} RETURNING {', '.join(quote(table.c[c].name) for c in returning)}"
    out: list[tuple[Any, ...]] = []
    conn.info["crm_wrote"] = True
    if dialect.name == "postgresql":
        arrays = ", ".join(f"%b::{'TEXT' if k in json_keys else table.c[k].type.compile(dialect=dialect)}[]"
                           for k in keys)
        columns = ", ".join(f"c{i}::JSON" if k in json_keys else f"c{i}" for i, k in enumerate(keys))
        aliases = ", ".join(f"c{i}" for i in range(len(keys)))
        sql = f"{head}SELECT {columns} FROM unnest({arrays}) AS t({aliases}){tail}"  # noqa: S608
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:  # the session's connection and transaction
            for start in range(0, len(rows), 5000):
                # %b: arrays sent in binary, no per-element quoting
                cursor.execute(sql, [list(values) for values in zip(*rows[start:start + 5000], strict=True)])
                out += [tuple(r) for r in cursor.fetchall()]
        return out
    if dialect.name != "sqlite":  # pragma: no cover - only the two supported engines
        raise RuntimeError(f"inserting rows ignoring conflicts is not supported on {dialect.name}")
    one = "(" + ", ".join(["?"] * len(keys)) + ")"
    if single_row_first:
        fast = _sqlite_executemany(conn, table, keys, rows, head + "VALUES " + one + skip, returning)
        if fast is not None:
            return fast
    per_statement = max(1, min(2000, _MAX_PARAMETERS // len(keys)))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        sql = head + "VALUES " + ", ".join([one] * len(chunk)) + tail
        out += [tuple(r) for r in conn.exec_driver_sql(sql, tuple(chain.from_iterable(chunk))).fetchall()]
    return out


def _sqlite_executemany(conn: Any, table: Any, keys: Sequence[str], rows: list[tuple[Any, ...]], sql: str,
                        returning: list[str]) -> list[tuple[Any, ...]] | None:
    """SQLite: the rows through one prepared single-row statement (``executemany``: no statement of
    thousands of placeholders to build and parse, no rows to return), when the answer can be known without
    ``RETURNING``: every row was inserted (no conflict skipped one; a writing SQLite transaction holds the
    write lock, so nobody else inserts meanwhile), and the returned columns are among the rows' own values
    or are the integer primary key, which SQLite then gave out in order after the largest one (checked:
    ``max(id)`` before and after). Otherwise the savepoint is rolled back and ``None`` says: do it the
    general way (which also raises a failure as SQLAlchemy does). Straight on the driver's connection,
    inside the session's transaction: these few statements need none of the statement machinery."""
    pk = [c.key for c in table.primary_key.columns]
    generated = [c for c in returning if c not in keys]
    if generated and (generated != pk or len(pk) != 1):
        return None
    quote = conn.dialect.identifier_preparer.quote
    highest = f"SELECT max({quote(table.c[pk[0]].name)}) FROM {quote(table.name)}" if generated else ""  # noqa: S608
    cursor = conn.connection.driver_connection.cursor()
    try:
        before = (cursor.execute(highest).fetchone()[0] or 0) if generated else 0
        cursor.execute("SAVEPOINT crm_bulk_insert")
        try:
            done = cursor.executemany(sql, rows).rowcount == len(rows)
            if done and generated:
                done = (cursor.execute(highest).fetchone()[0] or 0) == before + len(rows)
        except sqlite3.Error:
            done = False
        if not done:
            cursor.execute("ROLLBACK TO crm_bulk_insert")
        cursor.execute("RELEASE crm_bulk_insert")
    finally:
        cursor.close()
    if not done:
        return None
    index = {k: i for i, k in enumerate(keys)}
    if not generated:
        if len(returning) == 1:
            at = index[returning[0]]
            return [(row[at],) for row in rows]
        return [tuple(row[index[c]] for c in returning) for row in rows]
    return [tuple(before + 1 + n if c == pk[0] else row[index[c]] for c in returning) for n, row in enumerate(rows)]


def driver_time(dialect_name: str) -> Callable[[datetime], Any]:
    """An aware time as the driver takes it for a ``UTCDateTime`` column, without the type's processing:
    PostgreSQL takes the datetime itself, SQLite the UTC text ``UTCDateTime`` writes (the same text, so
    times written either way compare and sort alike). Naive times are refused, as the type does."""
    if dialect_name != "sqlite":
        def aware(value: datetime) -> datetime:
            if value.tzinfo is None or value.utcoffset() is None:
                raise NaiveDatetimeError("naive datetime refused: times must carry an offset")
            return value
        return aware

    return _sqlite_time_text


@lru_cache(maxsize=8192)
def _sqlite_time_text(value: datetime) -> str:
    """``UTCDateTime``'s SQLite text of an aware time (cached: a batch's writers format the same instants,
    and webhook times repeat within a batch)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError("naive datetime refused: times must carry an offset")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # "YYYY-MM-DD HH:MM:SS.ffffff", the offset left off


def dump_json(value: Any) -> str:
    """JSON text of a value for a JSON column (``insert_driver_rows``): orjson, compact; the standard
    library for what orjson does not take (integers beyond 64 bits, a read-only mapping...)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value if not isinstance(value, Mapping) or isinstance(value, dict) else dict(value))


_MAX_PARAMETERS = 30_000  # SQLite allows 32,766 bound parameters per statement, PostgreSQL 65,535


def bulk_parameters(
    table: Any,
    rows: list[dict[str, Any]],
    dialect: Any,
    *,
    same: dict[str, Any] | None = None,
    columns: dict[str, list[Any]] | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """``(column keys, one tuple of driver values per row)`` for a bulk write of ``rows`` (all with the
    same keys), without SQLAlchemy's per-row statement machinery, which costs more than the write
    itself at batch sizes.

    Values are converted column by column by the columns' own types for this dialect (encryption,
    UTC times, JSON); client-side defaults of columns the rows leave out are evaluated once for the
    batch. ``same`` holds values shared by every row (they win over the rows' own; an encrypted one
    is still encrypted per row, so no two rows share a ciphertext); ``columns`` one value per row for
    further columns.
    """
    same = {**_batch_defaults(table, {*rows[0], *(same or ()), *(columns or ())}), **(same or {})}
    converted: dict[str, Any] = {}
    from crm.security.crypto import EncryptedString

    for key in rows[0]:
        if key not in same and key not in (columns or {}):
            converted[key] = _convert(_processor(table, key, dialect), [row[key] for row in rows],
                                      memo=not isinstance(table.c[key].type, EncryptedString))
    for key, values in (columns or {}).items():
        if key not in same:
            converted[key] = _convert(_processor(table, key, dialect), values,
                                      memo=not isinstance(table.c[key].type, EncryptedString))
    for key, value in same.items():
        proc = _processor(table, key, dialect)
        if proc is not None and isinstance(table.c[key].type, EncryptedString):
            converted[key] = _convert(proc, [value] * len(rows))
        else:
            converted[key] = [value if proc is None else proc(value)] * len(rows)
    keys = list(converted)
    return keys, list(zip(*converted.values(), strict=True))


def _processor(table: Any, key: str, dialect: Any) -> Callable[[Any], Any] | None:
    from crm.security.crypto import EncryptedString

    column_type = table.c[key].type
    if isinstance(column_type, EncryptedString):
        # The keyring taken once for the batch's column, not through the application for each value
        # (its impl, Text, converts nothing further on either dialect).
        return column_type.batch_encryptor()
    return column_type.dialect_impl(dialect).bind_processor(dialect)


_MEMO_TYPES = (datetime, str, int, bool)


def _convert(proc: Callable[[Any], Any] | None, values: list[Any], *, memo: bool = False) -> list[Any]:
    """``values`` through a column type's bind processor (None: passed through as they are).

    ``memo``: convert each distinct value once (times repeat within a batch: the batch's "now", the
    instants shared by an item and its participants); never for encrypting types, whose every
    value must be its own ciphertext."""
    if proc is None:
        return values
    keep_none = proc(None) is None
    if memo:
        done: dict[Any, Any] = {}
        out: list[Any] = []
        for v in values:
            if v is None and keep_none:
                out.append(None)
            elif type(v) in _MEMO_TYPES:
                if v not in done:
                    done[v] = proc(v)
                out.append(done[v])
            else:
                out.append(proc(v))
        return out
    if keep_none:
        return [None if v is None else proc(v) for v in values]
    return [proc(v) for v in values]


def _batch_defaults(table: Any, given: Any) -> dict[str, Any]:
    """Client-side column defaults for the columns a batch leaves out, evaluated once for the batch
    (a callable default is called without an execution context: a context-dependent one would fail
    loudly here rather than be skipped)."""
    out = {}
    for col in table.columns:
        default = col.default
        if col.key in given or default is None:
            continue
        if default.is_scalar:
            out[col.key] = default.arg
        elif default.is_callable:
            out[col.key] = default.arg(None)
    return out


# -- hot read statements, compiled once and run on the driver's cursor ---------------------------

_MISSING = object()


class DriverStatement:
    """A SELECT compiled once for one dialect and run straight on the session connection's DBAPI
    cursor: rows come back as the driver's tuples, without SQLAlchemy's per-execution work (cache key,
    execution context, result object). For the few statements every request runs (the bearer token's
    viewer, a timeline page), whose columns need no result processing.

    It is still a statement of the session's transaction (``Session.connection``: the SQLite begin
    mode, the write tracking), still seen by the engine's ``before_cursor_execute`` and
    ``after_cursor_execute`` listeners (statement counts in tests, the write tracker), and a driver
    error is raised as SQLAlchemy raises it (``DBAPIError`` subclasses, ``handle_error`` listeners, a
    lost connection invalidated). Bound values go through their types' bind processors, as SQLAlchemy
    would send them. Statements with expanding (``IN``), literal-execute or callable parameters are
    refused: ``DriverStatement.of`` returns None for them and ``driver_rows`` runs them through SQLAlchemy.
    (It reads the compiled statement's bind processors, ``SQLCompiler._bind_processors``, and runs the
    cursor through ``Connection._cursor_execute``, SQLAlchemy's own path for statements it runs on a
    cursor itself, with its ``_handle_dbapi_exception``: private names, which tests/test_request_path.py
    checks against every SQLAlchemy upgrade.)"""

    __slots__ = ("sql", "_binds", "_positional")

    def __init__(self, stmt: Any, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params or compiled.escaped_bind_names:
            raise ValueError("a DriverStatement takes no expanding, literal-execute or escaped parameters")
        processors = compiled._bind_processors
        by_name: dict[str, tuple[str, Any, Any]] = {}
        for bind, name in compiled.bind_names.items():
            if bind.callable is not None:
                raise ValueError("a DriverStatement takes no parameter whose value is computed at execution")
            fixed = _MISSING if bind.required else bind.value
            by_name[name] = (bind.key, fixed, processors.get(name))
        self.sql: str = compiled.string
        self._positional = bool(compiled.positional)
        names = list(compiled.positiontup or []) if self._positional else list(by_name)
        self._binds = [(name, *by_name[name]) for name in names]

    @classmethod
    def of(cls, stmt: Any, dialect: Any) -> DriverStatement | None:
        try:
            return cls(stmt, dialect)
        except ValueError:
            return None

    def parameters(self, params: dict[str, Any]) -> Any:
        values = []
        for _name, key, fixed, process in self._binds:
            value = params[key] if fixed is _MISSING else params.get(key, fixed)
            values.append(process(value) if process is not None else value)
        if self._positional:
            return tuple(values)
        return {name: value for (name, *_rest), value in zip(self._binds, values, strict=True)}

    def rows(self, conn: Any, params: dict[str, Any]) -> list[Any]:
        """Run with ``params`` (by bind name) on ``conn`` (a session's ``connection()``, in its
        transaction); every row, as the driver returns them."""
        parameters = self.parameters(params)
        cursor = conn.connection.cursor()
        try:
            conn._cursor_execute(cursor, self.sql, parameters)  # events, error translation, as SQLAlchemy's own
            try:
                return list(cursor.fetchall())
            except BaseException as exc:
                conn._handle_dbapi_exception(exc, self.sql, parameters, cursor, None)
                raise  # pragma: no cover - the handler always raises
        finally:
            cursor.close()


_driver_statements: weakref.WeakKeyDictionary[Any, dict[Any, DriverStatement | None]] = weakref.WeakKeyDictionary()


def driver_rows(session: DbSession, key: Any, build: Callable[[str], Any], params: dict[str, Any]) -> list[Any]:
    """Every row of the SELECT ``build(dialect name)`` with ``params``, in ``session``'s transaction, as the
    driver returns them: through its ``DriverStatement``, compiled on first use and kept per dialect
    under ``key`` (``build`` must give the same statement for the same key), or through SQLAlchemy when
    it cannot run that way (expanding parameters). Flush first when the session may hold pending writes
    the rows must include."""
    conn = as_session(session).connection()
    dialect = conn.dialect
    known = _driver_statements.get(dialect)
    if known is None:
        known = _driver_statements[dialect] = {}
    try:
        statement = known[key]
    except KeyError:
        statement = known[key] = DriverStatement.of(build(dialect.name), dialect)
    if statement is None:
        return list(conn.execute(build(dialect.name), params).all())
    return statement.rows(conn, params)
