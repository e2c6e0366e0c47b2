"""`lotrack report ...`: documents for QA, pharmacy, monitors and inspectors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lotrack.cli.context import App, emit, output_options, pass_app
from lotrack.cli.custody import custody_report, verify_report
from lotrack.cli.shipments import manifest as shipment_manifest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lotrack.models import User


@click.group()
def report() -> None:
    """Documents: certificates of analysis, accountability records, chain of custody,
    batch-to-batch consistency, lot safety summary; verify."""


@report.command("coa")
@click.argument("lot_number", metavar="LOT")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="PDF file to write.")
@click.option("--product", "product_code")
@pass_app
def coa(app: App, lot_number: str, out_path: Path, product_code: str | None) -> None:
    """Write the certificate of analysis of LOT as a PDF.

    Example: lotrack report coa EXO-2601 --out EXO-2601-coa.pdf
    """
    from lotrack.render.pdf.coa import write_coa
    from lotrack.services import documents

    tz = app.site_tz
    content, prov = app.read(lambda s, actor: (
        documents.certificate_of_analysis(s, actor, lot_number, product_code, tz),
        documents.provenance(s, actor)))
    meta = {"report": "coa", "params": {"lot": lot_number, "product": product_code}}
    digest = write_coa(out_path, content, prov, tz, meta)
    click.echo(f"Wrote {out_path} (content sha256 {digest[:16]}).")


@report.command("accountability")
@click.option("--lot", "lot_number", help="One lot (default: every lot).")
@click.option("--product", "product_code")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="FILE.pdf or FILE.csv (the reconciliation goes beside a CSV).")
@pass_app
def accountability(app: App, lot_number: str | None, product_code: str | None,
                   out_path: Path) -> None:
    """Write the drug accountability record (NCI DARF shape) and the per-lot reconciliation.

    Example: lotrack report accountability --out accountability.pdf
    """
    from lotrack.errors import InvalidInput
    from lotrack.render.pdf.accountability import (
        write_accountability_csv,
        write_accountability_pdf,
    )
    from lotrack.services import accountability as service
    from lotrack.services import documents

    suffix = out_path.suffix.lower()
    if suffix not in (".pdf", ".csv"):
        raise InvalidInput("--out must end in .pdf or .csv")
    tz = app.site_tz
    meta = {"report": "accountability", "params": {"lot": lot_number, "product": product_code}}

    def write(session: Session, actor: User) -> tuple[str, list[str]]:
        # Written inside the unit of work: the record streams from the database lot by
        # lot, so that a whole site never sits in memory. If `retrying` runs this again,
        # the files are written again whole (the CSVs are truncated, the PDF is written at
        # its end), and the report itself writes nothing to the database.
        record = service.accountability_record(session, actor, lot_number, product_code)
        prov = documents.provenance(session, actor)
        if suffix == ".csv":
            recon = write_accountability_csv(out_path, record)
            return f"Wrote {out_path} and {recon}.", record.flagged
        digest = write_accountability_pdf(out_path, record, prov, tz, meta)
        return f"Wrote {out_path} (content sha256 {digest[:16]}).", record.flagged

    done, flagged = app.read(write)
    click.echo(done)
    if flagged:
        click.echo(f"Reconciliation differences in lot(s): {', '.join(flagged)}", err=True)


@report.command("safety")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="FILE.pdf or FILE.csv to write (without it: a table, or --json).")
@output_options
@pass_app
def safety(app: App, out_path: Path | None, as_json: bool) -> None:
    """Lot safety summary: per lot, participants exposed, doses, adverse events after
    first exposure by worst grade and relatedness, against placebo; lots that stand out
    are flagged (the rule is printed on the report).

    Example: lotrack report safety --out safety.pdf
    """
    from lotrack.errors import InvalidInput
    from lotrack.render.tables import table
    from lotrack.services import documents
    from lotrack.services.safety_report import lot_safety_summary

    suffix = out_path.suffix.lower() if out_path else ""
    if out_path and suffix not in (".pdf", ".csv"):
        raise InvalidInput("--out must end in .pdf or .csv")
    tz = app.site_tz
    content, prov = app.read(lambda s, actor: (lot_safety_summary(s, actor, tz),
                                               documents.provenance(s, actor)))
    if suffix == ".csv":
        from lotrack.render.pdf.safety import write_safety_csv

        click.echo(f"Wrote {write_safety_csv(out_path, content)}.")
    elif suffix == ".pdf":
        from lotrack.render.pdf.safety import write_safety_pdf

        digest = write_safety_pdf(out_path, content, prov, tz, {"report": "safety",
                                                                "params": {}})
        click.echo(f"Wrote {out_path} (content sha256 {digest[:16]}).")
    else:
        emit(content, as_json, lambda: table([{
            "lot": r["lot"], "product": r["product"], "exposed": r["exposed"],
            "doses": r["doses"], "AEs": r["aes"], "SAEs": r["saes"],
            "with AE": r["participants_with_ae"], "related": r["related_aes"],
            "flags": "; ".join(r["flags"])} for r in content["lots"]]))
    if content["flagged"] and (out_path or not as_json):
        click.echo(f"Lots flagged for medical review: {', '.join(content['flagged'])}",
                   err=True)


# Custody, verification and the shipment manifest live in their own modules; they belong
# to this group.
report.add_command(custody_report)
report.add_command(verify_report)
report.add_command(shipment_manifest)


@report.command("consistency")
@click.argument("product_code", metavar="PRODUCT")
@click.option("--attribute", "attributes", multiple=True, metavar="A",
              help="Only this QC attribute; repeat for several (default: every attribute).")
@click.option("--since", metavar="DATE", help="Only lots manufactured on or after DATE.")
@click.option("--baseline", metavar="N|all", envvar="LOTRACK_BASELINE_LOTS",
              help="Control limits from the first N released lots, or from all lots shown "
                   "[env LOTRACK_BASELINE_LOTS; default 8].")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="FILE.pdf, FILE.json, or FILE.csv (statistics and flags go beside it); "
                   "default: a summary on screen.")
@output_options
@click.pass_context
def consistency(ctx: click.Context, product_code: str, attributes: tuple[str, ...],
                since: str | None, baseline: str | None, out_path: Path | None,
                as_json: bool) -> None:
    """Batch-to-batch consistency of a product's lots: statistics, capability (Cpk, Ppk),
    I-MR control charts with trend rules 1-4, out-of-specification and out-of-trend flags,
    and how many participants received each flagged lot.

    Example: lotrack report consistency IPSEXO --out consistency.pdf
    """
    from lotrack.errors import InvalidInput
    from lotrack.render.tables import json_with_list
    from lotrack.schemas.times import parse_date
    from lotrack.services import consistency as service
    from lotrack.services import documents

    app: App = ctx.find_object(App)
    suffix = out_path.suffix.lower() if out_path else None
    if suffix not in (None, ".pdf", ".csv", ".json"):
        raise InvalidInput("--out must end in .pdf, .csv or .json")
    since_day = parse_date(since, "--since") if since else None
    baseline_n = service.parse_baseline(baseline)
    # Only a number typed on the command line is held to; the site's default falls back.
    explicit = ctx.get_parameter_source("baseline") == click.core.ParameterSource.COMMANDLINE
    tz = app.site_tz
    record, prov = app.read(lambda s, actor: (
        service.consistency_record(s, actor, product_code, attributes=attributes,
                                   since=since_day, baseline=baseline_n,
                                   baseline_explicit=explicit, site_tz=tz),
        documents.provenance(s, actor)))
    # The documents take the record (its sections packed, unpacked one at a time); JSON
    # and the text table take the content, the text its summary of each section only.
    content = {**record.head, "numeric": record.numeric_summary}
    for note in content["notes"]:
        click.echo(f"Warning: {note}", err=True)
    if suffix == ".pdf":
        from lotrack.render.pdf.consistency import write_consistency_pdf

        meta = {"report": "consistency", "params": {
            "product": product_code, "attributes": list(attributes),
            "since": since_day.isoformat() if since_day else None, "baseline": baseline_n,
            "baseline_explicit": explicit}}
        digest = write_consistency_pdf(out_path, record, prov, tz, meta)
        click.echo(f"Wrote {out_path} (content sha256 {digest[:16]}).")
    elif suffix == ".csv":
        from lotrack.render.pdf.consistency import write_consistency_csv

        written = write_consistency_csv(out_path, record)
        click.echo(f"Wrote {', '.join(str(p) for p in written)}.")
    elif suffix == ".json":
        from lotrack.render.files import prepare_output
        prepare_output(out_path)
        with out_path.open("w", encoding="utf-8") as handle:
            handle.writelines(json_with_list(record.shape(None), "numeric", record.sections()))
            handle.write("\n")
        click.echo(f"Wrote {out_path}.")
    elif as_json:  # the sections written one at a time, as to_json would write them whole
        for chunk in json_with_list(record.shape(None), "numeric", record.sections()):
            click.echo(chunk, nl=False)
        click.echo()
        return
    else:
        click.echo(_consistency_text(content))
        return
    summary = content["summary"]
    click.echo(f"{summary['lots']} lot(s); {summary['oos']} out-of-specification and "
               f"{summary['oot']} out-of-trend flag(s)"
               + (f" and {summary['alert']} alert(s)" if summary.get("alert") else "")
               + (f" in {', '.join(summary['flagged_lots'])}" if summary["flagged_lots"] else "")
               + ".")


def _consistency_text(content: dict) -> str:
    from lotrack.render.tables import table

    def number(value: object) -> str:
        return "n/c" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    stats = [{"attribute": s["name"], "unit": s["unit"], "n": s["statistics"]["n"],
              "mean": number(s["statistics"]["mean"]), "sd": number(s["statistics"]["sd"]),
              "cv%": number(s["statistics"]["cv_pct"]), "min": number(s["statistics"]["min"]),
              "max": number(s["statistics"]["max"]), "spec": s["spec"]["text"],
              "cpk": number(s["capability"]["cpk"]), "ppk": number(s["capability"]["ppk"]),
              "lcl": number(s["limits"]["lcl"]), "cl": number(s["limits"]["centre"]),
              "ucl": number(s["limits"]["ucl"])} for s in content["numeric"]]
    cats = [{"attribute": c["name"], "expected": c["expected"], "tested": c["tested_lots"],
             "pass_rate%": number(c["pass_rate_pct"]), "failing": c["failing_lots"]}
            for c in content["categorical"]]
    flags = [{"type": f["kind"], "attribute": f["attribute"], "lot": f["lot"],
              "status": f["lot_status"], "rule": f["rule"], "value": f["value"],
              "participants": f["participants_exposed"], "detail": f["detail"]}
             for f in content["flags"]]
    product = content["product"]
    return "\n\n".join([
        f"{product['code']}: {len(content['lots'])} lot(s); control limits from the "
        f"{content['baseline']['description']}",
        table(stats, empty="(no numeric attribute)"),
        table(cats, empty="(no categorical attribute)"),
        "Flags:\n" + table(flags, empty="(none)")])
