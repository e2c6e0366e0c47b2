"""Adverse events graded by CTCAE v5.0: recording, corrections with a reason, reading.

Investigators record and correct; monitors, QA and investigators read. A correction
never overwrites silently: its audit event keeps the old and the new state and the
reason (EU GMP Annex 11 s.9, 21 CFR 11.10(e)).

Consistency rules, checked on every record and correction:
- the grade must exist for the CTCAE term (some terms have no grade 1, or no 4-5);
- grade 5 is death related to the event (CTCAE), so outcome fatal and serious (ICH E2A);
  conversely an outcome fatal needs grade 5;
- onset on or after consent and not in the future (site calendar days); a resolution
  date not before onset, not in the future, and only with a resolved or fatal outcome;
- outcome recovered (with or without sequelae) needs the resolution date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import InvalidInput, NotFound, RuleViolation
from lotrack.models import AuditEvent, Participant, User
from lotrack.models.base import iso, utcnow
from lotrack.models.safety import AdverseEvent, parse_ae_code
from lotrack.schemas.safety import AdverseEventChange, AdverseEventIn
from lotrack.services import ctcae
from lotrack.services.exposure import FirstExposure, first_exposures
from lotrack.services.lots import get_lot
from lotrack.services.participants import get_participant
from lotrack.services.roles import require_role

RECORDERS = ("investigator",)
READERS = ("investigator", "monitor", "qa")
RELATED = ("possible", "probable", "definite")
NOT_RESOLVED = ("not_recovered", "recovering")
RESOLVED = ("recovered", "recovered_with_sequelae")


@dataclass(frozen=True)
class Fields:
    """An adverse event's recorded values, before coding (what record and correct check)."""

    term: str
    grade: int
    onset: date
    serious: bool
    relatedness: str
    outcome: str
    resolved: date | None
    action: str | None


def is_related(relatedness: str) -> bool:
    return relatedness in RELATED


def site_today(site_tz: ZoneInfo) -> date:
    return utcnow().astimezone(site_tz).date()


def _default_outcome(grade: int, resolved: date | None) -> str:
    if grade == 5:
        return "fatal"
    return "recovered" if resolved else "not_recovered"


def _check(fields: Fields, participant: Participant, site_tz: ZoneInfo) -> ctcae.Coding:
    coding = ctcae.code_term(fields.term)
    ctcae.check_grade(coding, fields.grade)
    if fields.grade == 5 and fields.outcome != "fatal":
        raise InvalidInput(f"grade 5 is death related to the event: the outcome must be fatal, "
                           f"not {fields.outcome}")
    if fields.outcome == "fatal" and fields.grade != 5:
        raise InvalidInput(f"an outcome fatal is CTCAE grade 5, not grade {fields.grade}")
    if fields.grade == 5 and not fields.serious:
        raise InvalidInput("a grade 5 event (death) is always serious")
    today = site_today(site_tz)
    if fields.onset < participant.consented_on:
        raise RuleViolation(f"onset {fields.onset} precedes {participant.subject_id}'s consent "
                            f"on {participant.consented_on}")
    if fields.onset > today:
        raise InvalidInput(f"onset {fields.onset} is in the future (today is {today} at the "
                           "site)")
    if fields.resolved is not None:
        if fields.resolved < fields.onset:
            raise InvalidInput(f"resolution on {fields.resolved} precedes onset on "
                               f"{fields.onset}")
        if fields.resolved > today:
            raise InvalidInput(f"resolution date {fields.resolved} is in the future (today is "
                               f"{today} at the site)")
        if fields.outcome in NOT_RESOLVED:
            raise InvalidInput(f"an event with outcome {fields.outcome} has no resolution date")
    elif fields.outcome in RESOLVED:
        raise InvalidInput(f"outcome {fields.outcome} needs the resolution date (--resolved)")
    return coding


def _apply(ae: AdverseEvent, fields: Fields, coding: ctcae.Coding) -> None:
    ae.verbatim_term, ae.ctcae_term = coding.verbatim, coding.term
    ae.system_organ_class, ae.needs_coding = coding.soc, coding.needs_coding
    ae.grade, ae.serious, ae.relatedness = fields.grade, fields.serious, fields.relatedness
    ae.outcome, ae.onset_on, ae.resolved_on = fields.outcome, fields.onset, fields.resolved
    ae.action_taken = fields.action


