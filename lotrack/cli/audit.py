"""`lotrack audit log` and `lotrack audit verify`."""

from __future__ import annotations

import click

from lotrack.cli.context import App, emit, output_options, pass_app


@click.group()
def audit() -> None:
    """Read and verify the hash-chained audit trail."""


@audit.command()
@click.option("--entity", help="Only events of this entity type (user, lot, vial, ...).")
@click.option("--id", "entity_id", help="Only events of this record (needs --entity).")
@click.option("--since", metavar="DATETIME", help="Only events at or after this time.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many events, most recent last.")
@output_options
@pass_app
def log(app: App, entity: str | None, entity_id: str | None, since: str | None, limit: int,
        as_json: bool) -> None:
    """Show audit events: who, when, what, before and after, and why.

    Example: lotrack audit log --entity user --id bob --json
    """
    from lotrack.errors import InvalidInput
    from lotrack.render.tables import site_time, table
    from lotrack.schemas.times import parse_datetime
    from lotrack.services import audit_trail

    if entity_id and not entity:
        raise InvalidInput("--id needs --entity")
    since_at = parse_datetime(since, app.site_tz, "--since") if since else None
    events = app.read(lambda s, actor: audit_trail.events(s, actor, entity, entity_id, since_at,
                                                          limit))
    tz = app.site_tz
    rows = [{**e, "at": site_time(e["at"], tz)} for e in events] if not as_json else events
    emit(events, as_json, lambda: table(
        rows, ["seq", "at", "user", "entity", "id", "action", "reason", "changes"]))


@audit.command()
@output_options
@pass_app
def verify(app: App, as_json: bool) -> None:
    """Recompute the hash chain and compare every audited record with its last event.

    Exits with status 4 and names each problem if anything was altered, removed or
    written outside lotrack.

    Example: lotrack audit verify
    """
    from lotrack.errors import IntegrityFailure
    from lotrack.services import audit_trail

    report = app.read(lambda s, actor: audit_trail.verify(s, actor))
    data = {"ok": report.ok, "events": report.events, "rows": report.rows,
            "problems": report.problems}
    if report.ok:
        emit(data, as_json, lambda: (f"Audit trail intact: {report.events} events, "
                                     f"{report.rows} records checked."))
        return
    if as_json:
        emit(data, True, str)
    else:
        for problem in report.problems:
            click.echo(f"FAIL: {problem}")
    raise IntegrityFailure(f"audit trail verification failed: {len(report.problems)} problem(s)")
