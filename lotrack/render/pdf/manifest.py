"""The shipment manifest: what travels, from whom to whom, and who issued and received it."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Paragraph, Spacer, Table, TableStyle

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

VIALS_PER_ROW = 3
BLANK = "________________________"


def _left(flowable: Flowable) -> Flowable:
    flowable.hAlign = "LEFT"
    return flowable


def _vial_rows(vials: list[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for start in range(0, len(vials), VIALS_PER_ROW):
        row: list[object] = []
        for offset in range(VIALS_PER_ROW):
            index = start + offset
            if index < len(vials):
                row += [index + 1, vials[index]["serial"], vials[index]["lot"]]
            else:
                row += ["", "", ""]
        rows.append(row)
    return rows


def _shown(signed: dict[str, Any], key: str) -> str:
    value = str(signed[key])
    return value[:19].replace("T", " ") if key == "signed_at" else value


def _signature_block(content: dict[str, Any], width: float) -> Table:
    """Issued by / received by, with printed name, meaning, date and time (21 CFR 11.50);
    blank lines to sign by hand until the e-signature exists."""
    blocks = [("Issued by", content["issued_by"]), ("Received by", content["received_by"])]
    body = [[para(title, "Small") for title, _ in blocks]]
    for label, key in (("Printed name", "printed_name"), ("Meaning", "meaning"),
                       ("Date and time (UTC)", "signed_at"), ("Site time", "site_time")):
        body.append([para(f"{label}: " + (_shown(signed, key) if signed else BLANK), "Small")
                     for _, signed in blocks])
    table = Table(body, colWidths=[width / 2] * 2)
    table.setStyle(TableStyle([("BOX", (0, 0), (0, -1), 0.5, colors.black),
                               ("BOX", (1, 0), (1, -1), 0.5, colors.black),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde4ee")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


def write_manifest(path: Path, content: dict[str, Any], provenance: Provenance,
                   site_tz: ZoneInfo, meta: dict[str, Any] | None = None) -> str:
    width = usable_width()
    code = content["shipment"]
    story: list[Flowable] = [
        Code128(code, height=12 * mm, module=0.35 * mm),
        Spacer(1, 2 * mm),
        _left(key_values([
            ("Shipment", code), ("Status", content["status"].replace("_", " ")),
            ("Sender (from)", content["from"]), ("Receiver (to)", content["to"]),
            ("Courier / tracking", f"{content['courier'] or 'not given'} / "
                                   f"{content['tracking_number'] or 'not given'}"),
            ("Temperature monitor", content["monitor"] or "none"),
            ("Storage condition", "; ".join(content["storage_conditions"]) or "none"),
            ("Vials", content["count"]),
        ], width)),
    ]
    if content["max_temp_c"] is not None:
        story.append(para(f"Monitor's highest reading at receipt: {content['max_temp_c']:g} C",
                          "Small"))
    if content["quarantine_reason"]:
        story.append(para(f"Quarantined at receipt: {content['quarantine_reason']}", "Flag"))
    if content["release_reason"]:
        story.append(para(f"Released from quarantine by QA: {content['release_reason']}", "Small"))
    lots = content["lots"]
    story += [Spacer(1, 4 * mm), Paragraph("Lots", styles()["Heading3"]), data_table(
        ["Product", "Lot", "Expiry (site time)", "Storage condition", "Vials"],
        [[f"{r['product_name']} ({r['product']})", r["lot"], r["expiry"], r["storage"], r["count"]]
         for r in lots] + [["Total", "", "", "", content["count"]]],
        widths=[w * width for w in (0.32, 0.14, 0.22, 0.22, 0.10)])]
    story += [Spacer(1, 4 * mm), Paragraph("Vials", styles()["Heading3"]), data_table(
        ["#", "Serial", "Lot"] * VIALS_PER_ROW, _vial_rows(content["vials"]),
        widths=[w * width / VIALS_PER_ROW for w in (0.14, 0.46, 0.40)] * VIALS_PER_ROW)]
    closing: list[Flowable] = [Spacer(1, 2 * mm),
                               para(f"Count: {content['count']} vial(s).", "Small"),
                               Spacer(1, 6 * mm), _signature_block(content, width)]
    if content["released_by"]:
        released = content["released_by"]
        closing += [Spacer(1, 3 * mm), para(
            f"Quarantine released by {released['printed_name']} ({released['meaning']}), "
            f"{_shown(released, 'signed_at')} UTC ({released['site_time']})", "Small")]
    story.append(KeepTogether(closing))
    return build_pdf(path, "Shipment Manifest", f"Shipment {code}: {content['from']} to "
                     f"{content['to']}", story, provenance, content, site_tz.key, meta=meta,
                     footer_title=f"Shipment Manifest {code}")
