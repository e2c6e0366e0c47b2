"""Dispensing each perfusion, administration, waste and return: the heart of lotrack.

A dose never reaches a participant from a lot that is not released, is expired by
the dose's use-by time, is on hold or recalled, or is of the wrong product for the
participant's group. All checks run here, in one transaction, with the
participant's row locked so that two pharmacists cannot dispense the same
perfusion slot; the dose-vial table's unique vial id stops the same vial twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import InvalidInput, NotFound, PermissionDenied, RuleViolation
from lotrack.models import User
from lotrack.models.base import utcnow
from lotrack.models.dosing import Dose, DoseVial, parse_dose_code
from lotrack.models.lots import Lot, Product, Vial
from lotrack.models.participants import Participant, TreatmentCycle
from lotrack.schemas.protocol import Perfusion, ProtocolFile
from lotrack.services import lots as lot_rules
from lotrack.services import qc, scanning
from lotrack.services.auth import find_user, reauthenticate
from lotrack.services.participants import cycles, get_participant
from lotrack.services.products import get_product
from lotrack.services.protocols import protocol_content
from lotrack.services.roles import require_role
from lotrack.services.vials import check_serial, set_vial_status

DISPENSED_MEANING = "dispensed"
VERIFIED_MEANING = "second-person verification"
OPEN_STATUSES = ("dispensed", "administered")  # a dose in these states fills its slot
VERIFIER_ROLES = ("pharmacist", "investigator")


@dataclass(frozen=True)
class DispenseRequest:
    subject_id: str
    serials: tuple[str, ...]
    at: datetime
    verifier: str
    deviation: str | None = None
    scans: tuple[str, ...] = ()  # what a scanner typed from each vial's label
    gs_substitute: str | None = None  # printable stand-in for ASCII 29 in scans


@dataclass(frozen=True)
class DueSlot:
    cycle: TreatmentCycle
    perfusion: Perfusion
    attempt: int


def next_due(session: Session, participant: Participant, protocol: ProtocolFile,
             at: datetime | None = None) -> DueSlot:
    """The perfusion to dispense next in the latest cycle: the first with no open dose, or,
    at time `at`, a later one whose window has already opened (the ones skipped were
    missed: their doses are not given late in place of the next)."""
    participant_cycles = cycles(session, participant)
    if not participant_cycles:
        raise RuleViolation(f"participant {participant.subject_id} has no surgery recorded: "
                            "no cycle is open")
    cycle = participant_cycles[-1]
    doses = list(session.execute(select(Dose).where(Dose.cycle_id == cycle.id)).scalars())
    open_slots = []
    for perfusion in protocol.cycle.perfusions:
        slot = [d for d in doses if d.perfusion == perfusion.number]
        if any(d.status in OPEN_STATUSES for d in slot):
            open_slots = []  # a slot dispensed after these: they can no longer be due
            continue
        open_slots.append(DueSlot(cycle, perfusion, attempt=len(slot) + 1))
    if not open_slots:
        raise RuleViolation(f"all {len(protocol.cycle.perfusions)} perfusions of cycle "
                            f"{cycle.number} of {participant.subject_id} are dispensed or missed")
    due = open_slots[0]
    if at is not None:
        elapsed = at - cycle.surgery.performed_at
        for later in open_slots[1:]:
            opens = later.perfusion.target_hours - later.perfusion.window_hours
            if elapsed >= timedelta(hours=opens):
                due = later
    return due


def in_window(perfusion: Perfusion, surgery_at: datetime, at: datetime) -> bool:
    """Exactly, to the second: the rounded hours stored on the dose are for display."""
    elapsed = at - surgery_at
    return (timedelta(hours=perfusion.target_hours - perfusion.window_hours) <= elapsed
            <= timedelta(hours=perfusion.target_hours + perfusion.window_hours))


def hours_since(start: datetime, at: datetime) -> float:
    return round((at - start).total_seconds() / 3600, 2)


def post_op_day(surgery_at: datetime, at: datetime, tz: ZoneInfo) -> int:
    """Calendar days since surgery in the site's time zone (the day of surgery is POD 0)."""
    return (at.astimezone(tz).date() - surgery_at.astimezone(tz).date()).days


def _verifier(session: Session, actor: User, username: str, password: str | None) -> User:
    verifier = find_user(session, username)
    if verifier is None:
        raise NotFound(f"no user {username!r} to verify the dose")
    if verifier.id == actor.id:
        raise PermissionDenied("the second-person verifier must be another user than the "
                               "dispenser")
    require_role(verifier, *VERIFIER_ROLES, action="verifying a dose")
    reauthenticate(session, verifier, password, VERIFIED_MEANING)
    return verifier