def _action(text: str | None) -> str | None:
    return (text or "").strip() or None


def record_adverse_event(session: Session, actor: User, subject_id: str, data: AdverseEventIn,
                         site_tz: ZoneInfo) -> AdverseEvent:
    """Record an adverse event of a participant (withdrawn participants included: safety
    follow-up continues after withdrawal)."""
    require_role(actor, *RECORDERS, action="recording an adverse event")
    participant = get_participant(session, subject_id)
    fields = Fields(term=data.term, grade=data.grade, onset=data.onset,
                    serious=data.serious or data.grade == 5, relatedness=data.relatedness,
                    outcome=data.outcome or _default_outcome(data.grade, data.resolved),
                    resolved=data.resolved, action=_action(data.action))
    coding = _check(fields, participant, site_tz)
    ae = AdverseEvent(participant_id=participant.id, recorded_at=utcnow(),
                      recorded_by_id=actor.id)
    _apply(ae, fields, coding)
    session.add(ae)
    audit.record_row(session, actor, ae, "record")
    return ae


def get_adverse_event(session: Session, code: str, lock: bool = False) -> AdverseEvent:
    ae_id = parse_ae_code(code)
    if ae_id is None:
        raise InvalidInput(f"{code!r} is not an adverse event code (like AE00001)")
    stmt = select(AdverseEvent).where(AdverseEvent.id == ae_id)
    if lock:
        stmt = stmt.with_for_update()
    ae = session.execute(stmt).scalar_one_or_none()
    if ae is None:
        raise NotFound(f"no adverse event {code.strip().upper()!r}")
    return ae


def _merged(ae: AdverseEvent, change: AdverseEventChange) -> Fields:
    given = change.changed_fields
    grade = change.grade if "grade" in given and change.grade is not None else ae.grade
    resolved = change.resolved if "resolved" in given else ae.resolved_on
    if "outcome" in given and change.outcome is not None:
        outcome = change.outcome
    elif grade == 5:
        outcome = "fatal"
    elif ae.outcome == "fatal":
        raise InvalidInput(f"{ae.ae_code} had outcome fatal: give the new --outcome with "
                           f"grade {grade}")
    elif "resolved" in given and resolved is not None and ae.outcome in NOT_RESOLVED:
        outcome = "recovered"  # a resolution date given alone: the event resolved
    elif "resolved" in given and resolved is None and ae.outcome in RESOLVED:
        outcome = "not_recovered"  # the resolution date withdrawn: the event is ongoing
    else:
        outcome = ae.outcome
    serious = change.serious if "serious" in given and change.serious is not None else ae.serious
    if grade == 5 and "serious" not in given:
        serious = True
    return Fields(
        term=change.term if "term" in given and change.term else ae.verbatim_term,
        grade=grade,
        onset=change.onset if "onset" in given and change.onset else ae.onset_on,
        serious=serious,
        relatedness=(change.relatedness if "relatedness" in given and change.relatedness
                     else ae.relatedness),
        outcome=outcome, resolved=resolved,
        action=_action(change.action) if "action" in given else ae.action_taken)


def update_adverse_event(session: Session, actor: User, code: str, change: AdverseEventChange,
                         site_tz: ZoneInfo) -> AdverseEvent:
    """Correct an adverse event; the audit trail keeps the old and new values and the reason."""
    require_role(actor, *RECORDERS, action="correcting an adverse event")
    if not change.changed_fields:
        raise InvalidInput("give at least one field to change (--term, --grade, --onset, "
                           "--serious, --relatedness, --outcome, --resolved, --action)")
    ae = get_adverse_event(session, code, lock=True)
    participant = session.get(Participant, ae.participant_id)
    assert participant is not None  # a foreign key
    fields = _merged(ae, change)
    coding = _check(fields, participant, site_tz)
    before = ae.audit_state()
    _apply(ae, fields, coding)
    if ae.audit_state() == before:
        raise RuleViolation(f"{ae.ae_code} already has these values: nothing to correct")
    audit.record_row(session, actor, ae, "correct", before, change.reason.strip())
    return ae


