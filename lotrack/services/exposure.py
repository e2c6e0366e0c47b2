"""Who received which lot, and when: the link from an adverse event back to lots.

A participant is exposed to a lot by every dose that used a vial of it and was
dispensed or administered (a wasted or returned dose never reached her). The time
of exposure is the administration, or the dispensing while the dose awaits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from lotrack.models import Dose, DoseVial, Lot, Participant, Product, Vial

EXPOSING_STATUSES = ("dispensed", "administered")
# The same rule in SQL: the dose reached her.
EXPOSING = Dose.status.in_(EXPOSING_STATUSES)


@dataclass(frozen=True)
class Exposure:
    participant_id: int
    subject_id: str
    lot_id: int
    lot_number: str
    product_code: str
    product_kind: str
    dose_id: int
    at: datetime

    def local_day(self, site_tz: ZoneInfo) -> date:
        return self.at.astimezone(site_tz).date()


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


def exposures(session: Session, lot_id: int | None = None,
              participant_id: int | None = None) -> list[Exposure]:
    """One row per (dose, lot) pair, in time order."""
    stmt = received(Dose.participant_id, Participant.subject_id, Lot.id, Lot.lot_number,
                    Product.code, Product.kind, Dose.id, Dose.administered_at,
                    Dose.dispensed_at).distinct()
    if lot_id is not None:
        stmt = stmt.where(Lot.id == lot_id)
    if participant_id is not None:
        stmt = stmt.where(Dose.participant_id == participant_id)
    found = [Exposure(pid, subject, lid, number, code, kind, dose_id, administered or dispensed)
             for pid, subject, lid, number, code, kind, dose_id, administered, dispensed
             in session.execute(stmt)]
    return sorted(found, key=lambda e: (e.at, e.dose_id, e.lot_number))


def first_exposure_days(found: list[Exposure], site_tz: ZoneInfo) -> dict[tuple[int, int], date]:
    """(participant id, lot id) -> the site-local day she first received the lot."""
    first: dict[tuple[int, int], date] = {}
    for exposure in found:
        key = (exposure.participant_id, exposure.lot_id)
        day = exposure.local_day(site_tz)
        if key not in first or day < first[key]:
            first[key] = day
    return first
