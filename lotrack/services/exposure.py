"""Who received which lot, and when: the link from an adverse event back to lots.

A participant is exposed to a lot by every dose that used a vial of it and was
dispensed or administered (a wasted or returned dose never reached her). The time
of exposure is the administration, or the dispensing while the dose awaits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from lotrack.models import Dose, DoseVial, Lot, Participant, Product, Vial
from lotrack.models.base import UTCDateTime

EXPOSING_STATUSES = ("dispensed", "administered")
# The same rule in SQL: the dose reached her.
EXPOSING = Dose.status.in_(EXPOSING_STATUSES)


def received(*columns, exposing_only: bool = True) -> Select:
    """`columns` of each (dose, vial) pair: the dose joined through its vials, their lots
    and products to its participant. Only doses that reached her, unless `exposing_only`
    is false (a trace also lists wasted and returned doses, marked by their status)."""
    stmt = (select(*columns).select_from(Dose)
            .join(DoseVial, DoseVial.dose_id == Dose.id)
            .join(Vial, Vial.id == DoseVial.vial_id)
            .join(Lot, Lot.id == Vial.lot_id)
            .join(Product, Product.id == Lot.product_id)
            .join(Participant, Participant.id == Dose.participant_id))
    return stmt.where(EXPOSING) if exposing_only else stmt


@dataclass(frozen=True)
class FirstExposure:
    """A lot a participant received, and the site-local day she first did."""

    lot_id: int
    lot_number: str
    day: date


def first_exposures(session: Session, site_tz: ZoneInfo,
                    participant_id: int | None = None) -> dict[int, list[FirstExposure]]:
    """Participant id -> each lot she received, with the day she first did, in lot order.

    What links an adverse event to lots: a lot was received before onset when its first
    day is on or before it. Grouped in the database, a row per participant and lot: read a
    row per dose and vial instead, the sponsor scale's 120,000 doses held 110 MB in a
    listing of every event. The earliest time gives the earliest local day, as a time zone
    keeps the order of instants."""
    first_at = func.min(func.coalesce(Dose.administered_at, Dose.dispensed_at),
                        type_=UTCDateTime())
    stmt = received(Dose.participant_id, Lot.id, Lot.lot_number, first_at).group_by(
        Dose.participant_id, Lot.id, Lot.lot_number).order_by(Dose.participant_id, Lot.lot_number)
    if participant_id is not None:
        stmt = stmt.where(Dose.participant_id == participant_id)
    found: dict[int, list[FirstExposure]] = {}
    for pid, lid, number, at in session.execute(stmt):
        found.setdefault(pid, []).append(
            FirstExposure(lid, number, at.astimezone(site_tz).date()))
    return found
