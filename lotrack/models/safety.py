"""Adverse events graded by CTCAE v5.0, linked to lots through the doses a participant received."""

from datetime import date, datetime

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lotrack.models.base import Base, UTCDateTime, iso

RELATEDNESS = ("unrelated", "unlikely", "possible", "probable", "definite")
OUTCOMES = ("recovered", "recovering", "not_recovered", "recovered_with_sequelae", "fatal",
            "unknown")
AE_CODE_PREFIX = "AE"


def format_ae_code(ae_id: int) -> str:
    return f"{AE_CODE_PREFIX}{ae_id:05d}"


def parse_ae_code(text: str) -> int | None:
    code = text.strip().upper()
    digits = code.removeprefix(AE_CODE_PREFIX)
    if code == digits or not digits.isdigit() or len(digits) > 12:
        return None
    return int(digits)


def _values(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class AdverseEvent(Base):
    __tablename__ = "adverse_events"
    __audit_entity__ = "ae"
    __table_args__ = (
        CheckConstraint("grade BETWEEN 1 AND 5", name="grade_range"),
        CheckConstraint(f"relatedness IN ({_values(RELATEDNESS)})", name="relatedness_known"),
        CheckConstraint(f"outcome IN ({_values(OUTCOMES)})", name="outcome_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    verbatim_term: Mapped[str] = mapped_column(String(200))
    ctcae_term: Mapped[str | None] = mapped_column(String(200), nullable=True)
    system_organ_class: Mapped[str | None] = mapped_column(String(200), nullable=True)
    needs_coding: Mapped[bool] = mapped_column(Boolean)
    grade: Mapped[int] = mapped_column(Integer)
    serious: Mapped[bool] = mapped_column(Boolean)
    relatedness: Mapped[str] = mapped_column(String(12))
    outcome: Mapped[str] = mapped_column(String(30))
    action_taken: Mapped[str | None] = mapped_column(Text, nullable=True)
    onset_on: Mapped[date] = mapped_column(Date)
    resolved_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    @property
    def ae_code(self) -> str:
        return format_ae_code(self.id)

    # `audit verify` reads adverse events from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("participant_id", "verbatim_term", "ctcae_term", "system_organ_class",
                         "needs_coding", "grade", "serious", "relatedness", "outcome",
                         "action_taken", "onset_on", "resolved_on", "recorded_by_id")
    __audit_key_columns__ = ("id",)
    audit_key_from = staticmethod(format_ae_code)

    @property
    def audit_key(self) -> str:
        return self.ae_code

    def audit_state(self) -> dict[str, object]:
        return {
            "participant_id": self.participant_id, "verbatim_term": self.verbatim_term,
            "ctcae_term": self.ctcae_term, "system_organ_class": self.system_organ_class,
            "needs_coding": self.needs_coding, "grade": self.grade, "serious": self.serious,
            "relatedness": self.relatedness, "outcome": self.outcome,
            "action_taken": self.action_taken, "onset_on": iso(self.onset_on),
            "resolved_on": iso(self.resolved_on),
            "recorded_by_id": self.recorded_by_id,
        }
