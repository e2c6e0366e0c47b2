"""Vials as read by users: where they are and what happened to them."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack.errors import NotFound
from lotrack.models import AuditEvent, StorageLocation, User, Vial
from lotrack.models.base import utcnow
from lotrack.services import lots
from lotrack.services.roles import require_role
from lotrack.services.vials import get_vial

READERS = ("admin", "pharmacist", "qa", "investigator", "monitor")


def vial_rows(session: Session, actor: User, lot_number: str,
              product_code: str | None) -> list[dict[str, object]]:
    require_role(actor, *READERS, action="reading vials")
    lot = lots.get_lot(session, lot_number, product_code)
    rows = session.execute(
        select(Vial.serial, Vial.number, Vial.status, Vial.on_hold, StorageLocation.path,
               Vial.position)
        .outerjoin(StorageLocation, StorageLocation.id == Vial.location_id)
        .where(Vial.lot_id == lot.id).order_by(Vial.number)).all()
    return [{"serial": r.serial, "number": r.number, "status": r.status, "on_hold": r.on_hold,
             "location": r.path, "position": r.position} for r in rows]


def stock_rows(session: Session, actor: User, site: str | None, product_code: str | None,
               lot_number: str | None, dispensable: bool,
               site_tz: ZoneInfo) -> list[dict[str, object]]:
    """Vials stored at a site (every status, by position), or only the dispensable ones in
    first-expiry-first-out order."""
    from sqlalchemy import or_

    from lotrack.models import Lot, Product
    from lotrack.services import stock

    require_role(actor, *READERS, action="reading vials")
    if site is not None:
        root = session.execute(select(StorageLocation).where(
            StorageLocation.path == site.strip().strip("/"))).scalar()
        if root is None:
            raise NotFound(f"no storage location {site!r}")
        site = root.path
    if dispensable:
        rows = [{"serial": v.serial, "product": v.product, "lot": v.lot, "expiry": v.expiry,
                 "location": v.location, "position": v.position}
                for v in stock.dispensable_stock(session, utcnow(), site_tz, product_code, site)]
        return [r for r in rows if not lot_number or r["lot"] == lot_number]
    stmt = (select(Vial, Lot.lot_number, Product.code, StorageLocation.path)
            .join(Lot, Lot.id == Vial.lot_id).join(Product, Product.id == Lot.product_id)
            .join(StorageLocation, StorageLocation.id == Vial.location_id)
            .order_by(StorageLocation.path, Vial.position))
    if site is not None:
        stmt = stmt.where(or_(StorageLocation.path == site,
                              StorageLocation.path.like(f"{site}/%")))
    if product_code:
        stmt = stmt.where(Product.code == product_code)
    if lot_number:
        stmt = stmt.where(Lot.lot_number == lot_number)
    return [{"serial": v.serial, "product": code, "lot": lot, "status": v.status,
             "on_hold": v.on_hold, "location": path, "position": v.position}
            for v, lot, code, path in session.execute(stmt)]


def vial_detail(session: Session, actor: User, serial: str,
                site_tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="reading a vial")
    vial = get_vial(session, serial)
    lot = vial.lot
    location = session.get(StorageLocation, vial.location_id) if vial.location_id else None
    history = session.execute(select(AuditEvent).where(
        AuditEvent.entity == "vial", AuditEvent.entity_id == vial.serial)
        .order_by(AuditEvent.seq)).scalars()
    return {
        "serial": vial.serial, "lot": lot.lot_number, "product": lot.product.code,
        "expiry": lot.expiry_on.isoformat(),
        "lot_status": lots.effective_status(lot, utcnow(), site_tz), "status": vial.status,
        "on_hold": vial.on_hold, "location": location.path if location else None,
        "position": vial.position, "received_at": vial.received_at,
        # Whether it could be dispensed now, and why not: the lot's hold or recall included.
        "dispensable_now": not (problems := _problems(session, vial, site_tz)),
        "not_dispensable_because": problems,
        "history": [{"at": e.occurred_at, "user": e.username, "action": e.action,
                     "reason": e.reason, "after": json.loads(e.after) if e.after else None}
                    for e in history],
    }


def _problems(session: Session, vial: Vial, site_tz: ZoneInfo) -> list[str]:
    from lotrack.services import qc

    problems = lots.dispensing_problems(vial.lot, vial, utcnow(), site_tz)
    failing = qc.failing_attributes(session, vial.lot)
    if failing:
        problems.append(f"QC result out of specification ({', '.join(failing)}) awaiting QA")
    return problems
