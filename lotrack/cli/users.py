"""`lotrack user ...`: accounts and roles (administrators only, except `passwd`)."""

from __future__ import annotations

import os

import click

from lotrack.cli.context import App, emit, output_options, pass_app, read_password

ROLE_CHOICES = ("admin", "pharmacist", "qa", "investigator", "monitor")


def _user_row(user: object) -> dict[str, object]:
    return {
        "username": user.username,  # type: ignore[attr-defined]
        "name": user.full_name,  # type: ignore[attr-defined]
        "roles": user.role_names,  # type: ignore[attr-defined]
        "active": user.active,  # type: ignore[attr-defined]
        "locked": user.locked,  # type: ignore[attr-defined]
    }


@click.group()
def user() -> None:
    """User accounts and roles. Accounts are deactivated, never deleted."""


@user.command("add")
@click.argument("username")
@click.option("--name", "full_name", required=True, help="Full name, printed on signatures.")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLE_CHOICES),
              help="A role; repeat for several.")
@click.option("--password-stdin", is_flag=True, help="Read the initial password from stdin.")
@pass_app
def add(app: App, username: str, full_name: str, roles: tuple[str, ...],
        password_stdin: bool) -> None:
    """Add a user with one or more roles; the initial password is prompted.

    Example: lotrack user add bob --name "Bob Chen" --role pharmacist --password-stdin
    """
    from lotrack.services import users

    password = read_password(password_stdin, f"Initial password for {username}",
                             env="LOTRACK_NEW_PASSWORD", confirm=True)
    created = app.run(lambda s, actor: users.add_user(s, actor, username, full_name, roles,
                                                      password))
    click.echo(f"User {created.username} added with role(s) {', '.join(created.role_names)}.")


@user.command("list")
@output_options
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List every user with roles and status.

    Example: lotrack user list --json
    """
    from lotrack.render.tables import table
    from lotrack.services import users

    rows = app.read(lambda s, actor: [_user_row(u) for u in users.list_users(s)])
    emit(rows, as_json, lambda: table(rows))


@user.command()
@click.argument("username")
@click.option("--reason", required=True, help="Why the account is deactivated.")
@pass_app
def deactivate(app: App, username: str, reason: str) -> None:
    """Deactivate USERNAME: it can no longer log in or sign; its records stay attributed.

    Example: lotrack user deactivate bob --reason "left the site"
    """
    from lotrack.services import users

    app.run(lambda s, actor: users.deactivate_user(s, actor, username, reason))
    click.echo(f"User {username} deactivated.")


@user.command()
@click.argument("username")
@click.option("--reason", required=True, help="Why the account is unlocked.")
@pass_app
def unlock(app: App, username: str, reason: str) -> None:
    """Unlock USERNAME after repeated failed passwords.

    Example: lotrack user unlock bob --reason "identity confirmed by phone"
    """
    from lotrack.services import users

    app.run(lambda s, actor: users.unlock_user(s, actor, username, reason))
    click.echo(f"User {username} unlocked.")


@user.command()
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLE_CHOICES),
              help="The complete new set of roles; repeat for several.")
@click.option("--reason", required=True, help="Why the roles change.")
@pass_app
def roles(app: App, username: str, roles: tuple[str, ...], reason: str) -> None:
    """Replace the roles of USERNAME.

    Example: lotrack user roles bob --role pharmacist --role investigator --reason "delegation log"
    """
    from lotrack.services import users

    changed = app.run(lambda s, actor: users.set_roles(s, actor, username, roles, reason))
    click.echo(f"User {username} now has role(s) {', '.join(changed.role_names)}.")


@user.command()
@click.argument("username", required=False)
@click.option("--reason", help="Why an administrator resets another user's password.")
@click.option("--password-stdin", is_flag=True,
              help="Read the passwords from stdin: current then new (own), or new (reset).")
@pass_app
def passwd(app: App, username: str | None, reason: str | None, password_stdin: bool) -> None:
    """Change your own password, or (administrators) reset USERNAME's with a reason.

    Your own: the current password comes from LOTRACK_PASSWORD, --password-stdin or a prompt;
    the new one from LOTRACK_NEW_PASSWORD, the next stdin line, or a prompt.

    Example: lotrack user passwd
    """
    from lotrack.services import users

    if username is None:
        me = os.environ.get("LOTRACK_USER") or app.read(lambda s, actor: actor).username
        current_pw = read_password(password_stdin, "Current password")
        new_pw = read_password(password_stdin, "New password", env="LOTRACK_NEW_PASSWORD",
                               confirm=True)
        with app.session() as session:
            users.change_own_password(session, me, current_pw, new_pw)
            session.commit()
        click.echo(f"Password changed for {me}.")
        return
    new_pw = read_password(password_stdin, f"New password for {username}",
                           env="LOTRACK_NEW_PASSWORD", confirm=True)
    app.run(lambda s, actor: users.reset_password(s, actor, username, new_pw, reason or ""))
    click.echo(f"Password reset for {username}; they should change it at next use.")
