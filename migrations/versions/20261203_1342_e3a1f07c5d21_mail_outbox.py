"""mail outbox: every mail is a row first, handed over after the commit, retried, sent or failed

Revision ID: e3a1f07c5d21
Revises: b7e1d4a9c2f0
Create Date: 2026-12-03 13:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e3a1f07c5d21'
down_revision = 'b7e1d4a9c2f0'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('mail_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('hcp_id', sa.Integer(), nullable=True),
    sa.Column('campaign_message_id', sa.Integer(), nullable=True),
    sa.Column('invitation_id', sa.Integer(), nullable=True),
    sa.Column('consent_event_id', sa.Integer(), nullable=True),
    sa.Column('recipient', sa.Text(), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('message_id', sa.String(length=250), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_message_id'], ['campaign_messages.id'], name=op.f('fk_mail_outbox_campaign_message_id_campaign_messages')),
    sa.ForeignKeyConstraint(['consent_event_id'], ['consent_events.id'], name=op.f('fk_mail_outbox_consent_event_id_consent_events')),
    sa.ForeignKeyConstraint(['hcp_id'], ['hcps.id'], name=op.f('fk_mail_outbox_hcp_id_hcps')),
    sa.ForeignKeyConstraint(['invitation_id'], ['event_invitations.id'], name=op.f('fk_mail_outbox_invitation_id_event_invitations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_outbox')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_mail_outbox_idempotency_key'))
    )
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_mail_outbox_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_outbox_campaign_message_id'), ['campaign_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_outbox_consent_event_id'), ['consent_event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_outbox_hcp_id'), ['hcp_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_outbox_invitation_id'), ['invitation_id'], unique=False)


def downgrade():
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_outbox_invitation_id'))
        batch_op.drop_index(batch_op.f('ix_mail_outbox_hcp_id'))
        batch_op.drop_index(batch_op.f('ix_mail_outbox_consent_event_id'))
        batch_op.drop_index(batch_op.f('ix_mail_outbox_campaign_message_id'))
        batch_op.drop_index('ix_mail_outbox_due')

    op.drop_table('mail_outbox')
