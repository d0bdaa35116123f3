"""``crm keys rotate``: re-encrypt every encrypted column under the newest key, while the app serves.

Works on the ciphertext with plain SQL: nothing is decrypted into ORM objects, and ORM side effects
(``updated_at``, optimistic ``version``) are not triggered, because no business data changes. Each value
is decrypted as a value of its own ``table.column`` (one copied from another column counts as unreadable)
and encrypted again under the newest key, in that key's scheme (AES-GCM or Fernet, see crypto.py), so a
Fernet value moves to AES-GCM when an AES-GCM key is put in front. Rows go in primary-key order, in small
batches that each commit on their own, so the app keeps writing between them and a killed run simply
starts again: values already under the newest key are recognised and skipped.

``crm keys generate`` prints a new key to put in front of ``CRM_ENCRYPTION_KEYS``.

The consent ledger is append-only; its triggers let through one UPDATE only: the rotation's own
compare-and-set, with a transaction-local flag set around it (``rotation_allowed``), that changes the
encrypted column and nothing else. Before a value is written, its plaintext is checked to be unchanged.
Each batch that rewrote values leaves an audit record: column, counts and key ids, never a value.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import Column, Table, text
from tqdm import tqdm

from crm.audit import services as audit
from crm.db import DbSession
from crm.extensions import db
from crm.security.crypto import DecryptionError, EncryptedString, Keyring, generate_key, keyring

keys_cli = AppGroup("keys", help="Encryption keys.")


@dataclass
class ColumnReport:
    name: str
    rotated: int = 0
    current: int = 0
    unreadable: int = 0
    done: bool = False


def encrypted_columns(metadata: Any) -> list[tuple[Table, Column[Any]]]:
    """Every column whose type is ``EncryptedString``, found from the models, in a stable order."""
    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, EncryptedString):
                found.append((table, column))
    return found


class _Sql:
    """The three statements for one column, with quoted names; values travel as bound parameters."""

    def __init__(self, session: DbSession, table: Table, column: Column[Any]) -> None:
        quote = session.get_bind().dialect.identifier_preparer.quote
        pk = [c.name for c in table.primary_key.columns]
        self.pk = pk
        tbl, col = quote(table.name), quote(column.name)
        pk_list = ", ".join(quote(c) for c in pk)
        after = (f"{quote(pk[0])} > :k0" if len(pk) == 1
                 else f"({pk_list}) > ({', '.join(f':k{i}' for i in range(len(pk)))})")
        base = f"SELECT {pk_list}, {col} AS value FROM {tbl} WHERE {col} IS NOT NULL"  # noqa: S608
        self.first = text(f"{base} ORDER BY {pk_list} LIMIT :n")
        self.next = text(f"{base} AND {after} ORDER BY {pk_list} LIMIT :n")
        self.count = text(f"SELECT COUNT(*) FROM {tbl} WHERE {col} IS NOT NULL")  # noqa: S608
        match = " AND ".join(f"{quote(c)} = :k{i}" for i, c in enumerate(pk))
        # Compare-and-set: a value the app rewrote meanwhile (already under the newest key) is left alone.
        self.update = text(f"UPDATE {tbl} SET {col} = :new WHERE {match} AND {col} = :old")  # noqa: S608


@contextmanager
def rotation_allowed(session: DbSession) -> Iterator[None]:
    """Let the statements run inside this block re-encrypt append-only rows (the consent ledger).

    The flag is local to this connection's transaction and switched off again right after: PostgreSQL
    ``set_config(..., true)`` (undone by the commit or rollback at the latest), SQLite a function the
    ledger's trigger calls (registered per connection in crm.db).
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config('crm.key_rotation', 'on', true)"))
        yield
        # Not reached after an error: the failed transaction is rolled back, and the setting with it.
        conn.execute(text("SELECT set_config('crm.key_rotation', 'off', true)"))
        return
    flag = conn.connection.info.get("crm_key_rotation")
    if flag is None:
        raise RuntimeError("this SQLite connection was not prepared by crm.db (no crm_key_rotation flag)")
    flag["on"] = True
    try:
        yield
    finally:
        flag["on"] = False


def _audit_batch(session: DbSession, name: str, rotated: int, from_keys: Counter[str], ring: Keyring) -> None:
    audit.record(session, None, "keys.rotate", "encrypted_column", name, {
        "rows_rotated": rotated, "from_keys": dict(sorted(from_keys.items())), "to_key": ring.key_id(0),
    }, reason="crm keys rotate")


