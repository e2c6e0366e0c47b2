"""Content of the documents lotrack issues, assembled as plain data (rendered elsewhere)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.models import User
from lotrack.models.base import iso, utcnow
from lotrack.render.provenance import Provenance
from lotrack.services import lots, qc
from lotrack.services.lot_views import READERS, signatures_of
from lotrack.services.roles import require_role
from lotrack.services.specifications import spec_content


def provenance(session: Session, actor: User) -> Provenance:
    seq, digest = audit.head(session)
    return Provenance(generated_by=f"{actor.full_name} ({actor.username})",
                      generated_at=utcnow(), audit_seq=seq, audit_hash=digest)


def certificate_of_analysis(session: Session, actor: User, lot_number: str,
                            product_code: str | None, site_tz: ZoneInfo) -> dict[str, object]:
    """Everything a certificate of analysis states about a lot, as data."""
    require_role(actor, *READERS, action="issuing a certificate of analysis")
    lot = lots.get_lot(session, lot_number, product_code)
    spec = spec_content(lot.specification)
    results = qc.all_results(session, lot)
    current = {r.attribute: r for r in results if not r.superseded}
    rows = []
    for attr in spec.attributes:
        result = current.get(attr.name)
        alert = qc.alert_of(attr, result.value_text, result.verdict) if result else None
        rows.append({"attribute": attr.label, "name": attr.name, "unit": attr.unit,
                     "method": attr.method, "limit": qc.limit_text(attr),
                     "result": result.value_text if result else "not tested",
                     "verdict": result.verdict if result else "missing",
                     "tested_on": iso(result.tested_on) if result else None,
                     "analyst": result.analyst if result else None,
                     # Only when flagged, so certificates issued before alert limits
                     # existed still verify against the database.
                     **({"alert": alert, "alert_limits": qc.alert_text(attr)} if alert else {})})
    changes = [{"attribute": r.attribute, "old_value": r.value_text, "unit": r.unit,
                "entered_at": iso(r.entered_at),
                "replaced_by": next((c.value_text for c in results if c.supersedes_id == r.id),
                                    None),
                "reason": next((c.correction_reason for c in results
                                if c.supersedes_id == r.id), None)}
               for r in results if r.superseded]
    product = lot.product
    return {
        "document": "certificate of analysis",
        "product": {"code": product.code, "name": product.name, "gtin": product.gtin,
                    "kind": product.kind, "storage": product.storage_condition},
        "lot": {"number": lot.lot_number, "manufactured": iso(lot.manufactured_on),
                "expiry": iso(lot.expiry_on), "cell_line": lot.cell_line,
                "cell_bank": lot.cell_bank_id, "passage": lot.passage,
                "vials": lot.vial_count, "fill_ml": lot.fill_volume_ml,
                "status": lots.effective_status(lot, utcnow(), site_tz)},
        "specification": {"version": lot.specification.version,
                          "sha256": lot.specification.content_sha256},
        "results": rows,
        "changes_after_entry": changes,
        "conforms": all(r["verdict"] == "pass" for r in rows),
        "signatures": [{"meaning": s["meaning"], "printed_name": s["printed_name"],
                        "signed_at": iso(s["signed_at"])}
                       for s in signatures_of(session, "lot", lot.audit_key)],
    }
