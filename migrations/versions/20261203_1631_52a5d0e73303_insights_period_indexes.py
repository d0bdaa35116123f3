"""indexes for the insights' period scans: participants by time, a covering index on interactions (issue 12
item 4, the 1 s target at 1M interactions)

Revision ID: 52a5d0e73303
Revises: 6134541eca12
Create Date: 2026-12-03 17:55:00.000000

"""
from alembic import op


revision = '52a5d0e73303'
down_revision = '6134541eca12'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('interaction_participants', schema=None) as batch_op:
        batch_op.create_index('ix_interaction_participants_period', ['occurred_at', 'hcp_id', 'interaction_id'],
                              unique=False)
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.create_index('ix_interactions_period',
                              ['occurred_at', 'channel', 'kind', 'sensitivity', 'superseded_by_id', 'id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_index('ix_interactions_period')
    with op.batch_alter_table('interaction_participants', schema=None) as batch_op:
        batch_op.drop_index('ix_interaction_participants_period')
