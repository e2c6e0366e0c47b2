"""protocols participants surgeries cycles doses adverse events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 00:20:34.302752
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('protocol_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('source_name', sa.String(length=255), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('loaded_by_id', sa.Integer(), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'active', 'superseded')", name=op.f('ck_protocol_versions_status_known')),
    sa.ForeignKeyConstraint(['loaded_by_id'], ['users.id'], name=op.f('fk_protocol_versions_loaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_protocol_versions')),
    sa.UniqueConstraint('code', 'version', name=op.f('uq_protocol_versions_code_version'))
    )
    op.create_table('participants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.String(length=40), nullable=False),
    sa.Column('protocol_version_id', sa.Integer(), nullable=False),
    sa.Column('group_code', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('consented_on', sa.Date(), nullable=False),
    sa.Column('age_at_consent', sa.Integer(), nullable=False),
    sa.Column('screening', sa.Text(), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enrolled_by_id', sa.Integer(), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawal_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('enrolled', 'withdrawn', 'completed')", name=op.f('ck_participants_status_known')),
    sa.ForeignKeyConstraint(['enrolled_by_id'], ['users.id'], name=op.f('fk_participants_enrolled_by_id_users')),
    sa.ForeignKeyConstraint(['protocol_version_id'], ['protocol_versions.id'], name=op.f('fk_participants_protocol_version_id_protocol_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participants')),
    sa.UniqueConstraint('subject_id', name=op.f('uq_participants_subject_id'))
    )
    op.create_table('adverse_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('verbatim_term', sa.String(length=200), nullable=False),
    sa.Column('ctcae_term', sa.String(length=200), nullable=True),
    sa.Column('system_organ_class', sa.String(length=200), nullable=True),
    sa.Column('needs_coding', sa.Boolean(), nullable=False),
    sa.Column('grade', sa.Integer(), nullable=False),
    sa.Column('serious', sa.Boolean(), nullable=False),
    sa.Column('relatedness', sa.String(length=12), nullable=False),
    sa.Column('outcome', sa.String(length=30), nullable=False),
    sa.Column('action_taken', sa.Text(), nullable=True),
    sa.Column('onset_on', sa.Date(), nullable=False),
    sa.Column('resolved_on', sa.Date(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("outcome IN ('recovered', 'recovering', 'not_recovered', 'recovered_with_sequelae', 'fatal', 'unknown')", name=op.f('ck_adverse_events_outcome_known')),
    sa.CheckConstraint("relatedness IN ('unrelated', 'unlikely', 'possible', 'probable', 'definite')", name=op.f('ck_adverse_events_relatedness_known')),
    sa.CheckConstraint('grade BETWEEN 1 AND 5', name=op.f('ck_adverse_events_grade_range')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_adverse_events_participant_id_participants')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_adverse_events_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adverse_events'))
    )
    with op.batch_alter_table('adverse_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_adverse_events_participant_id'), ['participant_id'], unique=False)

    op.create_table('surgeries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('performed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('iua_score', sa.Integer(), nullable=True),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_surgeries_participant_id_participants')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_surgeries_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_surgeries'))
    )
    with op.batch_alter_table('surgeries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_surgeries_participant_id'), ['participant_id'], unique=False)

    op.create_table('treatment_cycles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('surgery_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_treatment_cycles_participant_id_participants')),
    sa.ForeignKeyConstraint(['surgery_id'], ['surgeries.id'], name=op.f('fk_treatment_cycles_surgery_id_surgeries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_treatment_cycles')),
    sa.UniqueConstraint('participant_id', 'number', name=op.f('uq_treatment_cycles_participant_id_number')),
    sa.UniqueConstraint('surgery_id', name=op.f('uq_treatment_cycles_surgery_id'))
    )
    op.create_table('doses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('perfusion', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('dispensed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispensed_by_id', sa.Integer(), nullable=False),
    sa.Column('verified_by_id', sa.Integer(), nullable=False),
    sa.Column('hours_since_surgery', sa.Float(), nullable=False),
    sa.Column('post_op_day', sa.Integer(), nullable=False),
    sa.Column('target_hours', sa.Float(), nullable=False),
    sa.Column('window_hours', sa.Float(), nullable=False),
    sa.Column('deviation', sa.Text(), nullable=True),
    sa.Column('use_by', sa.DateTime(timezone=True), nullable=False),
    sa.Column('administered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('administered_by_id', sa.Integer(), nullable=True),
    sa.Column('volume_ml', sa.Float(), nullable=True),
    sa.Column('closed_reason', sa.Text(), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('dispensed', 'administered', 'wasted', 'returned')", name=op.f('ck_doses_status_known')),
    sa.ForeignKeyConstraint(['administered_by_id'], ['users.id'], name=op.f('fk_doses_administered_by_id_users')),
    sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_doses_closed_by_id_users')),
    sa.ForeignKeyConstraint(['cycle_id'], ['treatment_cycles.id'], name=op.f('fk_doses_cycle_id_treatment_cycles')),
    sa.ForeignKeyConstraint(['dispensed_by_id'], ['users.id'], name=op.f('fk_doses_dispensed_by_id_users')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_doses_participant_id_participants')),
    sa.ForeignKeyConstraint(['verified_by_id'], ['users.id'], name=op.f('fk_doses_verified_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_doses')),
    sa.UniqueConstraint('cycle_id', 'perfusion', 'attempt', name=op.f('uq_doses_cycle_id_perfusion_attempt'))
    )
    with op.batch_alter_table('doses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_doses_participant_id'), ['participant_id'], unique=False)

    op.create_table('hysteroscopies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('performed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recurrence', sa.Boolean(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['treatment_cycles.id'], name=op.f('fk_hysteroscopies_cycle_id_treatment_cycles')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_hysteroscopies_participant_id_participants')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_hysteroscopies_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hysteroscopies'))
    )
    with op.batch_alter_table('hysteroscopies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hysteroscopies_participant_id'), ['participant_id'], unique=False)

    op.create_table('dose_vials',
    sa.Column('dose_id', sa.Integer(), nullable=False),
    sa.Column('vial_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['dose_id'], ['doses.id'], name=op.f('fk_dose_vials_dose_id_doses')),
    sa.ForeignKeyConstraint(['vial_id'], ['vials.id'], name=op.f('fk_dose_vials_vial_id_vials')),
    sa.PrimaryKeyConstraint('dose_id', 'vial_id', name=op.f('pk_dose_vials')),
    sa.UniqueConstraint('vial_id', name=op.f('uq_dose_vials_vial_id'))
    )


def downgrade() -> None:
    op.drop_table('dose_vials')
    with op.batch_alter_table('hysteroscopies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hysteroscopies_participant_id'))

    op.drop_table('hysteroscopies')
    with op.batch_alter_table('doses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_doses_participant_id'))

    op.drop_table('doses')
    op.drop_table('treatment_cycles')
    with op.batch_alter_table('surgeries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_surgeries_participant_id'))

    op.drop_table('surgeries')
    with op.batch_alter_table('adverse_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_adverse_events_participant_id'))

    op.drop_table('adverse_events')
    op.drop_table('participants')
    op.drop_table('protocol_versions')
