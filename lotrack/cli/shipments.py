"""`lotrack shipment ...`: shipments from a depot to the trial site, receipt confirmed by scan."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lotrack.cli.context import App, emit, output_options, pass_app, read_password

T = TypeVar("T")
PASSWORD_STDIN = click.option("--password-stdin", is_flag=True,
                              help="Read the signing password from stdin (first line).")


@click.group()
def shipment() -> None:
    """Shipments: create, dispatch, receive, confirm by scan, quarantine release, manifest."""


def _at(app: App, text: str | None, what: str):
    from lotrack.models.base import utcnow
    from lotrack.schemas.times import parse_datetime

    return parse_datetime(text, app.site_tz, what) if text else utcnow()


def _signed(app: App, password_stdin: bool, meaning: str, step: Callable[[Any, Any, str], T]) -> T:
    """Run a signed step: the password is asked for (naming what the signature means) before
    the unit of work opens, so a prompt never holds a transaction."""
    password = read_password(password_stdin, f"Password (signature: {meaning})")
    return app.run(lambda s, actor: step(s, actor, password))


def _announce(done, outcome: str) -> None:
    """Every step ends with the same line: the shipment, then what became of it."""
    click.echo(f"Shipment {done.code} {outcome}.")


def _vials(done) -> str:
    return f"{len(done.vials)} vial(s)"


def _warn(text: str) -> None:
    click.echo(f"Warning: {text}", err=True)


@shipment.command("create")
@click.option("--from", "origin", required=True, metavar="LOCATION",
              help="Where the vials are stored now (a depot, or any location above their boxes).")
@click.option("--to", "site", required=True, metavar="SITE",
              help="The receiving site (a top-level storage location).")
@click.option("--lot", "lot_numbers", multiple=True, metavar="LOT",
              help="Ship vials of this lot stored at --from; repeatable.")
@click.option("--count", "counts", multiple=True, type=int, metavar="N",
              help="How many vials of each --lot, in the same order (default: all of them).")
@click.option("--serial", "serials", multiple=True, metavar="SERIAL",
              help="Ship this vial; repeatable.")
@click.option("--product", "product_code", help="Product, when two products share a lot number.")
@click.option("--time", "time_text", metavar="DATETIME", help="Preparation time (default now).")
@pass_app
def create(app: App, origin: str, site: str, lot_numbers: tuple[str, ...],
           counts: tuple[int, ...], serials: tuple[str, ...], product_code: str | None,
           time_text: str | None) -> None:
    """Prepare a shipment of released, in-date vials (pharmacist or QA).

    Refused: vials of a lot that is not released, vials on hold, a vial already in another
    shipment, a lot within the product's do-not-ship offset of its expiry.

    Example: lotrack shipment create --from GD-DEPOT --to BJ-SITE --lot EXO-2601 --count 60
    """
    from lotrack.errors import InvalidInput
    from lotrack.services import shipments

    if counts and len(counts) != len(lot_numbers):
        raise InvalidInput("give one --count per --lot, in the same order (or no --count: all "
                           "the lot's vials stored at --from)")
    picks = [shipments.LotPick(lot, counts[i] if counts else None, product_code)
             for i, lot in enumerate(lot_numbers)]
    at = _at(app, time_text, "--time")
    created = app.run(lambda s, actor: shipments.create_shipment(
        s, actor, origin, site, picks, [x.strip() for x in serials], app.site_tz, at))
    _announce(created, f"prepared: {_vials(created)} from {origin} to {site}")


@shipment.command("dispatch")
@click.argument("code", metavar="SHIPMENT")
@click.option("--courier", help="Courier company.")
@click.option("--tracking", "tracking_number", help="Courier tracking number.")
@click.option("--monitor", "monitor_id", metavar="ID",
              help="Temperature monitor (data logger) travelling with the shipment.")
@click.option("--time", "time_text", metavar="DATETIME", help="Dispatch time (default now).")
@PASSWORD_STDIN
@pass_app
def dispatch(app: App, code: str, courier: str | None, tracking_number: str | None,
             monitor_id: str | None, time_text: str | None, password_stdin: bool) -> None:
    """Dispatch a prepared shipment (signed: issued by); its vials leave their positions.

    Without --monitor the shipment will arrive quarantined.

    Example: lotrack shipment dispatch SH000001 --courier "World Courier" --tracking WC123
    --monitor TL-0042
    """
    from lotrack.services import shipments

    at = _at(app, time_text, "--time")
    done = _signed(app, password_stdin, "shipment issued",
                   lambda s, actor, password: shipments.dispatch_shipment(
                       s, actor, code, courier, tracking_number, monitor_id, at, password,
                       app.site_tz))
    _announce(done, f"dispatched: {_vials(done)} in transit")
    if done.monitor_id is None:
        _warn("no temperature monitor: the shipment will arrive quarantined.")


@shipment.command("receive")
@click.argument("code", metavar="SHIPMENT")
@click.option("--box", "box_paths", multiple=True, required=True, metavar="BOX_PATH",
              help="Box at the receiving site to store the vials in; repeat to fill several.")
@click.option("--max-temp", type=float, metavar="C",
              help="Highest temperature the monitor recorded in transit, C.")
@click.option("--time", "time_text", metavar="DATETIME", help="Receipt time (default now).")
@PASSWORD_STDIN
@pass_app
def receive(app: App, code: str, box_paths: tuple[str, ...], max_temp: float | None,
            time_text: str | None, password_stdin: bool) -> None:
    """Receive a shipment at its site (signed: received by); vials stay unconfirmed until
    their labels are scanned. No monitor reading, or one above the product's storage
    limit, puts the whole shipment in quarantine for QA.

    Example: lotrack shipment receive SH000001 --box BJ-SITE/FRZ-80A/R1/BOX-01 --max-temp -78
    """
    from lotrack.services import shipments

    at = _at(app, time_text, "--time")
    done = _signed(app, password_stdin, "shipment received",
                   lambda s, actor, password: shipments.receive_shipment(
                       s, actor, code, list(box_paths), at, max_temp, password,
                       app.site_tz))
    stored = f"received: {_vials(done)} stored"
    if done.status == "quarantined":
        _announce(done, f"{stored}, QUARANTINED")
        _warn(f"quarantined for QA ({done.quarantine_reason}); release with "
              f"`lotrack shipment release-quarantine {done.code}`.")
    else:
        _announce(done, f"{stored}, unconfirmed; scan each label to confirm "
                        f"(`lotrack shipment confirm {done.code}`)")


def _confirmation(report) -> dict:
    """The answer to every scan and the count still to confirm, as `confirm --json` gives it."""
    return {"shipment": report.shipment, "status": report.status, "total": report.total,
            "confirmed_now": report.confirmed, "remaining": report.remaining,
            "answers": [{"scan": a.scan, "answer": a.answer, "vial": a.serial,
                         "detail": a.detail} for a in report.answers]}


@shipment.command("confirm")
@click.argument("code", metavar="SHIPMENT")
@click.option("--scan", "scans", multiple=True, metavar="TEXT",
              help="What the scanner read from a vial label; repeatable. Without --scan, one "
                   "scan per line is read from stdin (a keyboard-wedge scanner) until end of input.")
@click.option("--gs", "substitute", metavar="TEXT",
              help="What the scanner sends for the GS1 separator (default: ASCII 29).")
@PASSWORD_STDIN
@output_options
@pass_app
def confirm(app: App, code: str, scans: tuple[str, ...], substitute: str | None,
            password_stdin: bool, as_json: bool) -> None:
    """Confirm received vials by scanning their labels; only confirmed vials can be dispensed.

    Answers every scan: confirmed, already confirmed, not in this shipment, unknown, or
    mismatch (the label disagrees with the database), and says how many vials remain.
    Exit status 1 when a scan was not in this shipment, unknown or a mismatch.

    Example: lotrack shipment confirm SH000001 --gs "<GS>"
    --scan "]d2010950600013435210EXO-2601<GS>1726120821V00000013"
    """
    from lotrack.errors import RuleViolation
    from lotrack.render.tables import table
    from lotrack.services import shipments

    password = read_password(password_stdin, "Password (signature: receipt confirmed by scan)")
    texts = list(scans)
    if not texts:
        if sys.stdin.isatty():
            click.echo("Scan each vial label, one per line; end with Ctrl-D.", err=True)
        texts = [line.rstrip("\r\n") for line in sys.stdin]
    report = app.run(lambda s, actor: shipments.confirm_scans(
        s, actor, code, texts, password, substitute or app.settings.gs_substitute,
        app.site_tz))
    data = _confirmation(report)
    emit(data, as_json, lambda: table(data["answers"], ["answer", "vial", "detail", "scan"])
         + f"\nShipment {report.shipment}: {report.confirmed} confirmed now; "
           f"{report.remaining} of {report.total} vial(s) remain unconfirmed.")
    refused = report.refused
    if refused:
        kinds = sorted({a.answer for a in refused})
        raise RuleViolation(f"{len(refused)} scan(s) not confirmed ({', '.join(kinds)}); "
                            f"first: {refused[0].detail}")


@shipment.command("release-quarantine")
@click.argument("code", metavar="SHIPMENT")
@click.option("--reason", required=True, help="QA's assessment of the excursion or missing data.")
@PASSWORD_STDIN
@pass_app
def release_quarantine(app: App, code: str, reason: str, password_stdin: bool) -> None:
    """Release a quarantined shipment after assessment (QA, signed).

    Example: lotrack shipment release-quarantine SH000002 --reason "excursion to -62 C for
    40 min is within the stability data"
    """
    from lotrack.services import shipments

    done = _signed(app, password_stdin, "QA release",
                   lambda s, actor, password: shipments.release_quarantine(
                       s, actor, code, reason, password))
    _announce(done, "released from quarantine")


@shipment.command("lost")
@click.argument("code", metavar="SHIPMENT")
@click.option("--reason", required=True)
@PASSWORD_STDIN
@pass_app
def lost(app: App, code: str, reason: str, password_stdin: bool) -> None:
    """Report a shipment in transit lost (signed); its vials are lost.

    Example: lotrack shipment lost SH000003 --reason "courier confirmed the parcel destroyed"
    """
    from lotrack.services import shipments

    done = _signed(app, password_stdin, "shipment reported lost",
                   lambda s, actor, password: shipments.report_lost(
                       s, actor, code, reason, password))
    _announce(done, f"reported lost: {_vials(done)} lost")


@shipment.command("cancel")
@click.argument("code", metavar="SHIPMENT")
@click.option("--reason", required=True)
@pass_app
def cancel(app: App, code: str, reason: str) -> None:
    """Cancel a prepared shipment; its vials stay where they are.

    Example: lotrack shipment cancel SH000004 --reason "site visit postponed"
    """
    from lotrack.services import shipments

    done = app.run(lambda s, actor: shipments.cancel_shipment(s, actor, code, reason))
    _announce(done, "cancelled")


@shipment.command("list")
@click.option("--status", help="Only shipments with this status.")
@output_options
@pass_app
def list_(app: App, status: str | None, as_json: bool) -> None:
    """List shipments with status, sender, receiver and vials still unconfirmed.

    Example: lotrack shipment list --status quarantined
    """
    from lotrack.render.tables import table
    from lotrack.services import shipments

    rows = app.read(lambda s, actor: shipments.shipment_rows(s, actor, status))
    emit(rows, as_json, lambda: table(rows, empty="(no shipment)"))


@shipment.command("show")
@click.argument("code", metavar="SHIPMENT")
@output_options
@pass_app
def show(app: App, code: str, as_json: bool) -> None:
    """Show a shipment: status, courier, monitor, receipt, quarantine, each vial, signatures.

    Example: lotrack shipment show SH000001
    """
    from lotrack.render.tables import record, table
    from lotrack.services import shipments

    data = app.read(lambda s, actor: shipments.shipment_detail(s, actor, code,
                                                               app.site_tz))

    def text() -> str:
        head = {k: v for k, v in data.items() if k not in ("vials", "signatures")
                and v is not None}
        return "\n\n".join([
            record(head),
            table(data["vials"], ["serial", "product", "lot", "expiry", "status", "confirmed_at",
                                  "location", "position"]),
            table(data["signatures"], ["meaning", "printed_name", "signed_at"],
                  empty="(no signature yet)")])

    emit(data, as_json, text)


@click.command("manifest")
@click.argument("code", metavar="SHIPMENT")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="PDF file to write.")
@pass_app
def manifest(app: App, code: str, out_path: Path) -> None:
    """Write the shipment manifest as a PDF: the shipment id as a barcode, sender and
    receiver, lots with expiry, every vial serial, the count, the storage condition, and
    the issued-by and received-by signatures.

    Example: lotrack report manifest SH000001 --out SH000001-manifest.pdf
    """
    from lotrack.render.pdf.manifest import write_manifest
    from lotrack.services import documents, shipments

    tz = app.site_tz
    content, prov = app.read(lambda s, actor: (shipments.manifest(s, actor, code, tz),
                                               documents.provenance(s, actor)))
    meta = {"report": "manifest", "params": {"shipment": content["shipment"]},
            "summary": {"vials": content["count"]}}
    digest = write_manifest(out_path, content, prov, tz, meta)
    click.echo(f"Wrote {out_path} (content sha256 {digest[:16]}).")


shipment.add_command(manifest)
