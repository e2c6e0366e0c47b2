"""`lotrack init` and `lotrack db ...`: the only commands that load Alembic."""

from __future__ import annotations

from pathlib import Path

import click

from lotrack.cli.context import App, emit, output_options, pass_app, read_password


@click.command()
@click.option("--admin", "admin_username", metavar="USERNAME",
              help="Username of the first administrator (prompted when omitted).")
@click.option("--name", "admin_name", metavar="NAME", help="Full name of the first administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the administrator's password from stdin.")
@pass_app
def init(app: App, admin_username: str | None, admin_name: str | None, password_stdin: bool) -> None:
    """Create or upgrade the database to the latest schema and create the first administrator.

    A new database records the site time zone given by --tz or LOTRACK_TZ (else UTC);
    every workstation then works in it. On a database that already has users, only
    upgrades it. The password comes from --password-stdin, LOTRACK_PASSWORD, or a prompt.

    Example: LOTRACK_PASSWORD=... lotrack --tz Asia/Shanghai init --admin alice --name "Alice Admin"
    """
    from lotrack import db
    from lotrack.services import site_settings, users

    engine = app.engine(check_schema=False)
    db.upgrade(engine)
    with app.session() as session:
        initialised = users.has_users(session)
    if initialised:
        click.echo(f"Database at {db.display_url(engine)} is at revision "
                   f"{db.current_revision(engine)}; it already has users.")
        click.echo(_zone_note(app))
        return
    # Ask before opening the transaction: a prompt must not hold the write lock.
    username = admin_username or click.prompt("Administrator username")
    name = admin_name or click.prompt("Administrator full name")
    password = read_password(password_stdin, "Administrator password", confirm=True)
    zone = app.settings.site_tz
    with app.session() as session:
        admin = users.create_first_admin(session, username, name, password)
        site_settings.set_site_time_zone(session, admin, zone.key, None)
        session.commit()
    click.echo(f"Initialised {db.display_url(engine)}; administrator {admin.username} created; "
               f"site time zone {zone.key}.")


def _zone_note(app: App) -> str:
    conflict = app.zone_conflict()
    if conflict:
        return f"Warning: {conflict}."
    recorded = app.recorded_tz
    if recorded:
        return f"Site time zone: {recorded} (recorded in the database)."
    return (f"Site time zone: none recorded in the database; this workstation uses "
            f"{app.settings.site_tz.key}. An administrator records it with "
            "`lotrack settings set-tz ZONE`.")


@click.group()
def db() -> None:
    """Database migrations (Alembic), run from the installed package; SQLite backup and
    restore."""


@db.command()
@click.argument("revision", default="head")
@pass_app
def upgrade(app: App, revision: str) -> None:
    """Upgrade the database to REVISION (default: head); a database with users is
    upgraded by an administrator, and the upgrade is audited.

    Example: lotrack db upgrade
    """
    from lotrack.services import schema_changes

    engine = app.engine(check_schema=False)
    done = schema_changes.upgrade(engine, app.current_user, revision)
    click.echo(f"Database at revision {done.to_revision}.")


@db.command()
@click.argument("revision")
@click.option("--reason", required=True, help="Why the schema goes back (audited).")
@pass_app
def downgrade(app: App, revision: str, reason: str) -> None:
    """Downgrade the database to REVISION (administrators; audited).

    Refused where a migration undone would drop a table or column holding data: records
    are never deleted, and the way back from an upgrade is the backup taken before it.

    Example: lotrack db downgrade 0006 --reason "roll back the 0.2 upgrade on the test site"
    """
    from lotrack.services import schema_changes

    engine = app.engine(check_schema=False)
    done = schema_changes.downgrade(engine, app.current_user, revision, reason)
    click.echo(f"Database downgraded from revision {done.from_revision} to {done.to_revision}.")


@db.command()
@output_options
@pass_app
def current(app: App, as_json: bool) -> None:
    """Show the database's revision and the revision this lotrack expects.

    Example: lotrack db current --json
    """
    from lotrack import db as database

    engine = app.engine(check_schema=False)
    data = {"database": database.display_url(engine),
            "current": database.current_revision(engine),
            "head": database.head_revision()}
    data["up_to_date"] = data["current"] == data["head"]
    emit(data, as_json, lambda: (f"{data['database']}: revision {data['current'] or 'none'} "
                                 f"(head {data['head']})"))


@db.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def backup(app: App, file: Path) -> None:
    """Back up the SQLite database to FILE, a new file, while others keep working
    (SQLite's online backup API); administrators.

    The backup event (who, when, FILE) is committed first, so the backup holds it; the
    file's SHA-256 is recorded once it is written. On PostgreSQL use pg_dump.

    Example: lotrack db backup backups/lotrack-2026-05-04.db
    """
    from lotrack.services import backups

    database = backups.sqlite_file(app.settings.db_url, "backup")
    target = backups.check_backup_target(database, file)
    app.run(lambda s, actor: backups.record_backup(s, actor, database, target))
    done = backups.write_backup(database, target)
    app.run(lambda s, actor: backups.record_backup_written(s, actor, done))
    click.echo(f"Backed up {database} to {done.file} ({done.size} bytes, sha256 {done.sha256}).")


@db.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True,
              help="Confirm that every record of the database is to be replaced by the backup's.")
@pass_app
def restore(app: App, file: Path, yes: bool) -> None:
    """Replace the SQLite database with the backup FILE; an administrator of the backup.

    The backup is copied beside the database, upgraded if it is older, and its audit trail
    verified; the restore is recorded in it; then it is copied over the database in one
    step. The database replaced is kept as DATABASE.replaced-TIME. On PostgreSQL use
    pg_restore.

    Example: lotrack db restore backups/lotrack-2026-05-04.db --yes
    """
    from lotrack.errors import InvalidInput
    from lotrack.services import backups

    database = backups.sqlite_file(app.settings.db_url, "restore")
    if not yes:
        raise InvalidInput(f"restoring replaces every record in {database} with those in {file}: "
                           "give --yes to confirm")
    done = backups.restore(file, database, app.current_user)
    upgraded = (f", upgraded from revision {done.upgraded_from}"
                if done.upgraded_from is not None else "")
    click.echo(f"Restored {done.file} (sha256 {done.sha256}) into {done.database}{upgraded}: "
               f"audit trail intact, {done.events} events.")
    if done.replaced is not None:
        click.echo(f"The database it replaced is kept as {done.replaced}.")
