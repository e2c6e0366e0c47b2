"""Products, QC specifications, lots, QC results, vials, storage locations and excursions."""

from datetime import date, datetime, time

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lotrack.models.base import Base, UTCDateTime, iso

PRODUCT_KINDS = ("active", "placebo", "vehicle")
LOT_STATUSES = ("quarantine", "released", "rejected", "on_hold", "recalled", "destroyed")
# in_transit: in a dispatched shipment, at no storage position; unconfirmed: received from
# a shipment, stored, but its label not yet scanned (not dispensable); lost: its shipment was.
VIAL_STATUSES = ("in_stock", "quarantined", "dispensed", "administered", "returned", "wasted",
                 "destroyed", "in_transit", "unconfirmed", "lost")
SPEC_STATUSES = ("draft", "active", "superseded")
VERDICTS = ("pass", "fail", "not_evaluable")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Product(Base):
    __tablename__ = "products"
    __audit_entity__ = "product"
    __table_args__ = (CheckConstraint(_in("kind", PRODUCT_KINDS), name="kind_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))
    gtin: Mapped[str | None] = mapped_column(String(14), unique=True, nullable=True)
    storage_condition: Mapped[str] = mapped_column(String(100))
    storage_max_c: Mapped[float] = mapped_column(Float)
    shelf_life_days: Mapped[int] = mapped_column(Integer)
    post_thaw_hours: Mapped[float] = mapped_column(Float)
    fill_volume_ml: Mapped[float] = mapped_column(Float)
    dosage_form: Mapped[str] = mapped_column(String(100))
    route: Mapped[str] = mapped_column(String(100))
    # Days before expiry from which a vial is no longer dispensed, or shipped (RTSM offsets).
    do_not_dispense_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    do_not_ship_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    @property
    def is_placebo(self) -> bool:
        return self.kind == "placebo"

    @property
    def audit_key(self) -> str:
        return self.code

    def audit_state(self) -> dict[str, object]:
        return {"code": self.code, "name": self.name, "kind": self.kind, "gtin": self.gtin,
                "storage_condition": self.storage_condition, "storage_max_c": self.storage_max_c,
                "shelf_life_days": self.shelf_life_days, "post_thaw_hours": self.post_thaw_hours,
                "fill_volume_ml": self.fill_volume_ml, "dosage_form": self.dosage_form,
                "route": self.route, **_offsets(self)}


def _offsets(product: Product) -> dict[str, object]:
    # Stated only when set: products recorded before the offsets existed keep the audited
    # state they were recorded with, so `audit verify` still holds after the upgrade.
    return {k: v for k, v in (("do_not_dispense_days", product.do_not_dispense_days),
                              ("do_not_ship_days", product.do_not_ship_days)) if v}


class Specification(Base):
    """A versioned QC specification of a product, loaded from a TOML file."""

    __tablename__ = "specifications"
    __audit_entity__ = "specification"
    __table_args__ = (UniqueConstraint("product_id", "version"),
                      CheckConstraint(_in("status", SPEC_STATUSES), name="status_known"))

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    content: Mapped[str] = mapped_column(Text)  # the validated attributes, canonical JSON
    content_sha256: Mapped[str] = mapped_column(String(64))
    source_name: Mapped[str] = mapped_column(String(255))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    loaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    product: Mapped[Product] = relationship()

    @property
    def audit_key(self) -> str:
        return f"{self.product.code} v{self.version}"

    def audit_state(self) -> dict[str, object]:
        return {"product_id": self.product_id, "version": self.version, "status": self.status,
                "content_sha256": self.content_sha256, "source_name": self.source_name,
                "activated_at": iso(self.activated_at)}


class Lot(Base):
    __tablename__ = "lots"
    __audit_entity__ = "lot"
    __table_args__ = (
        UniqueConstraint("product_id", "lot_number"),
        CheckConstraint(_in("status", LOT_STATUSES), name="status_known"),
        CheckConstraint("expiry_on > manufactured_on", name="expiry_after_manufacture"),
        CheckConstraint("vial_count > 0", name="vial_count_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_number: Mapped[str] = mapped_column(String(20), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    specification_id: Mapped[int] = mapped_column(ForeignKey("specifications.id"))
    manufactured_on: Mapped[date] = mapped_column(Date)
    expiry_on: Mapped[date] = mapped_column(Date)
    # Site-local time of day the lot expires; none: the end of the expiry day.
    expiry_time: Mapped[time | None] = mapped_column(Time, nullable=True)
    cell_line: Mapped[str] = mapped_column(String(100))
    cell_bank_id: Mapped[str] = mapped_column(String(100))
    passage: Mapped[int] = mapped_column(Integer)
    vial_count: Mapped[int] = mapped_column(Integer)
    fill_volume_ml: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12))
    qa_review_needed: Mapped[bool] = mapped_column(Boolean, default=False)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    registered_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    destroyed_quantity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    destroyed_witness_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    product: Mapped[Product] = relationship()
    specification: Mapped[Specification] = relationship()

    @property
    def audit_key(self) -> str:
        return f"{self.product.code}/{self.lot_number}"

    def audit_state(self) -> dict[str, object]:
        return {"lot_number": self.lot_number, "product_id": self.product_id,
                "specification_id": self.specification_id,
                "manufactured_on": iso(self.manufactured_on), "expiry_on": iso(self.expiry_on),
                "cell_line": self.cell_line, "cell_bank_id": self.cell_bank_id,
                "passage": self.passage, "vial_count": self.vial_count,
                "fill_volume_ml": self.fill_volume_ml, "status": self.status,
                "qa_review_needed": self.qa_review_needed,
                "destroyed_quantity": self.destroyed_quantity,
                "destroyed_witness_id": self.destroyed_witness_id,
                # Only when given, for the same reason as the product's offsets.
                **({"expiry_time": self.expiry_time.isoformat(timespec="minutes")}
                   if self.expiry_time is not None else {})}


class QcResult(Base):
    """One QC test result; a correction supersedes it and both stay visible."""

    __tablename__ = "qc_results"
    __audit_entity__ = "qc_result"
    __table_args__ = (CheckConstraint(_in("verdict", VERDICTS), name="verdict_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"), index=True)
    attribute: Mapped[str] = mapped_column(String(100))
    value_text: Mapped[str] = mapped_column(String(200))
    value_number: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(200))
    tested_on: Mapped[date] = mapped_column(Date)
    analyst: Mapped[str] = mapped_column(String(100))
    verdict: Mapped[str] = mapped_column(String(14))
    verdict_detail: Mapped[str] = mapped_column(String(300))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    entered_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("qc_results.id"), nullable=True)
    correction_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)

    # `audit verify` reads QC results from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("lot_id", "attribute", ("value", "value_text"), "unit", "method",
                         "tested_on", "analyst", "verdict", "supersedes_id", "correction_reason",
                         "superseded")
    __audit_key_columns__ = ("id",)

    @property
    def audit_key(self) -> str:
        return str(self.id)

    def audit_state(self) -> dict[str, object]:
        return {"lot_id": self.lot_id, "attribute": self.attribute, "value": self.value_text,
                "unit": self.unit, "method": self.method, "tested_on": iso(self.tested_on),
                "analyst": self.analyst, "verdict": self.verdict,
                "supersedes_id": self.supersedes_id, "correction_reason": self.correction_reason,
                "superseded": self.superseded}