def offset_reference(protocol: ProtocolFile, slot: DueSlot, at: datetime,
                     site_tz: ZoneInfo) -> tuple[datetime, str]:
    """What the do-not-dispense offset counts back from, as the protocol file says: the
    dispensing, or the planned last perfusion of the cycle (the dispensing when later)."""
    if protocol.supply.do_not_dispense_reference == "dispensing":
        return at, "the dispensing"
    last = protocol.cycle.perfusions[-1]
    planned = slot.cycle.surgery.performed_at + timedelta(hours=last.target_hours)
    if at >= planned:
        return at, "the dispensing"
    return planned, (f"the planned last perfusion of cycle {slot.cycle.number} at "
                     f"{planned.astimezone(site_tz):%Y-%m-%d %H:%M}")


def _lot_records_problems(session: Session, lot: Lot, at: datetime,
                          site_tz: ZoneInfo) -> list[str]:
    """What the lot's records say against dispensing from it at `at`: its status then
    (a dispensing entered afterwards) and a QC result out of specification."""
    problems = []
    if lot.status == "released":
        then = lot_rules.released_then_problem(session, lot, at, site_tz)
        problems += [then] if then else []
    failing = qc.failing_attributes(session, lot)
    if failing:
        problems.append(f"lot {lot.lot_number} has a QC result out of specification "
                        f"({', '.join(failing)}) awaiting QA")
    return problems


def _lock_vials(session: Session, serials: tuple[str, ...]) -> list[Vial]:
    """The vials, in the order given, locked in one order whatever that one is (by id, as
    `_dose_vials` does): two doses naming the same vials in opposite orders then queue on
    the first instead of each holding one and waiting for the other (a deadlock)."""
    clean = [check_serial(serial) for serial in serials]
    if len(set(clean)) != len(clean):
        raise InvalidInput("the same vial was given twice")
    found = {vial.serial: vial for vial in session.execute(
        select(Vial).where(Vial.serial.in_(clean)).order_by(Vial.id).with_for_update()).scalars()}
    for serial in clean:
        if serial not in found:
            raise NotFound(f"no vial {serial}")
    return [found[serial] for serial in clean]


def _vials_for_dose(session: Session, serials: tuple[str, ...], count: int,
                    product: Product, use_by: datetime, at: datetime,
                    site_tz: ZoneInfo, reference: tuple[datetime, str] | None = None) -> list[Vial]:
    if len(serials) != count:
        raise RuleViolation(f"this group's dose is {count} vial(s); {len(serials)} given")
    if len(set(serials)) != len(serials):
        raise InvalidInput("the same vial was given twice")
    chosen: list[Vial] = []
    lot_side: dict[int, list[str]] = {}  # a dose's vials mostly share a lot: read it once
    for vial in _lock_vials(session, serials):  # checked, audited, in the order given
        lot: Lot = vial.lot
        if lot.id not in lot_side:
            lot_side[lot.id] = _lot_records_problems(session, lot, at, site_tz)
        problems = lot_rules.dispensing_problems(lot, vial, at, site_tz, *(reference or ()))
        problems += lot_side[lot.id]
        if lot.product_id != product.id:
            problems.append(f"its product is {lot.product.code} but the participant's group "
                            f"receives {product.code}")
        if not problems and lot_rules.expires_at(lot, site_tz) < use_by:
            problems.append(f"lot {lot.lot_number} expires before the dose's use-by time "
                            f"{use_by:%Y-%m-%d %H:%M} UTC")
        if problems:
            raise RuleViolation(f"vial {vial.serial} cannot be dispensed: " + "; ".join(problems))
        chosen.append(vial)
    return chosen


