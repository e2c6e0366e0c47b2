"""`lotrack demo`: the whole trial in a fresh SQLite database."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("lotrack-demo"), show_default=True,
              help="Folder for the demo database and everything it writes.")
def demo(out_dir: Path) -> None:
    """Build a realistic demo trial in OUT/lotrack.db and write its documents into OUT.

    The database is replaced if it exists. Explore it afterwards with any command, e.g.
    LOTRACK_DB=sqlite:///lotrack-demo/lotrack.db LOTRACK_USER=monitor.sun
    LOTRACK_PASSWORD=demo-pass-2026 lotrack audit verify

    Example: lotrack demo --out ./lotrack-demo
    """
    from lotrack.demo import DEMO_PASSWORD, SITE_TZ, build_demo

    db_path = build_demo(out_dir, click.echo)
    click.echo(f"Demo database: {db_path} (site time zone {SITE_TZ.key}, recorded in it)")
    click.echo(f"Explore it: export LOTRACK_DB=sqlite:///{db_path.resolve()} "
               f"LOTRACK_USER=monitor.sun LOTRACK_PASSWORD={DEMO_PASSWORD}")
