"""Shipments of vials from a depot to a trial site, and the vials each carries."""

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lotrack.models.base import Base, UTCDateTime, iso

# prepared -> in_transit -> received, or quarantined (no monitor reading, or an excursion)
# -> received after QA release; in_transit -> lost; prepared -> cancelled.
SHIPMENT_STATUSES = ("prepared", "in_transit", "quarantined", "received", "lost", "cancelled")
SHIPMENT_CODE_PREFIX = "SH"


def format_shipment_code(shipment_id: int) -> str:
    return f"{SHIPMENT_CODE_PREFIX}{shipment_id:06d}"


def parse_shipment_code(text: str) -> int | None:
    """The shipment id of a code such as SH000012 (or sh12); None when it is not one."""
    code = text.strip().upper()
    digits = code.removeprefix(SHIPMENT_CODE_PREFIX)
    if code == digits or not digits.isdigit() or len(digits) > 12:
        return None
    return int(digits)


class Shipment(Base):
    """A shipment: its vials leave storage at dispatch and arrive unconfirmed at receipt."""

    __tablename__ = "shipments"
    __audit_entity__ = "shipment"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in SHIPMENT_STATUSES)})",
                        name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(12))
    origin_id: Mapped[int] = mapped_column(ForeignKey("storage_locations.id"))
    destination_id: Mapped[int] = mapped_column(ForeignKey("storage_locations.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    courier: Mapped[str | None] = mapped_column(String(100), nullable=True)
    tracking_number: Mapped[str | None] = mapped_column(String(100), nullable=True)
    monitor_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    dispatched_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    received_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    max_temp_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    quarantine_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    release_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    closed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    vials: Mapped[list["ShipmentVial"]] = relationship(back_populates="shipment", lazy="selectin",
                                                     order_by="ShipmentVial.vial_id")

    @property
    def code(self) -> str:
        # Derived from the primary key, so concurrent shippers never race for a code.
        return format_shipment_code(self.id)

    @property
    def audit_key(self) -> str:
        return self.code

    def audit_state(self) -> dict[str, object]:
        return {
            "status": self.status, "origin_id": self.origin_id,
            "destination_id": self.destination_id, "created_by_id": self.created_by_id,
            "courier": self.courier, "tracking_number": self.tracking_number,
            "monitor_id": self.monitor_id, "dispatched_at": iso(self.dispatched_at),
            "dispatched_by_id": self.dispatched_by_id, "received_at": iso(self.received_at),
            "received_by_id": self.received_by_id, "max_temp_c": self.max_temp_c,
            "quarantine_reason": self.quarantine_reason, "released_at": iso(self.released_at),
            "released_by_id": self.released_by_id, "release_reason": self.release_reason,
            "closed_at": iso(self.closed_at), "closed_by_id": self.closed_by_id,
            "closed_reason": self.closed_reason,
            # Membership and confirmation are part of the shipment's audited state, so a
            # vial slipped into or out of a shipment, or confirmed, behind lotrack's back
            # is found by `audit verify`.
            "vial_ids": [v.vial_id for v in self.vials],
            "confirmed_vial_ids": [v.vial_id for v in self.vials if v.confirmed_at is not None],
        }


class ShipmentVial(Base):
    """A vial carried by a shipment, and when its label was scanned at receipt."""

    __tablename__ = "shipment_vials"

    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), primary_key=True)
    vial_id: Mapped[int] = mapped_column(ForeignKey("vials.id"), primary_key=True, index=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    shipment: Mapped[Shipment] = relationship(back_populates="vials")
