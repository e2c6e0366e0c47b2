"""The hash-chained audit trail (21 CFR 11.10(e), EU GMP Annex 11 s.9) and e-signatures.

Every service that changes a record calls `record` in the same transaction, so a
change and its audit event commit or roll back together. Each event's hash covers
its content and the previous event's hash; `verify` recomputes the chain and
compares every audited row with the state its last event recorded, so an edited,
deleted or reordered event, and a row edited behind the application's back, are
all found and named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any, NamedTuple, Protocol

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from lotrack.db import bulk_insert
from lotrack.models import AuditEvent, AuditHead, Base, Signature, User
from lotrack.models.base import utcnow

GENESIS_HASH = "0" * 64
# An event's hashed payload, written out (see _payload_hash and audit_verify).
EVENT_PAYLOAD = "[" + ",".join(["%s"] * 11) + "]"
json_string = encode_basestring  # json.dumps' own (C) string encoder, ensure_ascii=False


class Audited(Protocol):
    """A model whose rows are audited: it names its entity and its key, and says its state."""

    __audit_entity__: str

    @property
    def audit_key(self) -> str: ...

    def audit_state(self) -> dict[str, object]: ...


def audited_models() -> list[type[Audited]]:
    return sorted(
        (m.class_ for m in Base.registry.mappers if hasattr(m.class_, "__audit_entity__")),
        key=lambda cls: cls.__audit_entity__,
    )


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not serialisable in the audit trail: {type(value).__name__}")


_NESTED = (float, dict, list, tuple)
_FLAT = frozenset({str, int, bool, type(None)})  # none of them a kind of _NESTED


def _normalise(value: object) -> object:
    # A number must read the same whether it came from Python (70) or back from a
    # FLOAT column (70.0), or the comparison of a row with its audited state fails.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        # The distinct types of the values, not each value: a bulk path canonicalises a
        # hundred thousand states.
        types = set(map(type, value.values()))
        if types <= _FLAT or not any(issubclass(t, _NESTED) for t in types):
            return value  # a flat state without floats, the common case: nothing to change
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical(value: object) -> str:
    return _CANONICAL.encode(_normalise(value))


# What json.dumps(sort_keys=True, ...) builds on every call, built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=_json_default)


def state_hash(state: dict[str, object]) -> str:
    return hashlib.sha256(canonical(state).encode()).hexdigest()


def event_hash(event: AuditEvent) -> str:
    payload = [
        event.seq, event.occurred_at.isoformat(), event.user_id, event.username,
        event.entity, event.entity_id, event.action, event.before, event.after,
        event.reason, event.prev_hash,
    ]
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


def _locked_head(session: Session) -> AuditHead:
    head = session.info.get("audit_head")
    if head is None:
        head = session.execute(
            select(AuditHead).where(AuditHead.id == 1).with_for_update()
        ).scalar_one_or_none()
        if head is None:
            head = AuditHead(id=1, seq=0, hash=GENESIS_HASH)
            session.add(head)
        session.info["audit_head"] = head
    return head


def lock_chain(session: Session) -> None:
    """Take the chain-head lock now: writers that number things (vial serials) serialise here."""
    _locked_head(session)


def record(
    session: Session,
    actor: User | None,
    entity: str,
    entity_id: str,
    action: str,
    before: dict[str, object] | None,
    after: dict[str, object] | None,
    reason: str | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction."""
    head = _locked_head(session)
    event = AuditEvent(
        seq=head.seq + 1,
        occurred_at=(at or utcnow()),
        user_id=actor.id if actor else None,
        username=actor.username if actor else "system",
        entity=entity,
        entity_id=str(entity_id),
        action=action,
        before=canonical(before) if before is not None else None,
        after=canonical(after) if after is not None else None,
        reason=reason,
        prev_hash=head.hash,
    )
    event.hash = event_hash(event)
    head.seq, head.hash = event.seq, event.hash
    session.add(event)
    return event


class Entry(NamedTuple):
    """One change for `record_many`: the same fields `record` takes, actor aside (a tuple:
    a bulk path makes a hundred thousand of them)."""

    entity: str
    entity_id: str
    action: str
    before: dict[str, object] | None
    after: dict[str, object] | None
    reason: str | None = None


