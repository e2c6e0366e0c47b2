"""`audit verify`: the whole trail recomputed, and every audited row checked against it.

Every event's hash is recomputed from its content and the previous event's hash; every
audited row is compared with the state its last event recorded, so an edited, deleted
or reordered event, and a row edited behind the application's back, are all found and
named. It reads every event of the trail, so it works on driver rows, not ORM objects.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from math import isfinite
from operator import call
from typing import Any

from sqlalchemy import Boolean, Column, Date, Float, Integer, Select, String, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from lotrack.audit import (
    EVENT_PAYLOAD,
    GENESIS_HASH,
    Audited,
    VerifyReport,
    audited_models,
    canonical,
    head,
    json_string,
)
from lotrack.models import AuditEvent
from lotrack.models.base import UTCDateTime


@contextmanager
def _stream_events(session: Session) -> Iterator[Iterable[tuple]]:
    # Driver tuples, not SQLAlchemy rows: verification reads every event once, keeps
    # none, and spends most of its time here, so no per-row result processing.
    columns = [AuditEvent.seq, AuditEvent.occurred_at, AuditEvent.user_id, AuditEvent.username,
               AuditEvent.entity, AuditEvent.entity_id, AuditEvent.action, AuditEvent.before,
               AuditEvent.after, AuditEvent.reason, AuditEvent.prev_hash, AuditEvent.hash]
    with _driver_cursor(session, select(*columns).order_by(AuditEvent.seq)) as cursor:
        yield cursor


@contextmanager
def _driver_cursor(session: Session, stmt: Select) -> Iterator[Any]:
    """An executed DBAPI cursor for `stmt` in the session's transaction, streaming its rows."""
    connection = session.connection()
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    assert driver is not None
    if dialect.name == "postgresql":
        # A named (server-side) cursor: psycopg would otherwise fetch the whole result.
        cursor = driver.cursor(name=f"lotrack_verify_{id(stmt)}")
        cursor.itersize = _BATCH
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(str(stmt.compile(dialect=dialect)))
        yield cursor
    finally:
        cursor.close()


_BATCH = 5000
# One after-state is kept per audited record, so as a 16-byte digest rather than its text:
# half a million vials must fit in memory.
_DIGEST_SIZE = 16


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=_DIGEST_SIZE).digest()


def verify_trail(session: Session) -> VerifyReport:
    report = VerifyReport()
    session.flush()  # as the ORM queries did: pending changes are part of what is verified
    last_after: dict[str, dict[str, bytes]] = defaultdict(dict)
    expected_seq, prev = _verify_chain(session, last_after, report)
    stored_seq, stored_hash = head(session)
    if (stored_seq, stored_hash) != (expected_seq - 1, prev):
        report.problems.append(
            f"the audit chain head records event {stored_seq} but the trail ends at event "
            f"{expected_seq - 1}: events were removed from its end"
        )
    _verify_rows(session, last_after, report)
    return report


def _verify_chain(
    session: Session, last_after: dict[str, dict[str, bytes]], report: VerifyReport
) -> tuple[int, str]:
    """Check every event's hash and link; note the digest of each record's last `after`.

    The loop writes the hashed payload itself rather than calling `event_hash`: it runs
    once per event of the whole trail. tests/integration/test_audit_verify_fast.py
    holds the two byte-identical.
    """
    problems = report.problems
    occurred_iso = _iso_reader(AuditEvent.__table__.c.occurred_at, session.get_bind().dialect)
    sha256, blake2b, size, text, int_text = (hashlib.sha256, hashlib.blake2b, _DIGEST_SIZE,
                                             json_string, int.__repr__)
    expected_seq, prev, count = 1, GENESIS_HASH, 0
    last_occurred: object = None
    at = None
    with _stream_events(session) as events:
        for (seq, occurred, user_id, username, entity, entity_id, action, before, after,
             reason, prev_hash, stored_hash) in events:
            count += 1
            if seq != expected_seq:
                problems.append(f"audit event {expected_seq} is missing (next event found is {seq})")
            elif prev_hash != prev:
                problems.append(f"audit event {seq} does not follow event {seq - 1}")
            if occurred != last_occurred:  # a bulk change shares one timestamp
                at, last_occurred = occurred_iso(occurred), occurred
            try:
                # canonical() of the payload, written out: the payload holds no float (the
                # integer columns hold integers) and no dict, so _normalise has nothing to do.
                payload = EVENT_PAYLOAD % (
                    int_text(seq), text(at), "null" if user_id is None else int_text(user_id),
                    text(username), text(entity), text(entity_id), text(action),
                    "null" if before is None else text(before),
                    "null" if after is None else text(after),
                    "null" if reason is None else text(reason), text(prev_hash))
            except TypeError:  # a value of another type than the columns hold: the general way
                payload = canonical([seq, at, user_id, username, entity, entity_id, action, before,
                                     after, reason, prev_hash])
            if sha256(payload.encode()).hexdigest() != stored_hash:
                problems.append(f"audit event {seq} ({entity} {entity_id} {action}) "
                                "was altered: its hash does not match its content")
            expected_seq, prev = seq + 1, stored_hash
            if after is not None:  # logins and similar events carry no row state
                last_after[entity][entity_id] = blake2b(after.encode(), digest_size=size).digest()
    report.events += count
    return expected_seq, prev




