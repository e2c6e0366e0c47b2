"""The demo's supply chain: staff, products and specifications, storage, lots with QC."""

from __future__ import annotations

import random
from datetime import date, timedelta

from lotrack import db
from lotrack.demo import labels as demo_labels
from lotrack.demo import shipping
from lotrack.demo.core import DEMO_PASSWORD, SITE_TZ, Demo, local
from lotrack.models.base import simulated_time
from lotrack.schemas.lots import (
    LotIn,
    ProductIn,
    QcRowIn,
    example_qc_results,
    load_spec_file,
    shipped_spec_path,
)
from lotrack.services import lots, products, qc, site_settings, specifications, storage, users

BOXES = [f"BJ-SITE/FRZ-80A/R1/BOX-{n:02d}" for n in range(1, 5)]

# The study team, with separation of duties: the QA person who releases a lot is not
# the pharmacist who dispenses it, and a second pharmacist verifies each dose.
STAFF = [
    ("admin", "Wei Zhang", ["admin"]),
    ("qa.lee", "Min Lee", ["qa"]),
    ("qa.huang", "Jing Huang", ["qa"]),
    ("pharm.chen", "Li Chen", ["pharmacist"]),
    ("pharm.wang", "Fang Wang", ["pharmacist"]),
    ("inv.liu", "Dr. Yang Liu", ["investigator"]),
    ("inv.zhou", "Dr. Hui Zhou", ["investigator"]),
    ("monitor.sun", "Qing Sun", ["monitor"]),
    ("depot.ma", "Tao Ma", ["pharmacist"]),  # shipping staff at the manufacturer's depot
]

# (lot, product, manufactured, vials, QC adjustments); EXO-2603 fails endotoxin.
# The modal particle size creeps upward from EXO-2509 on, well inside 50-200 nm: the
# consistency report flags it out of trend (6 rising lots, then 2 of 3 beyond 2 sigma).
LOTS = [
    ("EXO-2601", "IPSEXO", date(2026, 1, 12), 60, {"modal_particle_size": "117.4"}),
    ("PBO-2601", "PLACEBO", date(2026, 1, 15), 40, {}),
    ("EXO-2602", "IPSEXO", date(2026, 2, 9), 60, {"modal_particle_size": "118.1"}),
    ("EXO-2603", "IPSEXO", date(2026, 3, 9), 60, {"endotoxin": "1.2",
                                                 "modal_particle_size": "118.9"}),
    ("EXO-2604", "IPSEXO", date(2026, 4, 6), 60, {"modal_particle_size": "119.6"}),
]
# Earlier iPS-Exo lots of the same process (2025: other studies and stability), entered
# retrospectively from their batch records and released, never shipped to this site: no
# freezer box, no vial labels here. They give the consistency report its baseline.
EARLIER_LOTS = [
    ("EXO-2501", date(2025, 3, 3), "112.4"), ("EXO-2502", date(2025, 4, 7), "115.8"),
    ("EXO-2503", date(2025, 5, 5), "113.1"), ("EXO-2504", date(2025, 6, 9), "114.9"),
    ("EXO-2505", date(2025, 7, 7), "111.7"), ("EXO-2506", date(2025, 8, 4), "114.2"),
    ("EXO-2507", date(2025, 9, 8), "113.0"), ("EXO-2508", date(2025, 10, 6), "114.6"),
    ("EXO-2509", date(2025, 11, 3), "115.3"), ("EXO-2510", date(2025, 12, 8), "116.2"),
]
EARLIER_LOT_VIALS = 20
NOMINAL = {  # attribute -> (value, unit, relative batch-to-batch variation)
    "particle_concentration": (3.1e11, "particles/mL", 0.08),
    "modal_particle_size": (114, "nm", 0.04),
    "total_protein": (185, "ug/mL", 0.06),
    "particle_to_protein_ratio": (1.7e9, "particles/ug", 0.07),
    "tgf_beta1": (860, "pg/mL", 0.07),
    "bdnf": (430, "pg/mL", 0.08),
    "residual_host_cell_dna": (2.2, "ng/dose", 0.15),
    "ph": (7.25, "pH", 0.005),
    "osmolality": (296, "mOsm/kg", 0.01),
}


