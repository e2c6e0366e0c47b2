"""What lots look like when read: status with expiry computed, QC results, vial counts."""

from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack.models import Lot, Signature, User, Vial
from lotrack.models.base import utcnow
from lotrack.services import lots, qc
from lotrack.services.roles import require_role
from lotrack.services.specifications import spec_content

READERS = ("admin", "pharmacist", "qa", "investigator", "monitor")


def lot_rows(session: Session, actor: User, status: str | None, product_code: str | None,
             site_tz: ZoneInfo) -> list[dict[str, object]]:
    require_role(actor, *READERS, action="reading lots")
    now = utcnow()
    counts: dict[int, Counter[str]] = {}
    for lot_id, vial_status, n in session.execute(
            select(Vial.lot_id, Vial.status, func.count()).group_by(Vial.lot_id, Vial.status)):
        counts.setdefault(lot_id, Counter())[vial_status] = n
    rows = []
    for lot in lots.list_lots(session, None, product_code):
        shown = lots.effective_status(lot, now, site_tz)
        if status and shown != status:
            continue
        c = counts.get(lot.id, Counter())
        rows.append({"lot": lot.lot_number, "product": lot.product.code, "status": shown,
                     "manufactured": lot.manufactured_on.isoformat(),
                     "expiry": lot.expiry_on.isoformat(), "vials": lot.vial_count,
                     "in_stock": c["in_stock"], "spec_version": lot.specification.version,
                     "qa_review": lot.qa_review_needed})
    rows.sort(key=lambda r: (r["product"], r["expiry"], r["lot"]))
    return rows


def lot_detail(session: Session, actor: User, lot_number: str, product_code: str | None,
               site_tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="reading a lot")
    lot = lots.get_lot(session, lot_number, product_code)
    spec = spec_content(lot.specification)
    limits = {a.name: qc.limit_text(a) for a in spec.attributes}
    attributes = {a.name: a for a in spec.attributes}
    vial_counts = dict(session.execute(select(Vial.status, func.count()).where(
        Vial.lot_id == lot.id).group_by(Vial.status)).all())
    return {
        "lot": lot.lot_number, "product": lot.product.code, "product_name": lot.product.name,
        "status": lots.effective_status(lot, utcnow(), site_tz), "stored_status": lot.status,
        "manufactured": lot.manufactured_on.isoformat(), "expiry": lot.expiry_on.isoformat(),
        "cell_line": lot.cell_line, "cell_bank": lot.cell_bank_id, "passage": lot.passage,
        "vial_count": lot.vial_count, "fill_ml": lot.fill_volume_ml,
        "specification": f"{lot.product.code} v{lot.specification.version}",
        "expires_at": lots.expiry_text(lot, site_tz),
        "qa_review_needed": lot.qa_review_needed,
        "qc_alerts": [f"{a['attribute']}: {a['detail']}" for a in qc.current_alerts(session, lot)],
        "release_blockers": qc.release_blockers(session, lot) if lot.status == "quarantine"
        else [],
        "vials": vial_counts,
        "results": [{"attribute": r.attribute, "value": r.value_text, "unit": r.unit,
                     "limit": limits.get(r.attribute, ""), "verdict": r.verdict,
                     "alert": (qc.alert_of(attributes[r.attribute], r.value_text, r.verdict)
                               if r.attribute in attributes and not r.superseded else None),
                     "current": not r.superseded, "method": r.method,
                     "tested_on": r.tested_on.isoformat(), "analyst": r.analyst,
                     "correction_reason": r.correction_reason}
                    for r in qc.all_results(session, lot)],
        "signatures": signatures_of(session, "lot", lot.audit_key),
    }


def signatures_of(session: Session, entity: str, entity_id: str) -> list[dict[str, object]]:
    rows = session.execute(select(Signature).where(
        Signature.entity == entity, Signature.entity_id == entity_id)
        .order_by(Signature.signed_at, Signature.id)).scalars()
    return [{"meaning": s.meaning, "printed_name": s.printed_name, "signed_at": s.signed_at,
             "user_id": s.user_id, "record_hash": s.record_hash} for s in rows]


def lot_of(session: Session, lot_id: int) -> Lot:
    return session.execute(select(Lot).where(Lot.id == lot_id)).scalar_one()