def record_many(session: Session, actor: User | None, entries: list[Entry],
                at: datetime | None = None) -> int:
    """Append many events at once (a lot's vials, a results file) in the caller's transaction.

    The chain is the same as `record` makes, one event per change; the events go in as one
    multi-row insert instead of one ORM object each, which is what makes bulk paths fast.
    """
    if not entries:
        return 0
    head = _locked_head(session)
    occurred = at or utcnow()
    user_id, username = (actor.id, actor.username) if actor else (None, "system")
    seq, prev = head.seq, head.hash
    occurred_iso = occurred.isoformat()  # one timestamp for the whole batch
    rows = []
    for entry in entries:
        seq += 1
        row = {"seq": seq, "occurred_at": occurred, "user_id": user_id, "username": username,
               "entity": entry.entity, "entity_id": str(entry.entity_id),
               "action": entry.action,
               "before": canonical(entry.before) if entry.before is not None else None,
               "after": canonical(entry.after) if entry.after is not None else None,
               "reason": entry.reason, "prev_hash": prev}
        row["hash"] = prev = _payload_hash(row, occurred_iso)
        rows.append(row)
    # The driver's executemany: the ORM's bulk insert costs more per row than hashing it.
    bulk_insert(session, AuditEvent.__table__, rows)
    head.seq, head.hash = seq, prev
    return len(rows)


def _payload_hash(row: dict[str, Any], occurred_iso: str) -> str:
    # The same payload as event_hash, from a row dict, written out as verify does (see
    # audit_verify._check_run); tests/integration/test_audit_verify_fast.py holds them identical.
    text = json_string
    payload = EVENT_PAYLOAD % (
        int(row["seq"]), text(occurred_iso),
        "null" if row["user_id"] is None else int(row["user_id"]), text(row["username"]),
        text(row["entity"]), text(row["entity_id"]), text(row["action"]),
        "null" if row["before"] is None else text(row["before"]),
        "null" if row["after"] is None else text(row["after"]),
        "null" if row["reason"] is None else text(row["reason"]), text(row["prev_hash"]))
    return hashlib.sha256(payload.encode()).hexdigest()


def record_row(
    session: Session,
    actor: User | None,
    row: Audited,
    action: str,
    before: dict[str, object] | None = None,
    reason: str | None = None,
) -> AuditEvent:
    """Record a row's new state; `before` is the state captured before the change."""
    if _unflushed(session, row):
        session.flush()
    return record(session, actor, row.__audit_entity__, row.audit_key, action, before,
                  row.audit_state(), reason)


def _unflushed(session: Session, row: Audited) -> bool:
    """True when `row`'s audit state needs a flush first: a new row has no id or defaults
    until then, and a relationship set on it reaches its foreign key column only then.
    A loaded row changed column by column is its attributes, so no round trip is needed
    (one per status change made dispensing and administering doses slow)."""
    state = inspect(row)
    if state.key is None or state.pending:
        return True
    attrs = state.attrs
    return any(attrs[rel.key].history.has_changes() for rel in state.mapper.relationships)


def sign(
    session: Session,
    signer: User,
    meaning: str,
    entity: str,
    entity_id: str,
    record_state: dict[str, object],
) -> Signature:
    """Store a signature over a record's state; the caller has re-authenticated the signer."""
    signature = Signature(
        user_id=signer.id,
        printed_name=signer.full_name,
        signed_at=utcnow(),
        meaning=meaning,
        entity=entity,
        entity_id=str(entity_id),
        record_hash=state_hash(record_state),
    )
    session.add(signature)
    record_row(session, signer, signature, "sign")
    return signature


def head(session: Session) -> tuple[int, str]:
    row = session.get(AuditHead, 1)
    return (row.seq, row.hash) if row else (0, GENESIS_HASH)


@dataclass
class VerifyReport:
    events: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session) -> VerifyReport:
    """Recompute the chain and check every audited row against its last event
    (lotrack/audit_verify.py)."""
    from lotrack.audit_verify import verify_trail

    return verify_trail(session)

