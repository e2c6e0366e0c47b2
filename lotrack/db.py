"""Engines, the unit of work, and running the migrations from an installed package."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Table, create_engine, event, insert, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session

from lotrack.errors import DatabaseBusy, DatabaseError, InvalidInput

if TYPE_CHECKING:
    from alembic.config import Config

T = TypeVar("T")
log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A transaction that lost a race is run again this many times in all, waiting
# RETRY_FIRST_DELAY_S, then twice as long each time (with jitter, so that the
# losers of one race do not meet again at the same instant).
RETRY_ATTEMPTS = 5
RETRY_FIRST_DELAY_S = 0.05
# SQLSTATE serialization_failure and deadlock_detected: PostgreSQL rolled the
# transaction back and says that running it again can succeed.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The pysqlite driver's own transaction handling is switched off so that
    # BEGIN IMMEDIATE below takes the write lock at the start: a deferred
    # transaction that upgrades to a writer can fail with "database is locked"
    # instead of waiting on the busy timeout.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL, a busy timeout and immediate writes."""
    try:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, future=True)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise InvalidInput(f"cannot use database URL {url!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def display_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: the caller commits; anything else rolls back.

    A failed password check is remembered after the rollback in a transaction of
    its own, so that lockout after repeated failures holds even though the
    command that failed wrote nothing.
    """
    from lotrack.services.auth import AuthenticationFailed, record_failed_attempt

    session = Session(engine, expire_on_commit=False, autoflush=True)
    try:
        yield session
    except AuthenticationFailed as failure:
        session.rollback()
        session.close()
        record_failed_attempt(engine, failure)
        raise
    except OperationalError as exc:
        session.rollback()
        if is_transient(exc):
            raise DatabaseBusy(_operational_message(engine, exc)) from exc
        raise DatabaseError(_operational_message(engine, exc)) from exc
    finally:
        session.rollback()
        session.close()


def is_transient(exc: OperationalError) -> bool:
    """A failure that running the same transaction again can cure: a serialization failure
    or a deadlock on PostgreSQL, a locked database file on SQLite (the busy timeout ran
    out, or a lock could not be waited for)."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    name = getattr(orig, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return True
    detail = str(orig or exc)
    return "database is locked" in detail or "database table is locked" in detail


def retrying(engine: Engine, action: Callable[[Session], T], *,
             attempts: int = RETRY_ATTEMPTS, first_delay: float = RETRY_FIRST_DELAY_S) -> T:
    """Run `action` in one unit of work and commit it; a transaction that lost a race
    (`DatabaseBusy`) is rolled back and run again from the start, at most `attempts` times
    in all, with exponential backoff.

    `action` may therefore run more than once: it must not act outside the database
    (files, prompts, stdin) before it returns. Any other error is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            with unit_of_work(engine) as session:
                result = action(session)
                session.commit()
                return result
        except DatabaseBusy as exc:
            if attempt == attempts:
                raise DatabaseBusy(f"{exc} (still failing after {attempts} attempts; "
                                   "nothing was written)") from exc
            delay = first_delay * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            log.info("attempt %d of %d lost a race (%s); running it again in %.2f s",
                     attempt, attempts, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def _operational_message(engine: Engine, exc: OperationalError) -> str:
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    if "no such table" in detail or "does not exist" in detail:
        return (f"the database at {display_url(engine)} is not initialised: "
                "run `lotrack init` (or `lotrack db upgrade`)")
    return f"cannot use the database at {display_url(engine)}: {detail}"


# --- migrations -----------------------------------------------------------

def migrations_path() -> Path:
    """Where the Alembic scripts are.

    An installed wheel carries them as lotrack/_alembic (mapped from alembic/ in
    pyproject.toml); an editable install or a checkout uses alembic/ itself.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "_alembic", package.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError(f"the lotrack installation at {package} has no migrations")


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    config.set_main_option("sqlalchemy.url", display_url(engine).replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations_path()))
    heads = script.get_heads()
    if len(heads) != 1:
        raise DatabaseError(f"the migrations have {len(heads)} heads; expected one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise DatabaseError(_connect_message(engine, exc)) from exc


def _connect_message(engine: Engine, exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    detail = str(orig or exc).strip().splitlines()[0]
    return f"cannot open the database at {display_url(engine)}: {detail}"


def upgrade(engine: Engine, revision: str = "head",
            after_migrations: Callable[[Connection], None] | None = None) -> None:
    """Run the upgrade migrations to `revision`; `after_migrations` runs last on their
    connection, inside their one transaction (services/schema_changes: the audit event)."""
    from alembic import command
    from alembic.util import CommandError

    if not revision.strip():  # Alembic asserts on an empty revision
        raise InvalidInput("give the revision to upgrade to (for example head)")
    config = alembic_config(engine)
    config.attributes["after_migrations"] = after_migrations
    try:
        command.upgrade(config, revision)
    except CommandError as exc:
        raise InvalidInput(f"cannot upgrade to {revision!r}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(_connect_message(engine, exc)) from exc


def downgrade(engine: Engine, revision: str,
              before_migrations: Callable[[Connection], None] | None = None) -> None:
    """Run the downgrade migrations to `revision`; `before_migrations` runs first on their
    connection, inside their one transaction (services/schema_changes: check and audit)."""
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config(engine)
    config.attributes["before_migrations"] = before_migrations
    try:
        command.downgrade(config, revision)
    except CommandError as exc:
        raise InvalidInput(f"cannot downgrade to {revision!r}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(_connect_message(engine, exc)) from exc


def check_schema_current(engine: Engine,
                         then: Callable[[Connection], T] | None = None) -> T | None:
    """Refuse to work on a database that is not at this code's head revision; then, on the
    same connection, run `then` (what every command reads first: the site time zone).

    Reads the version table directly (not through Alembic) so that ordinary
    commands never import Alembic.
    """
    from sqlalchemy import text

    from lotrack.migrations_head import HEAD

    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                raise DatabaseError(
                    f"the database at {display_url(engine)} is not initialised: run `lotrack init`"
                )
            revisions = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
            if revisions != {HEAD}:
                found = ", ".join(sorted(revisions)) or "none"
                raise DatabaseError(
                    f"the database at {display_url(engine)} is at revision {found} but this "
                    f"lotrack expects {HEAD}: run `lotrack db upgrade` (or use a newer lotrack)"
                )
            return then(conn) if then is not None else None
    except OperationalError as exc:
        error = DatabaseBusy if is_transient(exc) else DatabaseError
        raise error(_connect_message(engine, exc)) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(_connect_message(engine, exc)) from exc


# --- bulk writes ------------------------------------------------------------

def bulk_insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows through the driver's executemany, in the session's transaction.

    SQLAlchemy's own executemany processes every row in Python, which costs more than
    the rest of a 100,000-row import; here each column's bind processing (time zones,
    dates) is applied once per distinct value (bulk rows share their timestamps) and
    the rows go to the driver as they are (on PostgreSQL through COPY). Every row must
    have the same keys. Pending ORM changes are flushed first, so the rows may refer to them.
    """
    if not rows:
        return
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    keys = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    # The dialect's own processors, as SQLAlchemy applies them: SQLite gets its text for
    # dates and times, not the driver's per-row (and deprecated) adapters.
    convert = {key: _cached(processor) for key in keys
               if (processor := _bind_processor(table.c[key].type, dialect)) is not None}
    names = list(compiled.positiontup or ()) if compiled.positional else keys
    # Column by column, then zipped into rows: the per-row work stays in C (map, zip).
    columns = []
    for name in names:
        column = map(itemgetter(name), rows)
        columns.append(list(map(convert[name], column) if name in convert else column))
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        _copy(connection, table, names, zip(*columns, strict=True))
        return
    params: list[Any] = (list(zip(*columns, strict=True)) if compiled.positional
                         else [dict(zip(names, values, strict=True))
                               for values in zip(*columns, strict=True)])
    del columns
    connection.exec_driver_sql(str(compiled), params)


def _copy(connection: Connection, table: Table, keys: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL: the rows through COPY, in the transaction. An INSERT executed once per
    row (psycopg's executemany) costs the server and psycopg several times as much. A
    failure is raised as SQLAlchemy raises it: a serialization failure as the
    OperationalError that has the transaction run again (see is_transient)."""
    preparer = connection.dialect.identifier_preparer
    names = ", ".join(preparer.quote(table.c[key].name) for key in keys)
    statement = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"
    driver = connection.connection.driver_connection
    assert driver is not None
    error = connection.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except error as exc:
        raise DBAPIError.instance(statement, None, exc, error) from exc


def _bind_processor(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _cached(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    memo: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        if value is None:
            return None
        try:
            return memo[value]
        except KeyError:
            memo[value] = result = processor(value)
            return result
        except TypeError:  # not hashable
            return processor(value)

    return convert
