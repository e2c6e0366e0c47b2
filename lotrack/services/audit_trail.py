"""Reading and verifying the audit trail, for every role (monitors and inspectors included)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.models import AuditEvent, User
from lotrack.services.roles import require_role

READERS = ("admin", "pharmacist", "qa", "investigator", "monitor")


@dataclass(frozen=True)
class EventSelection:
    """Which events a reader asked for, fixed when asked: the filters and the range of
    sequence numbers. Events are never changed once written and `seq` only grows, so the
    selection can be read in pages, in as many transactions as it takes, and give what
    one snapshot would have."""

    entity: str | None
    entity_id: str | None
    since: datetime | None
    first_seq: int
    last_seq: int

    def conditions(self) -> list[ColumnElement[bool]]:
        wanted = [AuditEvent.seq >= self.first_seq, AuditEvent.seq <= self.last_seq]
        if self.entity:
            wanted.append(AuditEvent.entity == self.entity)
        if self.entity_id:
            wanted.append(AuditEvent.entity_id == self.entity_id)
        if self.since:
            wanted.append(AuditEvent.occurred_at >= self.since)
        return wanted


def select_events(session: Session, actor: User, entity: str | None, entity_id: str | None,
                  since: datetime | None, limit: int) -> EventSelection:
    """The most recent `limit` events matching the filters (every role may read them)."""
    require_role(actor, *READERS, action="reading the audit trail")
    last = audit.head(session)[0]
    matching = EventSelection(entity, entity_id, since, 1, last)
    first = session.execute(
        select(AuditEvent.seq).where(*matching.conditions())
        .order_by(AuditEvent.seq.desc()).offset(limit - 1).limit(1)).scalar_one_or_none()
    return EventSelection(entity, entity_id, since, first or 1, last)


# Rows per page: a whole trail (millions of events) is read and shown page by page in
# bounded memory, never loaded at once.
PAGE = 1000


def event_page(session: Session, selection: EventSelection, after_seq: int,
               size: int = PAGE) -> list[dict[str, object]]:
    """The next `size` selected events after `after_seq`, oldest first (keyset paging)."""
    columns = [getattr(AuditEvent, name) for name in _COLUMNS]
    rows = session.execute(
        select(*columns).where(*selection.conditions(), AuditEvent.seq > after_seq)
        .order_by(AuditEvent.seq).limit(size)).all()
    return [_event_dict(*row) for row in rows]


def events(session: Session, actor: User, entity: str | None, entity_id: str | None,
           since: datetime | None, limit: int) -> list[dict[str, object]]:
    """The most recent `limit` events matching the filters, oldest first, as one list."""
    selection = select_events(session, actor, entity, entity_id, since, limit)
    found: list[dict[str, object]] = []
    while page := event_page(session, selection, found[-1]["seq"] if found else 0):
        found += page
    return found


_COLUMNS = ("seq", "occurred_at", "username", "entity", "entity_id", "action", "reason",
            "before", "after", "hash")


def _event_dict(seq: int, occurred_at: datetime, username: str, entity: str, entity_id: str,
                action: str, reason: str | None, before_json: str | None,
                after_json: str | None, hash_: str) -> dict[str, object]:
    before = json.loads(before_json) if before_json else None
    after = json.loads(after_json) if after_json else None
    return {
        "seq": seq, "at": occurred_at, "user": username, "entity": entity, "id": entity_id,
        "action": action, "reason": reason, "before": before, "after": after,
        "changes": _changes(before, after), "hash": hash_,
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
