"""Lot registration and the lot lifecycle: a state machine with signed, reasoned transitions.

quarantine -> released (QA, signed; every required attribute present and within
specification) or rejected; released -> on_hold -> released again or recalled;
released -> recalled; any lot not destroyed -> destroyed (quantity and witness).
`expired` is never stored: a lot past its expiry is expired wherever it is read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import InvalidInput, NotFound, PermissionDenied, RuleViolation
from lotrack.models import Lot, Product, Signature, Specification, User, Vial
from lotrack.models.base import utcnow
from lotrack.schemas.lots import LotIn
from lotrack.schemas.times import end_of_day
from lotrack.services import qc
from lotrack.services.auth import find_user, reauthenticate
from lotrack.services.products import get_product
from lotrack.services.roles import require_role
from lotrack.services.vials import next_serials, set_vial_status

# (from, to) -> the signature meaning of that transition.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("quarantine", "released"): "QA release",
    ("quarantine", "rejected"): "QA rejection",
    ("released", "on_hold"): "QA hold",
    ("on_hold", "released"): "QA release after hold",
    ("on_hold", "recalled"): "QA recall",
    ("released", "recalled"): "QA recall",
    **{(s, "destroyed"): "QA destruction" for s in
       ("quarantine", "released", "rejected", "on_hold", "recalled")},
}
# The status a signed transition leads to, by the meaning it is signed with: the lot's
# status at any past time is read back from these signatures.
STATUS_SIGNED = {meaning: to for (_, to), meaning in TRANSITIONS.items()}
USABLE_VIAL = "in_stock"
# Vials at hand at a storage location: what a recall quarantines and a destruction counts.
AT_HAND = ("in_stock", "quarantined", "unconfirmed")


def get_lot(session: Session, lot_number: str, product_code: str | None = None,
            lock: bool = False) -> Lot:
    """A lot by number; the product is needed only when two products share a lot number."""
    stmt = select(Lot).join(Product).where(Lot.lot_number == lot_number.strip())
    if product_code:
        stmt = stmt.where(Product.code == product_code)
    if lock:
        stmt = stmt.with_for_update(of=Lot)
    found = list(session.execute(stmt).scalars())
    if not found:
        raise NotFound(f"no lot {lot_number!r}" + (f" of {product_code}" if product_code else ""))
    if len(found) > 1:
        raise InvalidInput(f"lot number {lot_number} exists for several products: give --product")
    return found[0]


def status_at(session: Session, lot: Lot, at: datetime) -> str:
    """The lot's status at `at`, from its signed transitions (quarantine from registration
    until the first): a dispensing entered later with its real time is judged by the
    status the lot had then, not the one it has now."""
    if at < lot.registered_at:
        return "not yet registered"
    meaning = session.execute(
        select(Signature.meaning)
        .where(Signature.entity == "lot", Signature.entity_id == lot.audit_key,
               Signature.meaning.in_(STATUS_SIGNED), Signature.signed_at <= at)
        .order_by(Signature.signed_at.desc(), Signature.id.desc()).limit(1)).scalar()
    return STATUS_SIGNED[meaning] if meaning else "quarantine"


def changed_after(session: Session, at: datetime) -> set[str]:
    """The lots (audit keys) with a signed transition after `at`: only theirs, and those of
    lots registered after it, can have had another status at `at` than they have now."""
    return set(session.execute(select(Signature.entity_id).where(
        Signature.entity == "lot", Signature.meaning.in_(STATUS_SIGNED),
        Signature.signed_at > at)).scalars())


def released_then_problem(session: Session, lot: Lot, at: datetime,
                          site_tz: ZoneInfo) -> str | None:
    """Why a lot released now could not be used at the past time `at` (None: it could)."""
    then = status_at(session, lot, at)
    if then == "released":
        return None
    return (f"lot {lot.lot_number} was {then.replace('_', ' ')} at "
            f"{at.astimezone(site_tz):%Y-%m-%d %H:%M} {site_tz.key}, the time given")


def expires_at(lot: Lot, site_tz: ZoneInfo) -> datetime:
    """A lot is usable until its expiry time, site time; without one, until the end of its
    expiry day (as IRT systems do)."""
    if lot.expiry_time is not None:
        return datetime.combine(lot.expiry_on, lot.expiry_time, tzinfo=site_tz).astimezone(UTC)
    return end_of_day(lot.expiry_on, site_tz)


def expiry_text(lot: Lot, site_tz: ZoneInfo) -> str:
    return f"{expires_at(lot, site_tz).astimezone(site_tz):%Y-%m-%d %H:%M} {site_tz.key}"


def offset_problem(lot: Lot, reference: datetime, days: int, site_tz: ZoneInfo,
                   offset: str, reference_text: str) -> str | None:
    """Refused when the lot expires less than `days` whole days after `reference`: at
    exactly `days` days before expiry a vial is still usable, one second later it is not."""
    if days <= 0 or reference <= expires_at(lot, site_tz) - timedelta(days=days):
        return None
    return (f"lot {lot.lot_number} expires {expiry_text(lot, site_tz)}, within the "
            f"{offset} offset of {days} day(s) from {reference_text}")


def effective_status(lot: Lot, at: datetime, site_tz: ZoneInfo) -> str:
    if lot.status in ("released", "quarantine", "on_hold") and at > expires_at(lot, site_tz):
        return "expired"
    return lot.status


def register_lot(session: Session, actor: User, lot_in: LotIn, today: date | None = None) -> Lot:
    """Register a lot in quarantine with its vials; judged against the active specification."""
    require_role(actor, "qa", action="registering a lot")
    product = get_product(session, lot_in.product)
    if session.execute(select(Lot.id).where(Lot.product_id == product.id,
                                            Lot.lot_number == lot_in.lot_number)).first():
        raise RuleViolation(f"lot {lot_in.lot_number} of {product.code} is already registered")
    if lot_in.expiry_on > lot_in.manufactured_on + timedelta(days=product.shelf_life_days):
        raise RuleViolation(f"expiry {lot_in.expiry_on} is beyond the shelf life of "
                            f"{product.shelf_life_days} days from manufacture "
                            f"{lot_in.manufactured_on}")
    if lot_in.manufactured_on > (today or utcnow().date()):
        raise InvalidInput(f"manufacture date {lot_in.manufactured_on} is in the future")
    spec = session.execute(select(Specification).where(
        Specification.product_id == product.id, Specification.status == "active")).scalar()
    if spec is None:
        raise RuleViolation(f"product {product.code} has no active specification: load and "
                            "activate one first")
    lot = Lot(lot_number=lot_in.lot_number, product_id=product.id, specification_id=spec.id,
              manufactured_on=lot_in.manufactured_on, expiry_on=lot_in.expiry_on,
              expiry_time=lot_in.expiry_time,
              cell_line=lot_in.cell_line, cell_bank_id=lot_in.cell_bank_id,
              passage=lot_in.passage, vial_count=lot_in.vials,
              fill_volume_ml=lot_in.fill_volume_ml or product.fill_volume_ml,
              status="quarantine", qa_review_needed=False, registered_at=utcnow(),
              registered_by_id=actor.id)
    lot.product, lot.specification = product, spec
    session.add(lot)
    audit.record_row(session, actor, lot, "register")
    _create_vials(session, actor, lot)
    return lot


def _create_vials(session: Session, actor: User, lot: Lot) -> None:
    # One bulk insert and one audit event per vial, appended in bulk: every vial row is
    # covered by `audit verify`, and 2,000 vials still register in a fraction of a second.
    serials = next_serials(session, lot.vial_count)
    rows = [{"serial": s, "lot_id": lot.id, "number": n, "status": USABLE_VIAL,
             "on_hold": False} for n, s in enumerate(serials, start=1)]
    session.execute(insert(Vial), rows)
    reason = f"registered with lot {lot.lot_number}"
    audit.record_many(session, actor, [
        audit.Entry("vial", str(row["serial"]), "create", None,
                    {"serial": row["serial"], "lot_id": lot.id, "number": row["number"],
                     "status": USABLE_VIAL, "on_hold": False, "location_id": None,
                     "position": None, "received_at": None}, reason)
        for row in rows])


def transition(session: Session, actor: User, lot_number: str, to: str, reason: str,
               password: str | None, site_tz: ZoneInfo, product_code: str | None = None,
               witness: tuple[str, str | None] | None = None,
               quantity: int | None = None) -> Lot:
    """Move a lot to `to`: QA only, signed, reasoned, and only along TRANSITIONS."""
    require_role(actor, "qa", action=f"moving a lot to {to}")
    if not reason or not reason.strip():
        raise InvalidInput(f"a reason is required to move a lot to {to}")
    lot = get_lot(session, lot_number, product_code, lock=True)
    meaning = TRANSITIONS.get((lot.status, to))
    if meaning is None:
        raise RuleViolation(f"lot {lot.lot_number} is {lot.status}; it cannot become {to}")
    if to == "released":
        _check_releasable(session, lot, site_tz)
    witness_user = _check_destruction(session, actor, lot, witness, quantity) \
        if to == "destroyed" else None
    reauthenticate(session, actor, password, meaning)
    before = lot.audit_state()
    lot.status = to
    if to == "released":
        lot.qa_review_needed = False
    if witness_user is not None:
        lot.destroyed_quantity, lot.destroyed_witness_id = quantity, witness_user.id
    audit.record_row(session, actor, lot, to, before, reason.strip())
    state = lot.audit_state()
    audit.sign(session, actor, meaning, "lot", lot.audit_key, state)
    if witness_user is not None:
        audit.sign(session, witness_user, "witness of destruction", "lot", lot.audit_key, state)
    if to in ("recalled", "destroyed", "rejected"):
        _withdraw_stock(session, actor, lot, to, reason.strip())
    return lot


def _check_releasable(session: Session, lot: Lot, site_tz: ZoneInfo) -> None:
    if utcnow() > expires_at(lot, site_tz):
        raise RuleViolation(f"lot {lot.lot_number} expired on {lot.expiry_on}: it cannot be "
                            "released")
    problems = qc.release_blockers(session, lot)
    if problems:
        raise RuleViolation(f"lot {lot.lot_number} cannot be released: " + "; ".join(problems))


def _check_destruction(session: Session, actor: User, lot: Lot,
                       witness: tuple[str, str | None] | None, quantity: int | None) -> User:
    if quantity is None or quantity < 0:
        raise InvalidInput("destruction needs the quantity destroyed (0 or more)")
    travelling = session.execute(select(func.count(Vial.id)).where(
        Vial.lot_id == lot.id, Vial.status == "in_transit")).scalar_one()
    if travelling:
        raise RuleViolation(f"lot {lot.lot_number} has {travelling} vial(s) in transit: receive "
                            "the shipment, or report it lost, before destroying the lot")
    in_stock = len(_stock(session, lot))
    if quantity != in_stock:
        raise RuleViolation(f"lot {lot.lot_number} has {in_stock} vial(s) in stock; the "
                            f"destroyed quantity given is {quantity}")
    if witness is None:
        raise InvalidInput("destruction needs a witness (--witness USER)")
    name, password = witness
    user = find_user(session, name)
    if user is None:
        raise NotFound(f"no user {name!r} to witness the destruction")
    if user.id == actor.id:
        raise PermissionDenied("the witness must be another user")
    reauthenticate(session, user, password, "witness of destruction")
    return user


def _stock(session: Session, lot: Lot) -> list[Vial]:
    return list(session.execute(select(Vial).where(
        Vial.lot_id == lot.id, Vial.status.in_(AT_HAND))
        .with_for_update()).scalars())


def _withdraw_stock(session: Session, actor: User, lot: Lot, to: str, reason: str) -> None:
    new_status = "destroyed" if to == "destroyed" else "quarantined"
    for vial in _stock(session, lot):
        if vial.status != new_status:
            set_vial_status(session, actor, vial, new_status, f"lot {to}: {reason}")


def dispensing_problems(lot: Lot, vial: Vial, at: datetime, site_tz: ZoneInfo,
                        reference: datetime | None = None,
                        reference_text: str = "the dispensing") -> list[str]:
    """Why `vial` may not be dispensed at `at`, from the lot and vial side (empty: it may).

    The product's do-not-dispense offset counts back from `reference` (the protocol's
    choice: the dispensing itself, or the planned last perfusion of the cycle)."""
    problems: list[str] = []
    status = effective_status(lot, at, site_tz)
    if status == "expired":
        problems.append(f"lot {lot.lot_number} expired on {lot.expiry_on}")
    elif status != "released":
        problems.append(f"lot {lot.lot_number} is {status.replace('_', ' ')}")
    else:
        offset = offset_problem(lot, reference or at, lot.product.do_not_dispense_days, site_tz,
                                "do-not-dispense", reference_text)
        if offset:
            problems.append(offset)
    if vial.status == "unconfirmed":
        problems.append("the vial was received but its label has not been scanned to confirm "
                        "the receipt")
    elif vial.status != USABLE_VIAL:
        problems.append(f"the vial is {vial.status.replace('_', ' ')}")
    if vial.on_hold:
        problems.append("the vial is on hold after a temperature excursion")
    if vial.received_at is None and vial.status == USABLE_VIAL:
        problems.append("the vial was never received into storage at the site")
    elif vial.received_at is not None and at < vial.received_at:
        problems.append(f"the vial was received at the site only at "
                        f"{vial.received_at.astimezone(site_tz):%Y-%m-%d %H:%M} {site_tz.key}")
    return problems


def lot_shipping_problems(lot: Lot, at: datetime, site_tz: ZoneInfo) -> list[str]:
    """Why no vial of `lot` may be shipped at `at` (empty: it may): only released, in-date
    lots outside the product's do-not-ship offset are shipped."""
    status = effective_status(lot, at, site_tz)
    if status == "expired":
        return [f"lot {lot.lot_number} expired on {lot.expiry_on}"]
    if status != "released":
        return [f"lot {lot.lot_number} is {status.replace('_', ' ')}: only released lots are "
                "shipped"]
    offset = offset_problem(lot, at, lot.product.do_not_ship_days, site_tz, "do-not-ship",
                            f"shipping on {at.astimezone(site_tz):%Y-%m-%d %H:%M}")
    return [offset] if offset else []


def shipping_problems(lot: Lot, vial: Vial, at: datetime, site_tz: ZoneInfo) -> list[str]:
    """Why `vial` may not be shipped at `at` (empty: it may)."""
    problems = lot_shipping_problems(lot, at, site_tz)
    if vial.status != USABLE_VIAL:
        problems.append(f"the vial is {vial.status.replace('_', ' ')}")
    if vial.on_hold:
        problems.append("the vial is on hold after a temperature excursion")
    return problems


def list_lots(session: Session, status: str | None = None,
              product_code: str | None = None) -> list[Lot]:
    stmt = select(Lot).join(Product)
    if status:
        stmt = stmt.where(Lot.status == status)
    if product_code:
        stmt = stmt.where(Product.code == product_code)
    return list(session.execute(stmt.order_by(Product.code, Lot.manufactured_on,
                                              Lot.lot_number)).scalars())