def _verify_rows(
    session: Session, last_after: dict[str, dict[str, bytes]], report: VerifyReport
) -> None:
    dialect = session.get_bind().dialect
    blake2b, size = hashlib.blake2b, _DIGEST_SIZE
    for model in audited_models():
        name = model.__audit_entity__
        # Matched entries are taken out, so what is left was deleted.
        recorded = last_after.get(name, {})
        reader = row_reader(model, dialect)
        states = reader.states(session) if reader else _orm_states(session, model)
        for key, state in states:
            report.rows += 1
            digest = recorded.pop(key, None)
            if digest is None:
                digest = _last_after_again(session, name, key)
            if digest is None:
                report.problems.append(f"{name} {key} has no audit event: "
                                       "it was written outside lotrack")
            elif digest != blake2b(state.encode(), digest_size=size).digest():
                report.problems.append(f"{name} {key} differs from its last audited "
                                       "state: it was changed outside lotrack")
        for key in recorded:
            report.problems.append(f"{name} {key} was deleted outside lotrack")


def _last_after_again(session: Session, entity: str, key: str) -> bytes | None:
    # Only for a key already matched (two rows with one key) or never audited: read its
    # last state back from the trail rather than keep every matched key in memory.
    after = session.execute(
        select(AuditEvent.after)
        .where(AuditEvent.entity == entity, AuditEvent.entity_id == key,
               AuditEvent.after.is_not(None))
        .order_by(AuditEvent.seq.desc()).limit(1)
    ).scalar()
    return None if after is None else _digest(after)


def _orm_states(session: Session, model: type[Audited]) -> Iterator[tuple[str, str]]:
    stmt = select(model).execution_options(yield_per=_BATCH)
    for row in session.execute(stmt).scalars():
        yield row.audit_key, canonical(row.audit_state())


@dataclass(frozen=True)
class RowReader:
    """Reads a model's audited states straight from its columns, without loading objects.

    A model opts in with `__audit_columns__` (the column attributes its audit_state()
    holds; a (state key, attribute) pair where the names differ), `__audit_key_columns__`
    and, unless its key is its one key column as text, an `audit_key_from(*values)`
    staticmethod. Each value is written as canonical() would write what the ORM returns;
    a value of a form this does not expect sends its row through the ORM instead, so the
    result is always the same.
    """

    model: type[Audited]
    stmt: Select
    state_format: str
    writers: tuple[Callable[[Any], str], ...]
    key_from: Callable[..., str]

    def states(self, session: Session) -> Iterator[tuple[str, str]]:
        """(audit_key, canonical(audit_state())) of every row."""
        fmt, writers, key_from, width = (self.state_format, self.writers, self.key_from,
                                         len(self.writers))
        with _driver_cursor(session, self.stmt) as cursor:
            for row in cursor:
                try:
                    key, state = key_from(*row[width + 1:]), fmt % tuple(map(call, writers, row))
                except (TypeError, KeyError, ValueError):
                    key, state = self._through_orm(session, row[width])
                yield key, state

    def _through_orm(self, session: Session, primary_key: object) -> tuple[str, str]:
        row = session.get(self.model, primary_key)
        assert row is not None
        return row.audit_key, canonical(row.audit_state())


