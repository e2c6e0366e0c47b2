"""`lotrack storage ...` and `lotrack vial ...`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lotrack.cli.context import App, emit, output_options, pass_app

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lotrack.models import User


@click.group()
def storage() -> None:
    """Storage locations (site / freezer / rack / box) and temperature excursions."""


@storage.command("add")
@click.argument("path")
@click.option("--capacity", type=int, help="Positions in a box (vials are stored in boxes).")
@pass_app
def storage_add(app: App, path: str, capacity: int | None) -> None:
    """Add a location (and any missing parents); give --capacity for a box.

    Example: lotrack storage add SITE/FRZ-A/R1/BOX-01 --capacity 81
    """
    from lotrack.services import storage as service

    created = app.run(lambda s, actor: service.add_location(s, actor, path, capacity))
    click.echo(f"Location {created.path} added.")


@storage.command("list")
@output_options
@pass_app
def storage_list(app: App, as_json: bool) -> None:
    """List locations with their capacity and the vials they hold.

    Example: lotrack storage list
    """
    from lotrack.render.tables import table
    from lotrack.services import storage as service

    rows = app.read(lambda s, actor: [
        {"path": loc.path, "capacity": loc.capacity, "vials": n}
        for loc, n in service.list_locations(s)])
    emit(rows, as_json, lambda: table(rows))


@storage.command("excursion")
@click.argument("path")
@click.option("--start", required=True, metavar="DATETIME")
@click.option("--end", required=True, metavar="DATETIME")
@click.option("--max-temp", type=float, required=True, help="Highest temperature reached, C.")
@click.option("--note", help="What happened.")
@pass_app
def storage_excursion(app: App, path: str, start: str, end: str, max_temp: float,
                      note: str | None) -> None:
    """Record a temperature excursion: vials stored there go on hold, their lots to QA review.

    Example: lotrack storage excursion SITE/FRZ-A --start 2026-04-02T01:10
    --end 2026-04-02T02:40 --max-temp -52
    """
    from lotrack.schemas.times import parse_datetime
    from lotrack.services import storage as service

    tz = app.site_tz
    started, ended = parse_datetime(start, tz, "--start"), parse_datetime(end, tz, "--end")
    excursion = app.run(lambda s, actor: service.record_excursion(
        s, actor, path, started, ended, max_temp, note))
    click.echo(f"Excursion recorded: {excursion.vials_affected} vial(s) on hold.")


@click.group()
def vial() -> None:
    """Vials: list, show, move."""


@vial.command("list")
@click.option("--lot", "lot_number", help="The vials of this lot.")
@click.option("--site", metavar="SITE", help="The vials stored at this site.")
@click.option("--dispensable", is_flag=True,
              help="Only vials that can be dispensed now, first expiry first out.")
@click.option("--product", "product_code")
@output_options
@pass_app
def vial_list(app: App, lot_number: str | None, site: str | None, dispensable: bool,
              product_code: str | None, as_json: bool) -> None:
    """List vials with status and storage position: a lot's, or those stored at a site;
    with --dispensable, only confirmed vials that can be dispensed now, in the order
    dispensing proposes them (first expiry first out).

    Example: lotrack vial list --site BJ-SITE --dispensable
    """
    from lotrack.errors import InvalidInput
    from lotrack.render.tables import table
    from lotrack.services.vial_views import stock_rows, vial_rows

    if not lot_number and not site and not dispensable:
        raise InvalidInput("give --lot LOT or --site SITE (and --dispensable for usable stock)")
    if lot_number and not site and not dispensable:
        rows = app.read(lambda s, actor: vial_rows(s, actor, lot_number, product_code))
    elif not dispensable:
        _stored_vials(app, site, product_code, lot_number, as_json)
        return
    else:
        rows = app.read(lambda s, actor: stock_rows(s, actor, site, product_code, lot_number,
                                                    dispensable, app.site_tz))
    emit(rows, as_json, lambda: table(rows, empty="(no vial)"))


def _stored_vials(app: App, site: str | None, product_code: str | None,
                  lot_number: str | None, as_json: bool) -> None:
    """A site's stock (half a million vials at sponsor scale), as the same text `emit` would
    print, read as it is written: into a temporary file while the transaction is open, then
    from it to the terminal, so that writers (who wait for an SQLite reader's transaction)
    are not held up by a slow terminal or a pager."""
    import tempfile

    from lotrack.render.tables import aligned_lines, json_array
    from lotrack.services.vial_views import stock_listing

    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        def write(session: Session, actor: User) -> None:
            spool.seek(0)
            spool.truncate()
            listing = stock_listing(session, actor, site, product_code, lot_number,
                                    with_widths=not as_json)
            if as_json:
                spool.writelines(json_array(listing.rows))
            elif listing.widths is None:
                spool.write("(no vial)")
            else:
                lines = aligned_lines(listing.rows, listing.widths)
                spool.write(next(lines))
                spool.writelines("\n" + line for line in lines)
            spool.write("\n")

        app.read(write)
        spool.seek(0)
        while chunk := spool.read(1 << 16):
            click.echo(chunk, nl=False)


@vial.command("show")
@click.argument("serial")
@output_options
@pass_app
def vial_show(app: App, serial: str, as_json: bool) -> None:
    """Show one vial: lot, product, expiry, status, position, history.

    Example: lotrack vial show V00000127
    """
    from lotrack.render.tables import record, table
    from lotrack.services.vial_views import vial_detail

    data = app.read(lambda s, actor: vial_detail(s, actor, serial, app.site_tz))
    emit(data, as_json, lambda: record({k: v for k, v in data.items() if k != "history"})
         + "\n\n" + table(data["history"], ["at", "user", "action", "reason"]))


@vial.command("move")
@click.argument("serial")
@click.option("--to", "to_path", required=True, metavar="BOX_PATH")
@click.option("--position", type=int, help="Position in the box (default: the first free).")
@pass_app
def vial_move(app: App, serial: str, to_path: str, position: int | None) -> None:
    """Move a vial to a box position.

    Example: lotrack vial move V00000127 --to SITE/FRZ-B/R1/BOX-02 --position 5
    """
    from lotrack.services import storage as service

    moved = app.run(lambda s, actor: service.move_vial(s, actor, serial, to_path, position))
    click.echo(f"Vial {moved.serial} moved to {to_path} position {moved.position}.")
