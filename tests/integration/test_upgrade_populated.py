"""A populated database goes down to 0004 and back up with every row kept: SQLite's batch
migrations rebuild tables that dispensed doses reference (this once failed on the
foreign key check), on both databases."""

from datetime import timedelta

from sqlalchemy import inspect, text
from trialkit import T0, Trial

from lotrack import audit, db


def counts(engine) -> dict[str, int]:
    names = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    with engine.connect() as conn:
        return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in names}


def test_down_to_0004_and_up_again_keeps_every_row(database, make_user):
    trial = Trial.build(database, make_user)
    trial.enroll_and_operate("S-001", "LOW", T0)
    dose = trial.dispense("S-001", [trial.vial()], T0 + timedelta(hours=24))
    trial.administer(dose.dose_code, T0 + timedelta(hours=24, minutes=30))
    engine = database.engine
    before = counts(engine)
    assert before["dose_vials"] == 1 and before["vials"] > 0

    db.downgrade(engine, "0004")
    after_down = counts(engine)
    assert {t: n for t, n in before.items() if t not in ("shipments", "shipment_vials", "settings")} \
        == after_down
    db.upgrade(engine)
    assert counts(engine) == before
    with db.unit_of_work(engine) as session:
        assert audit.verify(session).ok
