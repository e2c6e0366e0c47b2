"""Shipments from a depot to a trial site, as trial supply systems run them.

prepared -> in_transit (dispatch, signed: "issued by") -> received (receipt, signed:
"received by"), or quarantined when no temperature monitor travelled or its reading is
outside the product's storage condition -> received after QA releases it (signed);
in_transit -> lost (signed, reasoned); prepared -> cancelled.

The vials travel with the shipment: at dispatch they leave their storage position
(status in_transit: at no position, not dispensable); at receipt they are stored at the
site as `unconfirmed`, and only a scan of each vial's label makes it `in_stock`
(edc-pharmacy's scan-to-confirm). Vials of a quarantined shipment are `quarantined`
until QA releases it; scans during quarantine are still recorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import InvalidInput, LotrackError, NotFound, RuleViolation
from lotrack.models import Lot, Product, StorageLocation, User, Vial
from lotrack.models.base import iso, utcnow
from lotrack.models.shipments import (
    SHIPMENT_STATUSES,
    Shipment,
    ShipmentVial,
    format_shipment_code,
    parse_shipment_code,
)
from lotrack.services import lots, scanning, storage
from lotrack.services.auth import reauthenticate
from lotrack.services.lot_views import READERS, signatures_of
from lotrack.services.roles import require_role
from lotrack.services.vials import get_vial

SHIPPING_ROLES = ("pharmacist", "qa")
OPEN_STATUSES = ("prepared", "in_transit")  # a vial in one of these cannot join another
ISSUED = "shipment issued"
RECEIVED = "shipment received"
CONFIRMED = "receipt confirmed by scan"
RELEASED = "QA release of quarantined shipment"
LOST = "shipment reported lost"
ANSWERS = ("confirmed", "already confirmed", "not in this shipment", "unknown", "mismatch")


@dataclass(frozen=True)
class LotPick:
    """`--lot LOT [--count N]`: N vials of the lot (all that can be shipped without N)."""

    lot_number: str
    count: int | None = None
    product_code: str | None = None


@dataclass(frozen=True)
class ScanAnswer:
    scan: str
    answer: str  # one of ANSWERS
    serial: str | None
    detail: str


@dataclass
class ConfirmReport:
    shipment: str
    status: str
    answers: list[ScanAnswer] = field(default_factory=list)
    total: int = 0
    confirmed: int = 0  # confirmed by this command
    remaining: int = 0

    @property
    def refused(self) -> list[ScanAnswer]:
        return [a for a in self.answers if a.answer in ("not in this shipment", "unknown",
                                                        "mismatch")]


def get_shipment(session: Session, code: str, lock: bool = False) -> Shipment:
    shipment_id = parse_shipment_code(code)
    if shipment_id is None:
        raise InvalidInput(f"{code!r} is not a shipment code (like SH000012)")
    stmt = select(Shipment).where(Shipment.id == shipment_id)
    if lock:
        stmt = stmt.with_for_update()
    shipment = session.execute(stmt).scalar_one_or_none()
    if shipment is None:
        raise NotFound(f"no shipment {format_shipment_code(shipment_id)}")
    return shipment


def _path(session: Session, location_id: int | None) -> str | None:
    if location_id is None:
        return None
    return session.execute(select(StorageLocation.path).where(
        StorageLocation.id == location_id)).scalar_one()


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(f"{root}/")


def _locations_under(root: StorageLocation):
    return select(StorageLocation.id).where(or_(StorageLocation.path == root.path,
                                                StorageLocation.path.like(f"{root.path}/%")))


def _open_shipments(session: Session, vial_ids: Sequence[int]) -> dict[int, Shipment]:
    if not vial_ids:
        return {}
    rows = session.execute(select(ShipmentVial.vial_id, Shipment)
                           .join(Shipment, Shipment.id == ShipmentVial.shipment_id)
                           .where(ShipmentVial.vial_id.in_(list(vial_ids)),
                                  Shipment.status.in_(OPEN_STATUSES))).all()
    return {vial_id: shipment for vial_id, shipment in rows}


# --- preparing and dispatching -------------------------------------------------------------

def create_shipment(session: Session, actor: User, origin_path: str, site_path: str,
                    picks: Sequence[LotPick], serials: Sequence[str],
                    site_tz: ZoneInfo, at: datetime | None = None) -> Shipment:
    """Prepare a shipment of vials stored at `origin_path` to the site `site_path` (at `at`,
    default now)."""
    require_role(actor, *SHIPPING_ROLES, action="preparing a shipment")
    if not picks and not serials:
        raise InvalidInput("give the vials to ship: --lot LOT [--count N] or --serial S")
    origin = storage.get_location(session, origin_path)
    site = storage.get_location(session, site_path)
    if site.parent_id is not None:
        raise InvalidInput(f"a shipment goes to a site (a top-level storage location such as "
                           f"{site.path.split('/')[0]}), not to {site.path}")
    if _under(origin.path, site.path):
        raise RuleViolation(f"{origin.path} is already at {site.path}")
    now = at or utcnow()
    _check_time(now, None, "preparation")
    chosen: list[Vial] = []
    for pick in picks:
        chosen += _vials_of_lot(session, origin, pick, now, site_tz)
    for text in serials:
        chosen.append(_vial_by_serial(session, origin, text, now, site_tz))
    seen: set[str] = set()
    for vial in chosen:
        if vial.serial in seen:
            raise InvalidInput(f"vial {vial.serial} is given twice")
        seen.add(vial.serial)
    shipment = Shipment(status="prepared", origin_id=origin.id, destination_id=site.id,
                        created_at=now, created_by_id=actor.id)
    shipment.vials = [ShipmentVial(vial_id=v.id) for v in sorted(chosen, key=lambda v: v.id)]
    session.add(shipment)
    audit.record_row(session, actor, shipment, "create",
                     reason=f"{len(chosen)} vial(s) from {origin.path} to {site.path}")
    return shipment


def _vials_of_lot(session: Session, origin: StorageLocation, pick: LotPick, at: datetime,
                  site_tz: ZoneInfo) -> list[Vial]:
    lot = lots.get_lot(session, pick.lot_number, pick.product_code)
    if pick.count is not None and pick.count < 1:
        raise InvalidInput(f"--count for lot {lot.lot_number} must be 1 or more")
    problems = lots.lot_shipping_problems(lot, at, site_tz)
    if problems:
        raise RuleViolation(f"lot {lot.lot_number} cannot be shipped: " + "; ".join(problems))
    stored = list(session.execute(
        select(Vial).where(Vial.lot_id == lot.id, Vial.location_id.in_(_locations_under(origin)),
                           Vial.status == lots.USABLE_VIAL, Vial.on_hold.is_(False))
        .order_by(Vial.number).with_for_update()).scalars())
    busy = _open_shipments(session, [v.id for v in stored])
    free = [v for v in stored if v.id not in busy]
    wanted = len(free) if pick.count is None else pick.count
    if not free or len(free) < wanted:
        raise RuleViolation(
            f"only {len(free)} vial(s) of lot {lot.lot_number} can be shipped from {origin.path} "
            f"(in stock there, not on hold, in no other shipment)"
            + (f"; {pick.count} asked" if pick.count is not None else ""))
    return free[:wanted]


def _vial_by_serial(session: Session, origin: StorageLocation, text: str, at: datetime,
                    site_tz: ZoneInfo) -> Vial:
    vial = get_vial(session, text, lock=True)
    problems = lots.shipping_problems(vial.lot, vial, at, site_tz)
    path = _path(session, vial.location_id)
    if vial.status == lots.USABLE_VIAL and (path is None or not _under(path, origin.path)):
        problems.append(f"it is not stored at {origin.path}"
                        + (f" but at {path}" if path else " (it is in no storage location)"))
    other = _open_shipments(session, [vial.id]).get(vial.id)
    if other is not None:
        problems.append(f"it is already in shipment {other.code} ({other.status.replace('_', ' ')})")
    if problems:
        raise RuleViolation(f"vial {vial.serial} cannot be shipped: " + "; ".join(problems))
    return vial


def _members(session: Session, shipment: Shipment) -> list[tuple[ShipmentVial, Vial]]:
    by_id = {sv.vial_id: sv for sv in shipment.vials}
    vials = session.execute(select(Vial).where(Vial.id.in_(list(by_id)))
                            .order_by(Vial.lot_id, Vial.number).with_for_update()).scalars()
    return [(by_id[v.id], v) for v in vials]


def _not_now(shipment: Shipment, wanted: str, action: str) -> RuleViolation:
    if shipment.status == "lost":
        return RuleViolation(f"shipment {shipment.code} was reported lost "
                             f"({shipment.closed_reason}): it cannot be {action}")
    if shipment.status == "cancelled":
        return RuleViolation(f"shipment {shipment.code} was cancelled: it cannot be {action}")
    return RuleViolation(f"shipment {shipment.code} is {shipment.status.replace('_', ' ')}; "
                         f"only a {wanted} shipment can be {action}")


def _check_time(at: datetime, after: datetime | None, what: str) -> None:
    if at > utcnow() + timedelta(minutes=5):
        raise InvalidInput(f"a {what} time cannot be in the future")
    if after is not None and at < after:
        raise RuleViolation(f"the {what} time {at:%Y-%m-%d %H:%M} UTC is before the shipment's "
                            f"previous step at {after:%Y-%m-%d %H:%M} UTC")


def dispatch_shipment(session: Session, actor: User, code: str, courier: str | None,
                      tracking_number: str | None, monitor_id: str | None, at: datetime,
                      password: str | None, site_tz: ZoneInfo) -> Shipment:
    """The shipment leaves: its vials leave their positions and are in transit (signed)."""
    require_role(actor, *SHIPPING_ROLES, action="dispatching a shipment")
    shipment = get_shipment(session, code, lock=True)
    if shipment.status != "prepared":
        raise _not_now(shipment, "prepared", "dispatched")
    _check_time(at, shipment.created_at, "dispatch")
    origin = session.get(StorageLocation, shipment.origin_id)
    destination = session.get(StorageLocation, shipment.destination_id)
    assert origin is not None and destination is not None
    members = _members(session, shipment)
    problems = []
    for _, vial in members:
        found = lots.shipping_problems(vial.lot, vial, at, site_tz)
        path = _path(session, vial.location_id)
        if path is None or not _under(path, origin.path):
            found.append(f"it is no longer stored at {origin.path}")
        if found:
            problems.append(f"vial {vial.serial}: {'; '.join(found)}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise RuleViolation(f"shipment {shipment.code} cannot be dispatched: "
                            + " | ".join(problems[:5]) + more)
    reauthenticate(session, actor, password, ISSUED)
    for _, vial in members:
        before = vial.audit_state()
        vial.status = "in_transit"
        vial.location_id, vial.position, vial.received_at = None, None, None
        audit.record_row(session, actor, vial, "ship", before,
                         f"shipment {shipment.code} dispatched to {destination.path}")
    before = shipment.audit_state()
    shipment.status = "in_transit"
    shipment.courier = _clean(courier)
    shipment.tracking_number = _clean(tracking_number)
    shipment.monitor_id = _clean(monitor_id)
    shipment.dispatched_at, shipment.dispatched_by_id = at, actor.id
    audit.record_row(session, actor, shipment, "dispatch", before)
    audit.sign(session, actor, ISSUED, "shipment", shipment.code, shipment.audit_state())
    return shipment


def _clean(text: str | None) -> str | None:
    value = (text or "").strip()
    if len(value) > 100:
        raise InvalidInput(f"{value[:20]}...: at most 100 characters")
    return value or None


def cancel_shipment(session: Session, actor: User, code: str, reason: str) -> Shipment:
    """A prepared shipment that will not leave; its vials stay where they are."""
    require_role(actor, *SHIPPING_ROLES, action="cancelling a shipment")
    if not reason.strip():
        raise InvalidInput("cancelling a shipment needs a reason")
    shipment = get_shipment(session, code, lock=True)
    if shipment.status != "prepared":
        raise _not_now(shipment, "prepared", "cancelled")
    before = shipment.audit_state()
    shipment.status = "cancelled"
    shipment.closed_at, shipment.closed_by_id = utcnow(), actor.id
    shipment.closed_reason = reason.strip()
    audit.record_row(session, actor, shipment, "cancel", before, reason.strip())
    return shipment


def report_lost(session: Session, actor: User, code: str, reason: str,
                password: str | None) -> Shipment:
    """A shipment in transit that will not arrive: its vials are lost (signed)."""
    require_role(actor, *SHIPPING_ROLES, action="reporting a shipment lost")
    if not reason.strip():
        raise InvalidInput("reporting a shipment lost needs a reason")
    shipment = get_shipment(session, code, lock=True)
    if shipment.status != "in_transit":
        raise _not_now(shipment, "in-transit", "reported lost")
    reauthenticate(session, actor, password, LOST)
    for _, vial in _members(session, shipment):
        before = vial.audit_state()
        vial.status = "lost"
        audit.record_row(session, actor, vial, "lost", before,
                         f"shipment {shipment.code} lost: {reason.strip()}")
    before = shipment.audit_state()
    shipment.status = "lost"
    shipment.closed_at, shipment.closed_by_id = utcnow(), actor.id
    shipment.closed_reason = reason.strip()
    audit.record_row(session, actor, shipment, "lost", before, reason.strip())
    audit.sign(session, actor, LOST, "shipment", shipment.code, shipment.audit_state())
    return shipment


# --- receipt, confirmation by scan, quarantine ---------------------------------------------

def quarantine_reasons(shipment: Shipment, max_temp_c: float | None,
                       products: Sequence[Product]) -> list[str]:
    """Why a receipt goes to QA: no monitor, no reading, or a reading above a product's
    storage limit (trial supply practice: such stock arrives quarantined)."""
    reasons = []
    if shipment.monitor_id is None:
        reasons.append("no temperature monitor travelled with the shipment")
    if max_temp_c is None:
        reasons.append("no temperature monitor reading at receipt")
    else:
        for product in products:
            if max_temp_c > product.storage_max_c:
                reasons.append(f"the monitor's highest reading {max_temp_c:g} C is above "
                               f"{product.code}'s storage limit {product.storage_max_c:g} C "
                               f"({product.storage_condition})")
    return reasons


def receive_shipment(session: Session, actor: User, code: str, box_paths: Sequence[str],
                     at: datetime, max_temp_c: float | None, password: str | None,
                     site_tz: ZoneInfo) -> Shipment:
    """Receive a shipment at its site into free positions of the given boxes (signed); its
    vials are unconfirmed until scanned, or the whole shipment quarantined (see above)."""
    require_role(actor, *SHIPPING_ROLES, action="receiving a shipment")
    if max_temp_c is not None and not math.isfinite(max_temp_c):
        raise InvalidInput("--max-temp must be a number of degrees C")
    if not box_paths:
        raise InvalidInput("give the box(es) to store the vials in: --box PATH")
    shipment = get_shipment(session, code, lock=True)
    if shipment.status in ("received", "quarantined"):
        raise RuleViolation(f"shipment {shipment.code} was already received on "
                            f"{shipment.received_at.astimezone(site_tz):%Y-%m-%d %H:%M}")
    if shipment.status != "in_transit":
        raise _not_now(shipment, "in-transit", "received")
    _check_time(at, shipment.dispatched_at, "receipt")
    destination = session.get(StorageLocation, shipment.destination_id)
    assert destination is not None
    boxes = [storage.get_location(session, p) for p in box_paths]
    for box in boxes:
        if not _under(box.path, destination.path):
            raise RuleViolation(f"{box.path} is not at {destination.path}: shipment "
                                f"{shipment.code} is addressed to {destination.path}")
    slots = [(box, p) for box in boxes for p in storage.free_positions(session, box)]
    members = _members(session, shipment)
    if len(slots) < len(members):
        raise RuleViolation(f"{len(members)} vial(s) to receive but only {len(slots)} free "
                            f"position(s) in {', '.join(b.path for b in boxes)}")
    products = sorted({vial.lot.product for _, vial in members}, key=lambda p: p.code)
    reasons = quarantine_reasons(shipment, max_temp_c, products)
    reauthenticate(session, actor, password, RECEIVED)
    for (_, vial), (box, position) in zip(members, slots, strict=False):
        before = vial.audit_state()
        recalled = vial.lot.status in ("recalled", "destroyed")
        vial.status = "quarantined" if reasons or recalled else "unconfirmed"
        vial.location_id, vial.position, vial.received_at = box.id, position, at
        audit.record_row(session, actor, vial, "receive", before,
                         f"shipment {shipment.code}"
                         + (f"; lot {vial.lot.lot_number} is {vial.lot.status}" if recalled else ""))
    before = shipment.audit_state()
    shipment.status = "quarantined" if reasons else "received"
    shipment.received_at, shipment.received_by_id = at, actor.id
    shipment.max_temp_c = max_temp_c
    shipment.quarantine_reason = "; ".join(reasons) or None
    audit.record_row(session, actor, shipment, "receive", before, shipment.quarantine_reason)
    audit.sign(session, actor, RECEIVED, "shipment", shipment.code, shipment.audit_state())
    return shipment


def _answer(session: Session, text: str, members: dict[int, ShipmentVial],
            batch: set[int], substitute: str | None, site_tz: ZoneInfo,
            shipment: Shipment) -> tuple[ScanAnswer, Vial | None]:
    try:
        report = scanning.identify(session, text, substitute, site_tz)
    except LotrackError as exc:
        return ScanAnswer(text, "unknown", None, str(exc)), None
    if report.kind != "vial":
        return ScanAnswer(text, "unknown", None,
                          f"a {report.kind} barcode ({report.subject}), not a vial label"), None
    vial = get_vial(session, report.subject)
    if report.problems:
        return ScanAnswer(text, "mismatch", vial.serial, "the label disagrees with the database: "
                          + "; ".join(report.problems)), None
    member = members.get(vial.id)
    if member is None:
        other = session.execute(select(Shipment).join(
            ShipmentVial, ShipmentVial.shipment_id == Shipment.id)
            .where(ShipmentVial.vial_id == vial.id).order_by(Shipment.id.desc())).scalars().first()
        where = (f"it travelled in shipment {other.code} ({other.status.replace('_', ' ')})"
                 if other else "it is in no shipment")
        return ScanAnswer(text, "not in this shipment", vial.serial,
                          f"vial {vial.serial} is not in shipment {shipment.code}: {where}"), None
    if member.confirmed_at is not None:
        return ScanAnswer(text, "already confirmed", vial.serial,
                          f"confirmed {member.confirmed_at.astimezone(site_tz):%Y-%m-%d %H:%M}"), None
    if vial.id in batch:
        return ScanAnswer(text, "already confirmed", vial.serial,
                          "scanned twice in this batch"), None
    batch.add(vial.id)
    note = ("; the shipment is quarantined: usable once QA releases it"
            if shipment.status == "quarantined" else "")
    return ScanAnswer(text, "confirmed", vial.serial, f"lot {vial.lot.lot_number}{note}"), vial


def confirm_scans(session: Session, actor: User, code: str, scans: Sequence[str],
                  password: str | None, substitute: str | None,
                  site_tz: ZoneInfo) -> ConfirmReport:
    """Confirm received vials by scanning their labels; one answer per scan. Only vials
    newly confirmed change (and are signed for); every other answer changes nothing."""
    require_role(actor, *SHIPPING_ROLES, action="confirming a receipt")
    texts = [t.strip() for t in scans if t.strip()]
    if not texts:
        raise InvalidInput("no scan given: --scan TEXT, or one scan per line on stdin")
    shipment = get_shipment(session, code, lock=True)
    if shipment.status == "in_transit":
        raise RuleViolation(f"shipment {shipment.code} is in transit: receive it before "
                            "confirming its vials")
    if shipment.status not in ("received", "quarantined"):
        raise _not_now(shipment, "received", "confirmed")
    members = {sv.vial_id: sv for sv in shipment.vials}
    batch: set[int] = set()
    report = ConfirmReport(shipment.code, shipment.status, total=len(members))
    newly: list[Vial] = []
    for text in texts:
        answer, vial = _answer(session, text, members, batch, substitute, site_tz, shipment)
        report.answers.append(answer)
        if vial is not None:
            newly.append(vial)
    if newly:
        reauthenticate(session, actor, password, CONFIRMED)
        before = shipment.audit_state()
        now = utcnow()
        for vial in newly:
            member = members[vial.id]
            member.confirmed_at, member.confirmed_by_id = now, actor.id
            if vial.status == "unconfirmed":
                session.refresh(vial, with_for_update=True)
                vial_before = vial.audit_state()
                vial.status = lots.USABLE_VIAL
                audit.record_row(session, actor, vial, "confirm", vial_before,
                                 f"label scanned at receipt of shipment {shipment.code}")
        audit.record_row(session, actor, shipment, "confirm", before,
                         f"{len(newly)} vial(s) scanned")
        audit.sign(session, actor, CONFIRMED, "shipment", shipment.code, shipment.audit_state())
    report.confirmed = len(newly)
    report.remaining = sum(1 for sv in members.values() if sv.confirmed_at is None)
    return report


def release_quarantine(session: Session, actor: User, code: str, reason: str,
                       password: str | None) -> Shipment:
    """QA's decision on a quarantined receipt: its vials may be used (signed); scanned vials
    go to stock, the others stay unconfirmed until scanned."""
    require_role(actor, "qa", action="releasing a quarantined shipment")
    if not reason.strip():
        raise InvalidInput("releasing a quarantined shipment needs a reason (the assessment)")
    shipment = get_shipment(session, code, lock=True)
    if shipment.status != "quarantined":
        raise _not_now(shipment, "quarantined", "released from quarantine")
    reauthenticate(session, actor, password, RELEASED)
    for member, vial in _members(session, shipment):
        # A lot recalled meanwhile keeps its vials quarantined.
        if vial.status != "quarantined" or vial.lot.status in ("recalled", "destroyed"):
            continue
        before = vial.audit_state()
        vial.status = lots.USABLE_VIAL if member.confirmed_at is not None else "unconfirmed"
        audit.record_row(session, actor, vial, "quarantine_released", before,
                         f"shipment {shipment.code}: {reason.strip()}")
    before = shipment.audit_state()
    shipment.status = "received"
    shipment.released_at, shipment.released_by_id = utcnow(), actor.id
    shipment.release_reason = reason.strip()
    audit.record_row(session, actor, shipment, "release", before, reason.strip())
    audit.sign(session, actor, RELEASED, "shipment", shipment.code, shipment.audit_state())
    return shipment


# --- reading ---------------------------------------------------------------------------------

def _users(session: Session, ids: set[int | None]) -> dict[int, User]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {u.id: u for u in session.execute(select(User).where(User.id.in_(wanted))).scalars()}


def shipment_rows(session: Session, actor: User, status: str | None = None,
                  site_tz: ZoneInfo | None = None) -> list[dict[str, object]]:
    require_role(actor, *READERS, action="reading shipments")
    if status and status not in SHIPMENT_STATUSES:
        raise InvalidInput(f"unknown shipment status {status!r}; one of "
                           f"{', '.join(SHIPMENT_STATUSES)}")
    stmt = select(Shipment).order_by(Shipment.id)
    if status:
        stmt = stmt.where(Shipment.status == status)
    paths = dict(session.execute(select(StorageLocation.id, StorageLocation.path)).all())
    return [{"shipment": s.code, "status": s.status, "from": paths[s.origin_id],
             "to": paths[s.destination_id], "vials": len(s.vials),
             "unconfirmed": sum(1 for v in s.vials if v.confirmed_at is None)
             if s.status in ("received", "quarantined") else None,
             "dispatched_at": s.dispatched_at, "received_at": s.received_at,
             "quarantine": s.quarantine_reason if s.status == "quarantined" else None}
            for s in session.execute(stmt).scalars()]


def shipment_detail(session: Session, actor: User, code: str,
                    site_tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="reading a shipment")
    shipment = get_shipment(session, code)
    confirmed = {sv.vial_id: sv.confirmed_at for sv in shipment.vials}
    rows = session.execute(
        select(Vial, Lot, Product, StorageLocation.path)
        .join(Lot, Lot.id == Vial.lot_id).join(Product, Product.id == Lot.product_id)
        .outerjoin(StorageLocation, StorageLocation.id == Vial.location_id)
        .where(Vial.id.in_(list(confirmed))).order_by(Product.code, Lot.lot_number, Vial.number)).all()
    people = _users(session, {shipment.created_by_id, shipment.dispatched_by_id,
                              shipment.received_by_id, shipment.released_by_id,
                              shipment.closed_by_id})

    def who(user_id: int | None) -> str | None:
        return people[user_id].full_name if user_id in people else None

    received = shipment.status in ("received", "quarantined")
    return {
        "shipment": shipment.code, "status": shipment.status,
        "from": _path(session, shipment.origin_id), "to": _path(session, shipment.destination_id),
        "created_at": shipment.created_at, "created_by": who(shipment.created_by_id),
        "courier": shipment.courier, "tracking_number": shipment.tracking_number,
        "monitor": shipment.monitor_id,
        "dispatched_at": shipment.dispatched_at, "dispatched_by": who(shipment.dispatched_by_id),
        "received_at": shipment.received_at, "received_by": who(shipment.received_by_id),
        "max_temp_c": shipment.max_temp_c, "quarantine_reason": shipment.quarantine_reason,
        "released_at": shipment.released_at, "released_by": who(shipment.released_by_id),
        "release_reason": shipment.release_reason,
        "closed_at": shipment.closed_at, "closed_reason": shipment.closed_reason,
        "vial_count": len(confirmed),
        "confirmed": sum(1 for c in confirmed.values() if c is not None) if received else None,
        "remaining": sum(1 for c in confirmed.values() if c is None) if received else None,
        "vials": [{"serial": v.serial, "product": p.code, "lot": lot.lot_number,
                   "expiry": lots.expiry_text(lot, site_tz), "status": v.status,
                   "confirmed_at": confirmed[v.id], "location": path, "position": v.position}
                  for v, lot, p, path in rows],
        "signatures": signatures_of(session, "shipment", shipment.code),
    }


def manifest(session: Session, actor: User, code: str, site_tz: ZoneInfo) -> dict[str, object]:
    """Everything the shipment manifest states, as data: sender and receiver, lots with
    expiry and storage condition, each vial, the count, and who issued and received it."""
    detail = shipment_detail(session, actor, code, site_tz)
    lot_rows: dict[tuple[str, str], dict[str, object]] = {}
    products = {p.code: p for p in session.execute(select(Product)).scalars()}
    for vial in detail["vials"]:  # type: ignore[union-attr]
        key = (vial["product"], vial["lot"])
        product = products[vial["product"]]
        row = lot_rows.setdefault(key, {"product": product.code, "product_name": product.name,
                                        "lot": vial["lot"], "expiry": vial["expiry"],
                                        "storage": product.storage_condition, "count": 0})
        row["count"] = int(row["count"]) + 1  # type: ignore[call-overload]

    def signed(meaning: str) -> dict[str, object] | None:
        found = [s for s in detail["signatures"] if s["meaning"] == meaning]  # type: ignore[union-attr]
        if not found:
            return None
        s = found[-1]
        return {"printed_name": s["printed_name"], "meaning": meaning,
                "signed_at": iso(s["signed_at"]),
                "site_time": f"{s['signed_at'].astimezone(site_tz):%Y-%m-%d %H:%M} {site_tz.key}"}

    return {
        "document": "shipment manifest",
        "shipment": detail["shipment"], "status": detail["status"],
        "from": detail["from"], "to": detail["to"],
        "courier": detail["courier"], "tracking_number": detail["tracking_number"],
        "monitor": detail["monitor"], "max_temp_c": detail["max_temp_c"],
        "quarantine_reason": detail["quarantine_reason"],
        "release_reason": detail["release_reason"],
        "lots": list(lot_rows.values()),
        "storage_conditions": sorted({str(r["storage"]) for r in lot_rows.values()}),
        "vials": [{"serial": v["serial"], "product": v["product"], "lot": v["lot"],
                   "expiry": v["expiry"]} for v in detail["vials"]],  # type: ignore[union-attr]
        "count": detail["vial_count"],
        "confirmed": detail["confirmed"],
        "issued_by": signed(ISSUED),
        "received_by": signed(RECEIVED),
        "released_by": signed(RELEASED),
    }