def create_staff(demo: Demo) -> None:
    start = local(date(2026, 1, 5), 9)
    admin_name, admin_full, _ = STAFF[0]
    with simulated_time(start), db.unit_of_work(demo.engine) as session:
        admin = users.create_first_admin(session, admin_name, admin_full, DEMO_PASSWORD)
        # As `lotrack init` does: whoever explores the demo later sees Shanghai times.
        site_settings.set_site_time_zone(session, admin, SITE_TZ.key, None)
        session.commit()
    for username, name, roles in STAFF[1:]:
        demo.act(admin_name, start, lambda s, a, u=username, n=name, r=roles:
                 users.add_user(s, a, u, n, r, DEMO_PASSWORD))
    demo.say(f"Created {len(STAFF)} users (password for all: {DEMO_PASSWORD}).")


def set_up_products(demo: Demo) -> None:
    at = local(date(2026, 1, 6), 10)
    demo.act("qa.lee", at, lambda s, a: products.add_product(s, a, ProductIn(
        code="IPSEXO", name="iPS-Exo intrauterine suspension", kind="active",
        gtin="09506000134352", storage_condition="Store at or below -70 C", storage_max_c=-70,
        shelf_life_days=365, post_thaw_hours=4, fill_volume_ml=1.0,
        do_not_dispense_days=5, do_not_ship_days=14)))
    demo.act("qa.lee", at, lambda s, a: products.add_product(s, a, ProductIn(
        code="PLACEBO", name="Placebo (iPS-Exo formulation buffer)", kind="placebo",
        gtin="09506000134369", storage_condition="Store at or below -70 C", storage_max_c=-70,
        shelf_life_days=365, post_thaw_hours=4, fill_volume_ml=1.0,
        do_not_dispense_days=5, do_not_ship_days=14)))
    for code in ("IPSEXO", "PLACEBO"):
        spec = load_spec_file(shipped_spec_path(code))
        version = demo.act("qa.lee", at, lambda s, a, sp=spec: specifications.load_spec(
            s, a, sp, shipped_spec_path(sp.product).name))
        demo.act("qa.huang", at + timedelta(hours=2), lambda s, a, c=code, v=version.version:
                 specifications.activate_spec(s, a, c, v, DEMO_PASSWORD))
    for box in BOXES:
        demo.act("pharm.chen", at, lambda s, a, b=box: storage.add_location(s, a, b, 81))
    shipping.set_up_depot(demo, at)
    demo.say("Products IPSEXO and PLACEBO (do-not-dispense 5 days, do-not-ship 14 days before "
             "expiry) with active QC specifications; 4 freezer boxes at the site, 4 at the depot.")


def _qc_rows(demo: Demo, product: str, tested: date, adjust: dict[str, str],
             rng: random.Random | None = None) -> list[QcRowIn]:
    spec = load_spec_file(shipped_spec_path(product))
    rng = rng or demo.rng
    rows = []
    passing = {name: value for name, value, _ in example_qc_results(product)}
    for attr in spec.attributes:
        if attr.name in NOMINAL:
            nominal, _, cv = NOMINAL[attr.name]
            value = f"{nominal * (1 + rng.gauss(0, cv)):.4g}"
        else:  # categorical, or censored (endotoxin): no batch-to-batch variation to show
            value = passing[attr.name]
        rows.append(QcRowIn(attribute=attr.name, value=adjust.get(attr.name, value),
                            unit=attr.unit, method=attr.method, tested_on=tested,
                            analyst="QC analyst Xu Ming"))
    return rows


