"""sample products and lots; visit idempotency keys

Products get ``is_sample`` and ``max_sample_quantity``; ``sample_lots`` holds each sample product's lots
with their expiry dates; visits keep the Idempotency-Key they were created with (unique per owner) and
the fingerprint of that request. Sample-only products (not orderable) become sample products.

Revision ID: b7e1d2a9c4f0
Revises: bbda9da93b73
Create Date: 2026-12-03 13:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7e1d2a9c4f0'
down_revision = 'bbda9da93b73'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_sample', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('max_sample_quantity', sa.Integer(), server_default=sa.text('10'),
                                      nullable=False))
    products = sa.table('products', sa.column('is_sample', sa.Boolean()), sa.column('orderable', sa.Boolean()))
    op.execute(products.update().where(products.c.orderable == sa.false()).values(is_sample=sa.true()))

    op.create_table('sample_lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('lot_number', sa.String(length=60), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_sample_lots_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sample_lots')),
    sa.UniqueConstraint('product_id', 'lot_number', name=op.f('uq_sample_lots_product_id_lot_number'))
    )

    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_visits_owner_id_idempotency_key'),
                                          ['owner_id', 'idempotency_key'])


def downgrade():
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_visits_owner_id_idempotency_key'), type_='unique')
        batch_op.drop_column('request_hash')
        batch_op.drop_column('idempotency_key')

    op.drop_table('sample_lots')

    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_column('max_sample_quantity')
        batch_op.drop_column('is_sample')
