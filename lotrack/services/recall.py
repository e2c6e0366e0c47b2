"""What a recall would touch, computed before anything is changed (`lot recall --dry-run`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack.models import Dose, DoseVial, Participant, StorageLocation, User, Vial
from lotrack.services.lot_views import READERS
from lotrack.services.lots import AT_HAND, TRANSITIONS, get_lot
from lotrack.services.roles import require_role


def recall_impact(session: Session, actor: User, lot_number: str,
                  product_code: str | None) -> dict[str, object]:
    require_role(actor, *READERS, action="assessing a recall")
    lot = get_lot(session, lot_number, product_code)
    allowed = (lot.status, "recalled") in TRANSITIONS
    paths = dict(session.execute(select(StorageLocation.id, StorageLocation.path)).all())
    stock = list(session.execute(select(Vial).where(
        Vial.lot_id == lot.id, Vial.status.in_(AT_HAND))
        .order_by(Vial.number)).scalars())
    rows = session.execute(
        select(Dose, Participant.subject_id, Vial.serial)
        .join(DoseVial, DoseVial.dose_id == Dose.id).join(Vial, Vial.id == DoseVial.vial_id)
        .join(Participant, Participant.id == Dose.participant_id)
        .where(Vial.lot_id == lot.id).order_by(Participant.subject_id, Dose.id)).all()
    exposed = sorted({subject for dose, subject, _ in rows if dose.status in ("dispensed",
                                                                              "administered")})
    pending = {}
    for dose, subject, serial in rows:
        if dose.status == "dispensed":
            pending.setdefault(dose.dose_code, {"dose": dose.dose_code, "participant": subject,
                                                "vials": []})["vials"].append(serial)
    return {
        "lot": lot.lot_number, "product": lot.product.code, "status": lot.status,
        "recall_allowed": allowed,
        "refusal": None if allowed else f"lot {lot.lot_number} is {lot.status}; it cannot be recalled",
        "vials_to_quarantine": [
            {"serial": v.serial, "status": v.status,
             "where": f"{paths.get(v.location_id, '')} #{v.position}" if v.location_id else "",
             "already_quarantined": v.status == "quarantined"} for v in stock],
        "participants_exposed": exposed,
        "doses_dispensed_not_administered": list(pending.values()),
    }
