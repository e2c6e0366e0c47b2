"""`lotrack login`, `logout`, `whoami`."""

from __future__ import annotations

import click

from lotrack.cli.context import App, emit, output_options, pass_app, read_password


@click.command()
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@pass_app
def login(app: App, username: str, password_stdin: bool) -> None:
    """Start a login session for USERNAME; it ends after an idle period (default 15 minutes).

    Example: lotrack login alice
    """
    from lotrack.services import auth

    password = read_password(password_stdin, "Password")
    with app.session() as session:
        new = auth.login(session, username, password)
        session.commit()
    app.write_token(new.token)
    click.echo(f"Logged in as {new.user.username} ({new.user.full_name}); the session ends "
               f"after {app.settings.idle_minutes} idle minutes.")


@click.command()
@pass_app
def logout(app: App) -> None:
    """End the login session.

    Example: lotrack logout
    """
    from lotrack.services import auth

    token = app.read_token()
    user = None
    if token:
        with app.session() as session:
            user = auth.logout(session, token)
            session.commit()
    app.forget_token()
    click.echo(f"Logged out {user.username}." if user else "No login session was open.")


@click.command()
@output_options
@pass_app
def whoami(app: App, as_json: bool) -> None:
    """Show the acting user and their roles.

    Example: lotrack whoami --json
    """
    user = app.read(lambda session, actor: actor)
    data = {"username": user.username, "name": user.full_name, "roles": user.role_names}
    emit(data, as_json, lambda: f"{user.username} ({user.full_name}): {', '.join(user.role_names)}")
