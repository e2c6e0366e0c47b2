"""What a scan identifies, and whether the barcode agrees with the database.

A label that disagrees with the record (a lot or expiry that is not the vial's, a GTIN
of another product) means a mislabelled vial: it is reported, and dispensing refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack import gs1
from lotrack.errors import InvalidInput, LotrackError, NotFound
from lotrack.models import Dose, Product, StorageLocation, Vial
from lotrack.models.dosing import parse_dose_code
from lotrack.services.vials import SERIAL_RE, get_vial


@dataclass
class ScanReport:
    symbology: str
    kind: str  # vial, dose, box or product
    subject: str
    fields: dict[str, str]
    identified: dict[str, str] = field(default_factory=dict)  # what the database says
    problems: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.problems


def identify(session: Session, text: str, substitute: str | None, site_tz: ZoneInfo) -> ScanReport:
    scan = gs1.parse_scan(text, substitute)
    if scan.gs1:
        return _gs1_report(session, scan, site_tz)
    payload = (scan.text or "").strip()
    if SERIAL_RE.match(payload.upper()):
        vial = get_vial(session, payload)
        return _vial_report(session, scan, vial)
    if parse_dose_code(payload) is not None:
        return _dose_report(session, scan, payload, site_tz)
    box = session.execute(select(StorageLocation).where(StorageLocation.path == payload)).scalar()
    if box is not None:
        return ScanReport(scan.symbology, "box", box.path, {}, {"box": box.path})
    raise NotFound(f"the scan {payload!r} is no vial serial, dose id, storage location or GS1 data")


def _gs1_report(session: Session, scan: gs1.Scan, site_tz: ZoneInfo) -> ScanReport:
    serial = scan.fields.get("21")
    if serial and parse_dose_code(serial) is not None and "7003" in scan.fields:
        return _dose_report(session, scan, serial, site_tz)
    if serial:
        return _vial_report(session, scan, get_vial(session, serial))
    product = session.execute(select(Product).where(Product.gtin == scan.gtin)).scalar()
    if product is None:
        raise NotFound(f"no product has GTIN {scan.gtin}")
    report = ScanReport(scan.symbology, "product", product.code, scan.fields,
                        {"product": product.code})
    if scan.lot:
        _check_lot(session, report, product, scan)
    return report


def _check_lot(session: Session, report: ScanReport, product: Product, scan: gs1.Scan) -> None:
    from lotrack.models import Lot

    lot = session.execute(select(Lot).where(Lot.product_id == product.id,
                                            Lot.lot_number == scan.lot)).scalar()
    if lot is None:
        report.problems.append(f"product {product.code} has no lot {scan.lot}")
        return
    report.identified.update(lot=lot.lot_number, expiry=lot.expiry_on.isoformat())
    if scan.expiry is not None and scan.expiry != lot.expiry_on:
        report.problems.append(f"the label's expiry {scan.expiry} is not lot {lot.lot_number}'s "
                               f"{lot.expiry_on}")


def _vial_report(session: Session, scan: gs1.Scan, vial: Vial) -> ScanReport:
    lot = vial.lot
    product = lot.product
    report = ScanReport(scan.symbology, "vial", vial.serial, scan.fields, {
        "serial": vial.serial, "product": product.code, "lot": lot.lot_number,
        "expiry": lot.expiry_on.isoformat(), "status": vial.status})
    if scan.gs1:
        if scan.gtin != product.gtin:
            report.problems.append(f"the label's GTIN {scan.gtin} is not {product.code}'s "
                                   f"{product.gtin or '(none)'}")
        if scan.lot is not None and scan.lot != lot.lot_number:
            report.problems.append(f"the label's lot {scan.lot} is not vial {vial.serial}'s lot "
                                   f"{lot.lot_number}")
        if scan.lot is None:
            report.problems.append("the label carries no lot (10)")
        if scan.expiry is not None and scan.expiry != lot.expiry_on:
            report.problems.append(f"the label's expiry {scan.expiry} is not lot "
                                   f"{lot.lot_number}'s {lot.expiry_on}")
    return report


def _dose_report(session: Session, scan: gs1.Scan, code: str, site_tz: ZoneInfo) -> ScanReport:
    from lotrack.services.dosing import get_dose

    dose: Dose = get_dose(session, code)
    use_by = dose.use_by.astimezone(site_tz).replace(tzinfo=None, second=0, microsecond=0)
    report = ScanReport(scan.symbology, "dose", dose.dose_code, scan.fields, {
        "dose": dose.dose_code, "status": dose.status, "use_by": use_by.isoformat(" ")})
    if scan.use_by is not None and scan.use_by != use_by:
        report.problems.append(f"the label's use-by {scan.use_by:%Y-%m-%d %H:%M} is not dose "
                               f"{dose.dose_code}'s {use_by:%Y-%m-%d %H:%M} (site time)")
    return report


def serial_for_dispensing(session: Session, text: str, substitute: str | None,
                          site_tz: ZoneInfo) -> str:
    """The vial serial a scan names; a scan of anything else, or one that disagrees with
    the database, is refused."""
    try:
        report = identify(session, text, substitute, site_tz)
    except LotrackError as exc:
        raise type(exc)(f"scan {text.strip()!r}: {exc}") from exc
    if report.kind != "vial":
        raise InvalidInput(f"scan {text.strip()!r} is a {report.kind}, not a vial")
    if report.problems:
        raise InvalidInput(f"scan of vial {report.subject} disagrees with the database: "
                           + "; ".join(report.problems))
    return report.subject
