"""`lotrack init` and `lotrack db ...`: the only commands that load Alembic."""

from __future__ import annotations

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

    On a database that already has users, only upgrades it. The password comes from
    --password-stdin, LOTRACK_PASSWORD, or a prompt.

    Example: LOTRACK_PASSWORD=... lotrack init --admin alice --name "Alice Admin"
    """
    from lotrack import db
    from lotrack.services import users

    engine = app.engine(check_schema=False)
    db.upgrade(engine)
    with app.session() as session:
        initialised = users.has_users(session)
    if initialised:
        click.echo(f"Database at {db.display_url(engine)} is at revision "
                   f"{db.current_revision(engine)}; it already has users.")
        return
    # Ask before opening the transaction: a prompt must not hold the write lock.
    username = admin_username or click.prompt("Administrator username")
    name = admin_name or click.prompt("Administrator full name")
    password = read_password(password_stdin, "Administrator password", confirm=True)
    with app.session() as session:
        admin = users.create_first_admin(session, username, name, password)
        session.commit()
    click.echo(f"Initialised {db.display_url(engine)}; administrator {admin.username} created.")


@click.group()
def db() -> None:
    """Database migrations (Alembic), run from the installed package."""


@db.command()
@click.argument("revision", default="head")
@pass_app
def upgrade(app: App, revision: str) -> None:
    """Upgrade the database to REVISION (default: head).

    Example: lotrack db upgrade
    """
    from lotrack import db as database

    engine = app.engine(check_schema=False)
    database.upgrade(engine, revision)
    click.echo(f"Database at revision {database.current_revision(engine)}.")


@db.command()
@click.argument("revision")
@pass_app
def downgrade(app: App, revision: str) -> None:
    """Downgrade the database to REVISION ('base' removes every table).

    Example: lotrack db downgrade 0001
    """
    from lotrack import db as database

    engine = app.engine(check_schema=False)
    database.downgrade(engine, revision)
    click.echo(f"Database at revision {database.current_revision(engine) or 'base'}.")


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
