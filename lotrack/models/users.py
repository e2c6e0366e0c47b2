"""Users, their roles and login sessions."""

import hashlib
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lotrack.models.base import Base, UTCDateTime

ROLES = ("admin", "pharmacist", "qa", "investigator", "monitor")
_ROLE_LIST = ", ".join(f"'{r}'" for r in ROLES)


class User(Base):
    __tablename__ = "users"
    __audit_entity__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    roles: Mapped[list["UserRole"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin",
        order_by="UserRole.role",
    )

    @property
    def role_names(self) -> list[str]:
        return sorted(r.role for r in self.roles)

    def has_role(self, role: str) -> bool:
        return any(r.role == role for r in self.roles)

    @property
    def audit_key(self) -> str:
        return self.username

    def audit_state(self) -> dict[str, object]:
        # The password hash itself stays out of the trail (a second copy of a
        # secret); a digest of it still reveals a hash replaced behind our back.
        return {
            "password": hashlib.sha256(self.password_hash.encode()).hexdigest()[:16],
            "username": self.username,
            "full_name": self.full_name,
            "active": self.active,
            "locked": self.locked,
            "failed_logins": self.failed_logins,
            "roles": self.role_names,
        }


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (CheckConstraint(f"role IN ({_ROLE_LIST})", name="role_known"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True)

    user: Mapped[User] = relationship(back_populates="roles")


class LoginSession(Base):
    """A login that lasts until logout or an idle period; only a hash of its token is kept."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    user: Mapped[User] = relationship()