def row_reader(model: type[Audited], dialect: Dialect) -> RowReader | None:
    """The column reader of `model`, or None when its state needs the ORM (relationships)."""
    declared = getattr(model, "__audit_columns__", None)
    if declared is None:
        return None
    fields = dict((name, name) if isinstance(name, str) else name for name in declared)
    mapped = model.__mapper__.columns  # type: ignore[attr-defined]
    keys = sorted(fields)
    state_columns = [mapped[fields[k]] for k in keys]
    key_columns = [mapped[name] for name in model.__audit_key_columns__]  # type: ignore[attr-defined]
    (primary_key,) = model.__mapper__.primary_key  # type: ignore[attr-defined]
    state_format = "{" + ",".join(json_string(k).replace("%", "%%") + ":%s" for k in keys) + "}"
    return RowReader(
        model=model,
        stmt=select(*state_columns, primary_key, *key_columns),
        state_format=state_format,
        writers=tuple(_json_writer(column, dialect) for column in state_columns),
        key_from=getattr(model, "audit_key_from", str),
    )


def _json_writer(column: Column[Any], dialect: Dialect) -> Callable[[Any], str]:
    """canonical() of the value the ORM would return for `column`, from its driver value."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return _quoted_or_null(_iso_reader(column, dialect))
    if isinstance(kind, Date):
        return _quoted_or_null(_date_reader(column, dialect))
    if isinstance(kind, Boolean):
        # SQLite gives 0/1, PostgreSQL False/True (equal keys); anything else: KeyError.
        return {None: "null", 0: "false", 1: "true"}.__getitem__
    if isinstance(kind, Float):
        return _float_json
    if isinstance(kind, Integer):
        return _or_null(int.__repr__) if column.nullable else int.__repr__
    if isinstance(kind, String):
        return _or_null(json_string) if column.nullable else json_string
    raise TypeError(f"no column reader for {column} ({kind})")


def _or_null(write: Callable[[Any], str]) -> Callable[[Any], str]:
    def write_or_null(value: object) -> str:
        return "null" if value is None else write(value)
    return write_or_null


def _quoted_or_null(read: Callable[[Any], str | None]) -> Callable[[Any], str]:
    def write(value: object) -> str:
        text = read(value)
        return "null" if text is None else f'"{text}"'  # ISO 8601: nothing to escape
    return write


def _float_json(value: object) -> str:
    # What canonical() writes after _normalise: 70.0 as 70.
    if value.__class__ is float and isfinite(value):  # type: ignore[arg-type]
        if value.is_integer() and abs(value) < 2**53:  # type: ignore[attr-defined]
            return int.__repr__(int(value))  # type: ignore[call-overload]
        return float.__repr__(value)  # type: ignore[arg-type]
    return canonical(value)


# How SQLAlchemy stores dates and UTC timestamps in SQLite text; a value in exactly this
# form is its own isoformat() (re-punctuated), so it need not be parsed.
_SQLITE_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}")
_SQLITE_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_reader(column: Column[Any], dialect: Dialect) -> Callable[[Any], str | None]:
    """The isoformat() of a UTCDateTime value as the ORM returns it, from its driver value."""
    process = _result_processor(column, dialect)

    def parsed(raw: object) -> str | None:
        value = process(raw)
        return None if value is None else value.isoformat()

    if dialect.name != "sqlite":
        return parsed
    stamp = _SQLITE_TIMESTAMP.fullmatch

    def sqlite_text(raw: object) -> str | None:
        if raw.__class__ is str and stamp(raw):  # type: ignore[arg-type]
            if raw.endswith(".000000"):  # type: ignore[attr-defined]
                return f"{raw[:10]}T{raw[11:19]}+00:00"  # type: ignore[index]
            return f"{raw[:10]}T{raw[11:]}+00:00"  # type: ignore[index]
        return parsed(raw)
    return sqlite_text


def _date_reader(column: Column[Any], dialect: Dialect) -> Callable[[Any], str | None]:
    process = _result_processor(column, dialect)
    plain = _SQLITE_DATE.fullmatch if dialect.name == "sqlite" else None

    def read(raw: object) -> str | None:
        if plain is not None and raw.__class__ is str and plain(raw):  # type: ignore[arg-type]
            return raw  # type: ignore[return-value]
        value = process(raw)
        return None if value is None else value.isoformat()
    return read


def _result_processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any]:
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else (lambda value: value)
