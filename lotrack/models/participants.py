"""Protocol versions, participants, surgeries, follow-up hysteroscopies and treatment cycles."""

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lotrack.models.base import Base, UTCDateTime, iso


class ProtocolVersion(Base):
    """A loaded protocol file; participants are enrolled under the active version."""

    __tablename__ = "protocol_versions"
    __audit_entity__ = "protocol"
    __table_args__ = (
        UniqueConstraint("code", "version"),
        CheckConstraint("status IN ('draft', 'active', 'superseded')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    content: Mapped[str] = mapped_column(Text)  # the validated file as canonical JSON
    content_sha256: Mapped[str] = mapped_column(String(64))
    source_name: Mapped[str] = mapped_column(String(255))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    loaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    # `audit verify` reads protocol versions from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("code", "version", "status", "content_sha256", "source_name",
                         "activated_at")
    __audit_key_columns__ = ("code", "version")

    @staticmethod
    def audit_key_from(code: str, version: int) -> str:
        return f"{code} v{version}"

    @property
    def audit_key(self) -> str:
        return self.audit_key_from(self.code, self.version)

    def audit_state(self) -> dict[str, object]:
        return {"code": self.code, "version": self.version, "status": self.status,
                "content_sha256": self.content_sha256, "source_name": self.source_name,
                "activated_at": iso(self.activated_at)}


class Participant(Base):
    __tablename__ = "participants"
    __audit_entity__ = "participant"
    __table_args__ = (
        CheckConstraint("status IN ('enrolled', 'withdrawn', 'completed')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(40), unique=True)
    protocol_version_id: Mapped[int] = mapped_column(ForeignKey("protocol_versions.id"))
    group_code: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12))
    consented_on: Mapped[date] = mapped_column(Date)
    # Only the age at consent is kept, not the birth date: data minimisation.
    age_at_consent: Mapped[int] = mapped_column(Integer)
    screening: Mapped[str] = mapped_column(Text)  # criteria values and answers, canonical JSON
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    enrolled_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    withdrawal_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    protocol_version: Mapped[ProtocolVersion] = relationship()
    cycles: Mapped[list["TreatmentCycle"]] = relationship(
        back_populates="participant", order_by="TreatmentCycle.number")

    # `audit verify` reads participants from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("subject_id", "protocol_version_id", ("group", "group_code"), "status",
                         "consented_on", "age_at_consent", "screening", "enrolled_by_id",
                         "withdrawn_at", "withdrawal_reason")
    __audit_key_columns__ = ("subject_id",)

    @property
    def audit_key(self) -> str:
        return self.subject_id

    def audit_state(self) -> dict[str, object]:
        return {
            "subject_id": self.subject_id, "protocol_version_id": self.protocol_version_id,
            "group": self.group_code, "status": self.status,
            "consented_on": iso(self.consented_on), "age_at_consent": self.age_at_consent,
            "screening": self.screening, "enrolled_by_id": self.enrolled_by_id,
            "withdrawn_at": iso(self.withdrawn_at),
            "withdrawal_reason": self.withdrawal_reason,
        }


class Surgery(Base):
    """A hysteroscopic adhesiolysis; the first opens cycle 1, a repeat after recurrence cycle 2."""

    __tablename__ = "surgeries"
    __audit_entity__ = "surgery"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    performed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    iua_score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    participant: Mapped[Participant] = relationship()

    # `audit verify` reads surgeries from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("participant_id", "performed_at", "iua_score", "recorded_by_id")
    __audit_key_columns__ = ("id",)

    @property
    def audit_key(self) -> str:
        return str(self.id)

    def audit_state(self) -> dict[str, object]:
        return {"participant_id": self.participant_id,
                "performed_at": iso(self.performed_at), "iua_score": self.iua_score,
                "recorded_by_id": self.recorded_by_id}


class Hysteroscopy(Base):
    """The follow-up hysteroscopy at about 1 month: did adhesions recur?"""

    __tablename__ = "hysteroscopies"
    __audit_entity__ = "hysteroscopy"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("treatment_cycles.id"))
    performed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recurrence: Mapped[bool]
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    # `audit verify` reads hysteroscopies from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("participant_id", "cycle_id", "performed_at", "recurrence",
                         "recorded_by_id")
    __audit_key_columns__ = ("id",)

    @property
    def audit_key(self) -> str:
        return str(self.id)

    def audit_state(self) -> dict[str, object]:
        return {"participant_id": self.participant_id, "cycle_id": self.cycle_id,
                "performed_at": iso(self.performed_at), "recurrence": self.recurrence,
                "recorded_by_id": self.recorded_by_id}


class TreatmentCycle(Base):
    __tablename__ = "treatment_cycles"
    __audit_entity__ = "cycle"
    __table_args__ = (UniqueConstraint("participant_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    number: Mapped[int] = mapped_column(Integer)
    surgery_id: Mapped[int] = mapped_column(ForeignKey("surgeries.id"), unique=True)

    participant: Mapped[Participant] = relationship(back_populates="cycles")
    surgery: Mapped[Surgery] = relationship()

    # `audit verify` reads treatment cycles from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("participant_id", "number", "surgery_id")
    __audit_key_columns__ = ("id",)

    @property
    def audit_key(self) -> str:
        return str(self.id)

    def audit_state(self) -> dict[str, object]:
        return {"participant_id": self.participant_id, "number": self.number,
                "surgery_id": self.surgery_id}
