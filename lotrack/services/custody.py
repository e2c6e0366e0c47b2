"""Chain of custody: every step of a vial, derived from the audit trail and the records.

Steps come from the audit events of the vial, of its lot, of its labels and of the dose
that used it, in the order they were recorded. Each step says what happened, when (the
time of the act where the record keeps one, else the time it was recorded), who did it,
where the vial was, and which signatures were given. Gaps are flagged: a vial dispensed
with no receipt at site, or a step whose time precedes the step before it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from lotrack.errors import InvalidInput
from lotrack.models import (
    AuditEvent,
    Dose,
    DoseVial,
    LabelPrint,
    Lot,
    Participant,
    Signature,
    StorageLocation,
    User,
    Vial,
)
from lotrack.models.base import iso, utcnow
from lotrack.render.tables import site_time
from lotrack.services import lots as lot_service
from lotrack.services.lot_views import READERS
from lotrack.services.participants import get_participant
from lotrack.services.roles import require_role
from lotrack.services.vials import get_vial

VIAL_STEPS = {
    "create": "manufactured (filled with the lot)",
    "receive": "received at site",
    "move": "moved",
    "hold": "temperature excursion: placed on hold",
    "hold_cleared": "hold released after QA review",
    "quarantined": "quarantined",
    "in_stock": "returned to stock",
    "dispensed": "dispensed",
    "administered": "administered",
    "wasted": "wasted",
    "returned": "returned to pharmacy",
    "destroyed": "destroyed",
    "ship": "dispatched in a shipment (in transit)",
    "confirm": "receipt confirmed by scan",
    "quarantine_released": "shipment quarantine released by QA",
    "lost": "lost in transit",
}
LOT_STEPS = {
    "register": "lot registered (quarantine)",
    "released": "lot QC released",
    "rejected": "lot rejected",
    "on_hold": "lot placed on hold",
    "recalled": "lot recalled",
    "destroyed": "lot destroyed",
    "flag_for_review": "lot flagged for QA review",
    "reviewed": "lot QA review closed",
}
SIGNATURE_WINDOW = timedelta(seconds=5)  # a signature belongs to the act it was given with


@dataclass
class Step:
    seq: int
    at: datetime  # when it happened (the act's own time where the record has one)
    recorded_at: datetime
    step: str
    serial: str | None
    who: str
    where: str
    detail: str
    signatures: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def as_dict(self, tz: ZoneInfo) -> dict[str, object]:
        return {"seq": self.seq, "at": iso(self.at), "site_time": site_time(self.at, tz),
                "recorded_at": iso(self.recorded_at), "step": self.step, "vial": self.serial,
                "who": self.who, "where": self.where, "detail": self.detail,
                "signatures": self.signatures, "flags": self.flags}


class _Context:
    """Lookups shared by every step of one report, loaded once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.paths = dict(session.execute(select(StorageLocation.id, StorageLocation.path)).all())
        self.names = {u.username: u.full_name for u in session.execute(select(User)).scalars()}

    def where(self, state: dict[str, object]) -> str:
        location = state.get("location_id")
        if location is None:
            return ""
        position = state.get("position")
        path = self.paths.get(int(location), f"location #{location}")  # type: ignore[arg-type]
        return f"{path} #{position}" if position else path

    def who(self, username: str) -> str:
        name = self.names.get(username)
        return f"{name} ({username})" if name else username


def _events(session: Session, conditions: Iterable, as_of: int | None = None) -> list[AuditEvent]:
    clauses = list(conditions)
    if not clauses:
        return []
    stmt = select(AuditEvent).where(or_(*clauses)).order_by(AuditEvent.seq)
    if as_of is not None:
        stmt = stmt.where(AuditEvent.seq <= as_of)
    return list(session.execute(stmt).scalars())


def _signatures(session: Session, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], list[Signature]]:
    out: dict[tuple[str, str], list[Signature]] = defaultdict(list)
    if not pairs:
        return out
    entities = {e for e, _ in pairs}
    ids = {i for _, i in pairs}
    for sig in session.execute(select(Signature).where(
            Signature.entity.in_(entities), Signature.entity_id.in_(ids))
            .order_by(Signature.signed_at, Signature.id)).scalars():
        out[(sig.entity, sig.entity_id)].append(sig)
    return out


def _signed(sigs: list[Signature], at: datetime) -> list[str]:
    return [f"{s.meaning}: {s.printed_name}, {iso(s.signed_at)}" for s in sigs
            if abs(s.signed_at - at) <= SIGNATURE_WINDOW]