# --- reading -------------------------------------------------------------------------

def _summary(ae: AdverseEvent, subject: str, lots: list[str]) -> dict[str, object]:
    return {
        "ae": ae.ae_code, "subject": subject, "term": ae.verbatim_term,
        "ctcae_term": ae.ctcae_term, "soc": ae.system_organ_class,
        "needs_coding": ae.needs_coding, "grade": ae.grade, "serious": ae.serious,
        "relatedness": ae.relatedness, "outcome": ae.outcome, "onset": iso(ae.onset_on),
        "resolved": iso(ae.resolved_on), "action": ae.action_taken, "lots_before_onset": lots,
    }


def list_adverse_events(session: Session, actor: User, site_tz: ZoneInfo,
                        subject_id: str | None = None, lot_number: str | None = None,
                        grade_min: int | None = None) -> list[dict[str, object]]:
    """Adverse events, oldest onset first. With a lot: the events of participants who
    received it, with onset on or after the day they first did (site calendar)."""
    require_role(actor, *READERS, action="reading adverse events")
    if grade_min is not None and grade_min not in range(1, 6):
        raise InvalidInput(f"--grade-min {grade_min} is not a CTCAE grade (1 to 5)")
    stmt = select(AdverseEvent, Participant.subject_id).join(
        Participant, Participant.id == AdverseEvent.participant_id)
    participant_id = get_participant(session, subject_id).id if subject_id else None
    if participant_id is not None:
        stmt = stmt.where(AdverseEvent.participant_id == participant_id)
    if grade_min is not None:
        stmt = stmt.where(AdverseEvent.grade >= grade_min)
    firsts = first_exposures(session, site_tz, participant_id=participant_id)
    lot = get_lot(session, lot_number).lot_number if lot_number else None
    rows = []
    # Streamed: an event is read, summarised and let go (30,000 at sponsor scale).
    for ae, subject in session.execute(stmt.order_by(AdverseEvent.onset_on, AdverseEvent.id)
                                       .execution_options(yield_per=1_000)):
        before = _lots_before(firsts.get(ae.participant_id, []), ae)
        if lot is None or lot in before:
            rows.append(_summary(ae, subject, before))
    return rows


def _lots_before(received: list[FirstExposure], ae: AdverseEvent) -> list[str]:
    """The lots of `received` (the participant's) first given on or before the onset day."""
    return sorted(f.lot_number for f in received if f.day <= ae.onset_on)


def adverse_event_detail(session: Session, actor: User, code: str,
                         site_tz: ZoneInfo) -> dict[str, object]:
    """One adverse event with who recorded it and every correction (old -> new, why)."""
    require_role(actor, *READERS, action="reading an adverse event")
    ae = get_adverse_event(session, code)
    participant = session.get(Participant, ae.participant_id)
    recorder = session.get(User, ae.recorded_by_id)
    assert participant is not None and recorder is not None
    received = first_exposures(session, site_tz, participant_id=participant.id).get(
        participant.id, [])
    history = []
    for event in session.execute(select(AuditEvent).where(
            AuditEvent.entity == AdverseEvent.__audit_entity__,
            AuditEvent.entity_id == ae.ae_code).order_by(AuditEvent.seq)).scalars():
        before = json.loads(event.before) if event.before else {}
        after = json.loads(event.after) if event.after else {}
        changes = {k: {"old": before.get(k), "new": after.get(k)}
                   for k in sorted(after) if event.before and before.get(k) != after.get(k)}
        history.append({"at": event.occurred_at, "user": event.username,
                        "action": event.action, "reason": event.reason, "changes": changes})
    return {**_summary(ae, participant.subject_id, _lots_before(received, ae)),
            "recorded_at": ae.recorded_at,
            "recorded_by": f"{recorder.full_name} ({recorder.username})",
            "ctcae_version": ctcae.CTCAE_VERSION, "history": history}
