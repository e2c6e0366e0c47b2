"""What each label says, taken from the database, and the audited record of every print.

Rules: labels are printed by pharmacy or QA staff; a rejected or destroyed lot gets no
labels; printing the same subject again is a reprint, which needs a reason, is counted,
and is marked on the label.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack import audit, gs1
from lotrack.db import bulk_insert
from lotrack.errors import InvalidInput, NotFound, RuleViolation
from lotrack.models import LabelPrint, Lot, Participant, Product, TreatmentCycle, User, Vial
from lotrack.models.base import utcnow
from lotrack.render.labels.layout import LabelData
from lotrack.render.tables import site_time
from lotrack.schemas.labels import LabelTemplate, read_template
from lotrack.schemas.protocol import ProtocolFile
from lotrack.services.dosing import get_dose
from lotrack.services.lots import get_lot
from lotrack.services.protocols import active_protocol, protocol_content
from lotrack.services.roles import require_role
from lotrack.services.storage import get_location
from lotrack.services.vials import check_serial

PRINTER_ROLES = ("pharmacist", "qa")
LABELLED_VIAL_STATUSES = ("in_stock", "quarantined", "unconfirmed")
CTU = "For clinical trial use only"


def templates_dir() -> Path:
    """labels/ ships inside the package as lotrack/_labels; a checkout uses labels/ itself."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_labels", package.parent / "labels"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    raise NotFound(f"the lotrack installation at {package} has no label templates")


def list_templates() -> list[LabelTemplate]:
    return [read_template(path) for path in sorted(templates_dir().glob("*.toml"))]


def load_template(name: str | None, kind: str) -> LabelTemplate:
    """A template by name (from labels/) or by the path of a TOML file."""
    default = {"vial": "cryovial", "box": "box", "dose": "dose"}[kind]
    chosen = name or default
    path = Path(chosen)
    if path.suffix != ".toml":
        path = templates_dir() / f"{chosen}.toml"
        if not _is_file(path):
            names = ", ".join(p.stem for p in sorted(templates_dir().glob("*.toml")))
            raise NotFound(f"no label template {chosen!r} (there are: {names})")
    template = read_template(path)
    if template.template.kind != kind:
        raise InvalidInput(f"template {template.template.name} is for {template.template.kind} "
                           f"labels, not {kind} labels")
    return template


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name longer than the file system allows is no template either
        return False


def _common(product: Product, protocol: ProtocolFile) -> dict[str, str]:
    head = protocol.protocol
    return {
        "sponsor": head.sponsor, "sponsor_short": head.sponsor_short or head.sponsor,
        "sponsor_contact": head.sponsor_contact, "trial_code": head.code, "ctu": CTU,
        "product_code": product.code, "product_name": product.name,
        "dosage_form": product.dosage_form, "route": product.route,
        "storage": product.storage_condition, "fill_volume": f"{product.fill_volume_ml:g} mL",
    }


def _vial_labels(vials: Sequence[tuple[str, int]], lot: Lot,
                 common: dict[str, str]) -> list[LabelData]:
    """Labels of (serial, number) vials of one lot: what the lot gives is looked up once."""
    lot_fields = {**common, "lot": lot.lot_number, "expiry": lot.expiry_on.isoformat()}
    gtin = lot.product.gtin
    lot_element = [("01", gtin), ("10", lot.lot_number),
                   ("17", gs1.yymmdd(lot.expiry_on))] if gtin else None
    return [LabelData(serial, {**lot_fields, "serial": serial, "vial_number": str(number)},
                      [*lot_element, ("21", serial)] if lot_element else None)
            for serial, number in vials]


def _labellable(lot: Lot) -> None:
    if lot.status in ("rejected", "destroyed"):
        raise RuleViolation(f"lot {lot.lot_number} is {lot.status}: its vials get no labels")


