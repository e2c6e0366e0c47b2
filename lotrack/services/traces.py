"""Forward and backward traces: who received a lot, and what a participant received.

Forward (a lot or a vial): every vial, where it is now, who received it, and each
recipient's adverse events after first exposure. Backward (an adverse event or a
participant): every dose received before, with its lots and vials, and whether those
lots were ever on hold, exposed to an excursion, or dispensed with a deviation.

Each trace runs a fixed number of queries (three or four), whatever the size of the
lot, and selects plain columns: a 500-vial lot must trace about as fast as the same
rows fetched by hand-written SQL (bench/trace_floors.py is that floor).
"""

from __future__ import annotations

from collections import defaultdict, namedtuple
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, bindparam, distinct, func, select
from sqlalchemy.engine import Row
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
from lotrack.models.dosing import format_dose_code
from lotrack.models.safety import format_ae_code, parse_ae_code
from lotrack.render.tables import site_time
from lotrack.services.exposure import EXPOSING_STATUSES, received
from lotrack.services.lot_views import READERS
from lotrack.services.lots import get_lot
from lotrack.services.participants import get_participant
from lotrack.services.roles import require_role
from lotrack.services.vials import check_serial, get_vial

AT_SITE = ("in_stock", "quarantined", "unconfirmed")

# A lot's history, counted in its audit trail: the action recorded -> the flag it raises.
FLAG_ACTIONS = {"on_hold": "holds", "recalled": "recalls", "flag_for_review": "excursions"}

# Lot.audit_key in SQL: the entity id its audit events are recorded under.
_LOT_AUDIT_KEY = Product.code + "/" + Lot.lot_number


def _audit_count(action: str):
    return (select(func.count()).select_from(AuditEvent)
            .where(AuditEvent.entity == Lot.__audit_entity__,
                   AuditEvent.entity_id == _LOT_AUDIT_KEY, AuditEvent.action == action)
            .scalar_subquery().label(FLAG_ACTIONS[action]))


_DEVIATIONS = (select(func.count(distinct(Dose.id))).select_from(Vial)
               .join(DoseVial, DoseVial.vial_id == Vial.id).join(Dose, Dose.id == DoseVial.dose_id)
               .where(Vial.lot_id == Lot.id, Dose.deviation.is_not(None))
               .scalar_subquery().label("deviations"))

FLAGS = (*FLAG_ACTIONS.values(), "deviations")

# Labelled columns shared by the forward and backward queries, read by name below.
_DOSE = (Dose.id.label("dose_id"), TreatmentCycle.number.label("cycle"), Dose.perfusion,
         Dose.status.label("dose_status"), Dose.dispensed_at, Dose.administered_at,
         Dose.hours_since_surgery, Dose.deviation, Dose.participant_id)
_VIAL = (Vial.serial, Lot.id.label("lot_id"), Lot.lot_number, Product.code.label("product"))
_AE = (AdverseEvent.id, AdverseEvent.participant_id, AdverseEvent.ctcae_term,
       AdverseEvent.verbatim_term, AdverseEvent.needs_coding, AdverseEvent.grade,
       AdverseEvent.serious, AdverseEvent.relatedness, AdverseEvent.outcome,
       AdverseEvent.onset_on)


# The statements are built once, with bound parameters: building a select costs more than
# running it on an index, and a trace runs several.

# Lots with their history: holds and recalls, excursions, and doses dispensed with a
# deviation (each dose counted once, whatever its status).
_LOTS = (select(Lot.id, Lot.lot_number, Product.code.label("product"), Lot.status, Lot.expiry_on,
                *(_audit_count(action) for action in FLAG_ACTIONS), _DEVIATIONS)
         .join(Product, Product.id == Lot.product_id))
_LOT_BY_NUMBER = _LOTS.where(Lot.lot_number == bindparam("lot_number"))
_LOT_OF_PRODUCT = _LOT_BY_NUMBER.where(Product.code == bindparam("product"))
_LOTS_BY_ID = _LOTS.where(Lot.id.in_(bindparam("lot_ids", expanding=True)))

