"""audit chain keyed and anchored; key rotation allowed through the consent ledger's trigger

Revision ID: 7e3a1c9d2b40
Revises: b7e1d2a9c4f0
Create Date: 2026-12-03 13:40:00

- ``audit_records.hash_version``: 1 for the records already there (plain SHA-256), 2 for the records
  written from now on (HMAC-SHA256 under CRM_AUDIT_KEY).
- ``audit_verifications.head_id/head_hash/signature``: the head anchored by each intact verification.
- The consent ledger's UPDATE trigger lets ``crm keys rotate`` re-encrypt ``evidence`` (and nothing else).
"""
from alembic import op
import sqlalchemy as sa


revision = '7e3a1c9d2b40'
down_revision = 'b7e1d2a9c4f0'
branch_labels = None
depends_on = None


# Frozen copies of crm/consent/ddl.py at the time of this revision (the UPDATE trigger only).
_NEW = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS consent_events_no_update",
        "CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events WHEN NOT (crm_key_rotation() = 1 AND OLD.evidence IS NOT NULL AND NEW.evidence IS NOT NULL AND NEW.id IS OLD.id AND NEW.hcp_id IS OLD.hcp_id AND NEW.origin_hcp_id IS OLD.origin_hcp_id AND NEW.channel IS OLD.channel AND NEW.purpose IS OLD.purpose AND NEW.event_type IS OLD.event_type AND NEW.occurred_at IS OLD.occurred_at AND NEW.recorded_at IS OLD.recorded_at AND NEW.source IS OLD.source AND NEW.external_id IS OLD.external_id AND NEW.captured_by_id IS OLD.captured_by_id AND NEW.captured_by_role IS OLD.captured_by_role AND NEW.notice_id IS OLD.notice_id AND NEW.notice_version IS OLD.notice_version AND NEW.notice_text_hash IS OLD.notice_text_hash AND NEW.evidence_hash IS OLD.evidence_hash AND NEW.evidence_hash_scheme IS OLD.evidence_hash_scheme AND NEW.valid_until IS OLD.valid_until AND NEW.refers_to_event_id IS OLD.refers_to_event_id AND NEW.merged_from_event_id IS OLD.merged_from_event_id) BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: ledger rows are never updated or deleted'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF TG_OP = 'UPDATE' AND current_setting('crm.key_rotation', true) = 'on' AND OLD.evidence IS NOT NULL AND NEW.evidence IS NOT NULL AND (to_jsonb(NEW) - ARRAY['evidence']::text[]) = (to_jsonb(OLD) - ARRAY['evidence']::text[]) THEN RETURN NEW; END IF; RAISE EXCEPTION 'consent_events is append-only: ledger rows are never updated or deleted' USING ERRCODE = 'integrity_constraint_violation'; END; $$",
    ],
}
_OLD = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS consent_events_no_update",
        "CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: ledger rows are never updated or deleted'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'consent_events is append-only: ledger rows are never updated or deleted' USING ERRCODE = 'integrity_constraint_violation'; END; $$",
    ],
}


def upgrade():
    with op.batch_alter_table('audit_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hash_version', sa.Integer(), server_default='1', nullable=False))
    with op.batch_alter_table('audit_verifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('head_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('head_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('signature', sa.String(length=64), nullable=True))
    for statement in _NEW[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade():
    for statement in _OLD[op.get_bind().dialect.name]:
        op.execute(statement)
    with op.batch_alter_table('audit_verifications', schema=None) as batch_op:
        batch_op.drop_column('signature')
        batch_op.drop_column('head_hash')
        batch_op.drop_column('head_id')
    with op.batch_alter_table('audit_records', schema=None) as batch_op:
        batch_op.drop_column('hash_version')
