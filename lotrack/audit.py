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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack.models import AuditEvent, AuditHead, Base, Signature, User
from lotrack.models.base import utcnow

GENESIS_HASH = "0" * 64


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


def _normalise(value: object) -> object:
    # A number must read the same whether it came from Python (70) or back from a
    # FLOAT column (70.0), or the comparison of a row with its audited state fails.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical(value: object) -> str:
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=_json_default)


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


def record_row(
    session: Session,
    actor: User | None,
    row: Audited,
    action: str,
    before: dict[str, object] | None = None,
    reason: str | None = None,
) -> AuditEvent:
    """Record a row's new state; `before` is the state captured before the change."""
    session.flush()
    return record(session, actor, row.__audit_entity__, row.audit_key, action, before,
                  row.audit_state(), reason)


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


def _stream_events(session: Session) -> Iterator[AuditEvent]:
    # Plain rows, not ORM objects: verification reads every event once and keeps none.
    columns = [AuditEvent.seq, AuditEvent.occurred_at, AuditEvent.user_id, AuditEvent.username,
               AuditEvent.entity, AuditEvent.entity_id, AuditEvent.action, AuditEvent.before,
               AuditEvent.after, AuditEvent.reason, AuditEvent.prev_hash, AuditEvent.hash]
    stmt = select(*columns).order_by(AuditEvent.seq).execution_options(yield_per=5000)
    yield from session.execute(stmt)  # type: ignore[misc]


def verify(session: Session) -> VerifyReport:
    report = VerifyReport()
    last_after: dict[tuple[str, str], str] = {}
    expected_seq, prev = 1, GENESIS_HASH
    for event in _stream_events(session):
        report.events += 1
        if event.seq != expected_seq:
            report.problems.append(
                f"audit event {expected_seq} is missing (next event found is {event.seq})"
            )
        elif event.prev_hash != prev:
            report.problems.append(f"audit event {event.seq} does not follow event {event.seq - 1}")
        if event_hash(event) != event.hash:
            report.problems.append(
                f"audit event {event.seq} ({event.entity} {event.entity_id} {event.action}) "
                "was altered: its hash does not match its content"
            )
        expected_seq, prev = event.seq + 1, event.hash
        if event.after is not None:  # logins and similar events carry no row state
            last_after[(event.entity, event.entity_id)] = event.after
    stored_seq, stored_hash = head(session)
    if (stored_seq, stored_hash) != (expected_seq - 1, prev):
        report.problems.append(
            f"the audit chain head records event {stored_seq} but the trail ends at event "
            f"{expected_seq - 1}: events were removed from its end"
        )
    _verify_rows(session, last_after, report)
    return report


def _verify_rows(
    session: Session, last_after: dict[tuple[str, str], str], report: VerifyReport
) -> None:
    for model in audited_models():
        name = model.__audit_entity__
        seen: set[str] = set()
        stmt = select(model).execution_options(yield_per=5000)
        for row in session.execute(stmt).scalars():
            report.rows += 1
            key = row.audit_key
            seen.add(key)
            recorded = last_after.get((name, key))
            if recorded is None:
                report.problems.append(f"{name} {key} has no audit event: "
                                       "it was written outside lotrack")
            elif recorded != canonical(row.audit_state()):
                report.problems.append(f"{name} {key} differs from its last audited "
                                       "state: it was changed outside lotrack")
        for entity, key in last_after:
            if entity == name and key not in seen:
                report.problems.append(f"{name} {key} was deleted outside lotrack")
