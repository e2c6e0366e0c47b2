"""SQLAlchemy models, one module per aggregate; importing this package registers them all."""

from lotrack.models.audit import AuditEvent, AuditHead, Signature
from lotrack.models.base import Base
from lotrack.models.users import ROLES, LoginSession, User, UserRole

__all__ = [
    "ROLES",
    "AuditEvent",
    "AuditHead",
    "Base",
    "LoginSession",
    "Signature",
    "User",
    "UserRole",
]
