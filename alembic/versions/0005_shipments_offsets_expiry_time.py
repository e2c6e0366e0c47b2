"""shipments, do-not-dispense and do-not-ship offsets, lot expiry time

Shipments and the vials they carry; vial statuses in_transit, unconfirmed and lost;
each product's do-not-dispense and do-not-ship offsets (days, 0 for products recorded
before); a lot's optional expiry time of day (none: the end of the expiry day).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 13:19:52.315240
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

OLD_VIAL_STATUSES = ("in_stock", "quarantined", "dispensed", "administered", "returned", "wasted",
                     "destroyed")
NEW_VIAL_STATUSES = (*OLD_VIAL_STATUSES, "in_transit", "unconfirmed", "lost")


def _in(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('shipments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('origin_id', sa.Integer(), nullable=False),
    sa.Column('destination_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('courier', sa.String(length=100), nullable=True),
    sa.Column('tracking_number', sa.String(length=100), nullable=True),
    sa.Column('monitor_id', sa.String(length=100), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_by_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_by_id', sa.Integer(), nullable=True),
    sa.Column('max_temp_c', sa.Float(), nullable=True),
    sa.Column('quarantine_reason', sa.Text(), nullable=True),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_by_id', sa.Integer(), nullable=True),
    sa.Column('release_reason', sa.Text(), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.Column('closed_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('prepared', 'in_transit', 'quarantined', 'received', 'lost', 'cancelled')", name=op.f('ck_shipments_status_known')),
    sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_shipments_closed_by_id_users')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_shipments_created_by_id_users')),
    sa.ForeignKeyConstraint(['destination_id'], ['storage_locations.id'], name=op.f('fk_shipments_destination_id_storage_locations')),
    sa.ForeignKeyConstraint(['dispatched_by_id'], ['users.id'], name=op.f('fk_shipments_dispatched_by_id_users')),
    sa.ForeignKeyConstraint(['origin_id'], ['storage_locations.id'], name=op.f('fk_shipments_origin_id_storage_locations')),
    sa.ForeignKeyConstraint(['received_by_id'], ['users.id'], name=op.f('fk_shipments_received_by_id_users')),
    sa.ForeignKeyConstraint(['released_by_id'], ['users.id'], name=op.f('fk_shipments_released_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shipments'))
    )
    op.create_table('shipment_vials',
    sa.Column('shipment_id', sa.Integer(), nullable=False),
    sa.Column('vial_id', sa.Integer(), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['confirmed_by_id'], ['users.id'], name=op.f('fk_shipment_vials_confirmed_by_id_users')),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipments.id'], name=op.f('fk_shipment_vials_shipment_id_shipments')),
    sa.ForeignKeyConstraint(['vial_id'], ['vials.id'], name=op.f('fk_shipment_vials_vial_id_vials')),
    sa.PrimaryKeyConstraint('shipment_id', 'vial_id', name=op.f('pk_shipment_vials'))
    )
    with op.batch_alter_table('shipment_vials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shipment_vials_vial_id'), ['vial_id'], unique=False)

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expiry_time', sa.Time(), nullable=True))

    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('do_not_dispense_days', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('do_not_ship_days', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_vials_status_known'), type_='check')
        batch_op.create_check_constraint(op.f('ck_vials_status_known'), _in(NEW_VIAL_STATUSES))


def downgrade() -> None:
    bind = op.get_bind()
    moving = bind.execute(sa.text(
        "SELECT COUNT(*) FROM vials WHERE status IN ('in_transit', 'unconfirmed', 'lost')")).scalar()
    if moving:
        raise RuntimeError(f"{moving} vial(s) are in transit, unconfirmed or lost: receive, "
                           "confirm or settle them before downgrading below 0005")
    with op.batch_alter_table('vials', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_vials_status_known'), type_='check')
        batch_op.create_check_constraint(op.f('ck_vials_status_known'), _in(OLD_VIAL_STATUSES))

    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_column('do_not_ship_days')
        batch_op.drop_column('do_not_dispense_days')

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_column('expiry_time')

    with op.batch_alter_table('shipment_vials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shipment_vials_vial_id'))

    op.drop_table('shipment_vials')
    op.drop_table('shipments')
