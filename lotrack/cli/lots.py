"""`lotrack product ...`, `lotrack spec ...`, `lotrack lot ...`."""

from __future__ import annotations

from pathlib import Path

import click

from lotrack.cli.context import POSITIVE_INT, App, emit, output_options, pass_app, read_password

LOT_PRODUCT = click.option("--product", "product_code", metavar="CODE",
                           help="Product, when two products share a lot number.")


@click.group()
def product() -> None:
    """Products: the active substance, placebo and vehicles."""


@product.command("add")
@click.argument("code")
@click.option("--name", required=True)
@click.option("--placebo", is_flag=True, help="The product is the placebo.")
@click.option("--vehicle", is_flag=True, help="The product is a vehicle.")
@click.option("--gtin", metavar="GTIN14", help="GS1 GTIN-14 (check digit verified).")
@click.option("--storage", "storage_condition", default="Store at or below -70 C",
              show_default=True)
@click.option("--storage-max-c", type=float, default=-70, show_default=True,
              help="Highest storage temperature, C.")
@click.option("--shelf-life-days", type=int, default=365, show_default=True)
@click.option("--post-thaw-hours", type=float, default=4, show_default=True,
              help="Use-by window after thawing.")
@click.option("--fill-ml", "fill_volume_ml", type=float, default=1.0, show_default=True)
@click.option("--dnd-days", "dnd_days", type=int, default=0, show_default=True,
              help="Do-not-dispense offset: days before expiry from which a vial is not dispensed.")
@click.option("--dns-days", "dns_days", type=int, default=0, show_default=True,
              help="Do-not-ship offset: days before expiry from which a vial is not shipped.")
@pass_app
def product_add(app: App, code: str, name: str, placebo: bool, vehicle: bool, gtin: str | None,
                storage_condition: str, storage_max_c: float, shelf_life_days: int,
                post_thaw_hours: float, fill_volume_ml: float, dnd_days: int,
                dns_days: int) -> None:
    """Add a product (QA).

    Example: lotrack product add IPSEXO --name "iPS-Exo intrauterine suspension" --gtin 09506000134352
    """
    from lotrack.schemas import parse
    from lotrack.schemas.lots import ProductIn
    from lotrack.services import products

    kind = "placebo" if placebo else "vehicle" if vehicle else "active"
    product_in = parse(ProductIn, {
        "code": code, "name": name, "kind": kind, "gtin": gtin,
        "storage_condition": storage_condition, "storage_max_c": storage_max_c,
        "shelf_life_days": shelf_life_days, "post_thaw_hours": post_thaw_hours,
        "fill_volume_ml": fill_volume_ml, "do_not_dispense_days": dnd_days,
        "do_not_ship_days": dns_days}, what="product")
    created = app.run(lambda s, actor: products.add_product(s, actor, product_in))
    click.echo(f"Product {created.code} added.")


@product.command("list")
@output_options
@pass_app
def product_list(app: App, as_json: bool) -> None:
    """List products.

    Example: lotrack product list --json
    """
    from lotrack.render.tables import table
    from lotrack.services import products

    rows = app.read(lambda s, actor: [
        {"code": p.code, "name": p.name, "kind": p.kind, "gtin": p.gtin,
         "storage": p.storage_condition, "shelf_life_days": p.shelf_life_days,
         "post_thaw_hours": p.post_thaw_hours, "fill_ml": p.fill_volume_ml,
         "dnd_days": p.do_not_dispense_days, "dns_days": p.do_not_ship_days}
        for p in products.list_products(s)])
    emit(rows, as_json, lambda: table(rows))


@click.group()
def spec() -> None:
    """QC specifications, versioned per product."""