# Forward: the vials in number order, each with where it is and the dose (if any) that
# used it; then those doses, one row each with its participant. Two queries rather than
# one wide one: the dose's timestamps are parsed once per dose, not once per vial, and a
# 500-vial lot reads about a third faster.
_VIALS = (select(Vial.serial, Vial.status, Vial.on_hold, StorageLocation.path, Vial.position,
                 DoseVial.dose_id)
          .select_from(Vial)
          .outerjoin(StorageLocation, StorageLocation.id == Vial.location_id)
          .outerjoin(DoseVial, DoseVial.vial_id == Vial.id)
          .order_by(Vial.number))
_OF_LOT = Vial.lot_id == bindparam("lot_id")
_BY_SERIAL = Vial.serial == bindparam("serial")
_VIALS_OF_LOT = _VIALS.where(_OF_LOT)
# Only one vial needs its receipt time: parsing 500 timestamps would cost a lot trace dearly.
_VIAL_BY_SERIAL = (_VIALS.add_columns(Vial.received_at, Lot.lot_number, Product.code.label("product"))
                   .join(Lot, Lot.id == Vial.lot_id).join(Product, Product.id == Lot.product_id)
                   .where(_BY_SERIAL))


def _doses_using(*vial_conditions) -> Select:
    """The doses that used the vials, one row each, whatever their status."""
    used = select(DoseVial.dose_id).join(Vial, Vial.id == DoseVial.vial_id).where(*vial_conditions)
    return (select(*_DOSE, Participant.subject_id, Participant.group_code,
                   Participant.status.label("participant_status"))
            .join(TreatmentCycle, TreatmentCycle.id == Dose.cycle_id)
            .join(Participant, Participant.id == Dose.participant_id)
            .where(Dose.id.in_(used)))


_DOSES_OF_LOT = _doses_using(_OF_LOT)
_DOSES_OF_VIAL = _doses_using(_BY_SERIAL)


def _received(exposing_only: bool) -> Select:
    """Every (dose, vial) of a participant, in dispensing order."""
    return (received(*_DOSE, *_VIAL, exposing_only=exposing_only)
            .join(TreatmentCycle, TreatmentCycle.id == Dose.cycle_id)
            .where(Dose.participant_id == bindparam("participant_id"))
            .order_by(Dose.dispensed_at, Vial.serial))


_DOSES_OF = _received(exposing_only=False)
_EXPOSURES_OF = _received(exposing_only=True)
_AES_OF = (select(*_AE).where(AdverseEvent.participant_id.in_(
    bindparam("participant_ids", expanding=True))).order_by(AdverseEvent.onset_on, AdverseEvent.id))
_PARTICIPANT = select(Participant.id, Participant.subject_id, Participant.group_code,
                      Participant.status).where(Participant.subject_id == bindparam("subject"))
_AE_BY_ID = (select(*_AE, Participant.subject_id, Participant.group_code)
             .join(Participant, Participant.id == AdverseEvent.participant_id)
             .where(AdverseEvent.id == bindparam("ae_id")))


# One row of a statement below, as a named tuple of its columns (see _rows).
Record = Any


@cache
def _record(statement: Select) -> type:
    return namedtuple("TraceRow", statement.selected_columns.keys())  # type: ignore[misc]


def _fetch(session: Session, statement: Select, **params) -> Sequence[Row]:
    """The statement's rows, on the session's connection and transaction: the ORM's result
    handling would add a third to the cost of a 500-vial lot. The flush stands for the
    autoflush session.execute would do."""
    session.flush()
    return session.connection().execute(statement, params).all()


def _rows(session: Session, statement: Select, **params) -> list[Record]:
    """The rows as named tuples: reading a Row's field by name costs twenty times a
    tuple's, and a trace does it thousands of times."""
    make = _record(statement)._make
    return [make(row) for row in _fetch(session, statement, **params)]


def _flags(lot: Record) -> dict[str, int]:
    return {name: getattr(lot, name) for name in FLAGS}


