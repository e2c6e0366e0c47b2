"""Storage: a hierarchy of locations (site / freezer / rack / box), receipt of lots into
boxes, moves, and temperature excursions that put the vials present on hold."""

from __future__ import annotations

import json
import re
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import InvalidInput, NotFound, RuleViolation
from lotrack.models import AuditEvent, Excursion, Lot, StorageLocation, User, Vial
from lotrack.models.base import utcnow
from lotrack.services.roles import require_role
from lotrack.services.vials import get_vial

PATH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,39}){0,5}$")
STORAGE_ROLES = ("pharmacist", "qa")


def _check_path(path: str) -> str:
    clean = path.strip().strip("/")
    if not PATH_RE.match(clean):
        raise InvalidInput(f"storage path {path!r} must be up to 6 names separated by '/' "
                           "(site/freezer/rack/box), each of letters, digits, '.', '_' or '-'")
    return clean


def get_location(session: Session, path: str) -> StorageLocation:
    clean = _check_path(path)
    location = session.execute(select(StorageLocation).where(
        StorageLocation.path == clean)).scalar_one_or_none()
    if location is None:
        raise NotFound(f"no storage location {clean!r}")
    return location


def add_location(session: Session, actor: User, path: str,
                 capacity: int | None) -> StorageLocation:
    """Create a location and any missing parents; a location with a capacity is a box."""
    require_role(actor, *STORAGE_ROLES, action="adding a storage location")
    clean = _check_path(path)
    if capacity is not None and not 1 <= capacity <= 10_000:
        raise InvalidInput("a box capacity is between 1 and 10000 positions")
    if session.execute(select(StorageLocation.id).where(StorageLocation.path == clean)).first():
        raise RuleViolation(f"storage location {clean} already exists")
    parent: StorageLocation | None = None
    parts = clean.split("/")
    for depth in range(1, len(parts) + 1):
        sub = "/".join(parts[:depth])
        node = session.execute(select(StorageLocation).where(
            StorageLocation.path == sub)).scalar_one_or_none()
        if node is None:
            if parent is not None and parent.capacity is not None:
                raise RuleViolation(f"{parent.path} is a box; it cannot contain {sub}")
            node = StorageLocation(path=sub, parent_id=parent.id if parent else None,
                                   capacity=capacity if depth == len(parts) else None,
                                   created_at=utcnow())
            session.add(node)
            audit.record_row(session, actor, node, "create")
        parent = node
    assert parent is not None
    return parent


def list_locations(session: Session) -> list[tuple[StorageLocation, int]]:
    counts = dict(session.execute(select(Vial.location_id, func.count(Vial.id))
                                  .where(Vial.location_id.is_not(None))
                                  .group_by(Vial.location_id)).all())
    locations = session.execute(select(StorageLocation).order_by(StorageLocation.path)).scalars()
    return [(loc, counts.get(loc.id, 0)) for loc in locations]


def _free_positions(session: Session, box: StorageLocation) -> list[int]:
    if box.capacity is None:
        raise RuleViolation(f"{box.path} has no capacity: vials are stored in boxes")
    taken = set(session.execute(select(Vial.position).where(Vial.location_id == box.id)).scalars())
    return [p for p in range(1, box.capacity + 1) if p not in taken]


def free_positions(session: Session, box: StorageLocation) -> list[int]:
    """The free positions of a box, in order; a location without a capacity is refused."""
    return _free_positions(session, box)


def receive_lot(session: Session, actor: User, lot: Lot, box_paths: list[str],
                at: datetime) -> int:
    """Receive a lot's vials at the site into the free positions of the given boxes."""
    require_role(actor, *STORAGE_ROLES, action="receiving stock")
    if at > utcnow():
        raise InvalidInput("a receipt cannot be in the future")
    vials = list(session.execute(select(Vial).where(
        Vial.lot_id == lot.id, Vial.received_at.is_(None), Vial.status == "in_stock")
        .order_by(Vial.number).with_for_update()).scalars())
    if not vials:
        raise RuleViolation(f"lot {lot.lot_number} has no vial awaiting receipt")
    slots = [(box, p) for box in (get_location(session, b) for b in box_paths)
             for p in _free_positions(session, box)]
    if len(slots) < len(vials):
        raise RuleViolation(f"{len(vials)} vials to receive but only {len(slots)} free "
                            f"position(s) in {', '.join(box_paths)}")
    entries = []
    for vial, (box, position) in zip(vials, slots, strict=False):
        before = vial.audit_state()
        vial.location_id, vial.position, vial.received_at = box.id, position, at
        entries.append(audit.Entry("vial", vial.audit_key, "receive", before, vial.audit_state()))
    # One flush for the lot and the events appended in bulk: a flush per vial made a
    # 2,000-vial receipt take seconds.
    session.flush()
    audit.record_many(session, actor, entries)
    return len(vials)


