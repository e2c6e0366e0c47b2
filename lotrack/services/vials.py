"""Vial serial numbers with a check character, lookup, and status changes."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from stdnum import luhn

from lotrack import audit
from lotrack.errors import InvalidInput, NotFound
from lotrack.models import Lot, User, Vial

# An alphabet without I and O (read as 1 and 0); Luhn mod N over it catches every
# single mistyped character and most swaps of neighbours.
ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
SERIAL_RE = re.compile(r"^V(\d{7})([0-9A-HJ-NP-Z])$")


def make_serial(sequence: int) -> str:
    body = f"V{sequence:07d}"
    return body + luhn.calc_check_digit(body, ALPHABET)


def check_serial(text: str) -> str:
    """The serial, normalised; a malformed serial or a wrong check character is refused."""
    serial = text.strip().upper()
    if not SERIAL_RE.match(serial):
        raise InvalidInput(f"{text!r} is not a vial serial (V + 7 digits + check character, "
                           "for example V00000127)")
    if not luhn.is_valid(serial, ALPHABET):
        raise InvalidInput(f"vial serial {serial} has a wrong check character: mistyped?")
    return serial


def next_serials(session: Session, count: int) -> list[str]:
    """Serials for `count` new vials; the caller holds the audit chain lock, so the count of
    existing vials (never deleted) cannot move under it."""
    audit.lock_chain(session)
    existing = session.execute(select(func.count(Vial.id))).scalar_one()
    return [make_serial(existing + i) for i in range(1, count + 1)]


def get_vial(session: Session, serial: str, lock: bool = False) -> Vial:
    clean = check_serial(serial)
    stmt = select(Vial).where(Vial.serial == clean)
    if lock:
        stmt = stmt.with_for_update()
    vial = session.execute(stmt).scalar_one_or_none()
    if vial is None:
        raise NotFound(f"no vial {clean}")
    return vial


def set_vial_status(session: Session, actor: User, vial: Vial, status: str,
                    reason: str | None = None) -> None:
    before = vial.audit_state()
    vial.status = status
    if status not in ("in_stock", "quarantined", "unconfirmed"):
        # A vial that left stock (or left for a shipment) frees its position.
        vial.location_id, vial.position = None, None
    audit.record_row(session, actor, vial, status, before, reason)


def vials_of_lot(session: Session, lot: Lot) -> list[Vial]:
    return list(session.execute(select(Vial).where(Vial.lot_id == lot.id)
                                .order_by(Vial.number)).scalars())
