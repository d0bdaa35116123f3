"""Append-only proof for the consent ledger: triggers that refuse UPDATE and DELETE of ledger rows.

SQLite's ``INSERT OR REPLACE`` (and ``REPLACE INTO``) deletes a conflicting row and inserts the new
one without firing DELETE triggers (unless ``recursive_triggers`` is on), so a BEFORE INSERT trigger
refuses any insert that would meet an existing id or (source, external_id). On PostgreSQL ``INSERT ...
ON CONFLICT DO UPDATE`` is an UPDATE and meets the UPDATE trigger.

``trigger_statements(dialect)`` is the single source of the SQL: ``attach_triggers`` installs it on
``create_all`` and the Alembic migration executes the same statements.
"""

from __future__ import annotations

from sqlalchemy import DDL, Table, event

_MESSAGE = "consent_events is append-only: ledger rows are never updated or deleted"

_REPLACE_MESSAGE = "consent_events is append-only: an insert may not replace an existing ledger row"

_SQLITE = [
    "CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events "
    f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END",
    "CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events "
    f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END",
    # S608: constant text, no input reaches it
    "CREATE TRIGGER consent_events_no_replace BEFORE INSERT ON consent_events "  # noqa: S608
    "WHEN EXISTS (SELECT 1 FROM consent_events WHERE id = NEW.id) "
    "OR (NEW.external_id IS NOT NULL AND EXISTS (SELECT 1 FROM consent_events "
    "WHERE source = NEW.source AND external_id = NEW.external_id)) "
    f"BEGIN SELECT RAISE(ABORT, '{_REPLACE_MESSAGE}'); END",
]

_POSTGRESQL = [
    "CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'integrity_constraint_violation'; END; $$",
    "CREATE TRIGGER consent_events_no_update_delete BEFORE UPDATE OR DELETE ON consent_events "
    "FOR EACH ROW EXECUTE FUNCTION consent_events_append_only()",
    "CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only()",
]

_DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS consent_events_no_replace", "DROP TRIGGER IF EXISTS consent_events_no_update",
               "DROP TRIGGER IF EXISTS consent_events_no_delete"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS consent_events_no_truncate ON consent_events",
        "DROP TRIGGER IF EXISTS consent_events_no_update_delete ON consent_events",
        "DROP FUNCTION IF EXISTS consent_events_append_only()",
    ],
}


def trigger_statements(dialect_name: str) -> list[str]:
    """The statements that make ``consent_events`` append-only on ``dialect_name``."""
    if dialect_name == "sqlite":
        return list(_SQLITE)
    if dialect_name == "postgresql":
        return list(_POSTGRESQL)
    raise ValueError(f"no append-only triggers for dialect {dialect_name!r}")


def drop_statements(dialect_name: str) -> list[str]:
    """The statements that remove them again (for a migration's downgrade)."""
    return list(_DROP[dialect_name])


def attach_triggers(table: Table) -> None:
    for dialect in ("sqlite", "postgresql"):
        for statement in trigger_statements(dialect):
            event.listen(table, "after_create", DDL(statement).execute_if(dialect=dialect))
