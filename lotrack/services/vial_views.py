"""Vials as read by users: where they are and what happened to them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, String, case, cast, func, select
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


STOCK_COLUMNS = ("serial", "product", "lot", "status", "on_hold", "location", "position")
# Vials read from the database at a time for a listing of a site's stock.
STOCK_BATCH = 2_000


def stock_rows(session: Session, actor: User, site: str | None, product_code: str | None,
               lot_number: str | None, dispensable: bool,
               site_tz: ZoneInfo) -> list[dict[str, object]]:
    """Vials stored at a site (every status, by position), or only the dispensable ones in
    first-expiry-first-out order."""
    from lotrack.services import stock

    require_role(actor, *READERS, action="reading vials")
    site = _site_path(session, site)
    if dispensable:
        rows = [{"serial": v.serial, "product": v.product, "lot": v.lot, "expiry": v.expiry,
                 "location": v.location, "position": v.position}
                for v in stock.dispensable_stock(session, utcnow(), site_tz, product_code, site)]
        return [r for r in rows if not lot_number or r["lot"] == lot_number]
    return list(_stored_vials(session, _stored_statement(site, product_code, lot_number),
                              STOCK_BATCH))


@dataclass
class StockListing:
    """The vials stored at a site, read as they are taken (`rows`), and for a table the
    width of each column over all of them (`widths`), so that a site's half a million
    vials are shown aligned as one table without being held in memory."""

    rows: Iterator[dict[str, object]]
    widths: dict[str, int] | None


def stock_listing(session: Session, actor: User, site: str | None, product_code: str | None,
                  lot_number: str | None, with_widths: bool,
                  batch_size: int = STOCK_BATCH) -> StockListing:
    """Every vial stored at `site` (or anywhere), by location and position, streamed."""
    require_role(actor, *READERS, action="reading vials")
    stmt = _stored_statement(_site_path(session, site), product_code, lot_number)
    widths = _stock_widths(session, stmt) if with_widths else None
    return StockListing(_stored_vials(session, stmt, batch_size), widths)


def _site_path(session: Session, site: str | None) -> str | None:
    if site is None:
        return None
    root = session.execute(select(StorageLocation).where(
        StorageLocation.path == site.strip().strip("/"))).scalar()
    if root is None:
        raise NotFound(f"no storage location {site!r}")
    return root.path


def _stored_statement(site: str | None, product_code: str | None,
                      lot_number: str | None) -> Select[Any]:
    from sqlalchemy import or_

    from lotrack.models import Lot, Product

    stmt = (select(Vial.serial, Product.code.label("product"), Lot.lot_number.label("lot"),
                   Vial.status, Vial.on_hold, StorageLocation.path.label("location"),
                   Vial.position)
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
    return stmt


def _stored_vials(session: Session, stmt: Select[Any],
                  batch_size: int) -> Iterator[dict[str, object]]:
    for row in session.execute(stmt, execution_options={"yield_per": batch_size}):
        yield dict(zip(STOCK_COLUMNS, row, strict=True))


def _stock_widths(session: Session, stmt: Select[Any]) -> dict[str, int] | None:
    """The widest value of each column as a table shows it (None when there is no row):
    text by its length in characters, on_hold as yes or no, the position as digits."""
    listed = stmt.order_by(None).subquery()
    text_width = [func.coalesce(func.max(func.length(listed.c[name])), 0)
                  for name in ("serial", "product", "lot", "status", "location")]
    hold_width = func.coalesce(func.max(case((listed.c.on_hold, 3), else_=2)), 0)
    position_width = func.coalesce(func.max(func.length(cast(listed.c.position, String))), 0)
    count, *widths = session.execute(select(func.count(), *text_width, hold_width,
                                            position_width).select_from(listed)).one()
    if not count:
        return None
    serial, product, lot, status, location, on_hold, position = widths
    return {"serial": serial, "product": product, "lot": lot, "status": status,
            "on_hold": on_hold, "location": location, "position": position}


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
