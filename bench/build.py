"""A synthetic trial for the benchmarks, built through the service layer.

Every record goes through the same services the commands use (validation, rules,
signatures, audit trail), so the figures measure lotrack as it runs, on a database
whose audit trail verifies. The bulk comes from batching, as a pharmacy working
through a list would: one transaction per batch, each person authenticated once per
transaction (a signature reuses the password already checked in it, see
services/auth.py), vials and their audit events appended in bulk by the services.
"""

from __future__ import annotations

import csv
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lotrack import db
from lotrack.models import Lot, Product, User, Vial
from lotrack.models.base import simulated_time
from lotrack.schemas.lots import (
    LotIn,
    ProductIn,
    example_qc_rows,
    load_spec_file,
    shipped_spec_path,
)
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
BOX = 100  # vials per storage box
T = TypeVar("T")


@dataclass(frozen=True)
class Scale:
    lots: int
    vials_per_lot: int
    participants: int
    cycles: int  # treatment cycles per participant (a second after recurrence)
    aes_per_participant: float
    qc_import_rows: int  # rows of the timed multi-lot QC import file
    big_lot_vials: int = 500  # the lot `trace lot` is timed on
    label_lot_vials: int = 2000  # the lot whose vial labels are timed
    batch: int = 100  # participants (or lots) per transaction


SCALES = {
    "small": Scale(lots=8, vials_per_lot=100, participants=60, cycles=1,
                   aes_per_participant=1.5, qc_import_rows=2_000),
    # Enough events (over 200,000) for the two-process `audit verify`, built in minutes.
    "medium": Scale(lots=100, vials_per_lot=500, participants=2_000, cycles=2,
                    aes_per_participant=1.5, qc_import_rows=20_000),
    "sponsor": Scale(lots=1_000, vials_per_lot=500, participants=20_000, cycles=2,
                     aes_per_participant=1.5, qc_import_rows=100_000),
}


