"""segments, engagement plans (cycle, scope, goals, target list), audiences that name a segment, HCP tier (issue 12)

Revision ID: 55d9e84d32ce
Revises: 26c386e12e7b
Create Date: 2026-12-03 16:25:42.281127

"""
from alembic import op
import sqlalchemy as sa


revision = '55d9e84d32ce'
down_revision = '26c386e12e7b'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('professions', sa.JSON(), nullable=False),
    sa.Column('specialties', sa.JSON(), nullable=False),
    sa.Column('territory_codes', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('tiers', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_segments_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segments')),
    sa.UniqueConstraint('name', name=op.f('uq_segments_name'))
    )
    op.create_table('engagement_plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('cycle_start', sa.Date(), nullable=False),
    sa.Column('cycle_end', sa.Date(), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=True),
    sa.Column('channel_goals', sa.JSON(), nullable=False),
    sa.Column('product_goals', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('cycle_end >= cycle_start', name=op.f('ck_engagement_plans_cycle_order')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_engagement_plans_created_by_id_users')),
    sa.ForeignKeyConstraint(['segment_id'], ['segments.id'], name=op.f('fk_engagement_plans_segment_id_segments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_engagement_plans'))
    )
    with op.batch_alter_table('engagement_plans', schema=None) as batch_op:
        batch_op.create_index('ix_engagement_plans_cycle', ['cycle_start', 'cycle_end'], unique=False)
        batch_op.create_index(batch_op.f('ix_engagement_plans_segment_id'), ['segment_id'], unique=False)

    op.create_table('engagement_plan_targets',
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('hcp_id', sa.Integer(), nullable=False),
    sa.Column('goals', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['hcp_id'], ['hcps.id'], name=op.f('fk_engagement_plan_targets_hcp_id_hcps')),
    sa.ForeignKeyConstraint(['plan_id'], ['engagement_plans.id'], name=op.f('fk_engagement_plan_targets_plan_id_engagement_plans')),
    sa.PrimaryKeyConstraint('plan_id', 'hcp_id', name=op.f('pk_engagement_plan_targets'))
    )
    with op.batch_alter_table('engagement_plan_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_engagement_plan_targets_hcp_id'), ['hcp_id'], unique=False)

    op.create_table('engagement_plan_territories',
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('territory_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['engagement_plans.id'], name=op.f('fk_engagement_plan_territories_plan_id_engagement_plans')),
    sa.ForeignKeyConstraint(['territory_id'], ['territories.id'], name=op.f('fk_engagement_plan_territories_territory_id_territories')),
    sa.PrimaryKeyConstraint('plan_id', 'territory_id', name=op.f('pk_engagement_plan_territories'))
    )
    with op.batch_alter_table('engagement_plan_territories', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_engagement_plan_territories_territory_id'), ['territory_id'], unique=False)

    with op.batch_alter_table('audiences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('segment_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_audiences_segment_id'), ['segment_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_audiences_segment_id_segments'), 'segments', ['segment_id'], ['id'])

    with op.batch_alter_table('hcps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tier', sa.String(length=1), nullable=True))



def downgrade():
    with op.batch_alter_table('hcps', schema=None) as batch_op:
        batch_op.drop_column('tier')

    with op.batch_alter_table('audiences', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_audiences_segment_id_segments'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_audiences_segment_id'))
        batch_op.drop_column('segment_id')

    with op.batch_alter_table('engagement_plan_territories', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_engagement_plan_territories_territory_id'))

    op.drop_table('engagement_plan_territories')
    with op.batch_alter_table('engagement_plan_targets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_engagement_plan_targets_hcp_id'))

    op.drop_table('engagement_plan_targets')
    with op.batch_alter_table('engagement_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_engagement_plans_segment_id'))
        batch_op.drop_index('ix_engagement_plans_cycle')

    op.drop_table('engagement_plans')
    op.drop_table('segments')