def vial_steps(session: Session, vials: list[Vial], as_of: int | None = None) -> list[Step]:
    """Every custody step of these vials (and of their lots), in recorded order, flagged;
    with `as_of`, only the steps recorded up to that audit event."""
    ctx = _Context(session)
    serials = {v.serial: v for v in vials}
    lots = {v.lot_id: v.lot for v in vials}
    doses = _doses_of(session, [v.id for v in vials])
    lot_keys = {lot.audit_key: lot for lot in lots.values()}
    label_keys = [p.audit_key for p in session.execute(select(LabelPrint).where(
        LabelPrint.kind == "vial", LabelPrint.subject.in_(list(serials)))).scalars()] if serials else []
    events = _events(session, _conditions(serials, lot_keys, label_keys), as_of)
    signatures = _signatures(session, {("lot", key) for key in lot_keys}
                             | {("dose", code) for code in doses})
    steps: list[Step] = []
    for event in events:
        steps += _steps_of(ctx, event, serials, lot_keys, doses, signatures)
    _flag(steps, serials)
    return steps


def _conditions(serials: dict[str, Vial], lot_keys: dict[str, Lot], label_keys: list[str]) -> list:
    conditions = []
    if serials:
        conditions.append((AuditEvent.entity == "vial") & AuditEvent.entity_id.in_(list(serials)))
    if label_keys:
        conditions.append((AuditEvent.entity == "label_print") & AuditEvent.entity_id.in_(label_keys))
    if lot_keys:
        conditions.append((AuditEvent.entity == "lot") & AuditEvent.entity_id.in_(list(lot_keys)))
    return conditions


def _doses_of(session: Session, vial_ids: list[int]) -> dict[str, tuple[Dose, list[str]]]:
    """Dose code -> (dose, serials of its vials among those asked for)."""
    out: dict[str, tuple[Dose, list[str]]] = {}
    if not vial_ids:
        return out
    rows = session.execute(select(Dose, Vial.serial).join(DoseVial, DoseVial.dose_id == Dose.id)
                           .join(Vial, Vial.id == DoseVial.vial_id)
                           .where(DoseVial.vial_id.in_(vial_ids))).all()
    for dose, serial in rows:
        out.setdefault(dose.dose_code, (dose, []))[1].append(serial)
    return out


def _steps_of(ctx: _Context, event: AuditEvent, serials: dict[str, Vial],
              lot_keys: dict[str, Lot], doses: dict[str, tuple[Dose, list[str]]],
              signatures: dict[tuple[str, str], list[Signature]]) -> list[Step]:
    after = json.loads(event.after) if event.after else {}
    before = json.loads(event.before) if event.before else {}
    who = ctx.who(event.username)
    if event.entity == "vial":
        return _vial_step(ctx, event, after, before, who, doses, signatures)
    if event.entity == "label_print":
        number = after.get("print_number", 1)
        what = "label printed" if number == 1 else f"label reprinted (print {number})"
        return [Step(event.seq, event.occurred_at, event.occurred_at, what, after.get("subject"),
                     who, "", f"{after.get('template')} {after.get('output_format')}: "
                     f"{after.get('content')}" + (f"; reason: {event.reason}" if event.reason else ""))]
    if event.entity == "lot":
        lot = lot_keys[event.entity_id]
        label = LOT_STEPS.get(event.action, f"lot {event.action}")
        if event.action == "released" and before.get("status") == "on_hold":
            label = "lot released again after hold"
        sigs = _signed(signatures.get(("lot", event.entity_id), []), event.occurred_at)
        return [Step(event.seq, event.occurred_at, event.occurred_at, label, None, who,
                     f"lot {lot.lot_number}", event.reason or "", sigs)]
    return []


def _vial_step(ctx: _Context, event: AuditEvent, after: dict, before: dict, who: str,
               doses: dict[str, tuple[Dose, list[str]]],
               signatures: dict[tuple[str, str], list[Signature]]) -> list[Step]:
    label = VIAL_STEPS.get(event.action, event.action)
    at = event.occurred_at
    where = ctx.where(after) or ctx.where(before)
    detail = event.reason or ""
    sigs: list[str] = []
    if event.action == "receive" and after.get("received_at"):
        at = datetime.fromisoformat(str(after["received_at"]))
    elif event.action == "move":
        where = f"{ctx.where(before)} -> {ctx.where(after)}"
        label = "stored at a position" if not before.get("location_id") else label
    elif event.action in ("dispensed", "administered", "wasted", "returned") and detail:
        code = detail.removeprefix("dose ").split()[0]
        dose = doses.get(code, (None, []))[0]
        participant = dose.participant_id if dose else None
        if dose is not None:
            at = {"dispensed": dose.dispensed_at, "administered": dose.administered_at,
                  "wasted": dose.closed_at, "returned": dose.closed_at}[event.action] or at
            subject = ctx.session.get(Participant, participant)
            detail = f"dose {dose.dose_code} for participant {subject.subject_id if subject else '?'}"
            if event.action == "dispensed":
                window = "in window" if dose.in_window else f"outside window: {dose.deviation}"
                detail += (f", perfusion {dose.perfusion}, {dose.hours_since_surgery:g} h after "
                           f"surgery, {window}")
                sigs = _signed(signatures.get(("dose", code), []), event.occurred_at)
            if event.action in ("wasted", "returned") and dose.closed_reason:
                detail += f": {dose.closed_reason}"
    return [Step(event.seq, at, event.occurred_at, label, event.entity_id, who, where, detail, sigs)]


