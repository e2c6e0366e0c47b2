"""Site-wide settings kept in the database, so every workstation works by the same ones."""

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lotrack.models.base import Base, UTCDateTime, iso

SITE_TIME_ZONE = "site_time_zone"


class Setting(Base):
    """One named value (`site_time_zone`: an IANA zone name), who last set it and when."""

    __tablename__ = "settings"
    __audit_entity__ = "setting"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    # `audit verify` reads settings from their columns (audit_verify.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("key", "value", "changed_at", "changed_by_id")
    __audit_key_columns__ = ("key",)

    @property
    def audit_key(self) -> str:
        return self.key

    def audit_state(self) -> dict[str, object]:
        return {"key": self.key, "value": self.value, "changed_at": iso(self.changed_at),
                "changed_by_id": self.changed_by_id}
