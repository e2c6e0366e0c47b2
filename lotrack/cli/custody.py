"""`lotrack report custody` and `lotrack report verify`."""

from __future__ import annotations

from pathlib import Path

import click

from lotrack.cli.context import App, emit, output_options, pass_app


@click.command("custody")
@click.option("--vial", "serial", metavar="SERIAL", help="The custody of one vial.")
@click.option("--lot", "lot_number", metavar="LOT", help="Every vial of a lot.")
@click.option("--participant", "subject", metavar="SUBJECT", help="Every vial a participant received.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PDF file to write.")
@pass_app
def custody_report(app: App, serial: str | None, lot_number: str | None, subject: str | None,
                   out_path: Path) -> None:
    """Write the chain of custody of a vial, a lot or a participant as a PDF.

    Every step (manufactured, released, labelled, received, stored, moved, held,
    dispensed with its verifier, administered, wasted, returned, destroyed) with who,
    when and where, the signatures, and the gaps found.

    Example: lotrack report custody --vial V00000013 --out V00000013-custody.pdf
    """
    from lotrack.render.pdf.custody import write_custody
    from lotrack.services import custody, documents
    from lotrack.services.report_check import summary_of

    tz = app.site_tz
    content, prov = app.read(lambda s, actor: (
        custody.custody(s, actor, serial=serial, lot_number=lot_number, subject=subject, tz=tz),
        documents.provenance(s, actor)))
    params = {k: v for k, v in (("vial", serial), ("lot", lot_number), ("participant", subject))
              if v is not None}
    meta = {"report": "custody", "params": params, "summary": summary_of("custody", content)}
    digest = write_custody(out_path, content, prov, tz, meta)
    gaps = len(content["gaps"])
    click.echo(f"Wrote {out_path}: {len(content['steps'])} custody steps, {gaps} gap(s) "
               f"(content sha256 {digest[:16]}).")


@click.command("verify")
@click.argument("pdf", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_options
@pass_app
def verify_report(app: App, pdf: Path, as_json: bool) -> None:
    """Check that a report lotrack wrote still matches the database.

    Recomputes the report's content with the parameters recorded in the PDF and compares
    its SHA-256 with the one printed on the report. Exits with status 1 when it does not
    match. Works for custody reports, certificates of analysis and accountability records.

    Example: lotrack report verify V00000013-custody.pdf
    """
    from lotrack.errors import RuleViolation
    from lotrack.render.pdf.readback import read_claims
    from lotrack.services import report_check

    claims = read_claims(pdf)
    verdict = app.read(lambda s, actor: report_check.verify(s, actor, claims))
    data = {"file": str(pdf), "report": verdict.report, "params": verdict.params,
            "matches": verdict.matches, "printed_sha256": verdict.printed_sha256,
            "current_sha256": verdict.current_sha256, "problems": verdict.problems,
            "summary_in_report": verdict.summary_then, "summary_now": verdict.summary_now}

    def text() -> str:
        params = ", ".join(f"{k} {v}" for k, v in verdict.params.items() if v is not None)
        what = f"{verdict.report} report {pdf.name} ({params or 'all'})"
        if verdict.matches:
            return f"MATCHES: {what} still agrees with the database (sha256 {verdict.current_sha256[:16]})."
        lines = [f"DOES NOT MATCH: {what}"] + [f"  - {p}" for p in verdict.problems]
        changed = [f"{k} {verdict.summary_then.get(k)} -> {v}" for k, v in verdict.summary_now.items()
                   if verdict.summary_then.get(k) != v]
        if changed:
            lines.append("  report then vs database now: " + ", ".join(changed))
        lines.append(f"  printed sha256 {verdict.printed_sha256[:16]}, now {verdict.current_sha256[:16]}")
        return "\n".join(lines)

    emit(data, as_json, text)
    if not verdict.matches:
        raise RuleViolation(f"{pdf.name} does not match the database")
