"""Backup and restore of an SQLite database with SQLite's online backup API.

A backup is a consistent copy taken while others keep working (the API copies one
snapshot of every page, whatever is in the WAL included), written to a temporary file
and renamed into place, so a FILE that exists is always a whole backup. PostgreSQL has
its own tools for this (pg_dump, pg_restore); lotrack does not wrap them.

Both are administrator actions and both are audited: the backup event is committed in
the source database before the copy is taken, so the backup carries the record of its
own making; the restore event is committed in the restored copy before it replaces the
database, so the database in use says where it came from. A backup written by an older
lotrack is upgraded as `lotrack db upgrade` upgrades a database (services/schema_changes:
an administrator's act, its audit event written in the migrations' own transaction, on
the chain of the backup's events), and the restore event says from which revision.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from lotrack import audit, db
from lotrack.errors import DatabaseError, IntegrityFailure, InvalidInput, RuleViolation
from lotrack.migrations_head import HEAD
from lotrack.models import User
from lotrack.models.base import utcnow
from lotrack.services import schema_changes
from lotrack.services.roles import require_role

SQLITE_HEADER = b"SQLite format 3\x00"
POSTGRESQL_ADVICE = (
    "on PostgreSQL, back up with pg_dump (for example `pg_dump -Fc -f lotrack.dump DBNAME`) "
    "and restore with pg_restore (`pg_restore --clean --if-exists -d DBNAME lotrack.dump`); see the "
    "README, Backup and restore")
BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BackupDone:
    file: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class RestoreDone:
    file: Path
    sha256: str
    database: Path
    replaced: Path | None  # where the database replaced is kept
    events: int  # the restored audit trail's, the restore event included
    upgraded_from: str | None  # the backup's schema revision, when older than this lotrack's


@contextmanager
def _file_errors(what: str) -> Iterator[None]:
    """SQLite and file system failures of a copy, as one clear error."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot {what}: {exc}") from exc
    except OSError as exc:
        raise InvalidInput(f"cannot {what}: {exc.strerror or exc}") from exc


def sqlite_file(db_url: str, command: str) -> Path:
    """The configured database's file; anything but an SQLite file is refused."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        raise RuleViolation(f"`lotrack db {command}` works on an SQLite database file; "
                            f"{POSTGRESQL_ADVICE}")
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise InvalidInput(f"`lotrack db {command}` needs an SQLite database file, not "
                           f"{db_url!r}")
    return Path(url.database).resolve()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy(source: sqlite3.Connection, target: Path, single_file: bool) -> None:
    destination = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S)
    try:
        source.backup(destination)
        if single_file:
            # A backup is one self-contained file, not a database plus its WAL.
            destination.execute("PRAGMA journal_mode = DELETE")
    finally:
        destination.close()


def _temporary_beside(path: Path, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".db", dir=path.parent)
    os.close(fd)
    return Path(name)


def remove_database_files(path: Path) -> None:
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        candidate.unlink(missing_ok=True)


def check_backup_target(database: Path, file: Path) -> Path:
    target = file.resolve()
    if target == database:
        raise InvalidInput(f"{file} is the database itself: give another file")
    if target.exists():
        raise InvalidInput(f"{file} exists: a backup never overwrites a file; give a new name")
    if not target.parent.is_dir():
        raise InvalidInput(f"cannot write {file}: folder {target.parent} does not exist")
    return target


def record_backup(session: Session, actor: User, database: Path, file: Path) -> None:
    """The backup's audit event, committed before the copy so that the copy holds it."""
    require_role(actor, "admin", action="backing up the database")
    audit.record(session, actor, "database", file.name, "backup", None,
                 {"file": str(file), "database": str(database)})


def record_backup_written(session: Session, actor: User, result: BackupDone) -> None:
    """The checksum of the finished file, which the backup cannot hold about itself."""
    require_role(actor, "admin", action="backing up the database")
    audit.record(session, actor, "database", result.file.name, "backup_written", None,
                 {"file": str(result.file), "sha256": result.sha256, "bytes": result.size})


def write_backup(database: Path, file: Path) -> BackupDone:
    """Copy `database` to `file` (a new file) as one consistent snapshot."""
    if not database.is_file():
        raise InvalidInput(f"there is no database at {database}")
    with _file_errors(f"back up {database} to {file}"):
        temporary = _temporary_beside(file, ".lotrack-backup-")
        try:
            source = sqlite3.connect(database, timeout=BUSY_TIMEOUT_S)
            try:
                _copy(source, temporary, single_file=True)
            finally:
                source.close()
            if file.exists():
                raise InvalidInput(f"{file} appeared while the backup was written; not replaced")
            temporary.replace(file)
        finally:
            remove_database_files(temporary)
        return BackupDone(file, sha256_of(file), file.stat().st_size)


