"""audit_events.hash without its unique index

The trail's integrity is its chain: `seq` (the primary key, gap-free) and each event's
`prev_hash`, recomputed by `audit verify`; nothing looks an event up by its hash. The
unique index on a random 64-character key cost a random B-tree write for every event
(half the size of a sponsor-scale database, a third of a 100,000-row QC import).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 19:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite cannot drop a table constraint: batch mode copies the table without it.
    with op.batch_alter_table('audit_events') as batch:
        batch.drop_constraint('uq_audit_events_hash', type_='unique')


def downgrade() -> None:
    with op.batch_alter_table('audit_events') as batch:
        batch.create_unique_constraint('uq_audit_events_hash', ['hash'])