def dispense_perfusion(session: Session, actor: User, request: DispenseRequest,
                       password: str | None, verifier_password: str | None,
                       site_tz: ZoneInfo) -> Dose:
    """Dispense the participant's next due perfusion from the given vial(s)."""
    require_role(actor, "pharmacist", action="dispensing a dose")
    participant = get_participant(session, request.subject_id, lock=True)
    if participant.status != "enrolled":
        raise RuleViolation(f"participant {participant.subject_id} is {participant.status}: no "
                            "dose can be dispensed")
    protocol = protocol_content(participant.protocol_version)
    group = protocol.group(participant.group_code)
    slot = next_due(session, participant, protocol, request.at)
    surgery_at = slot.cycle.surgery.performed_at
    if request.at < surgery_at:
        raise RuleViolation(f"dispensing time {request.at:%Y-%m-%d %H:%M} UTC is before the "
                            f"cycle's surgery at {surgery_at:%Y-%m-%d %H:%M} UTC")
    if request.at > utcnow() + timedelta(minutes=5):
        raise InvalidInput("a dispensing time cannot be in the future")
    hours = hours_since(surgery_at, request.at)
    early = slot.perfusion.target_hours - slot.perfusion.window_hours
    late = slot.perfusion.target_hours + slot.perfusion.window_hours
    deviation = (request.deviation or "").strip() or None
    inside = in_window(slot.perfusion, surgery_at, request.at)
    if inside and deviation is not None:
        raise InvalidInput(f"perfusion {slot.perfusion.number} is inside its window "
                           f"({early:g}-{late:g} h after surgery): there is no deviation to record")
    if not inside and deviation is None:
        raise RuleViolation(
            f"perfusion {slot.perfusion.number} of cycle {slot.cycle.number} is due "
            f"{early:g}-{late:g} h after surgery; it is {hours:g} h: give --deviation REASON "
            "to dispense outside the window")
    product = get_product(session, group.product)
    use_by = request.at + min(timedelta(hours=product.post_thaw_hours),
                              timedelta(hours=protocol.protocol.max_hours_dispense_to_administer))
    serials = request.serials + tuple(
        scanning.serial_for_dispensing(session, text, request.gs_substitute, site_tz)
        for text in request.scans)
    vials = _vials_for_dose(session, serials, group.vials_per_perfusion, product,
                            use_by, request.at, site_tz,
                            offset_reference(protocol, slot, request.at, site_tz))
    verifier = _verifier(session, actor, request.verifier, verifier_password)
    reauthenticate(session, actor, password, DISPENSED_MEANING)
    dose = Dose(
        participant_id=participant.id,
        cycle_id=slot.cycle.id, perfusion=slot.perfusion.number, attempt=slot.attempt,
        status="dispensed", dispensed_at=request.at, dispensed_by_id=actor.id,
        verified_by_id=verifier.id, hours_since_surgery=hours,
        post_op_day=post_op_day(surgery_at, request.at, site_tz),
        target_hours=slot.perfusion.target_hours, window_hours=slot.perfusion.window_hours,
        deviation=deviation, use_by=use_by)
    dose.vials = [DoseVial(vial_id=v.id) for v in vials]
    session.add(dose)
    audit.record_row(session, actor, dose, "dispense", reason=deviation)
    for vial in vials:
        set_vial_status(session, actor, vial, "dispensed",
                                  reason=f"dose {dose.dose_code}")
    state = dose.audit_state()
    audit.sign(session, actor, DISPENSED_MEANING, "dose", dose.dose_code, state)
    audit.sign(session, verifier, VERIFIED_MEANING, "dose", dose.dose_code, state)
    return dose


def propose_vials(session: Session, actor: User, subject_id: str, at: datetime,
                  site: str | None, site_tz: ZoneInfo) -> dict[str, object]:
    """The vials to dispense for the participant's next due perfusion, first expiry first
    out, with where each is stored. A proposal only: the pharmacist scans the vial, and
    dispensing checks it again."""
    from lotrack.services import stock

    require_role(actor, "pharmacist", action="choosing vials to dispense")
    participant = get_participant(session, subject_id)
    if participant.status != "enrolled":
        raise RuleViolation(f"participant {participant.subject_id} is {participant.status}: no "
                            "dose can be dispensed")
    protocol = protocol_content(participant.protocol_version)
    group = protocol.group(participant.group_code)
    slot = next_due(session, participant, protocol, at)
    reference, reference_text = offset_reference(protocol, slot, at, site_tz)
    available = stock.dispensable_stock(session, at, site_tz, group.product, site, reference,
                                        reference_text)
    if site is None:
        sites = sorted({stock.site_of(v.location) for v in available})
        if len(sites) > 1:
            raise InvalidInput(f"{group.product} can be dispensed at {', '.join(sites)}: give "
                               "--site (or LOTRACK_SITE)")
        site = sites[0] if sites else None
    needed = group.vials_per_perfusion
    if len(available) < needed:
        where = f" at {site}" if site else ""
        raise RuleViolation(f"only {len(available)} dispensable vial(s) of {group.product}"
                            f"{where}; perfusion {slot.perfusion.number} of cycle "
                            f"{slot.cycle.number} of {participant.subject_id} needs {needed}")
    return {"subject": participant.subject_id, "group": group.code, "product": group.product,
            "cycle": slot.cycle.number, "perfusion": slot.perfusion.number, "site": site,
            "vials_needed": needed,
            "proposed": [{"serial": v.serial, "lot": v.lot, "expiry": v.expiry,
                          "location": v.location, "position": v.position}
                         for v in available[:needed]]}