def open_backup(file: Path) -> sqlite3.Connection:
    """The backup, read-only: restoring never changes the file it restores from."""
    path = file.resolve()
    if not path.is_file():
        raise InvalidInput(f"no backup file {file}")
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise InvalidInput(f"{file} is not an SQLite database (a lotrack backup)")
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        problems = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise InvalidInput(f"{file} cannot be read as a database: {exc}") from exc
    if problems != [("ok",)]:
        connection.close()
        raise IntegrityFailure(f"{file} is damaged: {problems[0][0]}; nothing was restored")
    return connection


def stage_restore(file: Path, database: Path) -> Path:
    """A working copy of the backup beside the database, to check and sign before it is
    copied over the database."""
    with _file_errors(f"read {file}"):
        backup = open_backup(file)
    with _file_errors(f"copy {file} beside {database}"):
        try:
            staged = _temporary_beside(database, ".lotrack-restore-")
            try:
                _copy(backup, staged, single_file=False)
            except BaseException:
                remove_database_files(staged)
                raise
        finally:
            backup.close()
    return staged


def accept_restore(session: Session, actor: User, file: Path, sha256: str,
                   database: Path, upgraded_from: str | None = None) -> audit.VerifyReport:
    """On the staged copy: the actor is an administrator of the backup's users and the
    backup's audit trail verifies; then the restore is recorded in it, with the revision
    the backup was upgraded from (None: it was at this lotrack's) and to."""
    require_role(actor, "admin", action="restoring the database")
    report = audit.verify(session)
    if not report.ok:
        raise IntegrityFailure(f"the audit trail in {file} does not verify ({report.problems[0]}"
                               f"{'; ...' if len(report.problems) > 1 else ''}); nothing was "
                               "restored")
    audit.record(session, actor, "database", file.name, "restore", None,
                 {"file": str(file), "sha256": sha256, "database": str(database),
                  "upgraded_from": upgraded_from,
                  "upgraded_to": HEAD if upgraded_from is not None else None})
    return report


def restore(file: Path, database: Path, authenticate: Callable[[Session], User]) -> RestoreDone:
    """Replace the SQLite `database` with the backup `file`, as an administrator of the
    backup's users (`authenticate` reads the actor in the backup).

    The backup is copied beside the database; a copy without a schema revision is not a
    lotrack database; one from an older lotrack is upgraded through schema_changes.upgrade
    (admin-checked, its upgrade event on the backup's audit chain); its audit trail is
    verified and the restore recorded in it; then it is copied over the database, the
    database replaced being kept beside it. Whatever fails, the copy is removed and the
    database is as it was."""
    staged = stage_restore(file, database)
    try:
        digest = sha256_of(file)
        engine = db.make_engine(f"sqlite:///{staged}")
        try:
            upgraded_from = _upgrade_staged(engine, file, authenticate)
            report = db.retrying(engine, lambda s: accept_restore(
                s, authenticate(s), file, digest, database, upgraded_from))
        finally:
            engine.dispose()
        kept = replace_database(staged, database, lambda: replaced_name(database))
    finally:
        remove_database_files(staged)
    return RestoreDone(file, digest, database, kept, report.events + 1, upgraded_from)


def _upgrade_staged(engine: Engine, file: Path,
                    authenticate: Callable[[Session], User]) -> str | None:
    """Bring the staged copy to this lotrack's schema; the revision it was at when older."""
    revision = db.current_revision(engine)
    if revision is None:
        raise InvalidInput(f"{file} is not a lotrack database (it has no schema revision)")
    if revision == HEAD:
        return None
    if revision not in schema_changes.revisions():
        raise InvalidInput(f"{file} is at schema revision {revision}, which this lotrack (at "
                           f"{HEAD}) does not know: restore it with the lotrack that wrote it")
    # Refused as a restore before anything is upgraded, then upgraded as `db upgrade` does.
    with db.unit_of_work(engine) as session:
        require_role(authenticate(session), "admin", action="restoring the database")
    return schema_changes.upgrade(engine, authenticate).from_revision


def replace_database(staged: Path, database: Path,
                     keep_old: Callable[[], Path] | None = None) -> Path | None:
    """Copy the staged database over `database` with the backup API (which takes the
    database's write lock, so no other lotrack sees half of it); the database replaced is
    first kept beside it."""
    kept = None
    if database.exists() and keep_old is not None:
        kept = keep_old()
        try:
            write_backup(database, kept)
        except DatabaseError:
            # A database too damaged to copy page by page (often why it is restored) is
            # kept as its files are.
            with _file_errors(f"keep {database} as {kept}"):
                for suffix in ("", "-wal"):
                    if Path(f"{database}{suffix}").exists():
                        shutil.copyfile(f"{database}{suffix}", f"{kept}{suffix}")
    with _file_errors(f"restore into {database}"):
        source = sqlite3.connect(staged, timeout=BUSY_TIMEOUT_S)
        try:
            _copy(source, database, single_file=False)
        finally:
            source.close()
            remove_database_files(staged)
    return kept


def replaced_name(database: Path) -> Path:
    return database.with_name(f"{database.name}.replaced-{utcnow():%Y%m%dT%H%M%SZ}")