@spec.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def spec_load(app: App, file: Path) -> None:
    """Validate FILE (TOML) and store it as the product's next draft specification.

    Example: lotrack spec load lotrack/data/spec-ips-exo.toml
    """
    from lotrack.schemas.lots import load_spec_file
    from lotrack.services import specifications

    content = load_spec_file(file)
    version = app.run(lambda s, actor: specifications.load_spec(s, actor, content, file.name))
    click.echo(f"Loaded specification {content.product} version {version.version} (draft); "
               f"activate it with `lotrack spec activate {content.product} {version.version}`.")


@spec.command("activate")
@click.argument("product_code", metavar="PRODUCT")
@click.argument("version", type=POSITIVE_INT)
@click.option("--password-stdin", is_flag=True, help="Read the signing password from stdin.")
@pass_app
def spec_activate(app: App, product_code: str, version: int, password_stdin: bool) -> None:
    """Activate a specification version with your QA signature.

    Example: lotrack spec activate IPSEXO 2
    """
    from lotrack.services import specifications

    password = read_password(password_stdin, "Password (signature)")
    app.run(lambda s, actor: specifications.activate_spec(s, actor, product_code, version,
                                                          password))
    click.echo(f"Specification {product_code} version {version} is active.")


@spec.command("show")
@click.argument("product_code", metavar="PRODUCT")
@click.option("--version", type=POSITIVE_INT, help="A version (default: the active one).")
@output_options
@pass_app
def spec_show(app: App, product_code: str, version: int | None, as_json: bool) -> None:
    """Show a specification's attributes and limits.

    Example: lotrack spec show IPSEXO
    """
    from lotrack.render.tables import table
    from lotrack.services import specifications
    from lotrack.services.qc import alert_text, limit_text

    def read(s, actor):
        found = specifications.get_spec(s, product_code, version)
        content = specifications.spec_content(found)
        return {"product": product_code, "version": found.version, "status": found.status,
                "attributes": [{"name": a.name, "label": a.label, "unit": a.unit,
                                "method": a.method, "limit": limit_text(a), "min": a.min,
                                "max": a.max, "alert": alert_text(a), "alert_min": a.alert_min,
                                "alert_max": a.alert_max, "expected": a.expected,
                                "required": a.required}
                               for a in content.attributes]}

    data = app.read(read)
    emit(data, as_json, lambda: f"{data['product']} specification version {data['version']} "
         f"({data['status']})\n" + table(data["attributes"],
                                         ["name", "unit", "limit", "alert", "method",
                                          "required"]))


@click.group()
def lot() -> None:
    """GMP lots: registration, QC results, release and the rest of the lifecycle."""


@lot.command("register")
@click.argument("lot_number", metavar="LOT")
@click.option("--product", "product_code", required=True)
@click.option("--manufactured", required=True, metavar="DATE")
@click.option("--expiry", required=True, metavar="DATE[THH:MM]",
              help="Expiry date; with a time of day (site time) when the lot expires at one, "
                   "else it lasts to the end of the day.")
@click.option("--vials", type=int, required=True, help="Number of vials filled.")
@click.option("--cell-line", default="not applicable", help="Source iPSC line.")
@click.option("--cell-bank", default="not applicable", help="Cell bank id.")
@click.option("--passage", type=int, default=0)
@click.option("--fill-ml", type=float, help="Fill volume per vial (default: the product's).")
@pass_app
def lot_register(app: App, lot_number: str, product_code: str, manufactured: str, expiry: str,
                 vials: int, cell_line: str, cell_bank: str, passage: int,
                 fill_ml: float | None) -> None:
    """Register a lot in quarantine and create its vials (QA).

    Example: lotrack lot register EXO-2601 --product IPSEXO --manufactured 2026-01-12
    --expiry 2026-12-31 --vials 120 --cell-line iPSC-GD01 --cell-bank MCB-01 --passage 18
    """
    from lotrack.schemas import parse
    from lotrack.schemas.lots import LotIn
    from lotrack.services import lots

    expiry_day, _, expiry_time = expiry.strip().replace(" ", "T", 1).partition("T")
    lot_in = parse(LotIn, {"lot_number": lot_number, "product": product_code,
                           "manufactured_on": manufactured, "expiry_on": expiry_day,
                           "expiry_time": expiry_time or None, "vials": vials,
                           "cell_line": cell_line, "cell_bank_id": cell_bank,
                           "passage": passage, "fill_volume_ml": fill_ml}, what="lot")
    created = app.run(lambda s, actor: lots.register_lot(s, actor, lot_in))
    click.echo(f"Lot {created.lot_number} registered in quarantine with {created.vial_count} "
               "vials.")


