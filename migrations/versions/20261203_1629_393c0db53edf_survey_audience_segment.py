"""a survey's audience may be a saved segment (issue 12 item 4, leftover of items 1 and 3)

Revision ID: 393c0db53edf
Revises: 697ec1b854c3
Create Date: 2026-12-03 16:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


revision = '393c0db53edf'
down_revision = '697ec1b854c3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('segment_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_surveys_segment_id'), ['segment_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_surveys_segment_id_segments'), 'segments', ['segment_id'], ['id'])


def downgrade():
    with op.batch_alter_table('surveys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_surveys_segment_id_segments'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_surveys_segment_id'))
        batch_op.drop_column('segment_id')
