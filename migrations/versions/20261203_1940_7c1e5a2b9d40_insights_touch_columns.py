"""participants carry their item's channel and kind; weekly and corrected-item indexes on interactions
(issue 12 item 4: every insights aggregation under 1 s at 1M interactions, for every period)

The channel and kind of an item never change (a correction is a new item), like its ``occurred_at``, which
participants carry already: copied here once for the existing rows, written with each item from now on
(``crm.timeline.services``).

Revision ID: 7c1e5a2b9d40
Revises: 52a5d0e73303
Create Date: 2026-12-03 19:40:00.000000

"""
import sqlalchemy as sa
from alembic import op


revision = '7c1e5a2b9d40'
down_revision = '52a5d0e73303'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('interaction_participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('kind', sa.String(length=60), nullable=True))
    op.execute("UPDATE interaction_participants SET "
               "channel = (SELECT i.channel FROM interactions i WHERE i.id = interaction_participants.interaction_id), "
               "kind = (SELECT i.kind FROM interactions i WHERE i.id = interaction_participants.interaction_id)")
    with op.batch_alter_table('interaction_participants', schema=None) as batch_op:
        batch_op.alter_column('channel', existing_type=sa.String(length=20), nullable=False)
        batch_op.alter_column('kind', existing_type=sa.String(length=60), nullable=False)
        batch_op.drop_index('ix_interaction_participants_period')
        batch_op.create_index('ix_interaction_participants_period',
                              ['occurred_at', 'hcp_id', 'channel', 'kind', 'interaction_id'], unique=False)
        batch_op.drop_index('ix_interaction_participants_timeline')
        batch_op.create_index('ix_interaction_participants_timeline',
                              ['hcp_id', 'occurred_at', 'interaction_id', 'channel', 'kind'], unique=False)
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.create_index('ix_interactions_weekly', ['channel', 'sensitivity', 'occurred_at'], unique=False,
                              sqlite_where=sa.text('superseded_by_id IS NULL'),
                              postgresql_where=sa.text('superseded_by_id IS NULL'))
        batch_op.create_index('ix_interactions_superseded', ['occurred_at', 'id'], unique=False,
                              sqlite_where=sa.text('superseded_by_id IS NOT NULL'),
                              postgresql_where=sa.text('superseded_by_id IS NOT NULL'))


def downgrade():
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_index('ix_interactions_superseded')
        batch_op.drop_index('ix_interactions_weekly')
    with op.batch_alter_table('interaction_participants', schema=None) as batch_op:
        batch_op.drop_index('ix_interaction_participants_timeline')
        batch_op.create_index('ix_interaction_participants_timeline', ['hcp_id', 'occurred_at', 'interaction_id'],
                              unique=False)
        batch_op.drop_index('ix_interaction_participants_period')
        batch_op.create_index('ix_interaction_participants_period', ['occurred_at', 'hcp_id', 'interaction_id'],
                              unique=False)
        batch_op.drop_column('kind')
        batch_op.drop_column('channel')