@lot.command("qc")
@click.argument("lot_number", metavar="LOT")
@click.option("--file", "csv_file", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV with columns attribute,value,unit,method,tested_at,analyst.")
@click.option("--result", "results", multiple=True, metavar="ATTRIBUTE=VALUE",
              help="One result in the specification's unit; repeat.")
@click.option("--tested", metavar="DATE", help="Test date for --result (default today).")
@click.option("--analyst", help="Analyst for --result.")
@click.option("--reason", help="Reason, when a result corrects an earlier one.")
@LOT_PRODUCT
@pass_app
def lot_qc(app: App, lot_number: str, csv_file: Path | None, results: tuple[str, ...],
           tested: str | None, analyst: str | None, reason: str | None,
           product_code: str | None) -> None:
    """Record QC results, one by one or from a CSV file; all or nothing (QA).

    Example: lotrack lot qc EXO-2601 --file results.csv
    """
    from lotrack.errors import InvalidInput
    from lotrack.render.tables import table
    from lotrack.services import lots, qc

    if bool(csv_file) == bool(results):
        raise InvalidInput("give either --file CSV or one or more --result ATTRIBUTE=VALUE")
    if csv_file:
        try:
            text = csv_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {csv_file}: {exc}") from None
        rows = qc.parse_csv(text)
        source = "csv"
    else:
        rows = _result_rows(app, results, tested, analyst, product_code, lot_number)
        source = "entry"
    recorded = app.run(lambda s, actor: qc.record_results(
        s, actor, lots.get_lot(s, lot_number, product_code), rows, reason, source))
    click.echo(table(recorded, ["attribute", "value", "unit", "verdict", "detail"]))


@lot.command("import-qc")
@click.argument("csv_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", help="Reason, when results correct earlier ones.")
@pass_app
def lot_import_qc(app: App, csv_file: Path, reason: str | None) -> None:
    """Record QC results for many lots from one CSV file; all or nothing (QA).

    Columns: lot,attribute,value,unit,method,tested_at,analyst and, where two products
    share a lot number, product. Each lot's rows are judged against the specification it
    was registered under, as `lot qc` does.

    Example: lotrack lot import-qc lab-export-2026-11.csv
    """
    from lotrack.errors import InvalidInput
    from lotrack.render.tables import table
    from lotrack.services import qc_files

    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {csv_file}: {exc}") from None
    rows = qc_files.parse_file(text)
    summary = app.run(lambda s, actor: qc_files.import_results(s, actor, rows, reason))
    if len(summary) <= 50:
        click.echo(table(summary, ["lot", "product", "results", "pass", "fail", "not_evaluable"]))
    failing = [row["lot"] for row in summary if row["fail"] or row["not_evaluable"]]
    click.echo(f"{len(rows)} results recorded for {len(summary)} lots; "
               + (f"{len(failing)} lot(s) with a result not passing: {', '.join(failing[:20])}"
                  + (" ..." if len(failing) > 20 else "") if failing else "every result passes."))


def _result_rows(app: App, results: tuple[str, ...], tested: str | None, analyst: str | None,
                 product_code: str | None, lot_number: str) -> list:
    """--result pairs take their unit from the lot's specification."""
    import os

    from lotrack.errors import InvalidInput
    from lotrack.models.base import utcnow
    from lotrack.schemas import parse
    from lotrack.schemas.lots import QcRowIn, SpecFile
    from lotrack.schemas.times import parse_date
    from lotrack.services import lots

    day = parse_date(tested, "--tested") if tested else utcnow().date()
    who = analyst or os.environ.get("LOTRACK_USER") or "unknown"

    def spec_of(s, actor):
        return SpecFile.model_validate_json(lots.get_lot(s, lot_number, product_code)
                                            .specification.content)

    spec = app.read(spec_of)
    rows = []
    for pair in results:
        name, sep, value = pair.partition("=")
        attr = spec.attribute(name.strip())
        if not sep or attr is None:
            raise InvalidInput(f"--result {pair!r}: expected ATTRIBUTE=VALUE with an attribute "
                               "of the lot's specification")
        rows.append(parse(QcRowIn, {"attribute": attr.name, "value": value, "unit": attr.unit,
                                    "method": attr.method, "tested_on": day, "analyst": who},
                          what=f"--result {pair}"))
    return rows


def _transition_command(name: str, to: str, help_text: str, example: str) -> click.Command:
    @click.command(name, help=f"{help_text}\n\nExample: {example}")
    @click.argument("lot_number", metavar="LOT")
    @click.option("--reason", required=True, help="Why (recorded in the audit trail).")
    @click.option("--password-stdin", is_flag=True, help="Read the signing password from stdin.")
    @LOT_PRODUCT
    @pass_app
    def command(app: App, lot_number: str, reason: str, password_stdin: bool,
                product_code: str | None) -> None:
        from lotrack.services import lots

        password = read_password(password_stdin, "Password (signature)")
        changed = app.run(lambda s, actor: lots.transition(
            s, actor, lot_number, to, reason, password, app.site_tz, product_code))
        click.echo(f"Lot {changed.lot_number} is {changed.status}.")

    return command


lot.add_command(_transition_command(
    "release", "released", "Release LOT (QA, signed): refused while any required QC attribute is "
    "missing or out of specification, and for an expired lot; also releases a lot from hold.",
    'lotrack lot release EXO-2601 --reason "QC complete, batch record reviewed"'))
lot.add_command(_transition_command(
    "reject", "rejected", "Reject a lot in quarantine (QA, signed).",
    'lotrack lot reject EXO-2603 --reason "endotoxin out of specification"'))
lot.add_command(_transition_command(
    "hold", "on_hold", "Put a released lot on hold (QA, signed).",
    'lotrack lot hold EXO-2601 --reason "complaint under investigation"'))


@lot.command("recall")
@click.argument("lot_number", metavar="LOT")
@click.option("--reason", help="Why (recorded in the audit trail); required unless --dry-run.")
@click.option("--dry-run", is_flag=True,
              help="Only show what the recall would touch; change nothing.")
@click.option("--password-stdin", is_flag=True, help="Read the signing password from stdin.")
@LOT_PRODUCT
@output_options
@pass_app
def lot_recall(app: App, lot_number: str, reason: str | None, dry_run: bool, password_stdin: bool,
               product_code: str | None, as_json: bool) -> None:
    """Recall a lot (QA, signed): its stock is quarantined, in one transaction.

    With --dry-run, print what the recall would touch (vials in stock to quarantine,
    participants exposed, doses dispensed but not yet administered) and change nothing.

    Example: lotrack lot recall EXO-2601 --dry-run
    """
    from lotrack.errors import InvalidInput
    from lotrack.services import lots, recall

    impact = app.read(lambda s, actor: recall.recall_impact(s, actor, lot_number, product_code))
    if dry_run:
        emit(impact, as_json, lambda: _impact_text(impact))
        return
    if not reason or not reason.strip():
        raise InvalidInput("give --reason for the recall (or --dry-run to see its impact)")
    password = read_password(password_stdin, "Password (signature)")
    changed = app.run(lambda s, actor: lots.transition(
        s, actor, lot_number, "recalled", reason, password, app.site_tz, product_code))
    click.echo(f"Lot {changed.lot_number} is recalled.")
    click.echo(_impact_text(impact, done=True))


def _impact_text(impact: dict, done: bool = False) -> str:
    verb = "were" if done else "would be"
    stock = impact["vials_to_quarantine"]
    lines = [] if done else [f"Recall of lot {impact['lot']} ({impact['product']}, now {impact['status']}):"]
    if not impact["recall_allowed"]:
        lines.append(f"  REFUSED: {impact['refusal']}")
    lines.append(f"  {len(stock)} vial(s) in stock {verb} quarantined"
                 + (": " + ", ".join(v["serial"] for v in stock) if stock else ""))
    exposed = impact["participants_exposed"]
    lines.append(f"  {len(exposed)} participant(s) exposed" + (": " + ", ".join(exposed) if exposed else ""))
    for dose in impact["doses_dispensed_not_administered"]:
        lines.append(f"  dose {dose['dose']} for {dose['participant']} is dispensed, not administered "
                     f"(vials {', '.join(dose['vials'])}): it must not be given")
    return "\n".join(lines)


@lot.command("destroy")
@click.argument("lot_number", metavar="LOT")
@click.option("--reason", required=True)
@click.option("--quantity", type=int, required=True, help="Vials destroyed (the stock left).")
@click.option("--witness", required=True, metavar="USER",
              help="Second person; password from LOTRACK_WITNESS_PASSWORD or a prompt.")
@click.option("--password-stdin", is_flag=True,
              help="Read your password, then the witness's, from stdin.")
@LOT_PRODUCT
@pass_app
def lot_destroy(app: App, lot_number: str, reason: str, quantity: int, witness: str,
                password_stdin: bool, product_code: str | None) -> None:
    """Destroy a lot's remaining stock with a witness (QA, signed by both).

    Example: lotrack lot destroy EXO-2603 --reason "rejected lot" --quantity 40 --witness qa.huang
    """
    from lotrack.services import lots

    password = read_password(password_stdin, "Password (signature)")
    witness_password = read_password(password_stdin, f"Password of {witness} (witness)",
                                     env="LOTRACK_WITNESS_PASSWORD")
    changed = app.run(lambda s, actor: lots.transition(
        s, actor, lot_number, "destroyed", reason, password, app.site_tz, product_code,
        witness=(witness, witness_password), quantity=quantity))
    click.echo(f"Lot {changed.lot_number} destroyed ({quantity} vials).")


@lot.command("receive")
@click.argument("lot_number", metavar="LOT")
@click.option("--at", "box_paths", multiple=True, required=True, metavar="BOX_PATH",
              help="Box to receive into; repeat to fill several boxes in order.")
@click.option("--time", "time_text", metavar="DATETIME", help="Receipt time (default now).")
@LOT_PRODUCT
@pass_app
def lot_receive(app: App, lot_number: str, box_paths: tuple[str, ...], time_text: str | None,
                product_code: str | None) -> None:
    """Receive a lot's vials at the site into free box positions (pharmacy).

    Example: lotrack lot receive EXO-2601 --at SITE/FRZ-A/R1/BOX-01
    """
    from lotrack.models.base import utcnow
    from lotrack.schemas.times import parse_datetime
    from lotrack.services import lots, storage

    at = parse_datetime(time_text, app.site_tz, "--time") if time_text else utcnow()
    count = app.run(lambda s, actor: storage.receive_lot(
        s, actor, lots.get_lot(s, lot_number, product_code), list(box_paths), at))
    click.echo(f"Received {count} vial(s) of lot {lot_number}.")


@lot.command("review")
@click.argument("lot_number", metavar="LOT")
@click.option("--reason", required=True, help="The excursion assessment.")
@click.option("--password-stdin", is_flag=True)
@LOT_PRODUCT
@pass_app
def lot_review(app: App, lot_number: str, reason: str, password_stdin: bool,
               product_code: str | None) -> None:
    """Clear excursion holds on a lot's vials after QA assessment (signed).

    Example: lotrack lot review EXO-2601 --reason "excursion within stability data"
    """
    from lotrack.services import lots, storage

    password = read_password(password_stdin, "Password (signature)")
    count = app.run(lambda s, actor: storage.clear_vial_holds(
        s, actor, lots.get_lot(s, lot_number, product_code), reason, password))
    click.echo(f"Cleared the hold on {count} vial(s) of lot {lot_number}.")


@lot.command("show")
@click.argument("lot_number", metavar="LOT")
@LOT_PRODUCT
@output_options
@pass_app
def lot_show(app: App, lot_number: str, product_code: str | None, as_json: bool) -> None:
    """Show a lot: status (expired computed), QC results with verdicts, vial counts, signatures.

    Example: lotrack lot show EXO-2601 --json
    """
    from lotrack.render.tables import record, table
    from lotrack.services.lot_views import lot_detail

    data = app.read(lambda s, actor: lot_detail(s, actor, lot_number, product_code,
                                                app.site_tz))

    def text() -> str:
        head = {k: v for k, v in data.items() if k not in ("results", "signatures", "vials")}
        return "\n\n".join([
            record(head), "Vials: " + ", ".join(f"{k} {v}" for k, v in data["vials"].items()),
            table(data["results"], ["attribute", "value", "unit", "limit", "verdict", "alert",
                                    "current", "tested_on", "analyst", "correction_reason"]),
            table(data["signatures"], ["meaning", "printed_name", "signed_at"])])

    emit(data, as_json, text)


@lot.command("list")
@click.option("--status", help="Only lots with this status (expired is computed).")
@click.option("--product", "product_code")
@output_options
@pass_app
def lot_list(app: App, status: str | None, product_code: str | None, as_json: bool) -> None:
    """List lots, shortest expiry first within each product.

    Example: lotrack lot list --status released
    """
    from lotrack.render.tables import table
    from lotrack.services.lot_views import lot_rows

    rows = app.read(lambda s, actor: lot_rows(s, actor, status, product_code,
                                              app.site_tz))
    emit(rows, as_json, lambda: table(rows))


@lot.command("compare")
@click.argument("lot_numbers", metavar="LOT_A LOT_B [LOT ...]", nargs=-1, required=True)
@LOT_PRODUCT
@output_options
@pass_app
def lot_compare(app: App, lot_numbers: tuple[str, ...], product_code: str | None,
                as_json: bool) -> None:
    """Compare the current QC results of two or more lots side by side; the difference
    (B - A for two lots, the spread max - min for more) is also shown as a percentage of
    the specification range.

    Example: lotrack lot compare EXO-2601 EXO-2604
    """
    from lotrack.render.tables import table
    from lotrack.services.consistency import compare_lots

    data = app.read(lambda s, actor: compare_lots(s, actor, lot_numbers, product_code))

    def text() -> str:
        numbers = [lot["lot"] for lot in data["lots"]]

        def shown(value: object) -> str:
            if value is None:
                return ""
            return f"{value:+.4g}" if isinstance(value, float) else str(value)

        rows = [{"attribute": a["attribute"], "unit": a["unit"], "specification": a["limit"],
                 **{n: (a["values"][n] or "missing")
                    + ("" if a["verdicts"][n] in ("pass", "missing") else f" ({a['verdicts'][n]})")
                    for n in numbers},
                 "difference": shown(a["difference"]),
                 "% of spec range": "" if a["pct_of_spec_range"] is None
                 else f"{a['pct_of_spec_range']:+.2f}",
                 "note": a["note"]} for a in data["attributes"]]
        head = ", ".join(f"{lot['lot']} ({lot['status']}, made {lot['manufactured']}, spec "
                         f"v{lot['spec_version']})" for lot in data["lots"])
        return f"{data['product']}: {head}\n\n" + table(rows)

    emit(data, as_json, text)
