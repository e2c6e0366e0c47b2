"""A synthetic trial for the benchmarks, built through the service layer.

Every record goes through the same services the commands use (validation, rules,
signatures, audit trail), so the figures measure lotrack as it runs, on a database
whose audit trail verifies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine

from lotrack import db
from lotrack.models import Vial
from lotrack.schemas.lots import LotIn, ProductIn, QcRowIn, load_spec_file, shipped_spec_path
from lotrack.schemas.protocol import ProtocolFile, default_protocol_path, load_protocol_file
from lotrack.schemas.safety import AdverseEventIn
from lotrack.services import (
    adverse_events,
    auth,
    dosing,
    lots,
    participants,
    products,
    protocols,
    qc,
    specifications,
    storage,
    users,
)
from lotrack.services.eligibility import Candidate

PASSWORD = "bench-pass-2026"
UTC_TZ = ZoneInfo("UTC")
STAFF = (("qa.a", ["qa"]), ("qa.b", ["qa"]), ("pharm.a", ["pharmacist"]),
         ("pharm.b", ["pharmacist"]), ("inv.a", ["investigator"]), ("monitor.a", ["monitor"]))
GOOD = {
    "particle_concentration": ("3.2e11", "particles/mL"), "modal_particle_size": ("112", "nm"),
    "total_protein": ("180", "ug/mL"), "particle_to_protein_ratio": ("1.8e9", "particles/ug"),
    "cd63": ("positive", "result"), "cd81": ("positive", "result"),
    "tsg101": ("positive", "result"), "calnexin": ("negative", "result"),
    "endotoxin": ("<0.05", "EU/mL"), "sterility": ("no growth", "result"),
    "mycoplasma": ("negative", "result"), "tgf_beta1": ("850", "pg/mL"),
    "bdnf": ("420", "pg/mL"), "residual_host_cell_dna": ("2.1", "ng/dose"),
    "appearance": ("clear, colourless, free of visible particles", "result"),
    "ph": ("7.3", "pH"), "osmolality": ("295", "mOsm/kg"),
}


@dataclass(frozen=True)
class Scale:
    lots: int
    vials_per_lot: int
    participants: int
    aes_per_participant: float
    big_lot_vials: int = 500  # the lot `trace lot` is timed on
    label_lot_vials: int = 2000  # the lot whose vial labels are timed


SCALES = {
    "small": Scale(lots=8, vials_per_lot=100, participants=60, aes_per_participant=1.5),
}


@dataclass
class Built:
    big_lot: str
    label_lot: str
    subject: str
    ae_code: str
    due: list[tuple[str, str]]  # (subject, serial) ready for one timed dispense each


class Bench:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.rng = random.Random(2026)

    def act(self, username: str, action):
        with db.unit_of_work(self.engine) as session:
            actor = auth.authenticate(session, username, PASSWORD)
            result = action(session, actor)
            session.commit()
            return result

    def setup(self, admin: str) -> None:
        for name, roles in STAFF:
            self.act(admin, lambda s, a, n=name, r=roles: users.add_user(
                s, a, n, n.replace(".", " ").title(), r, PASSWORD))
        self.act("qa.a", lambda s, a: products.add_product(s, a, ProductIn(
            code="IPSEXO", name="iPS-Exo intrauterine suspension", gtin="09506000134352")))
        self.act("qa.a", lambda s, a: products.add_product(s, a, ProductIn(
            code="PLACEBO", name="Placebo (formulation buffer)", kind="placebo",
            gtin="09506000134369")))
        for code in ("IPSEXO", "PLACEBO"):
            spec = load_spec_file(shipped_spec_path(code))
            version = self.act("qa.a", lambda s, a, sp=spec: specifications.load_spec(s, a, sp, "bench"))
            self.act("qa.b", lambda s, a, c=code, v=version.version: specifications.activate_spec(
                s, a, c, v, PASSWORD))

    def protocol(self, participants: int) -> None:
        shipped = load_protocol_file(default_protocol_path())
        share = -(-participants // len(shipped.groups))  # every group large enough
        data = shipped.model_dump()
        data["protocol"]["target_enrolment"] = share * len(shipped.groups)
        for group in data["groups"]:
            group["planned"] = share
        bench = ProtocolFile.model_validate(data)
        version = self.act("inv.a", lambda s, a: protocols.load_protocol(s, a, bench, "bench"))
        self.act("inv.a", lambda s, a: protocols.activate_protocol(
            s, a, version.code, version.version, PASSWORD))

    def lot(self, number: str, product: str, vials: int, made: date) -> list[str]:
        self.act("qa.a", lambda s, a: lots.register_lot(s, a, LotIn(
            lot_number=number, product=product, manufactured_on=made,
            expiry_on=made + timedelta(days=360), vials=vials)))
        names = tuple(GOOD) if product == "IPSEXO" else (
            "endotoxin", "sterility", "appearance", "ph", "osmolality")
        rows = [QcRowIn(attribute=n, value=GOOD[n][0], unit=GOOD[n][1], method="bench",
                        tested_on=made + timedelta(days=5), analyst="bench") for n in names]
        self.act("qa.a", lambda s, a: qc.record_results(s, a, lots.get_lot(s, number), rows))
        self.act("qa.b", lambda s, a: lots.transition(s, a, number, "released", "bench QC complete",
                                                      PASSWORD, UTC_TZ))
        boxes = []
        for i in range(-(-vials // 100)):
            path = f"SITE/FRZ-{number}/BOX-{i + 1:03d}"
            self.act("pharm.a", lambda s, a, p=path: storage.add_location(s, a, p, 100))
            boxes.append(path)
        at = datetime.now(UTC) - timedelta(days=90)
        self.act("pharm.a", lambda s, a: storage.receive_lot(s, a, lots.get_lot(s, number), boxes, at))
        with db.unit_of_work(self.engine) as session:
            lot = lots.get_lot(session, number)
            return list(session.execute(select(Vial.serial).where(Vial.lot_id == lot.id)
                                        .order_by(Vial.number)).scalars())


def candidate(consented: date) -> Candidate:
    shipped = load_protocol_file(default_protocol_path())
    answers = ({q.code: True for q in shipped.eligibility.inclusions}
               | {q.code: False for q in shipped.eligibility.exclusions})
    return Candidate(sex="F", birth_date=date(1992, 3, 1), consented=consented, iua_score=15,
                     amh_ng_ml=2.0, afc=7, platelets_10e9_l=220, aptt_x_uln=1.0,
                     hba1c_percent=5.4, answers=answers)


def build(engine: Engine, admin: str, scale: Scale, say) -> Built:
    bench = Bench(engine)
    bench.setup(admin)
    bench.protocol(scale.participants + 4 * 12)  # room for the timed dispenses
    today = datetime.now(UTC)
    made = (today - timedelta(days=120)).date()
    pools: dict[str, list[str]] = {"IPSEXO": [], "PLACEBO": []}
    for i in range(scale.lots):
        product = "PLACEBO" if i % 4 == 3 else "IPSEXO"
        pools[product] += bench.lot(f"B{i + 1:04d}", product, scale.vials_per_lot, made)
    big = "BIG-500"
    pools["IPSEXO"] = bench.lot(big, "IPSEXO", scale.big_lot_vials, made) + pools["IPSEXO"]
    label_lot = "LBL-2000"
    bench.lot(label_lot, "IPSEXO", scale.label_lot_vials, made)
    say(f"{scale.lots + 2} lots registered, released and received")

    shipped = load_protocol_file(default_protocol_path())
    groups = shipped.groups
    surgery0 = today - timedelta(days=60)
    ae_code = ""
    first_subject = ""
    for n in range(scale.participants):
        group = groups[n % len(groups)]
        subject = f"B-{n + 1:05d}"
        first_subject = first_subject or subject
        bench.act("inv.a", lambda s, a, sj=subject, g=group.code: participants.enroll(
            s, a, sj, g, candidate(surgery0.date() - timedelta(days=7)), PASSWORD))
        surgery = surgery0 + timedelta(minutes=n)
        bench.act("inv.a", lambda s, a, sj=subject, at=surgery: participants.record_surgery(
            s, a, sj, at, 16, UTC_TZ))
        product = group.product
        for perfusion in shipped.cycle.perfusions:
            at = surgery + timedelta(hours=perfusion.target_hours)
            serials = tuple(pools[product].pop(0) for _ in range(group.vials_per_perfusion))
            request = dosing.DispenseRequest(subject, serials, at, "pharm.b")
            dose = bench.act("pharm.a", lambda s, a, r=request: dosing.dispense_perfusion(
                s, a, r, PASSWORD, PASSWORD, UTC_TZ))
            bench.act("inv.a", lambda s, a, d=dose.dose_code, t=at: dosing.administer(
                s, a, d, t + timedelta(minutes=20), 1.0))
        for k in range(int(scale.aes_per_participant + (n % 2) * 0.5)):
            onset = (surgery + timedelta(days=2 + k * 3)).date()
            data = AdverseEventIn(term="Pelvic pain", grade=1 + k % 2, onset=onset,
                                  relatedness="possible")
            ae = bench.act("inv.a", lambda s, a, sj=subject, d=data:
                           adverse_events.record_adverse_event(s, a, sj, d, UTC_TZ))
            ae_code = ae_code or ae.ae_code
        if (n + 1) % 20 == 0:
            say(f"{n + 1} participants enrolled, operated and dosed")

    # Participants operated yesterday, each with perfusion 1 due now: one timed dispense each.
    due = []
    for n in range(12):
        subject = f"D-{n + 1:03d}"
        low = next(g for g in groups if g.vials_per_perfusion == 1 and g.product == "IPSEXO")
        bench.act("inv.a", lambda s, a, sj=subject, g=low.code: participants.enroll(
            s, a, sj, g, candidate(today.date() - timedelta(days=3)), PASSWORD))
        bench.act("inv.a", lambda s, a, sj=subject: participants.record_surgery(
            s, a, sj, today - timedelta(hours=24), 16, UTC_TZ))
        due.append((subject, pools["IPSEXO"].pop()))
    return Built(big, label_lot, first_subject, ae_code, due)
