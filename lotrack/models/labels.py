"""Label prints: every label printed, by whom and when, and whether it was a reprint."""

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lotrack.models.base import Base, UTCDateTime, iso

LABEL_KINDS = ("vial", "box", "dose")


class LabelPrint(Base):
    """One label (in `copies` copies) of one subject: a vial serial, a box path or a dose id.

    `print_number` counts the prints of the same subject and kind: 1 is the original,
    2 and more are reprints, which carry a reason and are marked on the label.
    """

    __tablename__ = "label_prints"
    __audit_entity__ = "label_print"
    __table_args__ = (
        CheckConstraint("kind IN ('vial', 'box', 'dose')", name="kind_known"),
        CheckConstraint("copies >= 1", name="copies_positive"),
        CheckConstraint("print_number = 1 OR reason IS NOT NULL", name="reprint_reasoned"),
        # Also the index for "was this printed before?".
        UniqueConstraint("kind", "subject", "print_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(32), index=True)  # one print command
    kind: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(40))
    output_format: Mapped[str] = mapped_column(String(8))
    copies: Mapped[int] = mapped_column(Integer)
    print_number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    content: Mapped[str] = mapped_column(Text)  # what the barcodes carry, as printed
    printed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    printed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    # `audit verify` reads label prints from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("job", "kind", "subject", "template", "output_format", "copies",
                         "print_number", "reason", "content", "printed_at", "printed_by_id")
    __audit_key_columns__ = ("kind", "subject", "print_number")

    @staticmethod
    def audit_key_from(kind: str, subject: str, print_number: int) -> str:
        return f"{kind}:{subject}#{print_number}"

    @property
    def audit_key(self) -> str:
        return self.audit_key_from(self.kind, self.subject, self.print_number)

    def audit_state(self) -> dict[str, object]:
        return {
            "job": self.job, "kind": self.kind, "subject": self.subject,
            "template": self.template, "output_format": self.output_format,
            "copies": self.copies, "print_number": self.print_number, "reason": self.reason,
            "content": self.content, "printed_at": iso(self.printed_at),
            "printed_by_id": self.printed_by_id,
        }
