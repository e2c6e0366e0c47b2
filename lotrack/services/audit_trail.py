"""Reading and verifying the audit trail, for every role (monitors and inspectors included)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.models import AuditEvent, User
from lotrack.services.roles import require_role

READERS = ("admin", "pharmacist", "qa", "investigator", "monitor")


def events(session: Session, actor: User, entity: str | None, entity_id: str | None,
           since: datetime | None, limit: int) -> list[dict[str, object]]:
    require_role(actor, *READERS, action="reading the audit trail")
    stmt = select(AuditEvent)
    if entity:
        stmt = stmt.where(AuditEvent.entity == entity)
    if entity_id:
        stmt = stmt.where(AuditEvent.entity_id == entity_id)
    if since:
        stmt = stmt.where(AuditEvent.occurred_at >= since)
    rows = list(session.execute(stmt.order_by(AuditEvent.seq.desc()).limit(limit)).scalars())
    return [_event_dict(e) for e in reversed(rows)]


def _event_dict(event: AuditEvent) -> dict[str, object]:
    before = json.loads(event.before) if event.before else None
    after = json.loads(event.after) if event.after else None
    return {
        "seq": event.seq, "at": event.occurred_at, "user": event.username,
        "entity": event.entity, "id": event.entity_id, "action": event.action,
        "reason": event.reason, "before": before, "after": after,
        "changes": _changes(before, after), "hash": event.hash,
    }


def _changes(before: dict[str, object] | None, after: dict[str, object] | None) -> str:
    """Old and new value of each changed field (Annex 11: what changed, from what)."""
    if after is None:
        return ""
    if before is None:
        return "created"
    changed = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
               for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    return "; ".join(changed)


def verify(session: Session, actor: User) -> audit.VerifyReport:
    require_role(actor, *READERS, action="verifying the audit trail")
    return audit.verify(session)
