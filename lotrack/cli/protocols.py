"""`lotrack protocol ...`: the protocol file as versioned data."""

from __future__ import annotations

from pathlib import Path

import click

from lotrack.cli.context import POSITIVE_INT, App, emit, output_options, pass_app, read_password


@click.group()
def protocol() -> None:
    """Protocol versions: groups, treatment cycle, eligibility."""


@protocol.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@pass_app
def load(app: App, file: Path | None) -> None:
    """Validate FILE (TOML) and store it as the next draft version; default: the shipped file.

    Example: lotrack protocol load lotrack/data/protocol-ips-exo-iua.toml
    """
    from lotrack.schemas.protocol import default_protocol_path, load_protocol_file
    from lotrack.services import protocols

    path = file or default_protocol_path()
    content = load_protocol_file(path)
    version = app.run(lambda s, actor: protocols.load_protocol(s, actor, content, path.name))
    click.echo(f"Loaded protocol {version.code} version {version.version} (draft); activate it "
               f"with `lotrack protocol activate {version.code} {version.version}`.")


@protocol.command()
@click.argument("code")
@click.argument("version", type=POSITIVE_INT)
@click.option("--password-stdin", is_flag=True, help="Read the signing password from stdin.")
@pass_app
def activate(app: App, code: str, version: int, password_stdin: bool) -> None:
    """Activate protocol CODE VERSION with your signature (investigator).

    Example: lotrack protocol activate IPSEXO-IUA-01 1
    """
    from lotrack.services import protocols

    password = read_password(password_stdin, "Password (signature)")
    app.run(lambda s, actor: protocols.activate_protocol(s, actor, code, version, password))
    click.echo(f"Protocol {code} version {version} is active.")


@protocol.command("list")
@output_options
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List protocol versions and their status.

    Example: lotrack protocol list
    """
    from lotrack.render.tables import site_time, table
    from lotrack.services import protocols

    tz = app.site_tz
    rows = app.read(lambda s, actor: [
        {"code": v.code, "version": v.version, "status": v.status, "file": v.source_name,
         "loaded": site_time(v.loaded_at, tz), "activated": site_time(v.activated_at, tz),
         "sha256": v.content_sha256[:16]} for v in protocols.list_protocols(s)])
    emit(rows, as_json, lambda: table(rows))
