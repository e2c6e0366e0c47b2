"""The demo's site supply: each released lot is stored at the manufacturer's depot, shipped
to the trial site with a temperature monitor, received, and confirmed by scanning the vial
labels printed when the lot was filled (read back from the label sheets). One shipment
arrives after a temperature excursion: it is quarantined until QA releases it."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from lotrack.demo.core import DEMO_PASSWORD, SITE_TZ, Demo, local
from lotrack.demo.scanner import read_label_sheet
from lotrack.models import Shipment
from lotrack.services import auth, documents, lots, shipments, storage

DEPOT = "GD-DEPOT"
SITE = "BJ-SITE"
DEPOT_BOXES = [f"{DEPOT}/FRZ-01/R1/BOX-{n:02d}" for n in range(1, 5)]
DEPOT_STAFF = "depot.ma"
EXCURSION_LOT = "EXO-2602"  # its data logger shows -61.5 C in transit


def set_up_depot(demo: Demo, at) -> None:
    for box in DEPOT_BOXES:
        demo.act(DEPOT_STAFF, at, lambda s, a, b=box: storage.add_location(s, a, b, 81))


def ship_lot(demo: Demo, number: str, made: date, depot_box: str, site_box: str) -> str:
    """Depot receipt, shipment, site receipt and confirmation by scan of one lot."""
    stored = local(made + timedelta(days=14), 15)
    demo.act(DEPOT_STAFF, stored, lambda s, a: storage.receive_lot(
        s, a, lots.get_lot(s, number), [depot_box], stored))
    prepared = local(made + timedelta(days=15), 9)
    shipment = demo.act(DEPOT_STAFF, prepared, lambda s, a: shipments.create_shipment(
        s, a, DEPOT, SITE, [shipments.LotPick(number)], [], SITE_TZ))
    code = shipment.code
    sent = prepared + timedelta(hours=1)
    demo.act(DEPOT_STAFF, sent, lambda s, a: shipments.dispatch_shipment(
        s, a, code, "Cold-chain courier (dry ice)", f"CC-{made:%y%m%d}-{number[-4:]}",
        f"TL-{number[-4:]}", sent, DEMO_PASSWORD, SITE_TZ))
    arrived = local(made + timedelta(days=16), 10)
    reading = -61.5 if number == EXCURSION_LOT else -78.4
    received = demo.act("pharm.chen", arrived, lambda s, a: shipments.receive_shipment(
        s, a, code, [site_box], arrived, reading, DEMO_PASSWORD, SITE_TZ))
    # The pharmacist scans every vial label printed when the lot was filled.
    scans = read_label_sheet(demo.out / "labels" / f"vials-{number}.pdf")
    report = demo.act("pharm.chen", arrived + timedelta(minutes=20),
                      lambda s, a: shipments.confirm_scans(s, a, code, scans, DEMO_PASSWORD,
                                                           None, SITE_TZ))
    if report.refused or report.remaining:
        raise RuntimeError(f"demo: shipment {code} not fully confirmed by its labels: "
                           f"{report.refused[:1]}, {report.remaining} remaining")
    if received.status == "quarantined":
        demo.say(f"Shipment {code} ({number}) arrived quarantined: {received.quarantine_reason}.")
        demo.act("qa.huang", arrived + timedelta(hours=5), lambda s, a: shipments.release_quarantine(
            s, a, code, "excursion to -61.5 C for under 2 h: within the product's stability "
                        "data (report STAB-2025-07); vials usable", DEMO_PASSWORD))
        demo.say(f"Shipment {code}: QA assessed the excursion and released it.")
    demo.say(f"Shipment {code}: {len(scans)} vials of {number} from {DEPOT} to {SITE}, "
             "received and confirmed by scanning their labels.")
    return code


def write_manifests(demo: Demo) -> None:
    from lotrack.render.pdf.manifest import write_manifest

    def issue(session):
        reader = auth.find_user(session, "qa.lee")
        codes = [s.code for s in session.execute(select(Shipment).order_by(Shipment.id)).scalars()]
        return (documents.provenance(session, reader),
                [shipments.manifest(session, reader, code, SITE_TZ) for code in codes])

    prov, manifests = demo.read(issue)
    for content in manifests:
        code = content["shipment"]
        write_manifest(demo.out / "manifests" / f"{code}.pdf", content, prov, SITE_TZ,
                       {"report": "manifest", "params": {"shipment": code},
                        "summary": {"vials": content["count"]}})
    demo.say(f"Wrote {len(manifests)} shipment manifests (manifests/).")
