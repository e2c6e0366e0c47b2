"""`lotrack audit log` and `lotrack audit verify`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from lotrack.cli.context import POSITIVE_INT, App, emit, output_options, pass_app

if TYPE_CHECKING:
    from lotrack.services.audit_trail import EventSelection


@click.group()
def audit() -> None:
    """Read and verify the hash-chained audit trail."""


@audit.command()
@click.option("--entity", help="Only events of this entity type (user, lot, vial, ...).")
@click.option("--id", "entity_id", help="Only events of this record (needs --entity).")
@click.option("--since", metavar="DATETIME", help="Only events at or after this time.")
@click.option("--limit", type=POSITIVE_INT, default=200, show_default=True,
              help="At most this many events, most recent last.")
@output_options
@pass_app
def log(app: App, entity: str | None, entity_id: str | None, since: str | None, limit: int,
        as_json: bool) -> None:
    """Show audit events: who, when, what, before and after, and why.

    Example: lotrack audit log --entity user --id bob --json
    """
    from lotrack.errors import InvalidInput
    from lotrack.render.tables import json_array, site_time, table_pages
    from lotrack.schemas.times import parse_datetime
    from lotrack.services import audit_trail

    if entity_id and not entity:
        raise InvalidInput("--id needs --entity")
    since_at = parse_datetime(since, app.site_tz, "--since") if since else None
    selection = app.read(lambda s, actor: audit_trail.select_events(
        s, actor, entity, entity_id, since_at, limit))
    tz = app.site_tz
    pages = _pages(app, selection)
    if as_json:
        pieces = json_array(event for page in pages for event in page)
    else:
        pieces = table_pages(
            ([{**e, "at": site_time(e["at"], tz)} for e in page] for page in pages),
            ["seq", "at", "user", "entity", "id", "action", "reason", "changes"])
    for piece in pieces:
        click.echo(piece, nl=False)
    click.echo()


def _pages(app: App, selection: EventSelection) -> Iterator[list[dict[str, object]]]:
    """The selected events page by page, each page read in a short transaction of its
    own: a whole trail is shown in the memory of one page, and writers (who wait for an
    SQLite reader's transaction) are not held up while it scrolls by."""
    from lotrack.services import audit_trail

    after = 0
    while True:
        with app.session() as session:
            page = audit_trail.event_page(session, selection, after)
        if not page:
            return
        yield page
        after = int(page[-1]["seq"])


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
