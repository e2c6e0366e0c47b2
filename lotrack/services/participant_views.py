"""A participant as read by users: enrolment, signature, surgeries, follow-ups and doses."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack.models import User
from lotrack.models.audit import Signature
from lotrack.models.participants import Hysteroscopy, Participant, Surgery, TreatmentCycle
from lotrack.services.participants import ENROLMENT_MEANING, cycles, get_participant
from lotrack.services.protocols import protocol_content
from lotrack.services.roles import require_role
from lotrack.services.schedule import _doses_with_vials

READERS = ("admin", "pharmacist", "qa", "investigator", "monitor")


def participant_rows(session: Session, actor: User) -> list[dict[str, object]]:
    """Every participant with group, status and number of cycles, in one query (counting
    each participant's cycles by loading them took one query per participant)."""
    require_role(actor, *READERS, action="listing participants")
    cycle_counts = (select(TreatmentCycle.participant_id, func.count().label("cycles"))
                    .group_by(TreatmentCycle.participant_id).subquery())
    rows = session.execute(
        select(Participant.subject_id, Participant.group_code, Participant.status,
               Participant.consented_on, Participant.age_at_consent,
               func.coalesce(cycle_counts.c.cycles, 0).label("cycles"))
        .outerjoin(cycle_counts, cycle_counts.c.participant_id == Participant.id)
        .order_by(Participant.subject_id))
    return [{"subject": r.subject_id, "group": r.group_code, "status": r.status,
             "consented": r.consented_on.isoformat(), "age": r.age_at_consent,
             "cycles": r.cycles} for r in rows]


def participant_detail(session: Session, actor: User, subject_id: str) -> dict[str, object]:
    """Everything recorded about one participant, as plain data (times stay in UTC)."""
    require_role(actor, *READERS, action="reading a participant")
    participant = get_participant(session, subject_id)
    version = participant.protocol_version
    group = protocol_content(version).group(participant.group_code)
    signature = session.execute(
        select(Signature.printed_name, User.username, Signature.signed_at, Signature.meaning)
        .join(User, User.id == Signature.user_id)
        .where(Signature.entity == "participant", Signature.entity_id == subject_id,
               Signature.meaning == ENROLMENT_MEANING)
        .order_by(Signature.signed_at)).first()
    surgeries = session.execute(select(Surgery).where(Surgery.participant_id == participant.id)
                                .order_by(Surgery.performed_at)).scalars()
    exams = {h.cycle_id: h for h in session.execute(
        select(Hysteroscopy).where(Hysteroscopy.participant_id == participant.id)).scalars()}
    treatment_cycles = []
    for cycle in cycles(session, participant):
        exam = exams.get(cycle.id)
        treatment_cycles.append({
            "cycle": cycle.number,
            "surgery_at": cycle.surgery.performed_at,
            "hysteroscopy_at": exam.performed_at if exam else None,
            "recurrence": exam.recurrence if exam else None,
            "doses": [{"dose": dose.dose_code, "perfusion": dose.perfusion,
                       "attempt": dose.attempt, "status": dose.status,
                       "dispensed_at": dose.dispensed_at,
                       "administered_at": dose.administered_at,
                       "hours_since_surgery": dose.hours_since_surgery,
                       "post_op_day": dose.post_op_day, "deviation": dose.deviation,
                       "vials": [serial for serial, _ in vials],
                       "lots": sorted({lot for _, lot in vials})}
                      for dose, vials in _doses_with_vials(session, cycle.id)],
        })
    return {
        "subject": participant.subject_id,
        "group": participant.group_code,
        "group_name": group.name,
        "product": group.product,
        "status": participant.status,
        "withdrawn_at": participant.withdrawn_at,
        "withdrawal_reason": participant.withdrawal_reason,
        "consented": participant.consented_on.isoformat(),
        "age_at_consent": participant.age_at_consent,
        "protocol": f"{version.code} v{version.version}",
        "enrolled_at": participant.enrolled_at,
        "enrolment_signature": None if signature is None else {
            "name": signature.printed_name, "username": signature.username,
            "signed_at": signature.signed_at, "meaning": signature.meaning},
        "surgeries": [{"at": s.performed_at, "iua_score": s.iua_score} for s in surgeries],
        "hysteroscopies": [{"cycle": c["cycle"], "at": c["hysteroscopy_at"],
                            "recurrence": c["recurrence"]}
                           for c in treatment_cycles if c["hysteroscopy_at"] is not None],
        "cycles": [{k: v for k, v in c.items() if k not in ("hysteroscopy_at", "recurrence")}
                   for c in treatment_cycles],
    }