@dataclass
class Built:
    big_lot: str
    label_lot: str
    subject: str
    ae_code: str


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Bench:
    def __init__(self, engine: Engine, scale: Scale, say: Callable[[str], None]) -> None:
        self.engine = engine
        self.scale = scale
        self.say = say
        self.rng = random.Random(2026)
        self.now = datetime.now(UTC)

    def act(self, usernames: str | tuple[str, ...], action: Callable[..., T],
            at: datetime | None = None) -> T:
        """One transaction, each named user authenticated once, as a session would; at the
        simulated time `at` when given (lots are released before the doses given from them)."""
        names = (usernames,) if isinstance(usernames, str) else usernames
        with simulated_time(at) if at else nullcontext(), db.unit_of_work(self.engine) as session:
            actors = [auth.authenticate(session, name, PASSWORD) for name in names]
            result = action(session, *actors)
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
            version = self.act("qa.a", lambda s, a, sp=spec: specifications.load_spec(
                s, a, sp, "bench"))
            self.act("qa.b", lambda s, a, c=code, v=version.version: specifications.activate_spec(
                s, a, c, v, PASSWORD))

    def protocol(self, participants: int) -> ProtocolFile:
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
        return bench

    # --- lots -------------------------------------------------------------

    def lots(self, specs: list[tuple[str, str, int]], made: date) -> None:
        """Register, test, release and receive lots, a batch of lots per transaction."""
        received = self.now - timedelta(days=(self.now.date() - made).days - 10)
        for batch in chunks(specs, max(1, self.scale.batch // 5)):
            self.act("qa.a", lambda s, qa, b=batch: [self._register(s, qa, n, p, v, made)
                                                      for n, p, v in b], received)
            self.act("qa.b", lambda s, qa, b=batch: [lots.transition(
                s, qa, n, "released", "bench QC complete", PASSWORD, UTC_TZ) for n, _, _ in b],
                received)
            self.act("pharm.a", lambda s, ph, b=batch: [self._receive(s, ph, n, v, received)
                                                         for n, _, v in b], received)

    def _register(self, session: Session, qa: User, number: str, product: str, vials: int,
                  made: date) -> None:
        lots.register_lot(session, qa, LotIn(lot_number=number, product=product,
                                             manufactured_on=made,
                                             expiry_on=made + timedelta(days=360), vials=vials))
        rows = example_qc_rows(product, made + timedelta(days=5), "bench", "bench")
        qc.record_results(session, qa, lots.get_lot(session, number), rows)

    def _receive(self, session: Session, pharmacist: User, number: str, vials: int,
                 at: datetime) -> None:
        boxes = [storage.add_location(session, pharmacist, f"SITE/FRZ-{number}/BOX-{i + 1:03d}",
                                      BOX).path for i in range(-(-vials // BOX))]
        storage.receive_lot(session, pharmacist, lots.get_lot(session, number), boxes, at)

    def serials(self, number: str) -> list[str]:
        with db.unit_of_work(self.engine) as session:
            lot = lots.get_lot(session, number)
            return list(session.execute(select(Vial.serial).where(Vial.lot_id == lot.id)
                                        .order_by(Vial.number)).scalars())

    # --- participants -----------------------------------------------------

    def treat(self, session: Session, inv: User, pharm: User, subject: str, group,
              surgery: datetime, pools: dict[str, deque[str]], protocol: ProtocolFile) -> str:
        """Enrol, operate, dispense and administer every perfusion; cycles as the scale says.
        Returns the code of the participant's first adverse event, if any."""
        participants.enroll(session, inv, subject, group.code,
                            candidate(surgery.date() - timedelta(days=7)), PASSWORD)
        at = surgery
        for cycle in range(1, self.scale.cycles + 1):
            if cycle > 1:
                participants.record_hysteroscopy(session, inv, subject,
                                                 at + timedelta(days=30), recurrence=True)
                at += timedelta(days=35)
            participants.record_surgery(session, inv, subject, at, 16, UTC_TZ)
            for perfusion in protocol.cycle.perfusions:
                given = at + timedelta(hours=perfusion.target_hours)
                serials = tuple(pools[group.product].popleft()
                                for _ in range(group.vials_per_perfusion))
                dose = dosing.dispense_perfusion(
                    session, pharm, dosing.DispenseRequest(subject, serials, given, "pharm.b"),
                    PASSWORD, PASSWORD, UTC_TZ)
                dosing.administer(session, inv, dose.dose_code, given + timedelta(minutes=20), 1.0)
        first = ""
        n = int(subject.rsplit("-", 1)[1])
        for k in range(int(self.scale.aes_per_participant + (n % 2) * 0.5)):
            onset = (surgery + timedelta(days=2 + k * 3)).date()
            data = AdverseEventIn(term="Pelvic pain", grade=1 + k % 2, onset=onset,
                                  relatedness="possible")
            ae = adverse_events.record_adverse_event(session, inv, subject, data, UTC_TZ)
            first = first or ae.ae_code
        return first


def candidate(consented: date) -> Candidate:
    shipped = load_protocol_file(default_protocol_path())
    answers = ({q.code: True for q in shipped.eligibility.inclusions}
               | {q.code: False for q in shipped.eligibility.exclusions})
    return Candidate(sex="F", birth_date=date(1992, 3, 1), consented=consented, iua_score=15,
                     amh_ng_ml=2.0, afc=7, platelets_10e9_l=220, aptt_x_uln=1.0,
                     hba1c_percent=5.4, answers=answers)


def build(engine: Engine, admin: str, scale: Scale, say: Callable[[str], None]) -> Built:
    bench = Bench(engine, scale, say)
    bench.setup(admin)
    protocol = bench.protocol(scale.participants + 4 * 500)  # room for timed dispenses
    # Lots made 300 days ago expire in 60: valid for every dose given in between.
    made = (bench.now - timedelta(days=300)).date()
    specs = [("BIG-500", "IPSEXO", scale.big_lot_vials), ("LBL-2000", "IPSEXO",
                                                          scale.label_lot_vials)]
    specs += [(f"B{i + 1:04d}", "PLACEBO" if i % 4 == 3 else "IPSEXO", scale.vials_per_lot)
              for i in range(scale.lots)]
    bench.lots(specs, made)
    say(f"{len(specs)} lots registered, tested, released and received")
    pools: dict[str, deque[str]] = {"IPSEXO": deque(bench.serials("BIG-500")),
                                    "PLACEBO": deque()}
    for number, product, _ in specs[2:]:
        pools[product].extend(bench.serials(number))

    # Surgeries spread over 190 days, the last cycle's doses all given by a month ago.
    first_surgery = bench.now - timedelta(days=260)
    step = timedelta(days=190) / max(1, scale.participants)
    ae_code, subjects = "", [f"B-{n + 1:05d}" for n in range(scale.participants)]
    for batch_start in range(0, scale.participants, scale.batch):
        batch = subjects[batch_start:batch_start + scale.batch]

        def work(s: Session, inv: User, pharm: User, batch=batch, start=batch_start) -> str:
            codes = [bench.treat(s, inv, pharm, subject, protocol.groups[(start + i) % 4],
                                 first_surgery + step * (start + i), pools, protocol)
                     for i, subject in enumerate(batch)]
            return next((c for c in codes if c), "")

        first_ae = bench.act(("inv.a", "pharm.a"), work)
        ae_code = ae_code or first_ae
        done = batch_start + len(batch)
        if done % max(scale.batch, scale.participants // 20) == 0 or done == scale.participants:
            say(f"{done} participants enrolled, operated and dosed")

    return Built("BIG-500", "LBL-2000", subjects[0], ae_code)


def due_participants(engine: Engine, count: int) -> list[tuple[str, str]]:
    """Participants operated yesterday, each with perfusion 1 due now, and a vial for each:
    one timed dispense each. New ones every run, so a data set can be measured again."""
    bench = Bench(engine, SCALES["small"], print)
    tag = f"D{int(bench.now.timestamp()) % 10**6}"
    protocol = load_protocol_file(default_protocol_path())
    low = next(g for g in protocol.groups if g.vials_per_perfusion == 1 and g.product == "IPSEXO")
    subjects = [f"{tag}-{n + 1:02d}" for n in range(count)]

    def operate(s: Session, inv: User) -> list[str]:
        for subject in subjects:
            participants.enroll(s, inv, subject, low.code,
                                candidate(bench.now.date() - timedelta(days=3)), PASSWORD)
            participants.record_surgery(s, inv, subject, bench.now - timedelta(hours=24), 16,
                                        UTC_TZ)
        return list(s.execute(select(Vial.serial).join(Lot).join(Product).where(
            Product.code == "IPSEXO", Vial.status == "in_stock", Vial.location_id.is_not(None),
            Lot.lot_number.like("B%")).order_by(Vial.id.desc()).limit(count)).scalars())

    return list(zip(subjects, bench.act("inv.a", operate), strict=True))


def qc_import_file(engine: Engine, rows: int, work: Path) -> tuple[Path, int]:
    """A laboratory's results file of `rows` rows for new lots awaiting their results (new
    lots each run), and the number of rows written."""
    bench = Bench(engine, SCALES["small"], print)
    tag = f"Q{int(bench.now.timestamp()) % 10**6}"
    made = (bench.now - timedelta(days=20)).date()
    example = example_qc_rows("IPSEXO", made + timedelta(days=5), "bench", "bench")
    numbers = [f"{tag}-{i + 1:05d}" for i in range(-(-rows // len(example)))]
    for batch in chunks(numbers, 200):
        bench.act("qa.a", lambda s, qa, b=batch: [lots.register_lot(s, qa, LotIn(
            lot_number=n, product="IPSEXO", manufactured_on=made,
            expiry_on=made + timedelta(days=360), vials=1)) for n in b])
    path = work / f"qc-{tag}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["lot", "attribute", "value", "unit", "method", "tested_at", "analyst"])
        for number in numbers:
            out.writerows([number, r.attribute, r.value, r.unit, r.method,
                           r.tested_on.isoformat(), r.analyst] for r in example)
    return path, len(numbers) * len(example)
