"""A small trial built through the services, for tests of dispensing and what follows.

Two products with active specifications, released lots received into a box, the
protocol loaded and activated, and the staff of a site pharmacy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack import db
from lotrack.models import Dose, Signature, User, Vial
from lotrack.schemas.lots import (
    LotIn,
    ProductIn,
    QcRowIn,
    example_qc_results,
    example_qc_rows,
    load_spec_file,
    shipped_spec_path,
)
from lotrack.schemas.protocol import default_protocol_path, load_protocol_file
from lotrack.services import (
    auth,
    dosing,
    lots,
    participants,
    products,
    protocols,
    qc,
    specifications,
    storage,
)
from lotrack.services.eligibility import Candidate

PASSWORD = "correct-horse-42"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday; surgeries in the tests start here
UTC_TZ = ZoneInfo("UTC")
# When Trial.lot registers, receives and releases a lot: before every dose the tests give.
LOT_SETUP = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
PROTOCOL = load_protocol_file(default_protocol_path())
ANSWERS = ({q.code: True for q in PROTOCOL.eligibility.inclusions}
           | {q.code: False for q in PROTOCOL.eligibility.exclusions})

# attribute -> (value, unit): results that pass the shipped IPSEXO specification.
GOOD_RESULTS = {name: (value, unit) for name, value, unit in example_qc_results("IPSEXO")}


def qc_rows(product: str, overrides: dict[str, str] | None = None) -> list[QcRowIn]:
    # Products the tests add themselves (EXOOFF ...) copy the IPSEXO specification.
    shipped = product if product == "PLACEBO" else "IPSEXO"
    rows = example_qc_rows(shipped, date(2026, 1, 20), analyst="J. Analyst")
    changed = overrides or {}
    unknown = set(changed) - {r.attribute for r in rows}
    assert not unknown, f"no example result to override for {sorted(unknown)}"
    return [QcRowIn.model_validate(r.model_dump() | {"value": changed[r.attribute]})
            if r.attribute in changed else r for r in rows]


@dataclass
class Trial:
    database: object
    lot_seq: count = field(default_factory=lambda: count(1))
    pools: dict[str, list[str]] = field(default_factory=dict)

    # --- building ---------------------------------------------------------

    @classmethod
    def build(cls, database, make_user: Callable[..., User]) -> Trial:
        for name, roles in (("qa.lee", ["qa"]), ("qa.huang", ["qa"]),
                            ("pharm.chen", ["pharmacist"]), ("pharm.wang", ["pharmacist"]),
                            ("inv.liu", ["investigator"]), ("monitor.sun", ["monitor"])):
            make_user(name, *roles)
        trial = cls(database)
        trial.act("qa.lee", lambda s, a: products.add_product(s, a, ProductIn(
            code="IPSEXO", name="iPS-Exo intrauterine suspension", kind="active",
            gtin="09506000134352")))
        trial.act("qa.lee", lambda s, a: products.add_product(s, a, ProductIn(
            code="PLACEBO", name="Placebo (formulation buffer)", kind="placebo")))
        for code in ("IPSEXO", "PLACEBO"):
            spec = load_spec_file(shipped_spec_path(code))
            version = trial.act("qa.lee", lambda s, a, sp=spec: specifications.load_spec(
                s, a, sp, "shipped"))
            trial.act("qa.lee", lambda s, a, v=version.version, c=code:
                      specifications.activate_spec(s, a, c, v, PASSWORD))
        trial.act("pharm.chen", lambda s, a: storage.add_location(s, a, "SITE/FRZ-A/R1/BOX-1",
                                                                   500))
        version = trial.act("inv.liu", lambda s, a: protocols.load_protocol(
            s, a, PROTOCOL, "protocol.toml"))
        trial.act("inv.liu", lambda s, a: protocols.activate_protocol(
            s, a, version.code, version.version, PASSWORD))
        return trial

    def act(self, username: str, action: Callable[[Session, User], object]):
        with db.unit_of_work(self.database.engine) as session:
            actor = auth.authenticate(session, username, PASSWORD)
            result = action(session, actor)
            session.commit()
            return result

    def lot(self, product: str = "IPSEXO", vials: int = 6, release: bool = True,
            expiry: date = date(2026, 12, 31), overrides: dict[str, str] | None = None,
            receive: bool = True, at: datetime = LOT_SETUP) -> str:
        """A lot registered, tested, received and (unless told) released at `at`: before the
        tests' surgeries, since a dose is only dispensed from a lot released at its time."""
        with freeze_time(at):
            return self._lot(product, vials, release, expiry, overrides, receive, at)

    def _lot(self, product: str, vials: int, release: bool, expiry: date,
             overrides: dict[str, str] | None, receive: bool, at: datetime) -> str:
        number = f"L{next(self.lot_seq):03d}"
        self.act("qa.lee", lambda s, a: lots.register_lot(s, a, LotIn(
            lot_number=number, product=product, manufactured_on=date(2026, 1, 10),
            expiry_on=expiry, vials=vials, cell_line="iPSC-GD01", cell_bank_id="MCB-2025-01",
            passage=18)))
        self.act("qa.lee", lambda s, a: qc.record_results(
            s, a, lots.get_lot(s, number), qc_rows(product, overrides)))
        if receive:
            self.act("pharm.chen", lambda s, a: storage.receive_lot(
                s, a, lots.get_lot(s, number), ["SITE/FRZ-A/R1/BOX-1"], at))
        if release:
            self.transition(number, "released")
        return number

    def transition(self, number: str, to: str, **kwargs) -> None:
        self.act("qa.lee", lambda s, a: lots.transition(s, a, number, to, f"test: {to}", PASSWORD,
                                                        UTC_TZ, **kwargs))

    def serials(self, number: str) -> list[str]:
        with db.unit_of_work(self.database.engine) as session:
            lot = lots.get_lot(session, number)
            return list(session.execute(select(Vial.serial).where(Vial.lot_id == lot.id)
                                        .order_by(Vial.number)).scalars())

    def vial(self, product: str = "IPSEXO") -> str:
        """A fresh, usable vial of `product` (a new released lot when the pool runs dry)."""
        pool = self.pools.setdefault(product, [])
        if not pool:
            pool.extend(self.serials(self.lot(product, vials=8)))
        return pool.pop(0)

    def vial_in_lot_state(self, state: str) -> str:
        if state == "quarantine":
            return self.serials(self.lot(release=False))[0]
        if state == "expired":
            # Released the day before surgery, expiring at the end of the day of surgery.
            number = self.lot(expiry=T0.date(), at=T0 - timedelta(days=1))
            return self.serials(number)[0]
        number = self.lot()
        if state == "on_hold":
            self.transition(number, "on_hold")
        elif state == "recalled":
            self.transition(number, "recalled")
        return self.serials(number)[0]

    def vial_expiring_on(self, day: date) -> str:
        return self.serials(self.lot(expiry=day, at=datetime.combine(day, datetime.min.time(),
                                                                      UTC)))[0]

    # --- participants and dosing -------------------------------------------

    def enroll(self, subject: str, group: str) -> None:
        candidate = Candidate(sex="F", birth_date=date(1993, 1, 10), consented=date(2026, 3, 1),
                              iua_score=15, amh_ng_ml=1.8, afc=7, platelets_10e9_l=220,
                              aptt_x_uln=1.0, hba1c_percent=5.5, answers=dict(ANSWERS))
        self.act("inv.liu", lambda s, a: participants.enroll(s, a, subject, group, candidate,
                                                             PASSWORD))

    def operate(self, subject: str, at: datetime, site_tz: ZoneInfo = UTC_TZ) -> None:
        self.act("inv.liu", lambda s, a: participants.record_surgery(s, a, subject, at, 16,
                                                                     site_tz))

    def enroll_and_operate(self, subject: str, group: str, at: datetime,
                           site_tz: ZoneInfo = UTC_TZ) -> None:
        self.enroll(subject, group)
        self.operate(subject, at, site_tz)

    def hysteroscopy(self, subject: str, at: datetime, recurrence: bool) -> None:
        self.act("inv.liu", lambda s, a: participants.record_hysteroscopy(s, a, subject, at,
                                                                          recurrence))

    def withdraw(self, subject: str) -> None:
        self.act("inv.liu", lambda s, a: participants.withdraw(s, a, subject, "withdrew consent"))

    def dispense(self, subject: str, serials: list[str], at: datetime, *,
                 deviation: str | None = None, verifier: str = "pharm.wang",
                 verifier_password: str = PASSWORD, as_user: str = "pharm.chen",
                 site_tz: ZoneInfo = UTC_TZ) -> Dose:
        request = dosing.DispenseRequest(subject, tuple(serials), at, verifier, deviation)
        return self.act(as_user, lambda s, a: dosing.dispense_perfusion(
            s, a, request, PASSWORD, verifier_password, site_tz))

    def administer(self, dose_code: str, at: datetime) -> Dose:
        return self.act("inv.liu", lambda s, a: dosing.administer(s, a, dose_code, at, 1.0))

    def close(self, dose_code: str, outcome: str, reason: str) -> Dose:
        return self.act("pharm.chen", lambda s, a: dosing.close_unadministered(
            s, a, dose_code, outcome, reason))

    # --- reading -------------------------------------------------------------

    @staticmethod
    def user(session: Session, username: str) -> User:
        return auth.find_user(session, username)

    @staticmethod
    def vial_status(session: Session, serial: str) -> str:
        return session.execute(select(Vial.status).where(Vial.serial == serial)).scalar_one()

    @staticmethod
    def dose_count(session: Session) -> int:
        return session.execute(select(func.count(Dose.id))).scalar_one()

    @staticmethod
    def signature_meanings(session: Session, entity: str, entity_id: str) -> set[tuple[str, str]]:
        rows = session.execute(select(Signature.meaning, Signature.printed_name).where(
            Signature.entity == entity, Signature.entity_id == entity_id)).all()
        return {(m, n) for m, n in rows}
