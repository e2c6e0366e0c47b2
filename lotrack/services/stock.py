"""Stock at the site: which vials can be dispensed, first-expiry-first-out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from lotrack.errors import RuleViolation
from lotrack.models import Lot, Product, StorageLocation, Vial
from lotrack.services import lots


@dataclass(frozen=True)
class StockVial:
    serial: str
    product: str
    lot: str
    expiry: str  # site time
    location: str
    position: int | None


def site_of(path: str) -> str:
    """The site of a storage path: its top-level location."""
    return path.split("/", 1)[0]


def dispensable_stock(session: Session, at: datetime, site_tz: ZoneInfo,
                      product_code: str | None = None, site: str | None = None,
                      reference: datetime | None = None,
                      reference_text: str = "the dispensing") -> list[StockVial]:
    """Every vial that could be dispensed at `at`, first expiry first out: confirmed, in
    stock, not on hold, of a released lot outside the do-not-dispense offset and still in
    date at the use-by time of a dose thawed now; stored at `site` when one is given."""
    stmt = (select(Vial, Lot, Product, StorageLocation.path)
            .join(Lot, Lot.id == Vial.lot_id).join(Product, Product.id == Lot.product_id)
            .join(StorageLocation, StorageLocation.id == Vial.location_id)
            .where(Lot.status == "released", Vial.status == "in_stock",
                   Vial.on_hold.is_(False), Vial.received_at.is_not(None),
                   Vial.received_at <= at)
            .order_by(Product.code, Lot.expiry_on, Lot.expiry_time, Lot.lot_number, Vial.number))
    if product_code:
        stmt = stmt.where(Product.code == product_code)
    if site:
        stmt = stmt.where(or_(StorageLocation.path == site,
                              StorageLocation.path.like(f"{site}/%")))
    rows = session.execute(stmt).all()
    # Released now, but also at `at` (a dispensing entered later with its real time).
    changed = lots.changed_after(session, at)
    not_then = {lot.id for lot in {row[1] for row in rows}
                if (lot.audit_key in changed or lot.registered_at > at)
                and lots.status_at(session, lot, at) != "released"}
    chosen = [StockVial(vial.serial, product.code, lot.lot_number, lots.expiry_text(lot, site_tz),
                        path, vial.position)
              for vial, lot, product, path in rows
              if lot.id not in not_then
              and not lots.dispensing_problems(lot, vial, at, site_tz, reference, reference_text)
              and lots.expires_at(lot, site_tz) >= at + timedelta(hours=product.post_thaw_hours)]
    # Lots with an expiry time sort by it within their day; a plain date is the day's end.
    return sorted(chosen, key=lambda v: (v.product, v.expiry, v.lot))


def pick_fefo(session: Session, product_code: str, count: int, at: datetime,
              site_tz: ZoneInfo, site: str | None = None,
              reference: datetime | None = None) -> list[str]:
    """Serials of `count` dispensable vials of the product, shortest expiry first.

    Only a suggestion: dispensing checks every vial again under lock.
    """
    session.execute(select(Product).where(Product.code == product_code)).scalar_one()
    chosen = [v.serial for v in dispensable_stock(session, at, site_tz, product_code, site,
                                                  reference)][:count]
    if len(chosen) < count:
        where = f" at {site}" if site else ""
        raise RuleViolation(f"only {len(chosen)} dispensable vial(s) of {product_code} in stock"
                            f"{where}; {count} needed")
    return chosen
