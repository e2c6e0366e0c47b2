"""Drug accountability in the shape of the NCI DARF, and the per-lot reconciliation:
received = dispensed + wasted + returned + destroyed + in stock, every difference flagged."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack.models import Dose, DoseVial, Lot, Participant, Product, Signature, User, Vial
from lotrack.models.base import iso
from lotrack.services import lots as lot_service
from lotrack.services.lot_views import READERS
from lotrack.services.protocols import active_protocol
from lotrack.services.roles import require_role

RECONCILED = ("dispensed", "wasted", "returned", "destroyed", "in_stock")


def initials(full_name: str) -> str:
    parts = [p for p in full_name.replace("Dr.", "").split() if p]
    return "".join(p[0].upper() for p in parts) or "?"


def accountability(session: Session, actor: User, lot_number: str | None,
                   product_code: str | None = None) -> dict[str, object]:
    require_role(actor, *READERS, action="reading drug accountability")
    if lot_number:
        chosen = [lot_service.get_lot(session, lot_number, product_code)]
    else:
        chosen = list(session.execute(select(Lot).join(Product)
                                      .order_by(Product.code, Lot.lot_number)).scalars())
    try:
        protocol_code = active_protocol(session)[1].protocol.code
    except Exception:  # no protocol yet: the record still stands without it
        protocol_code = ""
    users = {u.id: u for u in session.execute(select(User)).scalars()}
    return {"document": "drug accountability record", "protocol": protocol_code,
            "lots": [_lot_record(session, lot, users) for lot in chosen]}


def _lot_record(session: Session, lot: Lot, users: dict[int, User]) -> dict[str, object]:
    events: list[tuple[datetime, int, dict[str, object]]] = []
    receipts = session.execute(select(Vial.received_at, func.count()).where(
        Vial.lot_id == lot.id, Vial.received_at.is_not(None)).group_by(Vial.received_at)).all()
    for at, n in receipts:
        events.append((at, 0, {"kind": "received", "quantity_in": n, "quantity_out": 0}))
    doses = session.execute(
        select(Dose, Participant.subject_id, func.count(DoseVial.vial_id))
        .join(DoseVial, DoseVial.dose_id == Dose.id).join(Vial, Vial.id == DoseVial.vial_id)
        .join(Participant, Participant.id == Dose.participant_id)
        .where(Vial.lot_id == lot.id).group_by(Dose.id, Participant.subject_id)
        .order_by(Dose.dispensed_at)).all()
    for dose, subject, n in doses:
        events.append((dose.dispensed_at, 1, {
            "kind": "dispensed", "participant": subject, "dose": dose.dose_code,
            "cycle_perfusion": f"C{_cycle_number(session, dose)}P{dose.perfusion}",
            "quantity_in": 0, "quantity_out": n, "dose_status": dose.status,
            "dispenser": initials(users[dose.dispensed_by_id].full_name),
            "verified_by": initials(users[dose.verified_by_id].full_name)}))
        if dose.status in ("wasted", "returned") and dose.closed_at is not None:
            # Returned product is not re-entered into stock: a note, no balance change.
            events.append((dose.closed_at, 2, {
                "kind": dose.status, "participant": subject, "dose": dose.dose_code,
                "quantity_in": 0, "quantity_out": 0, "note": dose.closed_reason,
                "dispenser": initials(users[dose.closed_by_id].full_name)
                if dose.closed_by_id else ""}))
    status_counts = Counter(dict(session.execute(
        select(Vial.status, func.count()).where(Vial.lot_id == lot.id,
                                                Vial.received_at.is_not(None))
        .group_by(Vial.status)).all()))
    destroyed = status_counts["destroyed"]
    if destroyed:
        signed = session.execute(select(Signature.signed_at, Signature.printed_name).where(
            Signature.entity == "lot", Signature.entity_id == lot.audit_key,
            Signature.meaning == "QA destruction")).first()
        if signed is not None:
            events.append((signed.signed_at, 3, {
                "kind": "destroyed", "quantity_in": 0, "quantity_out": destroyed,
                "dispenser": initials(signed.printed_name)}))
    lines, balance = [], 0
    for at, _, line in sorted(events, key=lambda e: (e[0], e[1])):
        balance += int(line["quantity_in"]) - int(line["quantity_out"])
        lines.append({"date": iso(at), **line, "balance": balance})
    return {"lot": lot.lot_number, "product": lot.product.code, "agent": lot.product.name,
            "dose_form": lot.product.dosage_form, "strength": f"{lot.fill_volume_ml:g} mL per vial",
            "expiry": iso(lot.expiry_on), "lines": lines,
            "reconciliation": _reconcile(session, lot, status_counts, doses)}


def _cycle_number(session: Session, dose: Dose) -> int:
    from lotrack.models import TreatmentCycle

    return session.execute(select(TreatmentCycle.number).where(
        TreatmentCycle.id == dose.cycle_id)).scalar_one()


def _reconcile(session: Session, lot: Lot, status: Counter[str],
               doses: list) -> dict[str, object]:
    received = sum(status.values())
    counts = {
        "received": received,
        "dispensed": status["dispensed"] + status["administered"],
        "wasted": status["wasted"], "returned": status["returned"],
        "destroyed": status["destroyed"],
        "in_stock": status["in_stock"] + status["quarantined"] + status["unconfirmed"],
    }
    accounted = sum(counts[k] for k in RECONCILED)
    flags = []
    if accounted != received:
        flags.append(f"{received} received but {accounted} accounted for "
                     f"(difference {received - accounted})")
    ledger = sum(n for _, _, n in doses)
    by_status = counts["dispensed"] + counts["wasted"] + counts["returned"]
    if ledger != by_status:
        flags.append(f"the dose records hold {ledger} vial(s) of this lot but {by_status} vial(s) "
                     "carry a dispensed, wasted or returned status")
    never_received = session.execute(select(func.count()).where(
        Vial.lot_id == lot.id, Vial.received_at.is_(None),
        Vial.status.in_(("dispensed", "administered")))).scalar_one()
    if never_received:
        flags.append(f"{never_received} vial(s) dispensed without a receipt at the site")
    return {**counts, "accounted": accounted, "difference": received - accounted,
            "flags": flags}

