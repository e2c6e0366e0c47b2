"""Stock at the site: which vials can be dispensed, first-expiry-first-out."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack.errors import RuleViolation
from lotrack.models import Lot, Product, Vial
from lotrack.services import lots


def pick_fefo(session: Session, product_code: str, count: int, at: datetime,
              site_tz: ZoneInfo) -> list[str]:
    """Serials of `count` dispensable vials of the product, shortest expiry first.

    Only a suggestion: dispensing checks every vial again under lock.
    """
    product = session.execute(select(Product).where(Product.code == product_code)).scalar_one()
    use_by = at + timedelta(hours=product.post_thaw_hours)
    rows = session.execute(
        select(Vial, Lot).join(Lot, Lot.id == Vial.lot_id)
        .where(Lot.product_id == product.id, Lot.status == "released",
               Vial.status == "in_stock", Vial.on_hold.is_(False),
               Vial.received_at.is_not(None), Vial.received_at <= at)
        .order_by(Lot.expiry_on, Lot.lot_number, Vial.number)).all()
    chosen = [vial.serial for vial, lot in rows
              if not lots.dispensing_problems(lot, vial, at, site_tz)
              and lots.expires_at(lot, site_tz) >= use_by][:count]
    if len(chosen) < count:
        raise RuleViolation(f"only {len(chosen)} dispensable vial(s) of {product_code} in stock; "
                            f"{count} needed")
    return chosen
