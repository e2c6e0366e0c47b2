"""Dispensed doses (one perfusion of one cycle) and the vials each used."""

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lotrack.models.base import Base, UTCDateTime, iso

DOSE_STATUSES = ("dispensed", "administered", "wasted", "returned")
DOSE_CODE_PREFIX = "D"


def format_dose_code(dose_id: int) -> str:
    return f"{DOSE_CODE_PREFIX}{dose_id:06d}"


def parse_dose_code(text: str) -> int | None:
    """The dose id of a code such as D000123 (or d123); None when it is not a dose code."""
    code = text.strip().upper()
    digits = code.removeprefix(DOSE_CODE_PREFIX)
    if code == digits or not digits.isdigit() or len(digits) > 12:
        return None
    return int(digits)


class Dose(Base):
    """One perfusion dispensed to one participant.

    `attempt` counts replacements: a wasted or returned dose leaves its perfusion
    due, and the replacement is attempt 2. The unique constraint on
    (cycle, perfusion, attempt) makes two concurrent dispensers of the same slot
    collide in the database, whatever the application did.
    """

    __tablename__ = "doses"
    __audit_entity__ = "dose"
    __table_args__ = (
        UniqueConstraint("cycle_id", "perfusion", "attempt"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in DOSE_STATUSES)})",
                        name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("treatment_cycles.id"))
    perfusion: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    dispensed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    dispensed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    verified_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    hours_since_surgery: Mapped[float] = mapped_column(Float)
    post_op_day: Mapped[int] = mapped_column(Integer)
    target_hours: Mapped[float] = mapped_column(Float)
    window_hours: Mapped[float] = mapped_column(Float)
    deviation: Mapped[str | None] = mapped_column(Text, nullable=True)
    use_by: Mapped[datetime] = mapped_column(UTCDateTime())
    administered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    administered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    volume_ml: Mapped[float | None] = mapped_column(Float, nullable=True)
    closed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    vials: Mapped[list["DoseVial"]] = relationship(back_populates="dose", lazy="selectin",
                                                 order_by="DoseVial.vial_id")

    @property
    def dose_code(self) -> str:
        # Derived from the primary key, so concurrent dispensers never race for a code.
        return format_dose_code(self.id)

    # `audit verify` reads doses from their columns, not as objects (audit_verify.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("participant_id", "cycle_id", "perfusion", "attempt", "status",
                         "dispensed_at", "dispensed_by_id", "verified_by_id",
                         "hours_since_surgery", "post_op_day", "target_hours", "window_hours",
                         "deviation", "use_by", "administered_at", "administered_by_id",
                         "volume_ml", "closed_reason", "closed_at", "closed_by_id")
    __audit_id_lists__ = (("vial_ids", "vials", "vial_id"),)
    __audit_key_columns__ = ("id",)
    audit_key_from = staticmethod(format_dose_code)

    @property
    def audit_key(self) -> str:
        return self.dose_code

    @property
    def in_window(self) -> bool:
        # Dispensing requires a deviation exactly when the time, to the second, is outside
        # the window (the stored hours are rounded for display).
        return self.deviation is None

    def audit_state(self) -> dict[str, object]:
        return {
            "participant_id": self.participant_id,
            "cycle_id": self.cycle_id, "perfusion": self.perfusion, "attempt": self.attempt,
            "status": self.status, "dispensed_at": iso(self.dispensed_at),
            "dispensed_by_id": self.dispensed_by_id, "verified_by_id": self.verified_by_id,
            "hours_since_surgery": self.hours_since_surgery, "post_op_day": self.post_op_day,
            "target_hours": self.target_hours, "window_hours": self.window_hours,
            "deviation": self.deviation, "use_by": iso(self.use_by),
            "administered_at": iso(self.administered_at),
            "administered_by_id": self.administered_by_id, "volume_ml": self.volume_ml,
            "closed_reason": self.closed_reason, "closed_at": iso(self.closed_at),
            "closed_by_id": self.closed_by_id,
            "vial_ids": sorted(v.vial_id for v in self.vials),
        }


class DoseVial(Base):
    """A vial used by a dose. A vial is unique here: it can be dispensed once, ever."""

    __tablename__ = "dose_vials"

    dose_id: Mapped[int] = mapped_column(ForeignKey("doses.id"), primary_key=True)
    vial_id: Mapped[int] = mapped_column(ForeignKey("vials.id"), primary_key=True, unique=True)

    dose: Mapped[Dose] = relationship(back_populates="vials")
