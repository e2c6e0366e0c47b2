"""The certificate of analysis of a lot."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer

from lotrack.render.pdf.base import (
    Provenance,
    build_pdf,
    data_table,
    key_values,
    para,
    styles,
    usable_width,
)
from lotrack.render.tables import site_time


def write_coa(path: Path, content: dict[str, Any], provenance: Provenance,
              site_tz: ZoneInfo, meta: dict[str, Any] | None = None) -> str:
    product, lot, spec = content["product"], content["lot"], content["specification"]
    width = usable_width()
    story: list[Flowable] = [key_values([
        ("Product", f"{product['name']} ({product['code']})"),
        ("GTIN", product["gtin"] or "none"),
        ("Lot", lot["number"]),
        ("Manufactured", lot["manufactured"]), ("Expiry", lot["expiry"]),
        ("Source cell line / bank / passage",
         f"{lot['cell_line']} / {lot['cell_bank']} / {lot['passage']}"),
        ("Vials x fill volume", f"{lot['vials']} x {lot['fill_ml']:g} mL"),
        ("Storage", product["storage"]),
        ("Specification", f"version {spec['version']} (sha256 {spec['sha256'][:16]})"),
        ("Lot status", lot["status"]),
    ], width), Spacer(1, 4 * mm), Paragraph("Results", styles()["Heading3"])]
    rows = content["results"]
    story.append(data_table(
        ["Attribute", "Specification", "Result", "Unit", "Method", "Verdict", "Tested", "Analyst"],
        [[r["attribute"], r["limit"], r["result"], r["unit"], r["method"],
          r["verdict"].upper() + (" (ALERT)" if r.get("alert") else ""),
          r["tested_on"] or "", r["analyst"] or ""] for r in rows],
        widths=[w * width for w in (0.16, 0.14, 0.14, 0.09, 0.19, 0.09, 0.09, 0.10)],
        flagged=[i for i, r in enumerate(rows) if r["verdict"] != "pass" or r.get("alert")]))
    conclusion = ("The lot CONFORMS to its specification." if content["conforms"] else
                  "The lot DOES NOT CONFORM to its specification (see flagged rows).")
    story += [Spacer(1, 3 * mm), para(conclusion, "Small")]
    alerts = [r for r in rows if r.get("alert")]
    if alerts:
        # Within specification, beyond an alert limit: passes, and is flagged for QA.
        story += [Spacer(1, 2 * mm), para(
            "Flagged for QA (within specification, beyond an alert limit): "
            + "; ".join(f"{r['attribute']}: {r['alert']} (alert limits {r['alert_limits']})"
                        for r in alerts), "Flag")]
    if content["changes_after_entry"]:
        story += [Spacer(1, 4 * mm), Paragraph("Changes after entry", styles()["Heading3"]),
                  data_table(["Attribute", "Original value", "Replaced by", "Reason", "Entered"],
                             [[c["attribute"], f"{c['old_value']} {c['unit']}", c["replaced_by"],
                               c["reason"], c["entered_at"]] for c in content["changes_after_entry"]])]
    story += [Spacer(1, 4 * mm), Paragraph("Electronic signatures", styles()["Heading3"])]
    signatures = content["signatures"]
    story.append(data_table(
        ["Printed name", "Meaning", "Date and time (UTC)", "Site time"],
        [[s["printed_name"], s["meaning"], s["signed_at"], _site(s["signed_at"], site_tz)]
         for s in signatures]) if signatures else para("No signature yet: the lot is not released.",
                                                        "Flag"))
    return build_pdf(path, "Certificate of Analysis",
                     f"{product['name']} - lot {lot['number']}", story, provenance, content,
                     site_tz.key, meta=meta)


def _site(value: str, tz: ZoneInfo) -> str:
    from datetime import datetime

    return site_time(datetime.fromisoformat(value), tz)
