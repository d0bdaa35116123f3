"""sample accountability ledger, KOL profile and speakers, remote visits' meeting links

Sample consignments (shipments and transfers) with their lines, the per-rep inventory balance, the
append-only movement ledger, periodic counts and discrepancies; influence tier and expertise on HCPs;
speaker qualifications and event speakers; visits' meeting_url.

Revision ID: e22fd0a2ee5e
Revises: 55d9e84d32ce
Create Date: 2026-12-03 16:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e22fd0a2ee5e'
down_revision = '55d9e84d32ce'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sample_consignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('from_user_id', sa.Integer(), nullable=True),
    sa.Column('to_user_id', sa.Integer(), nullable=False),
    sa.Column('sent_by_id', sa.Integer(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_by_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['from_user_id'], ['users.id'], name=op.f('fk_sample_consignments_from_user_id_users')),
    sa.ForeignKeyConstraint(['received_by_id'], ['users.id'],
                            name=op.f('fk_sample_consignments_received_by_id_users')),
    sa.ForeignKeyConstraint(['sent_by_id'], ['users.id'], name=op.f('fk_sample_consignments_sent_by_id_users')),
    sa.ForeignKeyConstraint(['to_user_id'], ['users.id'], name=op.f('fk_sample_consignments_to_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_consignments'))
    )
    op.create_index('ix_sample_consignments_from_user', 'sample_consignments', ['from_user_id'], unique=False)
    op.create_index('ix_sample_consignments_to_user', 'sample_consignments', ['to_user_id', 'status'], unique=False)

    op.create_table('sample_consignment_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('consignment_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('quantity_sent', sa.Integer(), nullable=False),
    sa.Column('quantity_received', sa.Integer(), nullable=True),
    sa.CheckConstraint('quantity_sent > 0', name=op.f('ck_sample_consignment_lines_quantity_sent_positive')),
    sa.CheckConstraint('quantity_received >= 0',
                       name=op.f('ck_sample_consignment_lines_quantity_received_not_negative')),
    sa.ForeignKeyConstraint(['consignment_id'], ['sample_consignments.id'],
                            name=op.f('fk_sample_consignment_lines_consignment_id_sample_consignments')),
    sa.ForeignKeyConstraint(['lot_id'], ['sample_lots.id'], name=op.f('fk_sample_consignment_lines_lot_id_sample_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_consignment_lines')),
    sa.UniqueConstraint('consignment_id', 'lot_id', name=op.f('uq_sample_consignment_lines_consignment_id_lot_id'))
    )

    op.create_table('sample_inventory',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('quantity >= 0', name=op.f('ck_sample_inventory_quantity_not_negative')),
    sa.ForeignKeyConstraint(['lot_id'], ['sample_lots.id'], name=op.f('fk_sample_inventory_lot_id_sample_lots')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sample_inventory_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', 'lot_id', name=op.f('pk_sample_inventory'))
    )

    op.create_table('sample_counts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('counted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_sample_counts_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sample_counts_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_counts'))
    )
    op.create_index('ix_sample_counts_user', 'sample_counts', ['user_id', 'counted_at'], unique=False)

    op.create_table('sample_count_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('count_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('expected', sa.Integer(), nullable=False),
    sa.Column('counted', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['count_id'], ['sample_counts.id'], name=op.f('fk_sample_count_lines_count_id_sample_counts')),
    sa.ForeignKeyConstraint(['lot_id'], ['sample_lots.id'], name=op.f('fk_sample_count_lines_lot_id_sample_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_count_lines')),
    sa.UniqueConstraint('count_id', 'lot_id', name=op.f('uq_sample_count_lines_count_id_lot_id'))
    )

    op.create_table('sample_movements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('consignment_id', sa.Integer(), nullable=True),
    sa.Column('visit_id', sa.Integer(), nullable=True),
    sa.Column('count_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('quantity <> 0', name=op.f('ck_sample_movements_quantity_not_zero')),
    sa.ForeignKeyConstraint(['consignment_id'], ['sample_consignments.id'],
                            name=op.f('fk_sample_movements_consignment_id_sample_consignments')),
    sa.ForeignKeyConstraint(['count_id'], ['sample_counts.id'], name=op.f('fk_sample_movements_count_id_sample_counts')),
    sa.ForeignKeyConstraint(['lot_id'], ['sample_lots.id'], name=op.f('fk_sample_movements_lot_id_sample_lots')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_sample_movements_recorded_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sample_movements_user_id_users')),
    sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], name=op.f('fk_sample_movements_visit_id_visits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_movements'))
    )
    op.create_index('ix_sample_movements_user_lot', 'sample_movements', ['user_id', 'lot_id'], unique=False)
    op.create_index('ix_sample_movements_visit', 'sample_movements', ['visit_id'], unique=False)

    op.create_table('sample_discrepancies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('consignment_id', sa.Integer(), nullable=True),
    sa.Column('count_id', sa.Integer(), nullable=True),
    sa.Column('expected', sa.Integer(), nullable=False),
    sa.Column('actual', sa.Integer(), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reviewed_by_id', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('review_note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['consignment_id'], ['sample_consignments.id'],
                            name=op.f('fk_sample_discrepancies_consignment_id_sample_consignments')),
    sa.ForeignKeyConstraint(['count_id'], ['sample_counts.id'],
                            name=op.f('fk_sample_discrepancies_count_id_sample_counts')),
    sa.ForeignKeyConstraint(['lot_id'], ['sample_lots.id'], name=op.f('fk_sample_discrepancies_lot_id_sample_lots')),
    sa.ForeignKeyConstraint(['reviewed_by_id'], ['users.id'],
                            name=op.f('fk_sample_discrepancies_reviewed_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sample_discrepancies_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_discrepancies'))
    )
    op.create_index('ix_sample_discrepancies_status', 'sample_discrepancies', ['status', 'reported_at'], unique=False)

    op.create_table('speaker_qualifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hcp_id', sa.Integer(), nullable=False),
    sa.Column('topics', sa.JSON(), nullable=False),
    sa.Column('trained_on', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('valid_until >= trained_on', name=op.f('ck_speaker_qualifications_valid_after_training')),
    sa.ForeignKeyConstraint(['hcp_id'], ['hcps.id'], name=op.f('fk_speaker_qualifications_hcp_id_hcps')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'],
                            name=op.f('fk_speaker_qualifications_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_speaker_qualifications'))
    )
    op.create_index('ix_speaker_qualifications_hcp', 'speaker_qualifications', ['hcp_id', 'valid_until'], unique=False)

    op.create_table('event_speakers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('hcp_id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('qualification_id', sa.Integer(), nullable=False),
    sa.Column('fee_amount', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('fee_currency', sa.String(length=3), nullable=True),
    sa.Column('added_by_id', sa.Integer(), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('fee_amount >= 0', name=op.f('ck_event_speakers_fee_not_negative')),
    sa.ForeignKeyConstraint(['added_by_id'], ['users.id'], name=op.f('fk_event_speakers_added_by_id_users')),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_event_speakers_event_id_events')),
    sa.ForeignKeyConstraint(['hcp_id'], ['hcps.id'], name=op.f('fk_event_speakers_hcp_id_hcps')),
    sa.ForeignKeyConstraint(['qualification_id'], ['speaker_qualifications.id'],
                            name=op.f('fk_event_speakers_qualification_id_speaker_qualifications')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_speakers')),
    sa.UniqueConstraint('event_id', 'hcp_id', name=op.f('uq_event_speakers_event_id_hcp_id'))
    )
    op.create_index('ix_event_speakers_hcp', 'event_speakers', ['hcp_id'], unique=False)

    with op.batch_alter_table('hcps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('influence_tier', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('expertise', sa.JSON(), server_default='[]', nullable=False))

    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('meeting_url', sa.String(length=500), nullable=True))


def downgrade():
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_column('meeting_url')
    with op.batch_alter_table('hcps', schema=None) as batch_op:
        batch_op.drop_column('expertise')
        batch_op.drop_column('influence_tier')
    op.drop_index('ix_event_speakers_hcp', table_name='event_speakers')
    op.drop_table('event_speakers')
    op.drop_index('ix_speaker_qualifications_hcp', table_name='speaker_qualifications')
    op.drop_table('speaker_qualifications')
    op.drop_index('ix_sample_discrepancies_status', table_name='sample_discrepancies')
    op.drop_table('sample_discrepancies')
    op.drop_index('ix_sample_movements_visit', table_name='sample_movements')
    op.drop_index('ix_sample_movements_user_lot', table_name='sample_movements')
    op.drop_table('sample_movements')
    op.drop_table('sample_count_lines')
    op.drop_index('ix_sample_counts_user', table_name='sample_counts')
    op.drop_table('sample_counts')
    op.drop_table('sample_inventory')
    op.drop_table('sample_consignment_lines')
    op.drop_index('ix_sample_consignments_to_user', table_name='sample_consignments')
    op.drop_index('ix_sample_consignments_from_user', table_name='sample_consignments')
    op.drop_table('sample_consignments')
