"""The chain-of-custody document of a vial, a lot or a participant."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer

from lotrack.render.pdf.barcode import Code128
from lotrack.render.pdf.base import (
    Provenance,
    build_pdf,
    data_table,
    key_values,
    para,
    styles,
    usable_width,
)

HEADER_LABELS = {
    "subject_kind": "Report on", "subject": "Subject", "product": "Product", "gtin": "GTIN",
    "lot": "Lot", "expiry": "Expiry", "status": "Status", "group": "Group", "lots": "Lots received",
    "vials": "Vials received", "vial_status": "Vial status now", "location": "Location now",
}


def _left(flowable: Flowable) -> Flowable:
    flowable.hAlign = "LEFT"
    return flowable


def write_custody(path: Path, content: dict[str, Any], provenance: Provenance, site_tz: ZoneInfo,
                  meta: dict[str, Any] | None = None) -> str:
    header = content["header"]
    width = usable_width(wide=True)
    story: list[Flowable] = [
        Code128(str(header["subject"])),
        Spacer(1, 2 * mm),
        _left(key_values([(HEADER_LABELS.get(k, k), v if v is not None else "none")
                          for k, v in header.items()], width * 0.6)),
        Spacer(1, 4 * mm),
        Paragraph("Custody steps in recorded order", styles()["Heading3"]),
    ]
    steps = content["steps"]
    story.append(data_table(
        ["#", "When (UTC)", "Site time", "Step", "Vial", "Who", "Where", "Detail", "Flags"],
        [[s["seq"], s["at"][:16].replace("T", " "), s["site_time"], s["step"], s["vial"] or "",
          s["who"], s["where"], s["detail"], "; ".join(s["flags"])] for s in steps],
        widths=[w * width for w in (0.04, 0.13, 0.10, 0.12, 0.07, 0.11, 0.12, 0.22, 0.09)],
        flagged=[i for i, s in enumerate(steps) if s["flags"]]))
    gaps = content["gaps"]
    story += [Spacer(1, 4 * mm), Paragraph("Gaps", styles()["Heading3"])]
    story.append(data_table(["#", "Vial", "Gap"], [[g["seq"], g["vial"], g["flag"]] for g in gaps],
                            widths=[w * width for w in (0.06, 0.12, 0.82)])
                 if gaps else para("No gap found in the custody record.", "Small"))
    signatures = content["signatures"]
    story += [Spacer(1, 4 * mm), Paragraph("Electronic signatures", styles()["Heading3"])]
    story.append(data_table(["#", "Meaning: printed name, date and time (UTC)"],
                            [[s["seq"], s["signature"]] for s in signatures],
                            widths=[w * width for w in (0.06, 0.94)])
                 if signatures else para("No signature in this record.", "Small"))
    title = f"Chain of Custody - {header['subject_kind']} {header['subject']}"
    return build_pdf(path, "Chain of Custody",
                     f"{header['subject_kind'].capitalize()} {header['subject']}", story,
                     provenance, content, site_tz.key, wide=True, meta=meta, footer_title=title)