def get_dose(session: Session, dose_code: str, lock: bool = False) -> Dose:
    dose_id = parse_dose_code(dose_code)
    if dose_id is None:
        raise InvalidInput(f"{dose_code!r} is not a dose code (like D000123)")
    stmt = select(Dose).where(Dose.id == dose_id)
    if lock:
        stmt = stmt.with_for_update()
    dose = session.execute(stmt).scalar_one_or_none()
    if dose is None:
        raise NotFound(f"no dose {dose_code!r}")
    return dose


def _dose_vials(session: Session, dose: Dose) -> list[Vial]:
    ids = [dv.vial_id for dv in dose.vials]
    # Locked in id order, as `_lock_vials` locks them for dispensing.
    return list(session.execute(select(Vial).where(Vial.id.in_(ids)).order_by(Vial.id)
                                .with_for_update()).scalars())


def administer(session: Session, actor: User, dose_code: str, at: datetime,
               volume_ml: float | None) -> Dose:
    """Record the perfusion given; refused after the use-by time (record it wasted instead)."""
    require_role(actor, "investigator", action="recording an administration")
    dose = get_dose(session, dose_code, lock=True)
    if dose.status != "dispensed":
        raise RuleViolation(f"dose {dose.dose_code} is {dose.status}, not awaiting administration")
    if at < dose.dispensed_at:
        raise RuleViolation(f"administration at {at:%Y-%m-%d %H:%M} UTC precedes dispensing at "
                            f"{dose.dispensed_at:%Y-%m-%d %H:%M} UTC")
    if at > dose.use_by:
        raise RuleViolation(f"dose {dose.dose_code} passed its use-by time "
                            f"{dose.use_by:%Y-%m-%d %H:%M} UTC: record it wasted "
                            f"(`lotrack dose waste {dose.dose_code} --reason ...`)")
    if at > utcnow() + timedelta(minutes=5):
        raise InvalidInput("an administration time cannot be in the future")
    if volume_ml is not None and not (0 < volume_ml <= 100 and math.isfinite(volume_ml)):
        raise InvalidInput(f"volume {volume_ml} mL is not plausible")
    vials = _dose_vials(session, dose)
    # A lot put on hold or recalled after dispensing must not reach the participant.
    blocked = sorted({f"lot {v.lot.lot_number} is {v.lot.status}" for v in vials
                      if v.lot.status != "released"})
    if blocked:
        raise RuleViolation(f"dose {dose.dose_code} must not be given: {'; '.join(blocked)}; "
                            f"record it returned (`lotrack dose return {dose.dose_code} --reason ...`)")
    before = dose.audit_state()
    dose.status, dose.administered_at = "administered", at
    dose.administered_by_id, dose.volume_ml = actor.id, volume_ml
    audit.record_row(session, actor, dose, "administer", before)
    for vial in vials:
        set_vial_status(session, actor, vial, "administered",
                                  reason=f"dose {dose.dose_code}")
    return dose


def close_unadministered(session: Session, actor: User, dose_code: str, outcome: str,
                         reason: str) -> Dose:
    """A dispensed dose that will not be given is wasted or returned; returned product is
    never re-entered into stock (DARF practice)."""
    if outcome not in ("wasted", "returned"):
        raise InvalidInput(f"unknown outcome {outcome!r}")
    require_role(actor, "pharmacist", "investigator", action=f"recording a dose {outcome}")
    if not reason.strip():
        raise InvalidInput(f"a dose {outcome} needs a reason")
    dose = get_dose(session, dose_code, lock=True)
    if dose.status != "dispensed":
        raise RuleViolation(f"dose {dose.dose_code} is {dose.status}; only a dispensed dose can "
                            f"be {outcome}")
    before = dose.audit_state()
    dose.status, dose.closed_reason = outcome, reason.strip()
    dose.closed_at, dose.closed_by_id = utcnow(), actor.id
    action = "waste" if outcome == "wasted" else "return"
    audit.record_row(session, actor, dose, action, before, reason.strip())
    for vial in _dose_vials(session, dose):
        set_vial_status(session, actor, vial, outcome, reason=f"dose {dose.dose_code}: "
                                  f"{reason.strip()}")
    return dose
