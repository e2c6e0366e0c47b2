"""Forward and backward traces: who received a lot, and what a participant received.

Forward (a lot or a vial): every vial, where it is now, who received it, and each
recipient's adverse events after first exposure. Backward (an adverse event or a
participant): every dose received before, with its lots and vials, and whether those
lots were ever on hold, exposed to an excursion, or dispensed with a deviation.
Each trace runs a fixed number of queries, whatever the size of the lot.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack.errors import InvalidInput, NotFound
from lotrack.models import (
    AdverseEvent,
    AuditEvent,
    Dose,
    DoseVial,
    Lot,
    Participant,
    Product,
    StorageLocation,
    TreatmentCycle,
    User,
    Vial,
)
from lotrack.models.base import iso
from lotrack.models.safety import parse_ae_code
from lotrack.render.tables import site_time
from lotrack.services.exposure import EXPOSING_STATUSES
from lotrack.services.lot_views import READERS
from lotrack.services.lots import get_lot
from lotrack.services.participants import get_participant
from lotrack.services.roles import require_role
from lotrack.services.vials import get_vial

AT_SITE = ("in_stock", "quarantined", "unconfirmed")


@dataclass(frozen=True)
class Exposure:
    """One vial given (or dispensed) to a participant in one dose."""

    dose: Dose
    vial: Vial
    lot: Lot
    product: Product
    participant: Participant
    cycle: int


def _exposures(session: Session, *conditions) -> list[Exposure]:
    rows = session.execute(
        select(Dose, Vial, Lot, Product, Participant, TreatmentCycle.number)
        .join(DoseVial, DoseVial.dose_id == Dose.id).join(Vial, Vial.id == DoseVial.vial_id)
        .join(Lot, Lot.id == Vial.lot_id).join(Product, Product.id == Lot.product_id)
        .join(Participant, Participant.id == Dose.participant_id)
        .join(TreatmentCycle, TreatmentCycle.id == Dose.cycle_id)
        .where(*conditions).order_by(Dose.dispensed_at, Vial.serial)).all()
    return [Exposure(*row) for row in rows]


def _aes(session: Session, participant_ids: set[int]) -> dict[int, list[AdverseEvent]]:
    out: dict[int, list[AdverseEvent]] = defaultdict(list)
    if participant_ids:
        for ae in session.execute(select(AdverseEvent).where(
                AdverseEvent.participant_id.in_(participant_ids))
                .order_by(AdverseEvent.onset_on, AdverseEvent.id)).scalars():
            out[ae.participant_id].append(ae)
    return out


def _ae_row(ae: AdverseEvent, since: datetime | None, tz: ZoneInfo) -> dict[str, object]:
    days = (ae.onset_on - since.astimezone(tz).date()).days if since else None
    return {"ae": ae.ae_code, "term": ae.ctcae_term or ae.verbatim_term,
            "needs_coding": ae.needs_coding, "grade": ae.grade, "serious": ae.serious,
            "relatedness": ae.relatedness, "outcome": ae.outcome, "onset": iso(ae.onset_on),
            "days_after_first_exposure": days}


def lot_flags(session: Session, lots: list[Lot]) -> dict[int, dict[str, int]]:
    """Per lot: holds and recalls, excursions, and doses dispensed with a deviation."""
    flags = {lot.id: {"holds": 0, "recalls": 0, "excursions": 0, "deviations": 0} for lot in lots}
    if not lots:
        return flags
    by_key = {lot.audit_key: lot.id for lot in lots}
    for key, action in session.execute(select(AuditEvent.entity_id, AuditEvent.action).where(
            AuditEvent.entity == "lot", AuditEvent.entity_id.in_(list(by_key)),
            AuditEvent.action.in_(("on_hold", "recalled", "flag_for_review")))).all():
        name = {"on_hold": "holds", "recalled": "recalls", "flag_for_review": "excursions"}[action]
        flags[by_key[key]][name] += 1
    for lot_id, _ in session.execute(
            select(Vial.lot_id, Dose.id).join(DoseVial, DoseVial.vial_id == Vial.id)
            .join(Dose, Dose.id == DoseVial.dose_id)
            .where(Vial.lot_id.in_(list(flags)), Dose.deviation.is_not(None))
            .distinct()).all():
        flags[lot_id]["deviations"] += 1
    return flags


def _dose_row(exposures: list[Exposure], tz: ZoneInfo) -> dict[str, object]:
    first = exposures[0]
    dose = first.dose
    return {"dose": dose.dose_code, "cycle": first.cycle, "perfusion": dose.perfusion,
            "status": dose.status, "dispensed_at": site_time(dose.dispensed_at, tz),
            "administered_at": site_time(dose.administered_at, tz),
            "hours_since_surgery": dose.hours_since_surgery, "deviation": dose.deviation,
            "vials": [e.vial.serial for e in exposures],
            "lots": sorted({e.lot.lot_number for e in exposures}),
            "product": first.product.code}


def _by_dose(exposures: list[Exposure]) -> list[list[Exposure]]:
    groups: dict[int, list[Exposure]] = {}
    for exposure in exposures:
        groups.setdefault(exposure.dose.id, []).append(exposure)
    return list(groups.values())


def _recipients(session: Session, exposures: list[Exposure], tz: ZoneInfo) -> list[dict[str, object]]:
    """Participants who received the vials: a wasted or returned dose never reached her."""
    by_participant: dict[int, list[Exposure]] = defaultdict(list)
    for exposure in exposures:
        if exposure.dose.status in EXPOSING_STATUSES:
            by_participant[exposure.participant.id].append(exposure)
    aes = _aes(session, set(by_participant))
    out = []
    for pid, items in by_participant.items():
        first = min(e.dose.dispensed_at for e in items)
        first_day = first.astimezone(tz).date()
        participant = items[0].participant
        out.append({
            "subject": participant.subject_id, "group": participant.group_code,
            "status": participant.status, "first_exposure": site_time(first, tz),
            "doses": [_dose_row(group, tz) for group in _by_dose(items)],
            "adverse_events_after_exposure": [_ae_row(ae, first, tz) for ae in aes[pid]
                                              if ae.onset_on >= first_day]})
    return sorted(out, key=lambda r: str(r["subject"]))


def _where(vial: Vial, paths: dict[int, str]) -> str:
    if vial.location_id is None:
        return ""
    path = paths.get(vial.location_id, "?")
    return f"{path} #{vial.position}" if vial.position else path


def trace_lot(session: Session, actor: User, lot_number: str, product_code: str | None,
              tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="tracing a lot")
    lot = get_lot(session, lot_number, product_code)
    vials = list(session.execute(select(Vial).where(Vial.lot_id == lot.id)
                                 .order_by(Vial.number)).scalars())
    exposures = _exposures(session, Vial.lot_id == lot.id)
    dose_of = {e.vial.id: e for e in exposures}
    paths = dict(session.execute(select(StorageLocation.id, StorageLocation.path)).all())
    rows = [{"serial": v.serial, "status": v.status, "on_hold": v.on_hold,
             "where": _where(v, paths),
             "dose": dose_of[v.id].dose.dose_code if v.id in dose_of else None,
             "participant": dose_of[v.id].participant.subject_id if v.id in dose_of else None}
            for v in vials]
    return {"lot": lot.lot_number, "product": lot.product.code, "status": lot.status,
            "expiry": iso(lot.expiry_on), "flags": lot_flags(session, [lot])[lot.id],
            "vials": rows, "participants": _recipients(session, exposures, tz),
            "unused_at_site": [r["serial"] for r in rows
                               if r["status"] in AT_SITE and r["where"]],
            "counts": _counts(rows)}


def _counts(rows: list[dict[str, object]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[str(row["status"])] += 1
    return dict(sorted(counts.items()))


def trace_vial(session: Session, actor: User, serial: str, tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="tracing a vial")
    vial = get_vial(session, serial)
    exposures = _exposures(session, Vial.id == vial.id)
    paths = dict(session.execute(select(StorageLocation.id, StorageLocation.path)).all())
    return {"serial": vial.serial, "lot": vial.lot.lot_number, "product": vial.lot.product.code,
            "status": vial.status, "on_hold": vial.on_hold, "where": _where(vial, paths),
            "received_at": site_time(vial.received_at, tz),
            "participants": _recipients(session, exposures, tz)}


def trace_participant(session: Session, actor: User, subject: str,
                      tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="tracing a participant")
    participant = get_participant(session, subject)
    exposures = _exposures(session, Dose.participant_id == participant.id)
    lots = sorted({e.lot.id: e.lot for e in exposures}.values(), key=lambda lot: lot.lot_number)
    flags = lot_flags(session, lots)
    first = min((e.dose.dispensed_at for e in exposures if e.dose.status in EXPOSING_STATUSES),
                default=None)
    return {"subject": participant.subject_id, "group": participant.group_code,
            "status": participant.status,
            "doses": [_dose_row(group, tz) for group in _by_dose(exposures)],
            "lots": [{"lot": lot.lot_number, "product": lot.product.code, "status": lot.status,
                      "expiry": iso(lot.expiry_on), **flags[lot.id]} for lot in lots],
            "adverse_events": [_ae_row(ae, first, tz)
                               for ae in _aes(session, {participant.id})[participant.id]]}


def trace_ae(session: Session, actor: User, ae_code: str, tz: ZoneInfo) -> dict[str, object]:
    """Every dose the participant received before the event's onset, with its lots."""
    require_role(actor, *READERS, action="tracing an adverse event")
    ae_id = parse_ae_code(ae_code)
    if ae_id is None:
        raise InvalidInput(f"{ae_code!r} is not an adverse event id (like AE00012)")
    ae = session.get(AdverseEvent, ae_id)
    if ae is None:
        raise NotFound(f"no adverse event {ae_code!r}")
    participant = session.get(Participant, ae.participant_id)
    assert participant is not None
    exposures = [e for e in _exposures(session, Dose.participant_id == participant.id)
                 if e.dose.status in EXPOSING_STATUSES
                 and e.dose.dispensed_at.astimezone(tz).date() <= ae.onset_on]
    lots = {e.lot.id: e.lot for e in exposures}
    flags = lot_flags(session, list(lots.values()))
    doses = []
    for group in _by_dose(exposures):
        row = _dose_row(group, tz)
        given = group[0].dose.administered_at or group[0].dose.dispensed_at
        row["days_to_onset"] = (ae.onset_on - given.astimezone(tz).date()).days
        row["lot_flags"] = {e.lot.lot_number: flags[e.lot.id] for e in group}
        doses.append(row)
    return {"ae": _ae_row(ae, min((e.dose.dispensed_at for e in exposures), default=None), tz),
            "subject": participant.subject_id, "group": participant.group_code,
            "doses_before_onset": doses,
            "lots": sorted(lot.lot_number for lot in lots.values())}
