"""The drug accountability record (NCI DARF shape), one section per lot, and the
reconciliation of every lot."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Flowable, Paragraph, Spacer

from lotrack.render.files import prepare_output
from lotrack.render.pdf.base import Provenance, build_pdf, data_table, para, styles, usable_width

LINE_COLUMNS = ("date", "kind", "participant", "dose", "cycle_perfusion", "quantity_in",
                "quantity_out", "balance", "dose_status", "dispenser", "verified_by", "note")
RECONCILIATION_COLUMNS = ("lot", "product", "received", "dispensed", "wasted", "returned",
                          "destroyed", "in_stock", "accounted", "difference", "flags")


def write_accountability_pdf(path: Path, content: dict[str, Any], provenance: Provenance,
                             site_tz: ZoneInfo, meta: dict[str, Any] | None = None) -> str:
    width = usable_width(wide=True)
    story: list[Flowable] = []
    for lot in content["lots"]:
        story += [CondPageBreak(60 * mm),
                  Paragraph(f"Lot {lot['lot']} - {lot['agent']}", styles()["Heading3"]),
                  para(f"Protocol {content['protocol']}  |  Agent {lot['agent']} "
                       f"({lot['product']})  |  Dose form {lot['dose_form']}  |  Strength "
                       f"{lot['strength']}  |  Expiry {lot['expiry']}", "Small"),
                  Spacer(1, 2 * mm)]
        rows = [[_line_date(line.get("date"), site_tz), line["kind"], line.get("participant", ""),
                 line.get("dose", ""), line.get("cycle_perfusion", ""),
                 line["quantity_in"] or "", line["quantity_out"] or "", line["balance"],
                 line.get("dose_status", ""), line.get("dispenser", ""),
                 line.get("verified_by", ""), line.get("note", "")] for line in lot["lines"]]
        story.append(data_table(
            ["Date (site)", "Entry", "Participant", "Dose", "Cycle/perf.", "Received",
             "Dispensed", "Balance", "Dose status", "By", "Verified", "Note"],
            rows or [["", "no movement", "", "", "", "", "", 0, "", "", "", ""]],
            widths=[w * width for w in (0.12, 0.07, 0.08, 0.07, 0.07, 0.06, 0.06, 0.06, 0.08,
                                        0.04, 0.05, 0.24)]))
    story += [CondPageBreak(50 * mm), Paragraph("Reconciliation per lot", styles()["Heading2"]),
              para("received = dispensed + wasted + returned + destroyed + in stock "
                   "(counts of vials received at the site)", "Small"), Spacer(1, 2 * mm)]
    recs = [(lot["lot"], lot["product"], lot["reconciliation"]) for lot in content["lots"]]
    story.append(data_table(
        ["Lot", "Product", "Received", "Dispensed", "Wasted", "Returned", "Destroyed",
         "In stock", "Accounted", "Difference", "Flags"],
        [[n, p, r["received"], r["dispensed"], r["wasted"], r["returned"], r["destroyed"],
          r["in_stock"], r["accounted"], r["difference"], "; ".join(r["flags"]) or "none"]
         for n, p, r in recs],
        widths=[w * width for w in (0.09, 0.07, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.07,
                                    0.06, 0.35)],
        flagged=[i for i, (_, _, r) in enumerate(recs) if r["flags"]]))
    return build_pdf(path, "Drug Accountability Record",
                     f"Protocol {content['protocol']} - investigational product accountability "
                     "by lot", story, provenance, content, site_tz.key, wide=True, meta=meta)


def _line_date(value: str | None, tz: ZoneInfo) -> str:
    from datetime import datetime

    from lotrack.render.tables import site_time

    return site_time(datetime.fromisoformat(value), tz) if value else ""


def write_accountability_csv(path: Path, content: dict[str, Any]) -> Path:
    """The DARF lines to `path`; the reconciliation beside it as <stem>-reconciliation.csv."""
    prepare_output(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["lot", "product", *LINE_COLUMNS])
        writer.writeheader()
        for lot in content["lots"]:
            for line in lot["lines"]:
                writer.writerow({"lot": lot["lot"], "product": lot["product"],
                                 **{c: line.get(c, "") for c in LINE_COLUMNS}})
    recon_path = path.with_name(f"{path.stem}-reconciliation.csv")
    with recon_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, RECONCILIATION_COLUMNS)
        writer.writeheader()
        for lot in content["lots"]:
            rec = lot["reconciliation"]
            writer.writerow({"lot": lot["lot"], "product": lot["product"],
                             **{c: rec[c] for c in RECONCILIATION_COLUMNS[2:-1]},
                             "flags": "; ".join(rec["flags"])})
    return recon_path
