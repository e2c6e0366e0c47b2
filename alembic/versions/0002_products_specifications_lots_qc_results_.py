"""products specifications lots qc results vials storage excursions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 00:20:33.381428
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('storage_locations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=200), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('capacity', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['storage_locations.id'], name=op.f('fk_storage_locations_parent_id_storage_locations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_storage_locations')),
    sa.UniqueConstraint('path', name=op.f('uq_storage_locations_path'))
    )
    op.create_table('excursions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('max_temp_c', sa.Float(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('vials_affected', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['location_id'], ['storage_locations.id'], name=op.f('fk_excursions_location_id_storage_locations')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_excursions_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_excursions'))
    )
    op.create_table('products',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('gtin', sa.String(length=14), nullable=True),
    sa.Column('storage_condition', sa.String(length=100), nullable=False),
    sa.Column('storage_max_c', sa.Float(), nullable=False),
    sa.Column('shelf_life_days', sa.Integer(), nullable=False),
    sa.Column('post_thaw_hours', sa.Float(), nullable=False),
    sa.Column('fill_volume_ml', sa.Float(), nullable=False),
    sa.Column('dosage_form', sa.String(length=100), nullable=False),
    sa.Column('route', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('active', 'placebo', 'vehicle')", name=op.f('ck_products_kind_known')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_products_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products')),
    sa.UniqueConstraint('code', name=op.f('uq_products_code')),
    sa.UniqueConstraint('gtin', name=op.f('uq_products_gtin'))
    )
    op.create_table('specifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('source_name', sa.String(length=255), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('loaded_by_id', sa.Integer(), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'active', 'superseded')", name=op.f('ck_specifications_status_known')),
    sa.ForeignKeyConstraint(['loaded_by_id'], ['users.id'], name=op.f('fk_specifications_loaded_by_id_users')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_specifications_product_id_products')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_specifications')),
    sa.UniqueConstraint('product_id', 'version', name=op.f('uq_specifications_product_id_version'))
    )
    op.create_table('lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_number', sa.String(length=20), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=False),
    sa.Column('specification_id', sa.Integer(), nullable=False),
    sa.Column('manufactured_on', sa.Date(), nullable=False),
    sa.Column('expiry_on', sa.Date(), nullable=False),
    sa.Column('cell_line', sa.String(length=100), nullable=False),
    sa.Column('cell_bank_id', sa.String(length=100), nullable=False),
    sa.Column('passage', sa.Integer(), nullable=False),
    sa.Column('vial_count', sa.Integer(), nullable=False),
    sa.Column('fill_volume_ml', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('qa_review_needed', sa.Boolean(), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('registered_by_id', sa.Integer(), nullable=False),
    sa.Column('destroyed_quantity', sa.Integer(), nullable=True),
    sa.Column('destroyed_witness_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('quarantine', 'released', 'rejected', 'on_hold', 'recalled', 'destroyed')", name=op.f('ck_lots_status_known')),
    sa.CheckConstraint('expiry_on > manufactured_on', name=op.f('ck_lots_expiry_after_manufacture')),
    sa.CheckConstraint('vial_count > 0', name=op.f('ck_lots_vial_count_positive')),
    sa.ForeignKeyConstraint(['destroyed_witness_id'], ['users.id'], name=op.f('fk_lots_destroyed_witness_id_users')),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_lots_product_id_products')),
    sa.ForeignKeyConstraint(['registered_by_id'], ['users.id'], name=op.f('fk_lots_registered_by_id_users')),
    sa.ForeignKeyConstraint(['specification_id'], ['specifications.id'], name=op.f('fk_lots_specification_id_specifications')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lots')),
    sa.UniqueConstraint('product_id', 'lot_number', name=op.f('uq_lots_product_id_lot_number'))
    )
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lots_lot_number'), ['lot_number'], unique=False)

    op.create_table('qc_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('attribute', sa.String(length=100), nullable=False),
    sa.Column('value_text', sa.String(length=200), nullable=False),
    sa.Column('value_number', sa.Float(), nullable=True),
    sa.Column('unit', sa.String(length=40), nullable=False),
    sa.Column('method', sa.String(length=200), nullable=False),
    sa.Column('tested_on', sa.Date(), nullable=False),
    sa.Column('analyst', sa.String(length=100), nullable=False),
    sa.Column('verdict', sa.String(length=14), nullable=False),
    sa.Column('verdict_detail', sa.String(length=300), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('entered_by_id', sa.Integer(), nullable=False),
    sa.Column('supersedes_id', sa.Integer(), nullable=True),
    sa.Column('correction_reason', sa.Text(), nullable=True),
    sa.Column('superseded', sa.Boolean(), nullable=False),
    sa.CheckConstraint("verdict IN ('pass', 'fail', 'not_evaluable')", name=op.f('ck_qc_results_verdict_known')),
    sa.ForeignKeyConstraint(['entered_by_id'], ['users.id'], name=op.f('fk_qc_results_entered_by_id_users')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_qc_results_lot_id_lots')),
    sa.ForeignKeyConstraint(['supersedes_id'], ['qc_results.id'], name=op.f('fk_qc_results_supersedes_id_qc_results')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qc_results'))
    )
    with op.batch_alter_table('qc_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qc_results_lot_id'), ['lot_id'], unique=False)

    op.create_table('vials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=20), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=14), nullable=False),
    sa.Column('on_hold', sa.Boolean(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('in_stock', 'quarantined', 'dispensed', 'administered', 'returned', 'wasted', 'destroyed')", name=op.f('ck_vials_status_known')),
    sa.ForeignKeyConstraint(['location_id'], ['storage_locations.id'], name=op.f('fk_vials_location_id_storage_locations')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_vials_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vials')),
    sa.UniqueConstraint('location_id', 'position', name=op.f('uq_vials_location_id_position')),
    sa.UniqueConstraint('serial', name=op.f('uq_vials_serial'))
    )
    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vials_location_id'), ['location_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_vials_lot_id'), ['lot_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vials_lot_id'))
        batch_op.drop_index(batch_op.f('ix_vials_location_id'))

    op.drop_table('vials')
    with op.batch_alter_table('qc_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qc_results_lot_id'))

    op.drop_table('qc_results')
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lots_lot_number'))

    op.drop_table('lots')
    op.drop_table('specifications')
    op.drop_table('products')
    op.drop_table('excursions')
    op.drop_table('storage_locations')
