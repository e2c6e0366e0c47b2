"""`audit verify`: the whole trail recomputed, and every audited row checked against it.

Every event's hash is recomputed from its content and the previous event's hash; every
audited row is compared with the state its last event recorded, so an edited, deleted
or reordered event, and a row edited behind the application's back, are all found and
named. It reads every event of the trail, so it works on driver rows, not ORM objects.

Memory stays flat: the last state of each record is read back from the trail one model at
a time, in key order where the rows can be read in the same order, and the two streams
are merged. A long trail is checked in two processes: a second one checks runs of events
while this one checks the rows (see _verify_in_two_processes), both reading one state.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import chain
from math import isfinite
from operator import call
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Date,
    Float,
    Integer,
    Select,
    String,
    Text,
    cast,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import SQLAlchemyError
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
def _driver_cursor(session: Session, stmt: Select) -> Iterator[Iterable[Any]]:
    """The rows of `stmt` in the session's transaction, streamed from a DBAPI cursor."""
    connection = session.connection()
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    assert driver is not None
    compiled = stmt.compile(dialect=dialect)
    params: Any = compiled.params
    if compiled.positional:
        params = tuple(params[name] for name in compiled.positiontup or ())
    if dialect.name != "postgresql":
        cursor = driver.cursor()
        try:
            yield cursor.execute(str(compiled), params)
        finally:
            cursor.close()
        return
    # A named (server-side) cursor: psycopg would otherwise fetch the whole result. Its
    # rows come in binary (less to write out and to parse: the same Python values) and
    # are handed out from each fetched list, not by a Python __next__ call per row.
    cursor = driver.cursor(name=f"lotrack_verify_{id(stmt)}")
    try:
        cursor.execute(str(compiled), params, binary=True)
        yield chain.from_iterable(iter(partial(cursor.fetchmany, _PG_FETCH), []))
    finally:
        cursor.close()


_BATCH = 5000
_PG_FETCH = 10_000  # rows per round trip of a server-side cursor
_SQLITE = SQLiteDialect_pysqlite()
# A model whose rows cannot be read in key order keeps one after-state per record while
# it is checked, as a 16-byte digest rather than its text.
_DIGEST_SIZE = 16


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=_DIGEST_SIZE).digest()


def verify_trail(session: Session) -> VerifyReport:
    session.flush()  # as the ORM queries did: pending changes are part of what is verified
    stored_seq, _ = head(session)
    if stored_seq < _PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
        return _verify(session, None)
    if session.get_bind().dialect.name == "postgresql" and _reads_latest_commits(session):
        with _snapshot_view(session.get_bind().engine) as (view, snapshot):
            return _verify(view, snapshot)
    return _verify(session, _parallel_file(session))


def _verify(session: Session, second: str | _Snapshot | None) -> VerifyReport:
    """Verify what `session` reads; with `second`, the chain in two processes, the other
    reading the same state from that SQLite file or PostgreSQL snapshot."""
    report = VerifyReport()
    stored_seq, stored_hash = head(session)
    if second is None:
        with _events(session) as events:
            run = _check_run(events, _occurred_reader(session.get_bind().dialect))
        expected_seq, prev = _link([run], report)
        rows_problems = _verify_rows(session, report)
    else:
        runs, rows_problems = _verify_in_two_processes(session, second, stored_seq, report)
        expected_seq, prev = _link(runs, report)
    if (stored_seq, stored_hash) != (expected_seq - 1, prev):
        report.problems.append(
            f"the audit chain head records event {stored_seq} but the trail ends at event "
            f"{expected_seq - 1}: events were removed from its end"
        )
    report.problems.extend(rows_problems)
    return report


@dataclass(frozen=True)
class _Run:
    """What checking a run of consecutive events found; the link of its first event to the
    event before it is left to _link, so runs can be checked apart and in any order."""

    events: int
    first: tuple[int, str] | None  # seq and prev_hash of its first event
    last: tuple[int, str] | None  # seq and hash of its last event
    problems: list[str]


