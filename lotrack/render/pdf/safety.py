"""The lot safety summary: per-lot exposure and adverse events against placebo, as a PDF
on the shared page template, or as CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer

from lotrack.render.files import prepare_output
from lotrack.render.pdf.base import Provenance, build_pdf, data_table, para, styles, usable_width

CSV_COLUMNS = ("lot", "product", "kind", "exposed", "doses", "aes", "saes",
               "participants_with_ae", "incidence", "worst_grade_1", "worst_grade_2",
               "worst_grade_3", "worst_grade_4", "worst_grade_5", "unrelated", "unlikely",
               "possible", "probable", "definite", "related_aes", "flags")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _cells(row: dict[str, Any]) -> list[object]:
    worst = row["participants_by_worst_grade"]
    rel = row["aes_by_relatedness"]
    return [row["exposed"], row["doses"], row["aes"], row["saes"],
            f"{row['participants_with_ae']} ({_percent(row['incidence'])})",
            *(worst[str(g)] for g in range(1, 6)),
            row["related_aes"], row["aes"] - row["related_aes"],
            f"{rel['unrelated']}/{rel['unlikely']}/{rel['possible']}/{rel['probable']}/"
            f"{rel['definite']}"]


HEADER = ["Exposed", "Doses", "AEs", "SAEs", "With AE (%)", "Worst G1", "G2", "G3", "G4",
          "G5", "Related", "Not related", "Unrel/Unlik/Poss/Prob/Def"]


def write_safety_pdf(path: Path, content: dict[str, Any], provenance: Provenance,
                     site_tz: ZoneInfo, meta: dict[str, Any] | None = None) -> str:
    width = usable_width(wide=True)
    placebo = content["placebo"]
    lots = content["lots"]
    story: list[Flowable] = [para(rule, "Small") for rule in content["rules"]]
    story += [Spacer(1, 3 * mm), Paragraph("By lot", styles()["Heading2"])]
    story.append(data_table(
        ["Lot", "Product", *HEADER, "Flags"],
        [[row["lot"], f"{row['product']} ({row['kind']})", *_cells(row),
          "; ".join(row["flags"]) or "none"] for row in lots]
        or [["no lot given to a participant yet", *[""] * (len(HEADER) + 2)]],
        widths=[w * width for w in (0.07, 0.09, 0.05, 0.04, 0.04, 0.04, 0.06, 0.04, 0.03,
                                    0.03, 0.03, 0.03, 0.05, 0.05, 0.09, 0.26)],
        flagged=[i for i, row in enumerate(lots) if row["flags"]]))
    story += [Spacer(1, 4 * mm), Paragraph("Placebo reference (all placebo lots pooled)",
                                           styles()["Heading2"])]
    story.append(data_table(
        ["Placebo lots", *HEADER],
        [[", ".join(placebo["lots"]) or "none", *_cells({**placebo, "doses": sum(
            r["doses"] for r in lots if r["kind"] == "placebo")})]],
        widths=[w * width for w in (0.16, 0.05, 0.04, 0.04, 0.04, 0.06, 0.04, 0.03, 0.03,
                                    0.03, 0.03, 0.05, 0.05, 0.09)]))
    flagged = content["flagged"]
    story += [Spacer(1, 4 * mm), para(
        f"Lots flagged for medical review: {', '.join(flagged)}" if flagged
        else "No lot flagged.", "Flag" if flagged else "Small")]
    return build_pdf(path, "Lot Safety Summary",
                     f"Protocol {content['protocol']} - adverse events (CTCAE "
                     f"v{content['ctcae_version']}) after exposure, per GMP lot, against "
                     "placebo", story, provenance, content, site_tz.key, wide=True, meta=meta)


def write_safety_csv(path: Path, content: dict[str, Any]) -> Path:
    """One row per lot, then one row for the pooled placebo reference (lot 'PLACEBO')."""
    prepare_output(path)
    placebo = content["placebo"]
    rows = [*content["lots"], {**placebo, "lot": "PLACEBO", "product": "all placebo lots",
                               "kind": "reference", "flags": [],
                               "doses": sum(r["doses"] for r in content["lots"]
                                            if r["kind"] == "placebo")}]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            worst, rel = row["participants_by_worst_grade"], row["aes_by_relatedness"]
            writer.writerow({
                **{c: row[c] for c in ("lot", "product", "kind", "exposed", "doses", "aes",
                                       "saes", "participants_with_ae", "related_aes")},
                "incidence": "" if row["incidence"] is None else row["incidence"],
                **{f"worst_grade_{g}": worst[str(g)] for g in range(1, 6)},
                **{r: rel[r] for r in ("unrelated", "unlikely", "possible", "probable",
                                       "definite")},
                "flags": "; ".join(row["flags"])})
    return path