def vial_labels(session: Session, lot_number: str, product_code: str | None,
                serials: Sequence[str]) -> list[LabelData]:
    """Labels for the given vials of a lot, or for every vial of it still in the building."""
    lot = get_lot(session, lot_number, product_code)
    _labellable(lot)
    _, protocol = active_protocol(session)
    common = _common(lot.product, protocol)
    if serials:
        wanted = [check_serial(s) for s in serials]
        if len(set(wanted)) != len(wanted):
            raise InvalidInput("the same serial was given twice")
        found = {v.serial: v for v in session.execute(
            select(Vial).where(Vial.serial.in_(wanted))).scalars()}
        missing = [s for s in wanted if s not in found]
        if missing:
            raise NotFound(f"no vial {', '.join(missing)}")
        foreign = [s for s in wanted if found[s].lot_id != lot.id]
        if foreign:
            raise InvalidInput(f"vial {', '.join(foreign)} is not of lot {lot.lot_number}")
        gone = [s for s in wanted if found[s].status == "destroyed"]
        if gone:
            raise RuleViolation(f"vial {', '.join(gone)} is destroyed: no label")
        vials = [(found[s].serial, found[s].number) for s in wanted]
    else:
        # Two columns, not 2,000 vial objects: a label needs only the serial and number.
        vials = [(serial, number) for serial, number in session.execute(
            select(Vial.serial, Vial.number)
            .where(Vial.lot_id == lot.id, Vial.status.in_(LABELLED_VIAL_STATUSES))
            .order_by(Vial.number))]
        if not vials:
            raise RuleViolation(f"lot {lot.lot_number} has no vial in stock or quarantine to label")
    return _vial_labels(vials, lot, common)


def box_labels(session: Session, paths: Sequence[str]) -> list[LabelData]:
    _, protocol = active_protocol(session)
    return [_box_label(session, path, protocol) for path in paths]


def _box_label(session: Session, path: str, protocol: ProtocolFile) -> LabelData:
    box = get_location(session, path)
    vials = list(session.execute(select(Vial).where(
        Vial.location_id == box.id, Vial.status.in_(LABELLED_VIAL_STATUSES))).scalars())
    if not vials:
        raise RuleViolation(f"{box.path} holds no vial: nothing to label")
    lots = sorted({v.lot for v in vials}, key=lambda lot: (lot.expiry_on, lot.lot_number))
    products = {lot.product_id: lot.product for lot in lots}
    if len(products) > 1:
        raise RuleViolation(f"{box.path} holds more than one product "
                            f"({', '.join(p.code for p in products.values())}): move the vials")
    product = lots[0].product
    fields = {**_common(product, protocol), "box": box.path,
              "lots": ", ".join(lot.lot_number for lot in lots),
              "expiry": lots[0].expiry_on.isoformat(), "count": str(len(vials))}
    element = None
    if product.gtin and len(lots) == 1:
        element = [("01", product.gtin), ("10", lots[0].lot_number),
                   ("17", gs1.yymmdd(lots[0].expiry_on)), ("30", str(len(vials)))]
    return LabelData(box.path, fields, element)


def dose_labels(session: Session, dose_codes: Sequence[str], site_tz: ZoneInfo) -> list[LabelData]:
    return [dose_label(session, code, site_tz) for code in dose_codes]


