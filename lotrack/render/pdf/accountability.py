"""The drug accountability record (NCI DARF shape), one section per lot, and the
reconciliation of every lot.

Both writers take the record lot by lot (see services/accountability.py): a site-wide
record is too large to hold at once, and a PDF table of a hundred thousand wrapped
paragraphs far larger still. The PDF's story is filled one lot ahead of ReportLab as it
lays out pages, and its content hash is computed from the same lots as they pass, so the
hash printed is the hash of exactly what was drawn.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Flowable, Paragraph, Spacer

from lotrack.render.files import prepare_output, written_whole
from lotrack.render.pdf.base import (
    Provenance,
    StoryOnDemand,
    build_pdf,
    data_table,
    para,
    styles,
    table_parts,
    usable_width,
)
from lotrack.render.provenance import StreamedContentHash
from lotrack.render.tables import site_time
from lotrack.services.accountability import AccountabilityRecord

LINE_COLUMNS = ("date", "kind", "participant", "dose", "cycle_perfusion", "quantity_in",
                "quantity_out", "balance", "dose_status", "dispenser", "verified_by", "note")
RECONCILIATION_COLUMNS = ("lot", "product", "received", "dispensed", "wasted", "returned",
                          "destroyed", "in_stock", "accounted", "difference", "flags")
LINE_HEADER = ("Date (site)", "Entry", "Participant", "Dose", "Cycle/perf.", "Received",
               "Dispensed", "Balance", "Dose status", "By", "Verified", "Note")
LINE_WIDTHS = (0.12, 0.07, 0.08, 0.07, 0.07, 0.06, 0.06, 0.06, 0.08, 0.04, 0.05, 0.24)
RECONCILIATION_HEADER = ("Lot", "Product", "Received", "Dispensed", "Wasted", "Returned",
                         "Destroyed", "In stock", "Accounted", "Difference", "Flags")
RECONCILIATION_WIDTHS = (0.09, 0.07, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06, 0.07, 0.06, 0.35)

# What the reconciliation table keeps of each lot until the end: a row, not the lot.
Reconciled = tuple[str, str, dict[str, Any]]


def as_record(content: AccountabilityRecord | dict[str, Any]) -> AccountabilityRecord:
    """The writers take a streamed record, or the whole content as one dict."""
    if isinstance(content, AccountabilityRecord):
        return content
    return AccountabilityRecord(content["protocol"], iter(content["lots"]), content["document"])


def write_accountability_pdf(path: Path, content: AccountabilityRecord | dict[str, Any],
                             provenance: Provenance, site_tz: ZoneInfo,
                             meta: dict[str, Any] | None = None) -> str:
    record = as_record(content)
    digest = StreamedContentHash(record.head(), "lots")
    story = StoryOnDemand(_story(record, digest, site_tz))
    return build_pdf(path, "Drug Accountability Record",
                     f"Protocol {record.protocol} - investigational product accountability "
                     "by lot", story, provenance, digest, site_tz.key, wide=True, meta=meta)


def _story(record: AccountabilityRecord, digest: StreamedContentHash,
           site_tz: ZoneInfo) -> Iterator[list[Flowable]]:
    width = usable_width(wide=True)
    reconciled: list[Reconciled] = []
    for lot in record.lots:
        digest.add(lot)
        reconciled.append((lot["lot"], lot["product"], lot["reconciliation"]))
        yield _lot_section(record.protocol, lot, site_tz, width)
    yield from _reconciliation_parts(reconciled, width)


class _Cell(Paragraph):
    """A table cell that remembers how it last wrapped.

    ReportLab wraps every cell of a table again each time it splits the table across a
    page, and once more to draw it: for a lot of hundreds of lines, most of the PDF's time.
    The same text at the same width breaks the same way, so a repeated wrap is answered from
    memory (and cells of equal text share one paragraph: each is wrapped to its own column
    just before it is drawn). The pages come out byte for byte the same, in half the time."""

    _wrapped_at: float | None = None
    _wrapped_size: tuple[float, float] = (0, 0)

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        if availWidth != self._wrapped_at:
            self._wrapped_size = super().wrap(availWidth, availHeight)
            self._wrapped_at = availWidth
        return self._wrapped_size


def _cells(rows: list[list[object]]) -> list[list[Flowable]]:
    """The rows of one table as cells, one paragraph per distinct text (what `para` makes)."""
    made: dict[str, _Cell] = {}

    def cell(value: object) -> _Cell:
        text = "" if value is None else str(value)
        if text not in made:
            made[text] = _Cell(escape(text), styles()["Cell"])
        return made[text]

    return [[cell(value) for value in row] for row in rows]


def _lot_section(protocol: str, lot: dict[str, Any], site_tz: ZoneInfo,
                 width: float) -> list[Flowable]:
    rows = [[_line_date(line.get("date"), site_tz), line["kind"], line.get("participant", ""),
             line.get("dose", ""), line.get("cycle_perfusion", ""),
             line["quantity_in"] or "", line["quantity_out"] or "", line["balance"],
             line.get("dose_status", ""), line.get("dispenser", ""),
             line.get("verified_by", ""), line.get("note", "")] for line in lot["lines"]]
    return [CondPageBreak(60 * mm),
            Paragraph(f"Lot {lot['lot']} - {lot['agent']}", styles()["Heading3"]),
            para(f"Protocol {protocol}  |  Agent {lot['agent']} ({lot['product']})  |  Dose "
                 f"form {lot['dose_form']}  |  Strength {lot['strength']}  |  Expiry "
                 f"{lot['expiry']}", "Small"),
            Spacer(1, 2 * mm),
            data_table(LINE_HEADER,
                       _cells(rows or [["", "no movement", "", "", "", "", "", 0, "", "", "",
                                        ""]]),
                       widths=[w * width for w in LINE_WIDTHS])]


def _reconciliation_parts(reconciled: list[Reconciled], width: float) -> Iterator[list[Flowable]]:
    """The reconciliation, a row per lot, in table parts (a site's thousands of lots)."""
    heading: list[Flowable] = [
        CondPageBreak(50 * mm), Paragraph("Reconciliation per lot", styles()["Heading2"]),
        para("received = dispensed + wasted + returned + destroyed + in stock "
             "(counts of vials received at the site)", "Small"), Spacer(1, 2 * mm)]
    for part in table_parts(RECONCILIATION_HEADER,
                            _cells([[n, p, r["received"], r["dispensed"], r["wasted"],
                                     r["returned"], r["destroyed"], r["in_stock"],
                                     r["accounted"], r["difference"],
                                     "; ".join(r["flags"]) or "none"]
                                    for n, p, r in reconciled]),
                            widths=[w * width for w in RECONCILIATION_WIDTHS],
                            flagged=[i for i, (_, _, r) in enumerate(reconciled) if r["flags"]]):
        yield [*heading, part]
        heading = []


def _line_date(value: str | None, tz: ZoneInfo) -> str:
    return site_time(datetime.fromisoformat(value), tz) if value else ""


def write_accountability_csv(path: Path,
                             content: AccountabilityRecord | dict[str, Any]) -> Path:
    """The DARF lines to `path`, lot by lot; the reconciliation beside it as
    <stem>-reconciliation.csv, whose path is returned. Both appear only once whole."""
    record = as_record(content)
    prepare_output(path)
    recon_path = path.with_name(f"{path.stem}-reconciliation.csv")
    with written_whole([path, recon_path]) as (lines_path, partial_recon), \
            lines_path.open("w", newline="", encoding="utf-8") as lines_file, \
            partial_recon.open("w", newline="", encoding="utf-8") as recon_file:
        lines = csv.DictWriter(lines_file, ["lot", "product", *LINE_COLUMNS])
        lines.writeheader()
        recon = csv.DictWriter(recon_file, RECONCILIATION_COLUMNS)
        recon.writeheader()
        for lot in record.lots:
            for line in lot["lines"]:
                lines.writerow({"lot": lot["lot"], "product": lot["product"],
                                **{c: line.get(c, "") for c in LINE_COLUMNS}})
            rec = lot["reconciliation"]
            recon.writerow({"lot": lot["lot"], "product": lot["product"],
                            **{c: rec[c] for c in RECONCILIATION_COLUMNS[2:-1]},
                            "flags": "; ".join(rec["flags"])})
    return recon_path