def _link(runs: Iterable[_Run], report: VerifyReport) -> tuple[int, str]:
    """Join checked runs in seq order, as one pass over the trail would: the problems in
    order, each run's first event checked against the last of the run before. Returns the
    seq expected next and the hash of the last event."""
    expected_seq, prev = 1, GENESIS_HASH
    for run in runs:
        report.events += run.events
        if run.first is not None:
            seq, prev_hash = run.first
            if seq != expected_seq:
                report.problems.append(
                    f"audit event {expected_seq} is missing (next event found is {seq})")
            elif prev_hash != prev:
                report.problems.append(f"audit event {seq} does not follow event {seq - 1}")
        report.problems.extend(run.problems)
        if run.last is not None:
            expected_seq, prev = run.last[0] + 1, run.last[1]
    return expected_seq, prev


def _events_stmt(after_seq: int | None = None, upto_seq: int | None = None) -> Select:
    columns = [AuditEvent.seq, AuditEvent.occurred_at, AuditEvent.user_id, AuditEvent.username,
               AuditEvent.entity, AuditEvent.entity_id, AuditEvent.action, AuditEvent.before,
               AuditEvent.after, AuditEvent.reason, AuditEvent.prev_hash, AuditEvent.hash]
    stmt = select(*columns).order_by(AuditEvent.seq)
    if after_seq is not None:
        stmt = stmt.where(AuditEvent.seq > after_seq)
    if upto_seq is not None:
        stmt = stmt.where(AuditEvent.seq <= upto_seq)
    return stmt


def _occurred_reader(dialect: Dialect | None = None) -> Callable[[Any], str | None]:
    return _iso_reader(AuditEvent.__table__.c.occurred_at, dialect or _SQLITE)


