"""The append-only audit trail, its chain head, and electronic signatures."""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lotrack.models.base import Base, UTCDateTime, iso


class AuditEvent(Base):
    """One change to one record. `seq` is assigned by the application, gap-free,
    under the chain-head lock, so a deleted or reordered event shows as a gap."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_entity_entity_id", "entity", "entity_id"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    username: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    # Canonical JSON text, hashed exactly as stored (a JSON column type could be
    # re-serialised by the backend and break the hash).
    before: Mapped[str | None] = mapped_column(Text, nullable=True)
    after: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    # Not indexed: nothing looks an event up by its hash (migration 0006).
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """A single row holding the chain's last sequence number and hash.

    Appending locks this row (SELECT ... FOR UPDATE), which serialises writers on
    PostgreSQL; it also reveals a deleted last event."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class Signature(Base):
    """An electronic signature (21 CFR 11.50): who, printed name, when, meaning, what."""

    __tablename__ = "signatures"
    __audit_entity__ = "signature"
    __table_args__ = (Index("ix_signatures_entity_entity_id", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    printed_name: Mapped[str] = mapped_column(String(200))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    meaning: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(100))
    record_hash: Mapped[str] = mapped_column(String(64))

    # `audit verify` reads signatures from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("user_id", "printed_name", "signed_at", "meaning", "entity",
                         "entity_id", "record_hash")
    __audit_key_columns__ = ("id",)

    @property
    def audit_key(self) -> str:
        return str(self.id)

    def audit_state(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "printed_name": self.printed_name,
            "signed_at": iso(self.signed_at),
            "meaning": self.meaning,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "record_hash": self.record_hash,
        }
