"""`lotrack label ...` and `lotrack scan`: print labels that scan, read scans back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lotrack.cli.context import App, emit, output_options, pass_app
from lotrack.memory import collector_paused

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lotrack.models import User
    from lotrack.render.labels.layout import LabelData

PROGRESS_FROM = 50  # labels; below this a run is quick enough to need no bar


def print_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--template", "template_name", metavar="NAME|FILE.toml",
                     help="Template from labels/ or a TOML file (default: the kind's own)."),
        click.option("--sheet", metavar="NAME",
                     help="Sheet layout of the template (a4, letter...; default roll: one per page)."),
        click.option("--format", "fmt", type=click.Choice(["pdf", "png", "svg", "zpl"]),
                     help="Output format (default: from --out's suffix)."),
        click.option("--copies", type=int, default=1, show_default=True, help="Copies of each label."),
        click.option("--reason", help="Why labels printed before are printed again (reprints)."),
        # Bounded: 0 divided by zero, and a huge value asked for an image larger than memory.
        click.option("--dpi", type=click.IntRange(72, 2400), default=600, show_default=True,
                     help="PNG resolution (72-2400)."),
        click.option("--out", "out_path", type=click.Path(path_type=Path), required=True,
                     help="File (pdf, zpl, or one png/svg) or folder (several png/svg)."),
    ]
    for option in reversed(options):
        func = option(func)
    # Around the whole command, as it imports the services (and their models) as well.
    return collector_paused()(func)


@click.group()
def label() -> None:
    """Print vial, box and patient-dose labels (GS1 barcodes) from templates in labels/."""


def _print(app: App, kind: str, gather: Callable[[Session], list[LabelData]],
           template_name: str | None, sheet: str | None, fmt: str | None, copies: int,
           reason: str | None, dpi: int, out_path: Path) -> None:
    from lotrack.render.labels.layout import layouts
    from lotrack.render.labels.output import output_format, stage_labels
    from lotrack.services import labels as service

    template = service.load_template(template_name, kind)
    sheet_spec = template.sheet_named(sheet)
    chosen = output_format(fmt, out_path)

    def action(session: Session, actor: User) -> Any:
        data = gather(session)
        printed = service.record_prints(session, actor, kind, data, template, chosen, copies, reason)
        drawings = _layout_all(template, printed, layouts)
        return stage_labels(out_path, chosen, drawings, copies, template, sheet_spec,
                            f"lotrack {kind} labels", app.settings.label_watermark, dpi), printed

    staged, printed = app.run(action)
    paths = staged.commit()
    reprints = sum(1 for item in printed if item.print_number > 1)
    note = f", {reprints} reprint(s)" if reprints else ""
    where = paths[0] if len(paths) == 1 else out_path
    click.echo(f"Wrote {len(printed)} {kind} label(s) x {copies} ({template.template.name}, "
               f"{chosen}{note}) to {where}.")


def _layout_all(template: Any, printed: list[LabelData], layouts: Callable[..., Any]) -> list[Any]:
    if len(printed) < PROGRESS_FROM:
        return list(layouts(template, printed))
    with click.progressbar(printed, label="Laying out labels", file=click.get_text_stream("stderr"),
                           show_pos=True) as bar:
        return list(layouts(template, bar))


@label.command("vials")
@click.argument("lot_number", metavar="LOT")
@click.option("--product", "product_code", help="Product, when two products share a lot number.")
@click.option("--serial", "serials", multiple=True, metavar="SERIAL",
              help="Only these vials (repeat); default: every vial in stock or quarantine.")
@print_options
@pass_app
def vials(app: App, lot_number: str, product_code: str | None, serials: tuple[str, ...],
          **options: Any) -> None:
    """Vial labels of LOT: GS1 (01)(10)(17)(21) as DataMatrix, or Code 128 of the serial.

    Example: lotrack label vials EXO-2601 --sheet a4 --out EXO-2601-vials.pdf
    """
    from lotrack.services import labels as service

    _print(app, "vial", lambda s: service.vial_labels(s, lot_number, product_code, serials),
           **options)


@label.command("box")
@click.argument("paths", nargs=-1, required=True, metavar="BOX_PATH...")
@print_options
@pass_app
def box(app: App, paths: Sequence[str], **options: Any) -> None:
    """Box labels: GS1-128 (01)(10)(17)(30) for a box of one lot, else Code 128 of the box.

    Example: lotrack label box SITE/FRZ-1/R1/BOX-01 --out box.pdf
    """
    from lotrack.services import labels as service

    _print(app, "box", lambda s: service.box_labels(s, paths), **options)


@label.command("dose")
@click.argument("dose_codes", nargs=-1, required=True, metavar="DOSE...")
@print_options
@pass_app
def dose(app: App, dose_codes: Sequence[str], **options: Any) -> None:
    """Patient-dose labels: participant, cycle, perfusion, dispensing time, use-by (AI 7003).

    Example: lotrack label dose D000012 --reason "label smudged" --out D000012.pdf
    """
    from lotrack.services import labels as service

    tz = app.site_tz
    _print(app, "dose", lambda s: service.dose_labels(s, dose_codes, tz), **options)


@label.command("templates")
@output_options
def templates(as_json: bool) -> None:
    """List the label templates in labels/ with their stock, kind and sheets.

    Example: lotrack label templates
    """
    from lotrack.render.tables import table
    from lotrack.services import labels as service

    rows = [{"name": t.template.name, "kind": t.template.kind,
             "size_mm": f"{t.template.width_mm:g} x {t.template.height_mm:g}",
             "sheets": ", ".join(["roll", *(s.name for s in t.sheet)]),
             "description": t.template.description} for t in service.list_templates()]
    emit(rows, as_json, lambda: table(rows))


@label.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check(path: Path) -> None:
    """Validate a label template file: stock, fields, barcodes and sheets.

    Example: lotrack label check labels/cryovial.toml
    """
    from lotrack.schemas.labels import read_template

    template = read_template(path)
    head = template.template
    click.echo(f"Template {head.name} ({head.kind}, {head.width_mm:g} x {head.height_mm:g} mm) "
               "is valid.")


@click.command()
@click.argument("text")
@click.option("--gs", "substitute", metavar="TEXT",
              help="What the scanner sends for the GS1 separator (default: ASCII 29, or "
                   "LOTRACK_GS_SUBSTITUTE).")
@output_options
@pass_app
def scan(app: App, text: str, substitute: str | None, as_json: bool) -> None:
    """Show what a scanned barcode identifies and whether it agrees with the database.

    TEXT is what the scanner typed: a GS1 element string with or without ]C1 / ]d2, a
    vial serial, a dose id or a box path. Exits with status 1 when the label disagrees.

    Example: lotrack scan "]d2010950600013435210EXO-2601<GS>1727013121V00000127" --gs "<GS>"
    """
    from lotrack.errors import RuleViolation
    from lotrack.services import scanning

    tz = app.site_tz
    gs = substitute or app.settings.gs_substitute
    report = app.read(lambda s, actor: scanning.identify(s, text, gs, tz))
    data = {"symbology": report.symbology, "kind": report.kind, "subject": report.subject,
            "barcode": report.fields, "database": report.identified, "agrees": report.agrees,
            "problems": report.problems}

    def render() -> str:
        lines = [f"{report.kind.capitalize()} {report.subject} ({report.symbology})"]
        lines += [f"  barcode ({ai}) {value}" for ai, value in report.fields.items()]
        lines += [f"  database {key}: {value}" for key, value in report.identified.items()]
        lines.append("  agrees with the database" if report.agrees else "  DISAGREES with the database")
        return "\n".join(lines)

    emit(data, as_json, render)
    if not report.agrees:
        raise RuleViolation("; ".join(report.problems))