def _flag(steps: list[Step], serials: dict[str, Vial]) -> None:
    received: set[str] = set()
    last_at: dict[str, datetime] = {}
    for step in steps:
        if step.serial is None or step.serial not in serials:
            continue
        if step.step == "received at site":
            received.add(step.serial)
        if step.step == "dispensed" and step.serial not in received:
            step.flags.append("dispensed with no receipt at site recorded")
        previous = last_at.get(step.serial)
        if previous is not None and step.at < previous:
            step.flags.append(f"out of time order: before the previous step at {iso(previous)}")
        last_at[step.serial] = max(step.at, previous) if previous else step.at


# --- the three custody reports ------------------------------------------------


def _last_state(session: Session, entity: str, key: str, as_of: int | None) -> dict[str, object]:
    """A record's state as its last audit event up to `as_of` recorded it."""
    stmt = select(AuditEvent.after).where(AuditEvent.entity == entity, AuditEvent.entity_id == key,
                                          AuditEvent.after.is_not(None))
    if as_of is not None:
        stmt = stmt.where(AuditEvent.seq <= as_of)
    after = session.execute(stmt.order_by(AuditEvent.seq.desc()).limit(1)).scalar()
    return json.loads(after) if after else {}


def _header_lot(session: Session, lot: Lot, tz: ZoneInfo, as_of: int | None,
                at: datetime) -> dict[str, object]:
    status = str(_last_state(session, "lot", lot.audit_key, as_of).get("status", lot.status))
    if status in ("released", "quarantine", "on_hold") and at > lot_service.expires_at(lot, tz):
        status = "expired"
    return {"product": f"{lot.product.name} ({lot.product.code})", "gtin": lot.product.gtin,
            "lot": lot.lot_number, "expiry": iso(lot.expiry_on), "status": status}


def custody(session: Session, actor: User, *, serial: str | None = None,
            lot_number: str | None = None, subject: str | None = None,
            tz: ZoneInfo, as_of: int | None = None, at: datetime | None = None) -> dict[str, object]:
    """The custody record of one vial, one lot or one participant, as plain data.

    With `as_of` (an audit sequence number) and `at` (a time), the record as it stood
    then: what `report verify` recomputes, so that a step recorded since a report was
    printed does not make it wrong, while a change to anything it showed does."""
    at = at or utcnow()
    require_role(actor, *READERS, action="reading a custody record")
    if [serial, lot_number, subject].count(None) != 2:
        raise InvalidInput("give exactly one of --vial, --lot or --participant")
    if serial is not None:
        vial = get_vial(session, serial)
        state = _last_state(session, "vial", vial.serial, as_of) if as_of else vial.audit_state()
        header = {"subject_kind": "vial", "subject": vial.serial,
                  **_header_lot(session, vial.lot, tz, as_of, at),
                  "vial_status": state.get("status", vial.status),
                  "location": _Context(session).where(state) or "not in storage"}
        vials = [vial]
    elif lot_number is not None:
        lot = lot_service.get_lot(session, lot_number)
        header = {"subject_kind": "lot", "subject": lot.lot_number,
                  **_header_lot(session, lot, tz, as_of, at)}
        vials = list(session.execute(select(Vial).where(Vial.lot_id == lot.id)
                                     .order_by(Vial.number)).scalars())
    else:
        participant = get_participant(session, subject or "")
        vials = list(session.execute(
            select(Vial).join(DoseVial, DoseVial.vial_id == Vial.id)
            .join(Dose, Dose.id == DoseVial.dose_id)
            .where(Dose.participant_id == participant.id).order_by(Vial.serial)).scalars())
        if as_of is not None:
            vials = _dispensed_by(session, vials, as_of)
        lots = sorted({v.lot.lot_number for v in vials})
        header = {"subject_kind": "participant", "subject": participant.subject_id,
                  "group": participant.group_code, "status": participant.status,
                  "lots": ", ".join(lots) or "none", "vials": len(vials)}
    steps = vial_steps(session, vials, as_of)
    rows = [s.as_dict(tz) for s in steps]
    return {
        "document": "chain of custody",
        "header": header,
        "steps": rows,
        "gaps": [{"seq": r["seq"], "vial": r["vial"], "flag": f} for r in rows for f in r["flags"]],
        "signatures": [{"seq": r["seq"], "signature": s} for r in rows for s in r["signatures"]],
    }


def _dispensed_by(session: Session, vials: list[Vial], as_of: int) -> list[Vial]:
    """The vials whose dispensing was recorded up to audit event `as_of`."""
    if not vials:
        return vials
    done = set(session.execute(select(AuditEvent.entity_id).where(
        AuditEvent.entity == "vial", AuditEvent.action == "dispensed",
        AuditEvent.entity_id.in_([v.serial for v in vials]), AuditEvent.seq <= as_of)).scalars())
    return [v for v in vials if v.serial in done]