def make_earlier_lots(demo: Demo) -> None:
    """Register, QC and release the 2025 lots on one day of retrospective entry."""
    # Their own random stream, so the trial's lots keep the values they always had; the
    # seed is one whose chance variation breaks no trend rule, so the report shows the
    # planned drift (and nothing the demo cannot explain).
    rng = random.Random(2043)
    start = local(date(2026, 1, 9), 9)
    for k, (number, made, size) in enumerate(EARLIER_LOTS):
        at = start + timedelta(minutes=30 * k)
        demo.act("qa.lee", at, lambda s, a, n=number, m=made: lots.register_lot(s, a, LotIn(
            lot_number=n, product="IPSEXO", manufactured_on=m,
            expiry_on=m + timedelta(days=360), vials=EARLIER_LOT_VIALS,
            cell_line="iPSC-GD01 (clinical-grade)", cell_bank_id="MCB-2025-01", passage=18)))
        rows = _qc_rows(demo, "IPSEXO", made + timedelta(days=10),
                        {"modal_particle_size": size}, rng)
        demo.act("qa.lee", at + timedelta(minutes=10), lambda s, a, n=number, r=rows:
                 qc.record_results(s, a, lots.get_lot(s, n), r, source="csv"))
        demo.act("qa.huang", at + timedelta(minutes=20), lambda s, a, n=number: lots.transition(
            s, a, n, "released", "retrospective entry: QC results within specification; "
            "batch record reviewed", DEMO_PASSWORD, SITE_TZ))
    demo.say(f"{len(EARLIER_LOTS)} earlier iPS-Exo lots (2025, not shipped to this site) "
             "entered with their QC results and released.")


def make_lots(demo: Demo) -> None:
    make_earlier_lots(demo)
    boxes = iter(BOXES)  # each received lot gets a box of its own, at the depot and the site
    depot_boxes = iter(shipping.DEPOT_BOXES)
    for number, product, made, vials, adjust in LOTS:
        demo.act("qa.lee", local(made, 16), lambda s, a, n=number, p=product, m=made, v=vials:
                 lots.register_lot(s, a, LotIn(
                     lot_number=n, product=p, manufactured_on=m,
                     expiry_on=m + timedelta(days=330), vials=v,
                     cell_line="iPSC-GD01 (clinical-grade)" if p == "IPSEXO" else "not applicable",
                     cell_bank_id="MCB-2025-01" if p == "IPSEXO" else "not applicable",
                     passage=18 if p == "IPSEXO" else 0)))
        demo_labels.vial_labels(demo, number, local(made, 17))
        tested = made + timedelta(days=10)
        demo.act("qa.lee", local(tested, 15), lambda s, a, n=number, p=product, t=tested,
                 adj=adjust: qc.record_results(s, a, lots.get_lot(s, n),
                                               _qc_rows(demo, p, t, adj), source="csv"))
        decided = local(made + timedelta(days=14), 11)
        if "endotoxin" in adjust:
            demo.act("qa.huang", decided, lambda s, a, n=number: lots.transition(
                s, a, n, "rejected", "endotoxin 1.2 EU/mL exceeds the 0.5 EU/mL limit",
                DEMO_PASSWORD, SITE_TZ))
            demo.act("qa.huang", decided + timedelta(days=7), lambda s, a, n=number, v=vials:
                     lots.transition(s, a, n, "destroyed", "rejected lot destroyed by "
                                     "incineration", DEMO_PASSWORD, SITE_TZ,
                                     witness=("qa.lee", DEMO_PASSWORD), quantity=v))
            demo.say(f"Lot {number}: endotoxin out of specification, rejected and destroyed.")
            continue
        demo.act("qa.huang", decided, lambda s, a, n=number: lots.transition(
            s, a, n, "released", "QC results within specification; batch record reviewed",
            DEMO_PASSWORD, SITE_TZ))
        received = local(made + timedelta(days=16), 10)
        box = next(boxes)
        shipping.ship_lot(demo, number, made, next(depot_boxes), box)
        demo_labels.box_label(demo, box, received + timedelta(minutes=30))
        demo.say(f"Lot {number} ({product}): QC passed, released, shipped to and received at "
                 "site.")


