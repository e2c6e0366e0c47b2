"""`lotrack report ...`: documents for QA, pharmacy, monitors and inspectors."""

from __future__ import annotations

from pathlib import Path

import click

from lotrack.cli.context import App, pass_app


@click.group()
def report() -> None:
    """Documents: certificates of analysis, accountability records."""


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

    tz = app.settings.site_tz
    content, prov = app.read(lambda s, actor: (
        documents.certificate_of_analysis(s, actor, lot_number, product_code, tz),
        documents.provenance(s, actor)))
    digest = write_coa(out_path, content, prov, tz)
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
    from lotrack.services import accountability as service
    from lotrack.services import documents

    suffix = out_path.suffix.lower()
    if suffix not in (".pdf", ".csv"):
        raise InvalidInput("--out must end in .pdf or .csv")
    tz = app.settings.site_tz
    content, prov = app.read(lambda s, actor: (
        service.accountability(s, actor, lot_number, product_code),
        documents.provenance(s, actor)))
    if suffix == ".csv":
        from lotrack.render.pdf.accountability import write_accountability_csv

        recon = write_accountability_csv(out_path, content)
        click.echo(f"Wrote {out_path} and {recon}.")
    else:
        from lotrack.render.pdf.accountability import write_accountability_pdf

        digest = write_accountability_pdf(out_path, content, prov, tz)
        click.echo(f"Wrote {out_path} (content sha256 {digest[:16]}).")
    flagged = [lot["lot"] for lot in content["lots"] if lot["reconciliation"]["flags"]]
    if flagged:
        click.echo(f"Reconciliation differences in lot(s): {', '.join(flagged)}", err=True)
