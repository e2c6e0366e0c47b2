"""Drug accountability in the shape of the NCI DARF, and the per-lot reconciliation:
received = dispensed + wasted + returned + destroyed + in stock, every difference flagged.

A site's record runs to a thousand lots and, at sponsor scale, over a hundred thousand
lines, so it is produced lot by lot: `accountability_record` returns the header and an
iterator of lot records, read once, inside the unit of work, by a renderer that writes
each lot and lets it go. The figures come from a handful of set-based queries over all
the lots at once (never one per lot or per dose); only the doses, the one large part,
are streamed, in lot order, and grouped as they arrive.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from operator import attrgetter
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select, true
from sqlalchemy.orm import Session

from lotrack.models import (
    Dose,
    DoseVial,
    Lot,
    Participant,
    Product,
    Signature,
    TreatmentCycle,
    User,
    Vial,
)
from lotrack.models.base import iso
from lotrack.models.dosing import format_dose_code
from lotrack.services import lots as lot_service
from lotrack.services.lot_views import READERS
from lotrack.services.protocols import active_protocol
from lotrack.services.roles import require_role

DOCUMENT = "drug accountability record"
RECONCILED = ("dispensed", "wasted", "returned", "destroyed", "in_stock")
# Rows fetched at a time from the dose stream: bounded memory, few round trips.
DOSE_BATCH = 2_000


def initials(full_name: str) -> str:
    parts = [p for p in full_name.replace("Dr.", "").split() if p]
    return "".join(p[0].upper() for p in parts) or "?"


@dataclass
class AccountabilityRecord:
    """The record's header and its lots, one dict per lot, in product and lot order.

    `lots` can be read once only, and only while the session that made it is open;
    `flagged` names, as they are read, the lots whose reconciliation is flagged."""

    protocol: str
    lots: Iterator[dict[str, Any]]
    document: str = DOCUMENT
    flagged: list[str] = field(default_factory=list)

    def head(self) -> dict[str, Any]:
        """The content without its lots: with them, what `accountability` returns."""
        return {"document": self.document, "protocol": self.protocol}


def accountability(session: Session, actor: User, lot_number: str | None,
                   product_code: str | None = None) -> dict[str, Any]:
    """The whole record as one dict (what `report verify` hashes); for one lot or a small
    site. A site-wide document streams `accountability_record` instead."""
    record = accountability_record(session, actor, lot_number, product_code)
    return {**record.head(), "lots": list(record.lots)}


def accountability_record(session: Session, actor: User, lot_number: str | None,
                          product_code: str | None = None) -> AccountabilityRecord:
    # Checked now, not when the lots are first read: a refusal or an unknown lot must stop
    # the command before it opens its output file.
    require_role(actor, *READERS, action="reading drug accountability")
    only = lot_service.get_lot(session, lot_number, product_code) if lot_number else None
    try:
        protocol_code = active_protocol(session)[1].protocol.code
    except Exception:  # no protocol yet: the record still stands without it
        protocol_code = ""
    flagged: list[str] = []
    return AccountabilityRecord(protocol_code, _lot_records(session, only, flagged),
                                flagged=flagged)


def _lot_records(session: Session, only: Lot | None,
                 flagged: list[str]) -> Iterator[dict[str, Any]]:
    lot_filter: ColumnElement[bool] = Lot.id == only.id if only else true()
    vial_filter: ColumnElement[bool] = Vial.lot_id == only.id if only else true()
    lot_order = (Product.code, Lot.lot_number, Lot.id)
    chosen = session.execute(select(Lot, Product).join(Product).where(lot_filter)
                             .order_by(*lot_order)).all()
    signer = {u.id: initials(u.full_name) for u in session.execute(select(User)).scalars()}

    # Small per-lot figures, a few rows per lot, for every chosen lot at once.
    receipts: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for lot_id, at, n in session.execute(
            select(Vial.lot_id, Vial.received_at, func.count())
            .where(vial_filter, Vial.received_at.is_not(None))
            .group_by(Vial.lot_id, Vial.received_at)):
        receipts[lot_id].append((at, n))
    received_by_status: dict[int, Counter[str]] = defaultdict(Counter)
    for lot_id, status, n in session.execute(
            select(Vial.lot_id, Vial.status, func.count())
            .where(vial_filter, Vial.received_at.is_not(None))
            .group_by(Vial.lot_id, Vial.status)):
        received_by_status[lot_id][status] = n
    never_received = dict(session.execute(
        select(Vial.lot_id, func.count())
        .where(vial_filter, Vial.received_at.is_(None),
               Vial.status.in_(("dispensed", "administered")))
        .group_by(Vial.lot_id)).all())
    destruction: dict[str, tuple[datetime, str]] = {}
    for entity_id, at, name in session.execute(
            select(Signature.entity_id, Signature.signed_at, Signature.printed_name)
            .where(Signature.entity == "lot", Signature.meaning == "QA destruction")
            .order_by(Signature.id)):
        destruction.setdefault(entity_id, (at, name))

    # The doses, the one large part: one streamed query in the lots' order, each dose with
    # the number of this lot's vials it used (a dose may draw on two lots).
    used = (select(DoseVial.dose_id, Vial.lot_id, func.count().label("vials"))
            .join(Vial, Vial.id == DoseVial.vial_id).where(vial_filter)
            .group_by(DoseVial.dose_id, Vial.lot_id).subquery())
    dose_rows = session.execute(
        select(used.c.lot_id, used.c.vials, Dose.id, Dose.perfusion, Dose.status,
               Dose.dispensed_at, Dose.dispensed_by_id, Dose.verified_by_id, Dose.closed_at,
               Dose.closed_reason, Dose.closed_by_id, Participant.subject_id,
               TreatmentCycle.number.label("cycle"))
        .select_from(used).join(Dose, Dose.id == used.c.dose_id)
        .join(Participant, Participant.id == Dose.participant_id)
        .join(TreatmentCycle, TreatmentCycle.id == Dose.cycle_id)
        .join(Lot, Lot.id == used.c.lot_id).join(Product, Product.id == Lot.product_id)
        # Dose.id breaks ties in time, so that recomputing the record gives the same lines.
        .order_by(*lot_order, Dose.dispensed_at, Dose.id),
        execution_options={"yield_per": DOSE_BATCH})
    doses_by_lot = groupby(dose_rows, key=attrgetter("lot_id"))
    pending = next(doses_by_lot, None)
    for lot, product in chosen:
        doses: list[Row[Any]] = []
        if pending is not None and pending[0] == lot.id:
            doses = list(pending[1])
            pending = next(doses_by_lot, None)
        record = _lot_record(lot, product, receipts[lot.id], doses, signer,
                             received_by_status[lot.id], destruction.get(lot.audit_key),
                             never_received.get(lot.id, 0))
        if record["reconciliation"]["flags"]:
            flagged.append(lot.lot_number)
        yield record
    if pending is not None:  # both queries sort alike; a dose left over would be lost
        raise RuntimeError(f"doses of lot id {pending[0]} came out of order")


def _lot_record(lot: Lot, product: Product, receipts: Sequence[tuple[datetime, int]],
                doses: Sequence[Row[Any]], signer: dict[int, str], status: Counter[str],
                destruction: tuple[datetime, str] | None,
                never_received: int) -> dict[str, Any]:
    # (when, rank, line): on the same instant, receipts before dispensing before closing.
    events: list[tuple[datetime, int, dict[str, Any]]] = []
    for at, n in receipts:
        events.append((at, 0, {"kind": "received", "quantity_in": n, "quantity_out": 0}))
    for dose in doses:
        dose_code = format_dose_code(dose.id)
        events.append((dose.dispensed_at, 1, {
            "kind": "dispensed", "participant": dose.subject_id, "dose": dose_code,
            "cycle_perfusion": f"C{dose.cycle}P{dose.perfusion}",
            "quantity_in": 0, "quantity_out": dose.vials, "dose_status": dose.status,
            "dispenser": signer[dose.dispensed_by_id],
            "verified_by": signer[dose.verified_by_id]}))
        if dose.status in ("wasted", "returned") and dose.closed_at is not None:
            # Returned product is not re-entered into stock: a note, no balance change.
            events.append((dose.closed_at, 2, {
                "kind": dose.status, "participant": dose.subject_id, "dose": dose_code,
                "quantity_in": 0, "quantity_out": 0, "note": dose.closed_reason,
                "dispenser": signer[dose.closed_by_id] if dose.closed_by_id else ""}))
    destroyed = status["destroyed"]
    if destroyed and destruction is not None:
        signed_at, printed_name = destruction
        events.append((signed_at, 3, {
            "kind": "destroyed", "quantity_in": 0, "quantity_out": destroyed,
            "dispenser": initials(printed_name)}))
    lines, balance = [], 0
    for at, _, line in sorted(events, key=lambda e: (e[0], e[1])):
        balance += int(line["quantity_in"]) - int(line["quantity_out"])
        lines.append({"date": iso(at), **line, "balance": balance})
    return {"lot": lot.lot_number, "product": product.code, "agent": product.name,
            "dose_form": product.dosage_form, "strength": f"{lot.fill_volume_ml:g} mL per vial",
            "expiry": iso(lot.expiry_on), "lines": lines,
            "reconciliation": reconcile(status, sum(d.vials for d in doses), never_received)}


def reconcile(status: Counter[str], ledger: int, never_received: int) -> dict[str, Any]:
    """A lot's balance from the status of the vials received at the site (`status`), the
    vials the dose records hold (`ledger`) and those dispensed without a receipt."""
    received = sum(status.values())
    counts = {
        "received": received,
        "dispensed": status["dispensed"] + status["administered"],
        "wasted": status["wasted"], "returned": status["returned"],
        "destroyed": status["destroyed"],
        "in_stock": status["in_stock"] + status["quarantined"] + status["unconfirmed"],
    }
    accounted = sum(counts[k] for k in RECONCILED)
    flags = []
    if accounted != received:
        flags.append(f"{received} received but {accounted} accounted for "
                     f"(difference {received - accounted})")
    by_status = counts["dispensed"] + counts["wasted"] + counts["returned"]
    if ledger != by_status:
        flags.append(f"the dose records hold {ledger} vial(s) of this lot but {by_status} vial(s) "
                     "carry a dispensed, wasted or returned status")
    if never_received:
        flags.append(f"{never_received} vial(s) dispensed without a receipt at the site")
    return {**counts, "accounted": accounted, "difference": received - accounted,
            "flags": flags}
