"""consent ledger: refuse replacing inserts (SQLite), keyed evidence hash scheme

Revision ID: bbda9da93b73
Revises: 5c978c5c2a31
Create Date: 2026-12-03 13:30:00

- SQLite: a BEFORE INSERT trigger refuses an insert that meets an existing ledger id or
  (source, external_id): ``INSERT OR REPLACE`` would otherwise delete and rewrite a ledger row
  without firing the DELETE trigger. (PostgreSQL's ``ON CONFLICT DO UPDATE`` already meets the
  UPDATE trigger.)
- ``consent_events.evidence_hash_scheme``: how ``evidence_hash`` was computed. Rows written before
  this revision keep NULL (a plain SHA-256 of the evidence); they are not rewritten (the ledger is
  append-only). New rows say ``hmac-sha256`` (keyed, see crm/consent/services.py).
"""
from alembic import op
import sqlalchemy as sa


revision = 'bbda9da93b73'
down_revision = '5c978c5c2a31'
branch_labels = None
depends_on = None

# Frozen copy of the statement in crm/consent/ddl.py at the time of this revision.
_NO_REPLACE = (
    "CREATE TRIGGER consent_events_no_replace BEFORE INSERT ON consent_events "
    "WHEN EXISTS (SELECT 1 FROM consent_events WHERE id = NEW.id) "
    "OR (NEW.external_id IS NOT NULL AND EXISTS (SELECT 1 FROM consent_events "
    "WHERE source = NEW.source AND external_id = NEW.external_id)) "
    "BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: an insert may not replace an existing ledger row'); END"
)


def upgrade():
    # A plain ADD COLUMN (nullable, no default): no table rebuild, no ledger row rewritten.
    op.add_column('consent_events', sa.Column('evidence_hash_scheme', sa.String(length=20), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_NO_REPLACE)


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS consent_events_no_replace")
    # SQLite 3.35+ drops a column in place; the append-only triggers do not fire for DDL.
    op.drop_column('consent_events', 'evidence_hash_scheme')
