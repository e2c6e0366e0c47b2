"""Enrolment with eligibility, withdrawal, surgeries, follow-up hysteroscopies and cycles."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import InvalidInput, NotFound, RuleViolation
from lotrack.models import User
from lotrack.models.base import utcnow
from lotrack.models.participants import Hysteroscopy, Participant, Surgery, TreatmentCycle
from lotrack.services.auth import reauthenticate
from lotrack.services.eligibility import Candidate, age_on, failed_criteria
from lotrack.services.protocols import active_protocol, protocol_content
from lotrack.services.roles import require_role

ENROLMENT_MEANING = "enrolment: eligibility confirmed"
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$"


def get_participant(session: Session, subject_id: str, lock: bool = False) -> Participant:
    stmt = select(Participant).where(Participant.subject_id == subject_id)
    if lock:
        stmt = stmt.with_for_update()
    participant = session.execute(stmt).scalar_one_or_none()
    if participant is None:
        raise NotFound(f"no participant {subject_id!r}")
    return participant


def enroll(session: Session, actor: User, subject_id: str, group_code: str,
           candidate: Candidate, password: str | None) -> Participant:
    """Enrol a participant after checking every criterion; signed by the investigator."""
    import re

    require_role(actor, "investigator", action="enrolling a participant")
    if not re.match(SUBJECT_PATTERN, subject_id):
        raise InvalidInput(f"subject id {subject_id!r} must be 1-40 letters, digits or '-'")
    version, protocol = active_protocol(session)
    group = protocol.group(group_code)
    if session.execute(select(Participant.id).where(Participant.subject_id == subject_id)).first():
        raise RuleViolation(f"participant {subject_id} is already enrolled")
    if candidate.consented > utcnow().date() + timedelta(days=1):
        raise InvalidInput(f"consent date {candidate.consented} is in the future")
    failures = failed_criteria(protocol.eligibility, candidate)
    if failures:
        raise RuleViolation(f"{subject_id} is not eligible: " + "; ".join(failures))
    in_group = session.execute(select(func.count(Participant.id)).where(
        Participant.group_code == group.code)).scalar_one()
    if in_group >= group.planned:
        raise RuleViolation(f"group {group.code} is full ({group.planned} planned)")
    reauthenticate(session, actor, password, ENROLMENT_MEANING)
    assert candidate.birth_date is not None  # failed_criteria refuses a missing birth date
    screening = {k: v for k, v in asdict(candidate).items() if k not in ("birth_date", "consented")}
    participant = Participant(
        subject_id=subject_id, protocol_version_id=version.id, group_code=group.code,
        status="enrolled", consented_on=candidate.consented,
        age_at_consent=age_on(candidate.birth_date, candidate.consented),
        screening=audit.canonical(screening), enrolled_at=utcnow(), enrolled_by_id=actor.id)
    session.add(participant)
    audit.record_row(session, actor, participant, "enroll")
    audit.sign(session, actor, ENROLMENT_MEANING, "participant", subject_id,
               participant.audit_state())
    return participant


def withdraw(session: Session, actor: User, subject_id: str, reason: str) -> Participant:
    require_role(actor, "investigator", action="withdrawing a participant")
    participant = get_participant(session, subject_id, lock=True)
    if participant.status == "withdrawn":
        raise RuleViolation(f"participant {subject_id} was already withdrawn")
    if not reason.strip():
        raise InvalidInput("a withdrawal needs a reason")
    before = participant.audit_state()
    participant.status, participant.withdrawn_at = "withdrawn", utcnow()
    participant.withdrawal_reason = reason.strip()
    audit.record_row(session, actor, participant, "withdraw", before, reason.strip())
    return participant


def _require_active(participant: Participant) -> None:
    if participant.status == "withdrawn":
        raise RuleViolation(f"participant {participant.subject_id} was withdrawn on "
                            f"{participant.withdrawn_at:%Y-%m-%d}: {participant.withdrawal_reason}")


def cycles(session: Session, participant: Participant) -> list[TreatmentCycle]:
    return list(session.execute(select(TreatmentCycle).where(
        TreatmentCycle.participant_id == participant.id).order_by(TreatmentCycle.number)).scalars())


def follow_up(session: Session, cycle: TreatmentCycle) -> Hysteroscopy | None:
    return session.execute(select(Hysteroscopy).where(Hysteroscopy.cycle_id == cycle.id)).scalar()


def record_surgery(session: Session, actor: User, subject_id: str, at: datetime,
                   iua_score: int | None, site_tz: ZoneInfo) -> TreatmentCycle:
    """An adhesiolysis: the first opens cycle 1; a repeat after recurrence opens the next."""
    require_role(actor, "investigator", action="recording a surgery")
    participant = get_participant(session, subject_id, lock=True)
    _require_active(participant)
    protocol = protocol_content(participant.protocol_version)
    if iua_score is not None and not 0 <= iua_score <= 28:
        raise InvalidInput(f"IUA score {iua_score} is outside 0-28")
    if at.astimezone(site_tz).date() < participant.consented_on:
        raise RuleViolation(f"surgery at {at:%Y-%m-%d %H:%M} UTC precedes consent on "
                            f"{participant.consented_on}")
    if at > utcnow() + timedelta(minutes=5):
        raise InvalidInput("a surgery cannot be recorded in the future")
    existing = cycles(session, participant)
    if len(existing) >= protocol.protocol.max_cycles:
        raise RuleViolation(f"participant {subject_id} has had {len(existing)} cycles; the "
                            f"protocol allows at most {protocol.protocol.max_cycles}")
    if existing:
        last = existing[-1]
        hysteroscopy = follow_up(session, last)
        if hysteroscopy is None or not hysteroscopy.recurrence:
            raise RuleViolation(
                f"a repeat adhesiolysis opens cycle {last.number + 1} only after a follow-up "
                f"hysteroscopy of cycle {last.number} records recurrent adhesions")
        if at <= hysteroscopy.performed_at:
            raise RuleViolation("the repeat adhesiolysis must follow the hysteroscopy that found "
                                "the recurrence")
    surgery = Surgery(participant_id=participant.id, performed_at=at, iua_score=iua_score,
                      recorded_by_id=actor.id)
    session.add(surgery)
    audit.record_row(session, actor, surgery, "record")
    cycle = TreatmentCycle(participant_id=participant.id, number=len(existing) + 1,
                           surgery_id=surgery.id)
    session.add(cycle)
    audit.record_row(session, actor, cycle, "open")
    return cycle


def record_hysteroscopy(session: Session, actor: User, subject_id: str, at: datetime,
                        recurrence: bool) -> Hysteroscopy:
    require_role(actor, "investigator", action="recording a hysteroscopy")
    participant = get_participant(session, subject_id, lock=True)
    _require_active(participant)
    existing = cycles(session, participant)
    if not existing:
        raise RuleViolation(f"participant {subject_id} has no surgery yet")
    cycle = existing[-1]
    if follow_up(session, cycle) is not None:
        raise RuleViolation(f"the follow-up hysteroscopy of cycle {cycle.number} is already "
                            "recorded")
    if at <= cycle.surgery.performed_at:
        raise RuleViolation("the follow-up hysteroscopy must follow the cycle's surgery")
    if at > utcnow() + timedelta(minutes=5):
        raise InvalidInput("a hysteroscopy cannot be recorded in the future")
    # The follow-up comes after the cycle's perfusions: not before the last window closes.
    protocol = protocol_content(participant.protocol_version)
    last = protocol.cycle.perfusions[-1]
    earliest = cycle.surgery.performed_at + timedelta(hours=last.target_hours + last.window_hours)
    if at < earliest:
        raise RuleViolation(f"the follow-up hysteroscopy of cycle {cycle.number} cannot precede "
                            f"the end of its last perfusion window ({earliest:%Y-%m-%d %H:%M} UTC)")
    exam = Hysteroscopy(participant_id=participant.id, cycle_id=cycle.id, performed_at=at,
                        recurrence=recurrence, recorded_by_id=actor.id)
    session.add(exam)
    audit.record_row(session, actor, exam, "record")
    return exam


def list_participants(session: Session) -> list[Participant]:
    return list(session.execute(select(Participant).order_by(Participant.subject_id)).scalars())