def _check_run(events: Iterable[tuple], occurred_iso: Callable[[Any], str | None]) -> _Run:
    """Check the hash of every event of a run ordered by seq, and each one's link to the
    one before it (the first's is left to _link).

    The loop writes the hashed payload itself rather than calling `event_hash`: it runs
    once per event of the whole trail. tests/integration/test_audit_verify_fast.py
    holds the two byte-identical.
    """
    events = iter(events)
    first_event = next(events, None)
    if first_event is None:
        return _Run(0, None, None, [])
    problems: list[str] = []
    sha256, text, int_text, payload_format = (hashlib.sha256, json_string, int.__repr__,
                                              EVENT_PAYLOAD)
    expected_seq, prev, count = first_event[0], first_event[10], 0
    last_occurred: object = None
    at = None
    for (seq, occurred, user_id, username, entity, entity_id, action, before, after,
         reason, prev_hash, stored_hash) in chain((first_event,), events):
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
            payload = payload_format % (
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
    return _Run(count, (first_event[0], first_event[10]), (expected_seq - 1, prev), problems)


@contextmanager
def _events(session: Session, after_seq: int | None = None,
            upto_seq: int | None = None) -> Iterator[Iterable[tuple]]:
    with _driver_cursor(session, _events_stmt(after_seq, upto_seq)) as cursor:
        yield cursor


# --- the chain in two processes -----------------------------------------------------
# Each event's hash is checked against its own stored prev_hash, so runs of the trail are
# checked apart: a second process takes runs while this one checks the rows, then this one
# takes what is left; _link joins the runs as one pass would.
_RUN_SIZE = 50_000  # events per run
_PARALLEL_FROM = 4 * _RUN_SIZE  # a smaller trail is checked faster than a process starts
_MAX_RUNS = 1000


def _parallel_file(session: Session) -> str | None:
    """The SQLite file a second process can read the same trail from, or None.

    The second process reads what is committed; that is what this session reads when it
    has not written to the trail itself, and lotrack's transactions on SQLite hold the
    write lock from their start (db.make_engine), so nothing commits in between.
    """
    url = session.get_bind().engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if session.info.get("audit_head") is not None:  # audit.record ran in this transaction
        return None
    return url.database


@dataclass(frozen=True)
class _Snapshot:
    """A PostgreSQL snapshot exported by this process, for the second one to import."""

    engine: Engine
    id: str


# What pg_export_snapshot() returns ("00000003-0000001B-1"): checked before it is
# written into SET TRANSACTION SNAPSHOT, which takes no parameters.
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


def _reads_latest_commits(session: Session) -> bool:
    """Whether a snapshot taken now shows all this session sees: its transaction reads
    what is committed at each statement (READ COMMITTED) and has written nothing."""
    return bool(session.connection().exec_driver_sql(
        "SELECT txid_current_if_assigned() IS NULL"
        " AND current_setting('transaction_isolation') = 'read committed'").scalar())


@contextmanager
def _snapshot_view(engine: Engine) -> Iterator[tuple[Session, _Snapshot]]:
    """A session reading one snapshot, on a connection of its own (read-only, REPEATABLE
    READ), and that snapshot exported: it lasts while this transaction is open, so the
    second process must have imported it before this ends (the process is joined first)."""
    with engine.connect() as connection:
        _begin_snapshot(connection)
        exported = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        with Session(bind=connection) as view:
            yield view, _Snapshot(engine, exported)


def _begin_snapshot(connection: Connection, snapshot: str | None = None) -> None:
    """Begin a read-only REPEATABLE READ transaction, in `snapshot` if given."""
    connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    if snapshot is not None:
        if not _SNAPSHOT_ID.fullmatch(snapshot):
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    # Compiling the last-state queries to machine code costs more than it saves.
    connection.exec_driver_sql("SET LOCAL jit = off")


def _verify_in_two_processes(session: Session, second: str | _Snapshot, head_seq: int,
                             report: VerifyReport) -> tuple[list[_Run], list[str]]:
    size = max(_RUN_SIZE, -(-head_seq // _MAX_RUNS))
    # Run i holds the events with seq in (bounds[i], bounds[i + 1]]; the last run is open
    # above, so events past the head are read too, and stays with this process, which is
    # the one that sees this transaction's own events.
    bounds: list[int | None] = [None, *range(size, head_seq, size), None]
    shared = len(bounds) - 2
    context = multiprocessing.get_context("fork")
    claimed = context.Value("i", 0)
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(target=_chain_worker,
                             args=(second, bounds, shared, claimed, sender), daemon=True)
    worker.start()
    sender.close()
    occurred_iso = _occurred_reader(session.get_bind().dialect)
    try:
        rows_problems = _verify_rows(session, report)
        found: dict[int, _Run] = {}
        while (index := _claim(claimed, shared)) is not None:
            found[index] = _checked_run(session, bounds, index, occurred_iso)
        found.update(_received(receiver))
    finally:
        receiver.close()
        worker.join()
    for index in range(shared + 1):  # the last run, and any the other process did not finish
        if index not in found:
            found[index] = _checked_run(session, bounds, index, occurred_iso)
    return [found[index] for index in range(shared + 1)], rows_problems


def _checked_run(session: Session, bounds: list[int | None], index: int,
                 occurred_iso: Callable[[Any], str | None]) -> _Run:
    with _events(session, bounds[index], bounds[index + 1]) as events:
        return _check_run(events, occurred_iso)


def _claim(claimed: Any, shared: int) -> int | None:
    with claimed.get_lock():
        index = claimed.value
        if index >= shared:
            return None
        claimed.value = index + 1
        return index


def _received(receiver: Any) -> Iterator[tuple[int, _Run]]:
    while True:
        try:
            yield receiver.recv()
        except EOFError:  # the other process is done (or died: its runs are done again)
            return


def _chain_worker(second: str | _Snapshot, bounds: list[int | None], shared: int,
                  claimed: Any, sender: Any) -> None:
    """The second process: check runs until none is left, each sent back as it is done.
    A run it could not check (a locked file, a lost connection) is checked by the parent."""
    try:
        if isinstance(second, _Snapshot):
            _snapshot_runs(second, bounds, shared, claimed, sender)
        else:
            _sqlite_runs(second, bounds, shared, claimed, sender)
    finally:
        sender.close()


def _sqlite_runs(path: str, bounds: list[int | None], shared: int, claimed: Any,
                 sender: Any) -> None:
    # Its own connection, read-only; the parent's connections are left untouched.
    connection = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None,
                                 timeout=1)
    try:
        connection.execute("BEGIN")  # one snapshot for every run
        occurred_iso = _occurred_reader()
        while (index := _claim(claimed, shared)) is not None:
            stmt = _events_stmt(bounds[index], bounds[index + 1]).compile(dialect=_SQLITE)
            params = tuple(stmt.params[name] for name in stmt.positiontup or ())
            run = _check_run(connection.execute(str(stmt), params), occurred_iso)
            sender.send((index, run))
    except sqlite3.Error:
        pass
    finally:
        connection.close()


def _snapshot_runs(snapshot: _Snapshot, bounds: list[int | None], shared: int, claimed: Any,
                   sender: Any) -> None:
    engine = snapshot.engine
    # The pool came with the fork: its connections are the parent's, in use there. A new
    # pool for this process, the inherited connections left open (SQLAlchemy's advice).
    engine.dispose(close=False)
    try:
        with engine.connect() as connection:
            _begin_snapshot(connection, snapshot.id)
            with Session(bind=connection) as view:
                occurred_iso = _occurred_reader(connection.dialect)
                while (index := _claim(claimed, shared)) is not None:
                    sender.send((index, _checked_run(view, bounds, index, occurred_iso)))
    except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error):
        pass
    finally:
        engine.dispose()  # this process's own connection, closed before it exits


class _Unordered(Exception):
    """A side of a merge came in another order than the merge needs (an odd key, a collation)."""


def _verify_rows(session: Session, report: VerifyReport) -> list[str]:
    """Count the audited rows in `report` and return what is wrong with them."""
    dialect = session.get_bind().dialect
    found: list[str] = []
    for model in audited_models():
        name = model.__audit_entity__
        reader = row_reader(model, dialect)
        checked = None
        if reader is not None and reader.key_order is not None:
            try:
                checked = _merge_rows(session, name, reader, dialect)
            except _Unordered:
                checked = None
        if checked is None:
            states = reader.states(session) if reader else _orm_states(session, model)
            checked = _match_rows(session, name, states, dialect)
        rows, problems = checked
        report.rows += rows
        found.extend(problems)
    return found


def _merge_rows(session: Session, name: str, reader: RowReader,
                dialect: Dialect) -> tuple[int, list[str]]:
    """Check a model's rows read in key order against the trail's last states in the same
    order, holding neither side; _Unordered if either is not in that order after all."""
    assert reader.key_order is not None
    by_length = reader.key_order.by_length
    sort_key: Callable[[str], Any] = _length_first if by_length else str
    problems: list[str] = []
    deleted: list[str] = []
    rows = 0
    with _driver_cursor(session, _last_states_stmt(name, by_length, dialect)) as cursor:
        trail = _recorded_in_order(session, name, cursor, sort_key)
        recorded, matched = next(trail, None), False
        last_order: Any = None
        for key, state in reader.states(session, ordered=True):
            rows += 1
            order = sort_key(key)
            if last_order is not None and order < last_order:
                raise _Unordered
            last_order = order
            while recorded is not None and recorded[0] < order:
                if not matched:
                    deleted.append(recorded[1])
                recorded, matched = next(trail, None), False
            if recorded is None or recorded[0] != order:
                problems.append(_unaudited(name, key))
            else:
                matched = True
                if recorded[2] != state:
                    problems.append(_changed(name, key))
        while recorded is not None:
            if not matched:
                deleted.append(recorded[1])
            recorded, matched = next(trail, None), False
    problems.extend(_deleted(name, key) for key in deleted)
    return rows, problems


def _recorded_in_order(session: Session, name: str, last_states: Iterable[tuple[str, Any]],
                       sort_key: Callable[[str], Any]) -> Iterator[tuple[Any, str, str]]:
    """(sort key, key, last after) of each record in `last_states`, strictly ascending."""
    previous: Any = None
    for key, after in last_states:
        order = sort_key(key)
        if previous is not None and not previous < order:
            raise _Unordered
        previous = order
        if after is None:  # its last event carries no state: an earlier one may
            after = _last_after(session, name, key)
            if after is None:
                continue
        yield order, key, after


def _length_first(key: str) -> tuple[int, str]:
    # Numbers written out (42, AE-00042) sort as numbers: shorter first, then as text.
    return len(key), key


def _match_rows(session: Session, name: str, states: Iterable[tuple[str, str]],
                dialect: Dialect) -> tuple[int, list[str]]:
    """Check a model's rows in any order against a digest of each record's last state."""
    recorded: dict[str, bytes] = {}
    with _driver_cursor(session, _last_states_stmt(name, None, dialect)) as cursor:
        for key, after in cursor:
            if after is None:
                after = _last_after(session, name, key)
            if after is not None:
                recorded[key] = _digest(after)
    problems: list[str] = []
    rows = 0
    for key, state in states:
        rows += 1
        # Matched entries are taken out, so what is left was deleted.
        digest = recorded.pop(key, None)
        if digest is None:  # a key already matched (two rows with one key) or never audited
            after = _last_after(session, name, key)
            digest = None if after is None else _digest(after)
        if digest is None:
            problems.append(_unaudited(name, key))
        elif digest != _digest(state):
            problems.append(_changed(name, key))
    problems.extend(_deleted(name, key) for key in recorded)
    return rows, problems


def _unaudited(name: str, key: str) -> str:
    return f"{name} {key} has no audit event: it was written outside lotrack"


def _changed(name: str, key: str) -> str:
    return f"{name} {key} differs from its last audited state: it was changed outside lotrack"


def _deleted(name: str, key: str) -> str:
    return f"{name} {key} was deleted outside lotrack"


def _last_states_stmt(name: str, by_length: bool | None, dialect: Dialect) -> Select:
    """(entity_id, after of its last event) of every record of `name` in the trail; in key
    order (`by_length`: numbers written out) unless by_length is None.

    The last event of each record is found in the (entity, entity_id) index alone; only
    that event is read from the table.
    """
    if dialect.name == "postgresql":
        return _pg_last_states_stmt(name, by_length, dialect)
    events = AuditEvent.__table__.c
    last = (select(events.entity_id, func.max(events.seq).label("seq"))
            .where(events.entity == name).group_by(events.entity_id))
    sqlite = dialect.name == "sqlite"
    if by_length is not None and sqlite:
        # Ordered inside: SQLite then streams the groups in index order, where an outer
        # ORDER BY would sort every state first.
        last = last.order_by(*_key_ordering(events.entity_id, by_length, dialect))
    groups = last.subquery()
    after = select(AuditEvent.after).where(AuditEvent.seq == groups.c.seq).scalar_subquery()
    stmt = select(groups.c.entity_id, after)
    if by_length is not None and not sqlite:
        stmt = stmt.order_by(*_key_ordering(groups.c.entity_id, by_length, dialect))
    return stmt


def _pg_last_states_stmt(name: str, by_length: bool | None, dialect: Dialect) -> Select:
    """The same on PostgreSQL: the record's events in one sort, the last of each kept
    (DISTINCT ON), which costs it half of grouping and then reading each last event."""
    from sqlalchemy.dialects.postgresql import distinct_on

    events = AuditEvent.__table__.c
    key = ([events.entity_id] if by_length is None
           else _key_ordering(events.entity_id, by_length, dialect))
    return (select(events.entity_id, events.after).where(events.entity == name)
            .ext(distinct_on(*key)).order_by(*key, events.seq.desc()))


def _key_ordering(key: ColumnElement[Any], by_length: bool,
                  dialect: Dialect) -> list[ColumnElement[Any]]:
    text = _code_point_order(key, dialect)
    return [func.length(key), text] if by_length else [text]


def _code_point_order(column: ColumnElement[Any], dialect: Dialect) -> ColumnElement[Any]:
    # Python compares strings by code point: SQLite's default BINARY collation does on
    # UTF-8 text, PostgreSQL's "C" collation does on a UTF-8 database.
    return column.collate("C") if dialect.name == "postgresql" else column


def _last_after(session: Session, entity: str, key: str) -> str | None:
    """The after-state of the last event of a record that has one."""
    return session.execute(
        select(AuditEvent.after)
        .where(AuditEvent.entity == entity, AuditEvent.entity_id == key,
               AuditEvent.after.is_not(None))
        .order_by(AuditEvent.seq.desc()).limit(1)
    ).scalar()


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
    key_order: KeyOrder | None

    def states(self, session: Session, ordered: bool = False) -> Iterator[tuple[str, str]]:
        """(audit_key, canonical(audit_state())) of every row; `ordered`: in key_order."""
        fmt, writers, key_from, width = (self.state_format, self.writers, self.key_from,
                                         len(self.writers))
        stmt = self.stmt
        if ordered:
            assert self.key_order is not None
            stmt = stmt.order_by(*self.key_order.rows)
        with _driver_cursor(session, stmt) as cursor:
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


@dataclass(frozen=True)
class KeyOrder:
    """How a model's rows are read in the order of their audit keys, for the merge with
    the trail: by a text key column, or by an integer primary key whose keys are numbers
    written out (`by_length`: shorter first, then as text)."""

    rows: tuple[ColumnElement[Any], ...]
    by_length: bool


def _key_order(key_columns: list[Column[Any]], primary_key: Column[Any],
               key_from: Callable[..., str], dialect: Dialect) -> KeyOrder | None:
    # Only an expectation: the merge checks the order as it reads and falls back to
    # matching by key when a key breaks it.
    if len(key_columns) != 1:
        return None
    (column,) = key_columns
    if isinstance(column.type, String) and key_from is str:
        return KeyOrder((_code_point_order(column, dialect),), by_length=False)
    if column is primary_key and isinstance(column.type, Integer):
        return KeyOrder((column,), by_length=True)
    return None


def row_reader(model: type[Audited], dialect: Dialect) -> RowReader | None:
    """The column reader of `model`, or None when its state needs the ORM (relationships).

    Besides columns, a state may hold the sorted ids of a one-to-many collection, declared
    in `__audit_id_lists__` as (state key, relationship, the child's column) triples.
    """
    declared = getattr(model, "__audit_columns__", None)
    if declared is None:
        return None
    fields = dict((name, name) if isinstance(name, str) else name for name in declared)
    id_lists = {key: (relationship, column)
                for key, relationship, column in getattr(model, "__audit_id_lists__", ())}
    mapped = model.__mapper__.columns  # type: ignore[attr-defined]
    keys = sorted([*fields, *id_lists])
    values: list[ColumnElement[Any]] = []
    writers: list[Callable[[Any], str]] = []
    for key in keys:
        if key in fields:
            values.append(mapped[fields[key]])
            writers.append(_json_writer(mapped[fields[key]], dialect))
        else:
            values.append(_id_list(model, *id_lists[key], dialect))
            writers.append(_id_list_json)
    key_columns = [mapped[name] for name in model.__audit_key_columns__]  # type: ignore[attr-defined]
    (primary_key,) = model.__mapper__.primary_key  # type: ignore[attr-defined]
    state_format = "{" + ",".join(json_string(k).replace("%", "%%") + ":%s" for k in keys) + "}"
    key_from = getattr(model, "audit_key_from", str)
    return RowReader(
        model=model,
        stmt=select(*values, primary_key, *key_columns),
        state_format=state_format,
        writers=tuple(writers),
        key_from=key_from,
        key_order=_key_order(key_columns, primary_key, key_from, dialect),
    )


def _id_list(model: type[Audited], relationship: str, column: str,
             dialect: Dialect) -> ColumnElement[Any]:
    """The ids of a row's collection as one text ("3,1"; NULL for none), in one query."""
    related = model.__mapper__.relationships[relationship]  # type: ignore[attr-defined]
    ((parent, child),) = related.local_remote_pairs
    value = related.target.c[column]
    joined = (func.string_agg(cast(value, Text), literal_column("','"))
              if dialect.name == "postgresql" else func.group_concat(value))
    return select(joined).where(child == parent).scalar_subquery()


def _id_list_json(value: object) -> str:
    # canonical() of the sorted list of ids the ORM would give.
    if value is None:
        return "[]"
    if value.__class__ is not str:
        raise TypeError(value)
    return "[" + ",".join(map(int.__repr__, sorted(map(int, value.split(","))))) + "]"  # type: ignore[attr-defined]


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
    # Rows written together (a lot's vials) share one time: the last value read is kept,
    # SQLite's text or PostgreSQL's timestamp (an equal instant is written the same in UTC).
    last: list[object] = [None, "null"]

    def write(value: object) -> str:
        if (value.__class__ is str or value.__class__ is datetime) and value == last[0]:
            return last[1]  # type: ignore[return-value]
        text = read(value)
        written = "null" if text is None else f'"{text}"'  # ISO 8601: nothing to escape
        last[:] = value, written
        return written
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
_ZERO = timedelta(0)


def _iso_reader(column: Column[Any], dialect: Dialect) -> Callable[[Any], str | None]:
    """The isoformat() of a UTCDateTime value as the ORM returns it, from its driver value."""
    process = _result_processor(column, dialect)

    def parsed(raw: object) -> str | None:
        value = process(raw)
        return None if value is None else value.isoformat()

    if dialect.name != "sqlite":
        def in_utc(raw: object) -> str | None:
            # psycopg gives the time in the connection's time zone; in UTC (offset zero),
            # its own isoformat() is that of the ORM's value, without converting it.
            if raw.__class__ is datetime and raw.utcoffset() == _ZERO:  # type: ignore[attr-defined]
                return raw.isoformat()  # type: ignore[attr-defined]
            return parsed(raw)
        return in_utc
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
