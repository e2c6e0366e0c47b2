"""SQLAlchemy models, one module per aggregate; importing this package registers them all."""

from lotrack.models.audit import AuditEvent, AuditHead, Signature
from lotrack.models.base import Base
from lotrack.models.dosing import Dose, DoseVial
from lotrack.models.labels import LabelPrint
from lotrack.models.lots import (
    Excursion,
    Lot,
    Product,
    QcResult,
    Specification,
    StorageLocation,
    Vial,
)
from lotrack.models.participants import (
    Hysteroscopy,
    Participant,
    ProtocolVersion,
    Surgery,
    TreatmentCycle,
)
from lotrack.models.safety import AdverseEvent
from lotrack.models.settings import Setting
from lotrack.models.shipments import Shipment, ShipmentVial
from lotrack.models.users import ROLES, LoginSession, User, UserRole

__all__ = [
    "ROLES",
    "AdverseEvent",
    "AuditEvent",
    "AuditHead",
    "Base",
    "Dose",
    "DoseVial",
    "Excursion",
    "Hysteroscopy",
    "LabelPrint",
    "LoginSession",
    "Lot",
    "Participant",
    "Product",
    "ProtocolVersion",
    "QcResult",
    "Setting",
    "Shipment",
    "ShipmentVial",
    "Signature",
    "Specification",
    "StorageLocation",
    "Surgery",
    "TreatmentCycle",
    "User",
    "UserRole",
    "Vial",
]
