"""A participant's perfusion schedule: every perfusion of every cycle, planned and actual."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack.models import User
from lotrack.models.base import utcnow
from lotrack.models.dosing import Dose, DoseVial
from lotrack.models.lots import Lot, Vial
from lotrack.services.dosing import OPEN_STATUSES
from lotrack.services.participants import cycles, follow_up, get_participant
from lotrack.services.protocols import protocol_content
from lotrack.services.roles import require_role

READERS = ("admin", "pharmacist", "qa", "investigator", "monitor")


def participant_schedule(session: Session, actor: User, subject_id: str,
                         now: datetime | None = None) -> list[dict[str, object]]:
    require_role(actor, *READERS, action="reading a schedule")
    participant = get_participant(session, subject_id)
    protocol = protocol_content(participant.protocol_version)
    now = now or utcnow()
    rows: list[dict[str, object]] = []
    for cycle in cycles(session, participant):
        surgery_at = cycle.surgery.performed_at
        doses = _doses_with_vials(session, cycle.id)
        for perfusion in protocol.cycle.perfusions:
            target = surgery_at + timedelta(hours=perfusion.target_hours)
            window = timedelta(hours=perfusion.window_hours)
            slot = [d for d in doses if d[0].perfusion == perfusion.number]
            current = next((d for d in slot if d[0].status in OPEN_STATUSES), None)
            base = {"cycle": cycle.number, "perfusion": perfusion.number, "target": target,
                    "window_opens": target - window, "window_closes": target + window,
                    "attempts": len(slot)}
            if current is None:
                status = "missed" if now > target + window else "due" if now >= target - window \
                    else "planned"
                if participant.status == "withdrawn":
                    status = "not given (withdrawn)"
                rows.append({**base, "status": status, "dose": None, "vials": [], "lots": [],
                             "hours_since_surgery": None, "deviation": None})
                continue
            dose, vials = current
            rows.append({**base, "status": dose.status, "dose": dose.dose_code,
                         "vials": [v for v, _ in vials], "lots": sorted({lot for _, lot in vials}),
                         "hours_since_surgery": dose.hours_since_surgery,
                         "post_op_day": dose.post_op_day, "dispensed_at": dose.dispensed_at,
                         "administered_at": dose.administered_at, "deviation": dose.deviation})
        exam = follow_up(session, cycle)
        if exam is not None:
            rows.append({"cycle": cycle.number, "perfusion": None, "status": "hysteroscopy: "
                         + ("recurrence" if exam.recurrence else "no recurrence"),
                         "target": exam.performed_at, "dose": None, "vials": [], "lots": []})
    return rows


def _doses_with_vials(session: Session, cycle_id: int
                      ) -> list[tuple[Dose, list[tuple[str, str]]]]:
    doses = list(session.execute(select(Dose).where(Dose.cycle_id == cycle_id)
                                 .order_by(Dose.perfusion, Dose.attempt)).scalars())
    if not doses:
        return []
    pairs = session.execute(
        select(DoseVial.dose_id, Vial.serial, Lot.lot_number)
        .join(Vial, Vial.id == DoseVial.vial_id).join(Lot, Lot.id == Vial.lot_id)
        .where(DoseVial.dose_id.in_([d.id for d in doses]))).all()
    by_dose: dict[int, list[tuple[str, str]]] = {}
    for dose_id, serial, lot_number in pairs:
        by_dose.setdefault(dose_id, []).append((serial, lot_number))
    return [(d, sorted(by_dose.get(d.id, []))) for d in doses]