def rotate_column(
    session: DbSession, ring: Keyring, table: Table, column: Column[Any], batch_size: int,
    max_batches: int | None = None, progress: Any = None,
) -> tuple[ColumnReport, int]:
    """Re-encrypt one column in committed batches. Returns the report and the batches used."""
    sql = _Sql(session, table, column)
    column_type = column.type
    assert isinstance(column_type, EncryptedString)  # noqa: S101 - encrypted_columns() found it by this type
    context = column_type.context
    report = ColumnReport(f"{table.name}.{column.name}")
    last: tuple[Any, ...] | None = None
    batches = 0
    while max_batches is None or batches < max_batches:
        params: dict[str, Any] = {"n": batch_size}
        if last is not None:
            params.update({f"k{i}": v for i, v in enumerate(last)})
        rows = session.execute(sql.first if last is None else sql.next, params).all()
        if not rows:
            report.done = True
            break
        updates = []
        from_keys: Counter[str] = Counter()
        for row in rows:
            token = row.value
            if ring.is_current(token):
                report.current += 1
                continue
            try:
                from_keys[ring.key_id(ring.key_index(token, context))] += 1
                new = ring.rotate(token, context)
            except DecryptionError:
                # Not readable under any configured key (or not this column's): report it, never print
                # it, leave it untouched.
                report.unreadable += 1
                continue
            updates.append({"new": new, "old": token, **{f"k{i}": row[i] for i in range(len(sql.pk))}})
        if updates:
            with rotation_allowed(session):
                result = session.execute(sql.update, updates)
            changed = len(updates)
            if session.get_bind().dialect.supports_sane_multi_rowcount:
                # Rows the app rewrote meanwhile were left alone; the app writes under the newest key.
                changed = result.rowcount  # type: ignore[attr-defined]
                report.current += len(updates) - changed
            report.rotated += changed
            if changed:
                _audit_batch(session, report.name, changed, from_keys, ring)
        session.commit()  # one short transaction per batch: the app's writers wait milliseconds, not minutes
        batches += 1
        last = tuple(rows[-1][i] for i in range(len(sql.pk)))
        if progress is not None:
            progress.update(len(rows))
    return report, batches


@keys_cli.command("rotate")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(min=1),
              help="Rows per committed batch.")
@click.option("--max-batches", default=None, type=click.IntRange(min=1),
              help="Stop after this many batches in all (run again to continue).")
def rotate(batch_size: int, max_batches: int | None) -> None:
    """Re-encrypt personal data under the newest key of CRM_ENCRYPTION_KEYS (newest first)."""
    ring = keyring()
    session = db.session
    reports: list[ColumnReport] = []
    left = max_batches
    on_terminal = sys.stderr.isatty()
    for table, column in encrypted_columns(db.metadata):
        if left is not None and left <= 0:
            break
        total = session.execute(_Sql(session, table, column).count).scalar_one() if on_terminal else None
        session.commit()
        with tqdm(total=total, desc=f"{table.name}.{column.name}", unit="row", disable=not on_terminal) as bar:
            report, used = rotate_column(session, ring, table, column, batch_size, left, bar)
        reports.append(report)
        if left is not None:
            left -= used
    for report in reports:
        line = f"{report.name}: rotated {report.rotated}, already current {report.current}"
        if report.unreadable:
            line += f", unreadable {report.unreadable}"
        click.echo(line)
    finished = len(reports) == len(encrypted_columns(db.metadata)) and all(r.done for r in reports)
    if not finished:
        click.echo(f"stopped after {max_batches} batches; run the command again to continue")
    unreadable = sum(r.unreadable for r in reports)
    if unreadable:
        click.echo(f"error: {unreadable} values do not decrypt under any configured key; "
                   "add the missing key to CRM_ENCRYPTION_KEYS and run again", err=True)
        raise SystemExit(1)


@keys_cli.command("generate")
@click.option("--scheme", type=click.Choice(["aes-gcm", "fernet"]), default="aes-gcm", show_default=True,
              help="aes-gcm for new keys; fernet only to match an older installation.")
def generate(scheme: str) -> None:
    """Print a new encryption key: put it first in CRM_ENCRYPTION_KEYS, restart, then run `crm keys rotate`."""
    click.echo(generate_key(scheme))
