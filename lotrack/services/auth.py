"""Passwords, authentication with lockout, login sessions and signature re-authentication."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import InvalidInput, PermissionDenied
from lotrack.models import LoginSession, User
from lotrack.models.base import utcnow

MAX_FAILED_LOGINS = 5
MIN_PASSWORD_LENGTH = 8


class AuthenticationFailed(PermissionDenied):
    """A wrong password; the unit of work records the failure after rolling back."""

    def __init__(self, message: str, username: str) -> None:
        super().__init__(message)
        self.username = username


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    # OWASP's minimum argon2id profile (19 MiB, 2 passes): slow for an attacker,
    # still quick enough for a dispense that checks two passwords.
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    check_password_policy(password)
    return _hasher().hash(password)


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise InvalidInput("a password must not start or end with white space")


def _password_matches(user: User, password: str) -> bool:
    try:
        return _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _checked_key(user: User, password: str) -> str:
    # Keyed by the stored hash too, so a password changed in the transaction is checked again.
    return hashlib.sha256(f"{user.id}\0{user.password_hash}\0{password}".encode()).hexdigest()


def _checked_in_this_transaction(session: Session, user: User, password: str) -> bool:
    """True when this user's password was already checked in this transaction.

    A command reads each person's password once: the dispenser's login and signature
    are the same typed password, so it is checked by argon2 once (the slow, deliberate
    part) and the signature still needs it given. The memo lives in the session, which
    lives for one transaction (db.unit_of_work)."""
    return _checked_key(user, password) in session.info.get("passwords_checked", ())


def _remember_checked(session: Session, user: User, password: str) -> None:
    session.info.setdefault("passwords_checked", set()).add(_checked_key(user, password))


def find_user(session: Session, username: str) -> User | None:
    return session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def authenticate(session: Session, username: str, password: str, purpose: str = "login") -> User:
    """Check a user id and password (Part 11's two components); count failures, lock at five."""
    user = find_user(session, username)
    if user is None:
        raise PermissionDenied(f"unknown user {username!r} or wrong password")
    _check(session, user, password, purpose)
    return user


def _check(session: Session, user: User, password: str, purpose: str) -> None:
    """The account's state and the password, for a login or a signature."""
    username = user.username
    if not user.active:
        raise PermissionDenied(f"user {username} is deactivated")
    if user.locked:
        raise PermissionDenied(f"user {username} is locked after {MAX_FAILED_LOGINS} failed "
                               "attempts; an administrator must unlock it")
    if not _checked_in_this_transaction(session, user, password):
        if not _password_matches(user, password):
            raise AuthenticationFailed(f"wrong password for {username} ({purpose})", username)
        _remember_checked(session, user, password)
    if user.failed_logins:
        before = user.audit_state()
        user.failed_logins = 0
        audit.record_row(session, user, user, "failed_logins_reset", before)


def record_failed_attempt(engine: Engine, failure: AuthenticationFailed) -> None:
    """Count a failed password in its own transaction; the fifth in a row locks the account."""
    with Session(engine, expire_on_commit=False) as session:
        user = find_user(session, failure.username)
        if user is None:
            return
        before = user.audit_state()
        user.failed_logins += 1
        action = "login_failed"
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked = True
            action = "locked"
        audit.record_row(session, user, user, action, before,
                         reason=f"{user.failed_logins} consecutive failed password checks")
        session.commit()
    if action == "locked":
        failure.args = (f"{failure.args[0]}; the account is now locked",)


def reauthenticate(session: Session, user: User, password: str | None, meaning: str) -> None:
    """A signature re-checks the password even inside a login session (21 CFR 11.200)."""
    if not password:
        raise PermissionDenied(f"signing as {user.username} ({meaning}) needs the password")
    if user in session:  # already this transaction's row: no need to read it again
        _check(session, user, password, f"signature: {meaning}")
    else:
        authenticate(session, user.username, password, purpose=f"signature: {meaning}")


# --- login sessions --------------------------------------------------------

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewLogin:
    user: User
    token: str


def login(session: Session, username: str, password: str) -> NewLogin:
    user = authenticate(session, username, password)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(LoginSession(token_hash=_token_hash(token), user_id=user.id,
                             started_at=now, last_seen_at=now))
    audit.record(session, user, "user", user.username, "login", None, None)
    return NewLogin(user, token)


def resume(session: Session, token: str, idle_minutes: int) -> User:
    """The user of a live login session; an idle session has expired and says so."""
    login_session = session.execute(
        select(LoginSession).where(LoginSession.token_hash == _token_hash(token))
    ).scalar_one_or_none()
    if login_session is None or login_session.ended_at is not None:
        raise PermissionDenied("not logged in: run `lotrack login` "
                               "(or set LOTRACK_USER and LOTRACK_PASSWORD)")
    now = utcnow()
    if now - login_session.last_seen_at > timedelta(minutes=idle_minutes):
        raise PermissionDenied(f"the login session expired after {idle_minutes} idle minutes: "
                               "run `lotrack login` again")
    user = login_session.user
    if not user.active or user.locked:
        raise PermissionDenied(f"user {user.username} can no longer log in")
    login_session.last_seen_at = now
    return user


def logout(session: Session, token: str) -> User | None:
    login_session = session.execute(
        select(LoginSession).where(LoginSession.token_hash == _token_hash(token))
    ).scalar_one_or_none()
    if login_session is None or login_session.ended_at is not None:
        return None
    login_session.ended_at = utcnow()
    audit.record(session, login_session.user, "user", login_session.user.username, "logout",
                 None, None)
    return login_session.user
