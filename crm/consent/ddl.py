"""Append-only proof for the consent ledger: triggers that refuse UPDATE and DELETE of ledger rows
(the one exception: key rotation re-encrypting the evidence, below).

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

# Key rotation (``crm keys rotate``) is the one UPDATE the ledger allows: it re-encrypts these columns under
# the newest key, with a flag only the rotation sets, inside its own transaction, around its own statements
# (PostgreSQL: ``set_config('crm.key_rotation', 'on', true)``; SQLite: the connection function
# ``crm_key_rotation()``, see crm.db), after checking that the plaintext is unchanged. Every other column
# must stay as it was, so ``evidence_hash`` (SHA-256 of the plaintext) still proves the evidence.
ROTATABLE_COLUMNS = ("evidence",)
# The other columns of consent_events (SQLite compares them one by one; a test keeps this list complete).
LEDGER_COLUMNS = ("id", "hcp_id", "origin_hcp_id", "channel", "purpose", "event_type", "occurred_at", "recorded_at",
                  "source", "external_id", "captured_by_id", "captured_by_role", "notice_id", "notice_version",
                  "notice_text_hash", "evidence_hash", "evidence_hash_scheme", "valid_until", "refers_to_event_id",
                  "merged_from_event_id")
_SQLITE_ROTATION = " AND ".join(
    ["crm_key_rotation() = 1"]
    + [f"OLD.{c} IS NOT NULL AND NEW.{c} IS NOT NULL" for c in ROTATABLE_COLUMNS]
    + [f"NEW.{c} IS OLD.{c}" for c in LEDGER_COLUMNS])
_PG_ROTATION = (
    "TG_OP = 'UPDATE' AND current_setting('crm.key_rotation', true) = 'on' AND "
    + " AND ".join(f"OLD.{c} IS NOT NULL AND NEW.{c} IS NOT NULL" for c in ROTATABLE_COLUMNS)
    + f" AND (to_jsonb(NEW) - ARRAY[{', '.join(repr(c) for c in ROTATABLE_COLUMNS)}]::text[])"
    f" = (to_jsonb(OLD) - ARRAY[{', '.join(repr(c) for c in ROTATABLE_COLUMNS)}]::text[])")

_SQLITE = [
    "CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events "
    f"WHEN NOT ({_SQLITE_ROTATION}) BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END",
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
    f"BEGIN IF {_PG_ROTATION} THEN RETURN NEW; END IF; "
    f"RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'integrity_constraint_violation'; END; $$",
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