class StorageLocation(Base):
    """A node of the storage hierarchy: site / freezer / rack / box; boxes have positions."""

    __tablename__ = "storage_locations"
    __audit_entity__ = "location"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(200), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("storage_locations.id"),
                                                  nullable=True)
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    # `audit verify` reads storage locations from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("path", "parent_id", "capacity")
    __audit_key_columns__ = ("path",)

    @property
    def audit_key(self) -> str:
        return self.path

    def audit_state(self) -> dict[str, object]:
        return {"path": self.path, "parent_id": self.parent_id, "capacity": self.capacity}


class Vial(Base):
    __tablename__ = "vials"
    __audit_entity__ = "vial"
    __table_args__ = (
        CheckConstraint(_in("status", VIAL_STATUSES), name="status_known"),
        # One vial per position: the database itself refuses a second.
        UniqueConstraint("location_id", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(20), unique=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(14))
    on_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    location_id: Mapped[int | None] = mapped_column(ForeignKey("storage_locations.id"),
                                                    nullable=True, index=True)
    position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    lot: Mapped[Lot] = relationship()
    location: Mapped[StorageLocation | None] = relationship()

    # `audit verify` reads vials from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("serial", "lot_id", "number", "status", "on_hold", "location_id",
                         "position", "received_at")
    __audit_key_columns__ = ("serial",)

    @property
    def audit_key(self) -> str:
        return self.serial

    def audit_state(self) -> dict[str, object]:
        return {"serial": self.serial, "lot_id": self.lot_id, "number": self.number,
                "status": self.status, "on_hold": self.on_hold, "location_id": self.location_id,
                "position": self.position, "received_at": iso(self.received_at)}


class Excursion(Base):
    """A temperature excursion at a storage location; vials there go on hold."""

    __tablename__ = "excursions"
    __audit_entity__ = "excursion"

    id: Mapped[int] = mapped_column(primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("storage_locations.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    max_temp_c: Mapped[float] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    vials_affected: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    # `audit verify` reads excursions from their columns, not as objects (audit.RowReader);
    # tests/integration/test_audit_verify_fast.py holds these equal to audit_key/audit_state().
    __audit_columns__ = ("location_id", "started_at", "ended_at", "max_temp_c", "note",
                         "vials_affected")
    __audit_key_columns__ = ("id",)

    @property
    def audit_key(self) -> str:
        return str(self.id)

    def audit_state(self) -> dict[str, object]:
        return {"location_id": self.location_id, "started_at": iso(self.started_at),
                "ended_at": iso(self.ended_at), "max_temp_c": self.max_temp_c,
                "note": self.note, "vials_affected": self.vials_affected}
