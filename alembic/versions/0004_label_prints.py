"""label prints: every label printed and every reprint, audited

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:37:21.763786
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('label_prints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('template', sa.String(length=40), nullable=False),
    sa.Column('output_format', sa.String(length=8), nullable=False),
    sa.Column('copies', sa.Integer(), nullable=False),
    sa.Column('print_number', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('printed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('printed_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('vial', 'box', 'dose')", name=op.f('ck_label_prints_kind_known')),
    sa.CheckConstraint('copies >= 1', name=op.f('ck_label_prints_copies_positive')),
    sa.CheckConstraint('print_number = 1 OR reason IS NOT NULL', name=op.f('ck_label_prints_reprint_reasoned')),
    sa.ForeignKeyConstraint(['printed_by_id'], ['users.id'], name=op.f('fk_label_prints_printed_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_prints')),
    sa.UniqueConstraint('kind', 'subject', 'print_number', name=op.f('uq_label_prints_kind_subject_print_number'))
    )
    with op.batch_alter_table('label_prints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_label_prints_job'), ['job'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('label_prints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_label_prints_job'))

    op.drop_table('label_prints')