def _aes(session: Session, participant_ids: list[int]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = defaultdict(list)
    if participant_ids:
        for ae in _rows(session, _AES_OF, participant_ids=participant_ids):
            out[ae.participant_id].append(ae)
    return out


def _site_day(at: datetime | None, tz: ZoneInfo) -> date | None:
    return at.astimezone(tz).date() if at else None


def _ae_row(ae: Record, since: date | None) -> dict[str, object]:
    """`since`: the site day of first exposure, which the event's onset is counted from."""
    days = (ae.onset_on - since).days if since else None
    return {"ae": format_ae_code(ae.id), "term": ae.ctcae_term or ae.verbatim_term,
            "needs_coding": ae.needs_coding, "grade": ae.grade, "serious": ae.serious,
            "relatedness": ae.relatedness, "outcome": ae.outcome, "onset": iso(ae.onset_on),
            "days_after_first_exposure": days}


def _dose_row(dose: Record, serials: list[str], lots: list[str], product: str,
              tz: ZoneInfo) -> dict[str, object]:
    """A dose with the vials it used (of those traced), in serial order, and their lots."""
    return {"dose": format_dose_code(dose.dose_id), "cycle": dose.cycle,
            "perfusion": dose.perfusion, "status": dose.dose_status,
            "dispensed_at": site_time(dose.dispensed_at, tz),
            "administered_at": site_time(dose.administered_at, tz),
            "hours_since_surgery": dose.hours_since_surgery, "deviation": dose.deviation,
            "vials": serials, "lots": lots, "product": product}


def _by_dose(rows: Iterable[Record], tz: ZoneInfo) -> list[tuple[list[Record], dict[str, object]]]:
    """Backward traces: rows of (dose, vial) pairs in dispensing order, grouped by dose,
    each group with its dose row."""
    groups: dict[int, list[Record]] = {}
    for row in rows:
        groups.setdefault(row.dose_id, []).append(row)
    return [(group, _dose_row(group[0], [row.serial for row in group],
                              sorted({row.lot_number for row in group}), group[0].product, tz))
            for group in groups.values()]


def _vials(rows: Sequence[Row], doses: list[Record]
           ) -> tuple[list[dict[str, object]], dict[int, list[str]]]:
    """Forward traces: the vials as listed, and the serials each dose used."""
    # Each dose's code and recipient once, not once per vial it used.
    of_dose = {dose.dose_id: (format_dose_code(dose.dose_id), dose.subject_id) for dose in doses}
    vials: list[dict[str, object]] = []
    used: dict[int, list[str]] = defaultdict(list)
    for serial, status, on_hold, path, position, dose_id, *_ in rows:
        if dose_id is None:
            code = subject = None
        else:
            code, subject = of_dose.get(dose_id) or (format_dose_code(dose_id), None)
            used[dose_id].append(serial)
        vials.append({"serial": serial, "status": status, "on_hold": on_hold,
                      "where": "" if path is None else f"{path} #{position}" if position else path,
                      "dose": code, "participant": subject})
    return vials, {dose_id: sorted(serials) for dose_id, serials in used.items()}





def _recipients(session: Session, doses: list[Record], used: dict[int, list[str]],
                lot_number: str, product: str, tz: ZoneInfo) -> list[dict[str, object]]:
    """Forward traces: who received the vials (a wasted or returned dose never reached
    her), with her doses and her adverse events from the day of first exposure."""
    by_participant: dict[int, list[Record]] = defaultdict(list)
    for dose in sorted((d for d in doses if d.dose_status in EXPOSING_STATUSES),
                       key=lambda d: (d.dispensed_at, used[d.dose_id][0])):
        by_participant[dose.participant_id].append(dose)
    aes = _aes(session, list(by_participant))
    out = []
    for pid, given in by_participant.items():
        first_day = given[0].dispensed_at.astimezone(tz).date()  # in time order
        person = given[0]
        rows = [_dose_row(dose, used[dose.dose_id], [lot_number], product, tz) for dose in given]
        out.append({
            "subject": person.subject_id, "group": person.group_code,
            "status": person.participant_status, "first_exposure": rows[0]["dispensed_at"],
            "doses": rows,
            "adverse_events_after_exposure": [_ae_row(ae, first_day) for ae in aes.get(pid, ())
                                              if ae.onset_on >= first_day]})
    return sorted(out, key=lambda r: str(r["subject"]))


def trace_lot(session: Session, actor: User, lot_number: str, product_code: str | None,
              tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="tracing a lot")
    found = (_rows(session, _LOT_OF_PRODUCT, lot_number=lot_number.strip(), product=product_code)
             if product_code else _rows(session, _LOT_BY_NUMBER, lot_number=lot_number.strip()))
    if len(found) != 1:
        get_lot(session, lot_number, product_code)  # words the error: no such lot, or ambiguous
    [lot] = found
    doses = _rows(session, _DOSES_OF_LOT, lot_id=lot.id)
    rows, used = _vials(_fetch(session, _VIALS_OF_LOT, lot_id=lot.id), doses)
    return {"lot": lot.lot_number, "product": lot.product, "status": lot.status,
            "expiry": iso(lot.expiry_on), "flags": _flags(lot), "vials": rows,
            "participants": _recipients(session, doses, used, lot.lot_number, lot.product, tz),
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
    clean = check_serial(serial)
    found = _rows(session, _VIAL_BY_SERIAL, serial=clean)
    if not found:
        get_vial(session, serial)  # words the error
    [vial] = found  # a vial is used by one dose at most
    doses = _rows(session, _DOSES_OF_VIAL, serial=clean)
    [row], used = _vials(found, doses)
    return {"serial": vial.serial, "lot": vial.lot_number, "product": vial.product,
            "status": vial.status, "on_hold": vial.on_hold, "where": row["where"],
            "received_at": site_time(vial.received_at, tz),
            "participants": _recipients(session, doses, used, vial.lot_number, vial.product, tz)}


def trace_participant(session: Session, actor: User, subject: str,
                      tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="tracing a participant")
    found = _rows(session, _PARTICIPANT, subject=subject)
    if not found:
        get_participant(session, subject)  # words the error
    [person] = found
    rows = _rows(session, _DOSES_OF, participant_id=person.id)
    lot_ids = list(dict.fromkeys(row.lot_id for row in rows))  # in order of first dose
    by_id = {lot.id: lot for lot in _rows(session, _LOTS_BY_ID, lot_ids=lot_ids)} if lot_ids else {}
    lots = sorted((by_id[i] for i in lot_ids), key=lambda lot: lot.lot_number)
    first = min((row.dispensed_at for row in rows if row.dose_status in EXPOSING_STATUSES),
                default=None)
    return {"subject": person.subject_id, "group": person.group_code, "status": person.status,
            "doses": [row for _, row in _by_dose(rows, tz)],
            "lots": [{"lot": lot.lot_number, "product": lot.product, "status": lot.status,
                      "expiry": iso(lot.expiry_on), **_flags(lot)} for lot in lots],
            "adverse_events": [_ae_row(ae, _site_day(first, tz)) for ae in
                               _aes(session, [person.id])[person.id]]}


def trace_ae(session: Session, actor: User, ae_code: str, tz: ZoneInfo) -> dict[str, object]:
    """Every dose the participant received before the event's onset, with its lots."""
    require_role(actor, *READERS, action="tracing an adverse event")
    ae_id = parse_ae_code(ae_code)
    if ae_id is None:
        raise InvalidInput(f"{ae_code!r} is not an adverse event id (like AE00012)")
    found = _rows(session, _AE_BY_ID, ae_id=ae_id)
    if not found:
        raise NotFound(f"no adverse event {ae_code!r}")
    [ae] = found
    rows = [row for row in _rows(session, _EXPOSURES_OF, participant_id=ae.participant_id)
            if row.dispensed_at.astimezone(tz).date() <= ae.onset_on]
    lot_ids = list({row.lot_id for row in rows})
    flags = ({lot.id: _flags(lot) for lot in _rows(session, _LOTS_BY_ID, lot_ids=lot_ids)}
             if lot_ids else {})
    doses = []
    for group, row in _by_dose(rows, tz):
        given = group[0].administered_at or group[0].dispensed_at
        row["days_to_onset"] = (ae.onset_on - given.astimezone(tz).date()).days
        row["lot_flags"] = {vial.lot_number: flags[vial.lot_id] for vial in group}
        doses.append(row)
    first = min((row.dispensed_at for row in rows), default=None)
    return {"ae": _ae_row(ae, _site_day(first, tz)),
            "subject": ae.subject_id, "group": ae.group_code, "doses_before_onset": doses,
            "lots": sorted({row.lot_id: row.lot_number for row in rows}.values())}
