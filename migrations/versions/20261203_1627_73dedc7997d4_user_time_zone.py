"""user time zone: each user reads times in their own zone (stored times stay UTC)

Revision ID: 73dedc7997d4
Revises: e22fd0a2ee5e
Create Date: 2026-12-03 16:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = '73dedc7997d4'
down_revision = 'e22fd0a2ee5e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('time_zone')