def dose_label(session: Session, dose_code: str, site_tz: ZoneInfo) -> LabelData:
    dose = get_dose(session, dose_code)
    vials = list(session.execute(select(Vial).where(
        Vial.id.in_([dv.vial_id for dv in dose.vials])).order_by(Vial.serial)).scalars())
    lots = sorted({v.lot for v in vials}, key=lambda lot: lot.lot_number)
    product = lots[0].product
    participant = session.get(Participant, dose.participant_id)
    dispenser = session.get(User, dose.dispensed_by_id)
    verifier = session.get(User, dose.verified_by_id)
    cycle = session.get(TreatmentCycle, dose.cycle_id)
    assert participant and dispenser and verifier and cycle
    protocol = protocol_content(participant.protocol_version)
    volume = sum(v.lot.fill_volume_ml for v in vials)
    fields = {**_common(product, protocol), "dose": dose.dose_code,
              "subject": participant.subject_id, "group": participant.group_code,
              "cycle": str(cycle.number), "perfusion": str(dose.perfusion),
              "dispensed_at": site_time(dose.dispensed_at, site_tz),
              "use_by": site_time(dose.use_by, site_tz),
              "vials": ", ".join(v.serial for v in vials),
              "lots": ", ".join(lot.lot_number for lot in lots),
              "expiry": min(lot.expiry_on for lot in lots).isoformat(),
              "amount": f"{len(vials)} vial{'s' if len(vials) > 1 else ''} ({volume:g} mL)",
              "dispensed_by": dispenser.full_name, "verified_by": verifier.full_name}
    element = None
    if product.gtin:
        use_by_local = dose.use_by.astimezone(site_tz)
        element = [("01", product.gtin), ("7003", gs1.yymmddhhmm(use_by_local)),
                   ("21", dose.dose_code)]
    return LabelData(dose.dose_code, fields, element)


def record_prints(session: Session, actor: User, kind: str, labels: list[LabelData],
                  template: LabelTemplate, output_format: str, copies: int,
                  reason: str | None) -> list[LabelData]:
    """Record one print of each label (audited); returns the labels with their print number.

    A subject printed before is a reprint: refused without a reason, counted and marked."""
    require_role(actor, *PRINTER_ROLES, action="printing labels")
    if copies < 1 or copies > 100:
        raise InvalidInput("--copies must be 1 to 100")
    reason = (reason or "").strip() or None
    subjects = [label.subject for label in labels]
    if len(set(subjects)) != len(subjects):
        raise InvalidInput("the same label was asked for twice; use --copies")
    previous = _previous_prints(session, kind, subjects)
    reprints = [s for s in subjects if previous.get(s)]
    if reprints and reason is None:
        shown = ", ".join(reprints[:5]) + (f" and {len(reprints) - 5} more" if len(reprints) > 5 else "")
        raise RuleViolation(f"{shown} {'was' if len(reprints) == 1 else 'were'} printed before: "
                            "give --reason for the reprint")
    shared = {"job": uuid.uuid4().hex, "kind": kind, "template": template.template.name,
              "output_format": output_format, "copies": copies, "reason": reason,
              "printed_at": utcnow(), "printed_by_id": actor.id}
    # The audit state as the model defines it, read once from a plain object that is never
    # added to the session (an ORM instance's instrumented attributes cost microseconds a
    # label for nothing); the rows of one print differ only in the three columns set here.
    state = LabelPrint.audit_state(SimpleNamespace(
        **shared, subject=None, print_number=None, content=None))
    key, entity = LabelPrint.audit_key_from, LabelPrint.__audit_entity__
    rows, entries, out = [], [], []
    for label in labels:
        number = previous.get(label.subject, 0) + 1
        varying = {"subject": label.subject, "print_number": number, "content": _content(label)}
        rows.append(shared | varying)
        entries.append(audit.Entry(entity, key(kind, label.subject, number),
                                   "reprint" if number > 1 else "print", None,
                                   state | varying, reason))
        out.append(LabelData(label.subject, label.fields, label.gs1, number))
    # One Core insert and one chain append for a whole sheet: a flush and an ORM event
    # per label were most of the time of a 2,000-vial print.
    bulk_insert(session, LabelPrint.__table__, rows)
    audit.record_many(session, actor, entries)
    return out


def _content(label: LabelData) -> str:
    return gs1.hri(label.gs1) if label.gs1 else label.subject


def _previous_prints(session: Session, kind: str, subjects: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for start in range(0, len(subjects), 500):  # stay under any backend's parameter limit
        chunk = subjects[start:start + 500]
        counts.update(session.execute(
            select(LabelPrint.subject, func.max(LabelPrint.print_number))
            .where(LabelPrint.kind == kind, LabelPrint.subject.in_(chunk))
            .group_by(LabelPrint.subject)).all())
    return counts
