"""Changing the database schema. Upgrading a database that holds users is an
administrator's act, audited; downgrading is one with a reason, audited, and refused
wherever it would discard recorded data.

A downgrade undoes migrations, and undoing one drops the tables and columns it added, with
whatever they hold. On a database in use that is deletion of GMP and clinical records,
which lotrack never does: the way back from an upgrade is the backup taken before it
(`lotrack db restore`, pg_restore on PostgreSQL). So a downgrade goes ahead only where
every table and column it would drop is empty, and the check, the audit event and the
migrations are one transaction: a row written meanwhile cannot be lost unseen, and a
downgrade that fails leaves neither the schema changed nor an event claiming it was.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import column, func, inspect, select, table, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from lotrack import audit, db
from lotrack.errors import InvalidInput, RuleViolation
from lotrack.models import User
from lotrack.services.roles import require_role

BASE = "base"


@dataclass(frozen=True)
class SchemaChange:
    from_revision: str | None
    to_revision: str | None


def revisions() -> list[str]:
    """Every revision, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(db.migrations_path()))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def target_revision(current: str | None, revision: str) -> str:
    """`revision` checked against the database's: a revision older than the current one, or
    base. Relative forms ("-1") are refused: the revision undone should be named."""
    known = revisions()
    wanted = revision.strip()
    if current is None:
        raise InvalidInput("the database has no schema to downgrade (it is at base)")
    if wanted != BASE and wanted not in known:
        raise InvalidInput(f"unknown revision {revision!r}: name one of "
                           f"{', '.join([BASE, *known])}")
    if current not in known:
        raise InvalidInput(f"the database is at revision {current}, which this lotrack does "
                           "not know")
    position = -1 if wanted == BASE else known.index(wanted)
    if position >= known.index(current):
        raise InvalidInput(f"the database is at revision {current}; {wanted} is not older")
    return wanted


def schema_at(revision: str) -> dict[str, set[str]]:
    """The tables and columns the migrations make up to `revision`, read off a scratch
    SQLite database (both backends get the same tables and columns)."""
    if revision == BASE:
        return {}
    with tempfile.TemporaryDirectory(prefix="lotrack-schema-") as folder:
        engine = db.make_engine(f"sqlite:///{Path(folder) / 'schema.db'}")
        try:
            db.upgrade(engine, revision)
            return _schema(inspect(engine))
        finally:
            engine.dispose()


def _schema(inspector) -> dict[str, set[str]]:
    return {name: {c["name"] for c in inspector.get_columns(name)}
            for name in inspector.get_table_names() if name != "alembic_version"}


def discarded(connection: Connection, target: dict[str, set[str]]) -> list[str]:
    """What a downgrade to the schema `target` would drop that holds data: tables with rows,
    columns with values. On PostgreSQL the tables are locked against writes first, until
    the downgrade commits, so that nothing is added between the count and the drop."""
    now = _schema(inspect(connection))
    dropped = {name: cols - target.get(name, set()) for name, cols in now.items()}
    dropped = {name: cols for name, cols in dropped.items() if cols}
    if connection.dialect.name == "postgresql" and dropped:
        names = ", ".join(connection.dialect.identifier_preparer.quote(n) for n in sorted(dropped))
        connection.execute(text(f"LOCK TABLE {names} IN SHARE MODE"))
    losses = []
    for name in sorted(dropped):
        if name not in target:
            rows = connection.execute(select(func.count()).select_from(table(name))).scalar_one()
            if rows:
                losses.append(f"table {name} ({rows} row{'s' if rows != 1 else ''})")
            continue
        for col in sorted(dropped[name]):
            values = connection.execute(select(func.count(column(col))).select_from(
                table(name))).scalar_one()
            if values:
                losses.append(f"{name}.{col} ({values} value{'s' if values != 1 else ''})")
    return losses


def downgrade(engine: Engine, authenticate: Callable[[Session], User], revision: str,
              reason: str) -> SchemaChange:
    """Downgrade the database to `revision` (administrators, with a reason), unless that
    would drop recorded data."""
    if not reason.strip():
        raise InvalidInput("a downgrade needs a reason (--reason)")
    current = db.current_revision(engine)
    wanted = target_revision(current, revision)
    actor_id = _administrator(engine, authenticate, "downgrading the database")
    target = schema_at(wanted)

    def check_and_record(connection: Connection) -> None:
        losses = discarded(connection, target)
        if losses:
            shown = "; ".join(losses[:5]) + (f"; and {len(losses) - 5} more"
                                             if len(losses) > 5 else "")
            raise RuleViolation(
                f"downgrading to {wanted} would delete recorded data: {shown}. Records are "
                "never deleted: to go back to an earlier lotrack, restore the backup taken "
                "before the upgrade (lotrack db restore; pg_restore on PostgreSQL)")
        _record(connection, actor_id, "downgrade", current, wanted, reason.strip())

    db.downgrade(engine, wanted, before_migrations=check_and_record)
    return SchemaChange(current, wanted)


def upgrade(engine: Engine, authenticate: Callable[[Session], User],
            revision: str = "head") -> SchemaChange:
    """Upgrade the database to `revision`. A database that has users is upgraded by an
    administrator, and the upgrade is audited in the migrations' own transaction; a new
    one (no users yet: an installation) by whoever installs it."""
    current = db.current_revision(engine)
    actor_id = (_administrator(engine, authenticate, "upgrading the database")
                if _has_users(engine) else None)

    def record(connection: Connection) -> None:
        now = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if actor_id is not None and now != current:
            _record(connection, actor_id, "upgrade", current, now, None)

    db.upgrade(engine, revision, after_migrations=record)
    return SchemaChange(current, db.current_revision(engine))


def _has_users(engine: Engine) -> bool:
    with engine.connect() as connection:
        return inspect(connection).has_table("users") and bool(connection.execute(
            select(func.count()).select_from(table("users"))).scalar_one())


def _administrator(engine: Engine, authenticate: Callable[[Session], User],
                   action: str) -> int:
    """The id of the authenticated administrator (the users table is the same at every
    revision, so the current models read it whatever the schema's revision)."""
    with db.unit_of_work(engine) as session:
        actor = authenticate(session)
        require_role(actor, "admin", action=action)
        session.commit()  # a login records the sign-in
        return actor.id


def _record(connection: Connection, actor_id: int, action: str, before: str | None,
            after: str | None, reason: str | None) -> None:
    """The schema change's audit event, on the migrations' connection and transaction."""
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        audit.record(session, session.get(User, actor_id), "database", "schema", action,
                     {"revision": before}, {"revision": after}, reason)
        session.commit()  # the savepoint: the migrations' transaction commits it all
