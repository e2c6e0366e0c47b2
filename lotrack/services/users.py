"""User administration: accounts are deactivated, never deleted (ALCOA+: attributable)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import InvalidInput, NotFound, RuleViolation
from lotrack.models import ROLES, User, UserRole
from lotrack.models.base import utcnow
from lotrack.services.auth import authenticate, find_user, hash_password
from lotrack.services.roles import require_role

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")


def validate_new_user(username: str, full_name: str, roles: Sequence[str]) -> list[str]:
    if not USERNAME_RE.match(username):
        raise InvalidInput(f"username {username!r} must be 2-64 characters: lower-case letters, "
                           "digits, '.', '_' or '-', starting with a letter")
    if not full_name.strip():
        raise InvalidInput("a user needs a full name (it is the printed name of signatures)")
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InvalidInput(f"unknown role {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if not roles:
        raise InvalidInput("a user needs at least one role")
    return sorted(set(roles))


def _insert_user(session: Session, actor: User | None, username: str, full_name: str,
                 roles: Sequence[str], password: str) -> User:
    clean_roles = validate_new_user(username, full_name, roles)
    if find_user(session, username) is not None:
        raise RuleViolation(f"user {username} already exists")
    user = User(username=username, full_name=full_name.strip(),
                password_hash=hash_password(password), active=True, locked=False,
                failed_logins=0, created_at=utcnow())
    user.roles = [UserRole(role=r) for r in clean_roles]
    session.add(user)
    session.flush()
    audit.record_row(session, actor or user, user, "create")
    return user


def has_users(session: Session) -> bool:
    return bool(session.execute(select(func.count(User.id))).scalar_one())


def create_first_admin(session: Session, username: str, full_name: str, password: str) -> User:
    """The first account of a new database; it is attributed to itself."""
    if has_users(session):
        raise RuleViolation("the database already has users: add more with `lotrack user add`")
    return _insert_user(session, None, username, full_name, ["admin"], password)


def add_user(session: Session, actor: User, username: str, full_name: str,
             roles: Sequence[str], password: str) -> User:
    require_role(actor, "admin", action="adding a user")
    return _insert_user(session, actor, username, full_name, roles, password)


def list_users(session: Session) -> list[User]:
    return list(session.execute(select(User).order_by(User.username)).scalars())


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def deactivate_user(session: Session, actor: User, username: str, reason: str) -> User:
    require_role(actor, "admin", action="deactivating a user")
    user = get_user(session, username)
    if user.id == actor.id:
        raise RuleViolation("you cannot deactivate your own account")
    if not user.active:
        raise RuleViolation(f"user {username} is already deactivated")
    _require_reason(reason)
    before = user.audit_state()
    user.active = False
    audit.record_row(session, actor, user, "deactivate", before, reason)
    return user


def unlock_user(session: Session, actor: User, username: str, reason: str) -> User:
    require_role(actor, "admin", action="unlocking a user")
    user = get_user(session, username)
    if not user.locked:
        raise RuleViolation(f"user {username} is not locked")
    _require_reason(reason)
    before = user.audit_state()
    user.locked, user.failed_logins = False, 0
    audit.record_row(session, actor, user, "unlock", before, reason)
    return user


def set_roles(session: Session, actor: User, username: str, roles: Sequence[str],
              reason: str) -> User:
    require_role(actor, "admin", action="changing roles")
    user = get_user(session, username)
    clean = validate_new_user(user.username, user.full_name, roles)
    if user.id == actor.id and "admin" not in clean:
        raise RuleViolation("you cannot remove your own admin role")
    _require_reason(reason)
    before = user.audit_state()
    user.roles = [UserRole(role=r) for r in clean]
    audit.record_row(session, actor, user, "roles_changed", before, reason)
    return user


def change_own_password(session: Session, username: str, current: str, new: str) -> User:
    user = authenticate(session, username, current, purpose="password change")
    if current == new:
        raise InvalidInput("the new password must differ from the current one")
    before = user.audit_state()
    user.password_hash = hash_password(new)
    audit.record_row(session, user, user, "password_changed", before)
    return user


def reset_password(session: Session, actor: User, username: str, new: str, reason: str) -> User:
    require_role(actor, "admin", action="resetting another user's password")
    user = get_user(session, username)
    _require_reason(reason)
    before = user.audit_state()
    user.password_hash = hash_password(new)
    audit.record_row(session, actor, user, "password_reset", before, reason)
    return user


def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise InvalidInput("a reason is required for this change")