def move_vial(session: Session, actor: User, serial: str, to_path: str,
              position: int | None) -> Vial:
    require_role(actor, *STORAGE_ROLES, action="moving a vial")
    vial = get_vial(session, serial, lock=True)
    if vial.status not in ("in_stock", "quarantined", "unconfirmed"):
        raise RuleViolation(f"vial {vial.serial} is {vial.status.replace('_', ' ')}; only stock "
                            "can be moved")
    box = get_location(session, to_path)
    free = _free_positions(session, box)
    if position is None:
        if not free:
            raise RuleViolation(f"{box.path} is full")
        position = free[0]
    elif not 1 <= position <= (box.capacity or 0):
        raise InvalidInput(f"{box.path} has positions 1-{box.capacity}")
    elif position not in free:
        raise RuleViolation(f"position {position} of {box.path} is occupied")
    before = vial.audit_state()
    vial.location_id, vial.position = box.id, position
    if vial.received_at is None:
        vial.received_at = utcnow()
    audit.record_row(session, actor, vial, "move", before)
    return vial


def record_excursion(session: Session, actor: User, path: str, start: datetime, end: datetime,
                     max_temp_c: float, note: str | None) -> Excursion:
    """Vials stored at the location (or below it) during the excursion go on hold, and their
    lots are flagged for QA review."""
    require_role(actor, *STORAGE_ROLES, action="recording a temperature excursion")
    if end <= start:
        raise InvalidInput("the excursion must end after it starts")
    if start > utcnow():
        raise InvalidInput("an excursion cannot start in the future")
    location = get_location(session, path)
    under = set(session.execute(select(StorageLocation.id).where(or_(
        StorageLocation.path == location.path,
        StorageLocation.path.like(f"{location.path}/%")))).scalars())
    exposed = vials_stored_during(session, under, start, end)
    vials = [v for v in exposed if v.status in ("in_stock", "quarantined", "unconfirmed")]
    excursion = Excursion(location_id=location.id, started_at=start, ended_at=end,
                          max_temp_c=max_temp_c, note=note, vials_affected=len(vials),
                          recorded_at=utcnow(), recorded_by_id=actor.id)
    session.add(excursion)
    audit.record_row(session, actor, excursion, "record", reason=note)
    reason = f"temperature excursion at {location.path} up to {max_temp_c:g} C"
    # Every lot that was there goes to QA, even if its vials have since left storage.
    lot_ids = {vial.lot_id for vial in exposed}
    for vial in vials:
        if not vial.on_hold:
            before = vial.audit_state()
            vial.on_hold = True
            audit.record_row(session, actor, vial, "hold", before, reason)
    for lot in session.execute(select(Lot).where(Lot.id.in_(lot_ids))).scalars():
        if not lot.qa_review_needed:
            before = lot.audit_state()
            lot.qa_review_needed = True
            audit.record_row(session, actor, lot, "flag_for_review", before, reason)
    return excursion


def vials_stored_during(session: Session, location_ids: set[int], start: datetime,
                        end: datetime) -> list[Vial]:
    """The vials that were at any of these locations at some time between start and end,
    from the history of receipts and moves in the audit trail (not where they are now)."""
    if not location_ids:
        return []
    marks = [AuditEvent.after.like(f'%"location_id":{i},%') for i in sorted(location_ids)]
    serials = set(session.execute(select(AuditEvent.entity_id).where(
        AuditEvent.entity == "vial", or_(*marks))).scalars())
    if not serials:
        return []
    history: dict[str, list[tuple[datetime, object]]] = {}
    for key, occurred, after in session.execute(
            select(AuditEvent.entity_id, AuditEvent.occurred_at, AuditEvent.after).where(
                AuditEvent.entity == "vial", AuditEvent.entity_id.in_(serials),
                AuditEvent.after.is_not(None)).order_by(AuditEvent.seq)).all():
        state = json.loads(after)
        prior = history.setdefault(key, [])
        received = state.get("received_at")
        # A receipt takes effect at the receipt time it records, not when it was entered.
        first_stored = state.get("location_id") is not None and (not prior or prior[-1][1] is None)
        since = datetime.fromisoformat(str(received)) if first_stored and received else occurred
        prior.append((since, state.get("location_id")))
    hit = set()
    for key, steps in history.items():
        for index, (since, where) in enumerate(steps):
            until = steps[index + 1][0] if index + 1 < len(steps) else None
            if where in location_ids and since <= end and (until is None or until > start):
                hit.add(key)
                break
    return list(session.execute(select(Vial).where(Vial.serial.in_(hit))
                                .order_by(Vial.serial).with_for_update()).scalars())


def clear_vial_holds(session: Session, actor: User, lot: Lot, reason: str,
                     password: str | None) -> int:
    """QA's decision after reviewing an excursion: the lot's held vials may be used again."""
    from lotrack.services.auth import reauthenticate

    require_role(actor, "qa", action="clearing excursion holds")
    if not reason.strip():
        raise InvalidInput("clearing holds needs a reason (the excursion assessment)")
    reauthenticate(session, actor, password, "QA excursion assessment")
    held = list(session.execute(select(Vial).where(Vial.lot_id == lot.id, Vial.on_hold.is_(True))
                                .with_for_update()).scalars())
    for vial in held:
        before = vial.audit_state()
        vial.on_hold = False
        audit.record_row(session, actor, vial, "hold_cleared", before, reason.strip())
    before = lot.audit_state()
    lot.qa_review_needed = False
    audit.record_row(session, actor, lot, "reviewed", before, reason.strip())
    audit.sign(session, actor, "QA excursion assessment", "lot", lot.audit_key, lot.audit_state())
    return len(held)
