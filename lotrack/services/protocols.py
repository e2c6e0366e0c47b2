"""Protocol versions: loaded from the protocol file, activated with a signature."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import NotFound, RuleViolation
from lotrack.models import User
from lotrack.models.base import utcnow
from lotrack.models.participants import ProtocolVersion
from lotrack.schemas.protocol import ProtocolFile
from lotrack.services.auth import reauthenticate
from lotrack.services.roles import require_role

ACTIVATION_MEANING = "protocol settings approved"


def load_protocol(session: Session, actor: User, protocol: ProtocolFile,
                  source_name: str) -> ProtocolVersion:
    """Store a validated protocol file as the next draft version of its code."""
    require_role(actor, "investigator", "admin", action="loading a protocol")
    content = audit.canonical(protocol.model_dump(mode="json"))
    digest = hashlib.sha256(content.encode()).hexdigest()
    code = protocol.protocol.code
    same = session.execute(select(ProtocolVersion).where(
        ProtocolVersion.code == code, ProtocolVersion.content_sha256 == digest)).scalar()
    if same is not None:
        raise RuleViolation(f"protocol {code} version {same.version} already has this content")
    latest = session.execute(select(func.max(ProtocolVersion.version))
                             .where(ProtocolVersion.code == code)).scalar() or 0
    version = ProtocolVersion(code=code, version=latest + 1, status="draft", content=content,
                              content_sha256=digest, source_name=source_name[:255],
                              loaded_at=utcnow(), loaded_by_id=actor.id)
    session.add(version)
    audit.record_row(session, actor, version, "load")
    return version


def activate_protocol(session: Session, actor: User, code: str, version: int,
                      password: str | None) -> ProtocolVersion:
    """Make a draft the active version (signed by an investigator); the old one is superseded."""
    require_role(actor, "investigator", action="activating a protocol version")
    target = session.execute(select(ProtocolVersion).where(
        ProtocolVersion.code == code, ProtocolVersion.version == version)
        .with_for_update()).scalar()
    if target is None:
        raise NotFound(f"no protocol {code} version {version}")
    if target.status != "draft":
        raise RuleViolation(f"protocol {code} version {version} is {target.status}, not a draft")
    reauthenticate(session, actor, password, ACTIVATION_MEANING)
    now = utcnow()
    for old in session.execute(select(ProtocolVersion).where(
            ProtocolVersion.code == code, ProtocolVersion.status == "active")).scalars():
        before = old.audit_state()
        old.status = "superseded"
        audit.record_row(session, actor, old, "supersede", before,
                         reason=f"version {version} activated")
    before = target.audit_state()
    target.status, target.activated_at = "active", now
    audit.record_row(session, actor, target, "activate", before)
    audit.sign(session, actor, ACTIVATION_MEANING, "protocol", target.audit_key,
               target.audit_state())
    return target


def active_protocol(session: Session) -> tuple[ProtocolVersion, ProtocolFile]:
    version = session.execute(select(ProtocolVersion).where(
        ProtocolVersion.status == "active").order_by(ProtocolVersion.id.desc())).scalar()
    if version is None:
        raise RuleViolation("no protocol is active: load one with `lotrack protocol load FILE` "
                            "and activate it")
    return version, protocol_content(version)


def protocol_content(version: ProtocolVersion) -> ProtocolFile:
    return ProtocolFile.model_validate_json(version.content)


def list_protocols(session: Session) -> list[ProtocolVersion]:
    return list(session.execute(select(ProtocolVersion)
                                .order_by(ProtocolVersion.code, ProtocolVersion.version)).scalars())
