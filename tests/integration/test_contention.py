"""Many pharmacists dispensing at once, from separate processes: every vial and every
perfusion slot is used at most once, every refusal is a business error with a message,
lost races (serialization failures, deadlocks, a locked SQLite file) are run again by
`db.retrying`, and nothing deadlocks. Then the retry itself, one race at a time."""

from __future__ import annotations

import logging
import multiprocessing
import random
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from trialkit import ANSWERS, PASSWORD, PROTOCOL, T0, UTC_TZ, Trial

from lotrack import audit, db
from lotrack.errors import DatabaseBusy, DatabaseError, LotrackError, RuleViolation
from lotrack.models import AuditEvent, Dose, DoseVial, Vial
from lotrack.schemas.protocol import ProtocolFile

pytestmark = pytest.mark.slow

WORKERS = 8
ATTEMPTS = 1000
# Groups sized for 50 participants (the shipped protocol plans 29).
GROUP_SIZES = {"LOW": 20, "MID": 10, "HIGH": 10, "PBO": 10}
IPSEXO_VIALS, PLACEBO_VIALS = 40, 10
PHARMACISTS = (("pharm.chen", "pharm.wang"), ("pharm.wang", "pharm.chen"))


@dataclass(frozen=True)
class Attempt:
    user: str
    verifier: str
    subject: str
    serials: tuple[str, ...]
    deviation: str | None


# --- the pool: 50 participants operated on, 50 vials ---------------------------

def _protocol_for_fifty() -> ProtocolFile:
    data = PROTOCOL.model_dump(mode="json")
    for group in data["groups"]:
        group["planned"] = GROUP_SIZES[group["code"]]
    data["protocol"]["target_enrolment"] = sum(GROUP_SIZES.values())
    return ProtocolFile.model_validate(data)


def _build_pool(database, make_user) -> tuple[dict[str, int], list[str]]:
    from lotrack.services import participants, protocols
    from lotrack.services.eligibility import Candidate

    trial = Trial.build(database, make_user)
    version = trial.act("inv.liu", lambda s, a: protocols.load_protocol(
        s, a, _protocol_for_fifty(), "protocol-50.toml"))
    trial.act("inv.liu", lambda s, a: protocols.activate_protocol(
        s, a, version.code, version.version, PASSWORD))
    candidate = Candidate(sex="F", birth_date=date(1993, 1, 10), consented=date(2026, 3, 1),
                          iua_score=15,
                          amh_ng_ml=1.8, afc=7, platelets_10e9_l=220, aptt_x_uln=1.0,
                          hba1c_percent=5.5, answers=dict(ANSWERS))
    subjects = {f"C-{code}-{i:02d}": code for code, size in GROUP_SIZES.items()
                for i in range(1, size + 1)}

    def enroll_and_operate_all(session, actor):
        for subject, group in subjects.items():
            participants.enroll(session, actor, subject, group, candidate, PASSWORD)
        for subject in subjects:
            participants.record_surgery(session, actor, subject, T0, 16, UTC_TZ)

    trial.act("inv.liu", enroll_and_operate_all)
    serials = (trial.serials(trial.lot("IPSEXO", vials=IPSEXO_VIALS))
               + trial.serials(trial.lot("PLACEBO", vials=PLACEBO_VIALS)))
    per_vial = {g.code: g.vials_per_perfusion for g in PROTOCOL.groups}
    return {s: per_vial[g] for s, g in subjects.items()}, serials


def _attempts(vials_needed: dict[str, int], serials: list[str], seed: int) -> list[Attempt]:
    """Random dispensing attempts, most of them plausible, some of them wrong on purpose."""
    rng = random.Random(seed)
    subjects = sorted(vials_needed)
    made = []
    for _ in range(ATTEMPTS):
        subject = rng.choice(subjects)
        count = vials_needed[subject]
        if rng.random() < 0.05:
            count = max(1, count + rng.choice((-1, 1)))  # the wrong number of vials
        chosen = tuple(rng.sample(serials, count))
        if rng.random() < 0.02:
            chosen = ("V99999990", *chosen[1:])  # no such vial, or a wrong check character
        user, verifier = rng.choice(PHARMACISTS)
        if rng.random() < 0.02:
            verifier = user  # verifying one's own dose
        # Perfusions 2 and 3 are due 72 h and 120 h after surgery; every attempt is at
        # 24 h, so without a deviation reason they are refused.
        deviation = "contention test: dispensed early" if rng.random() < 0.85 else None
        made.append(Attempt(user, verifier, subject, chosen, deviation))
    return made


def _dispense_worker(url: str, attempts: list[Attempt], barrier, queue) -> None:
    """One pharmacy workstation: its own engine, each attempt one retried transaction."""
    from lotrack.services import auth, dosing

    retries: list[str] = []

    class CountRetries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            retries.append(record.getMessage())

    logger = logging.getLogger("lotrack.db")
    logger.setLevel(logging.INFO)
    logger.addHandler(CountRetries())
    engine = db.make_engine(url)
    outcomes: list[tuple] = []
    try:
        barrier.wait(timeout=120)
        at = T0 + timedelta(hours=24)
        for attempt in attempts:
            request = dosing.DispenseRequest(attempt.subject, attempt.serials, at,
                                             attempt.verifier, attempt.deviation)

            def action(session, attempt=attempt, request=request):
                actor = auth.authenticate(session, attempt.user, PASSWORD)
                dose = dosing.dispense_perfusion(session, actor, request, PASSWORD, PASSWORD,
                                                 UTC_TZ)
                return dose.dose_code

            try:
                code = db.retrying(engine, action)
                outcomes.append(("ok", attempt.subject, attempt.serials, code))
            except LotrackError as exc:
                outcomes.append(("refused", type(exc).__name__, str(exc)))
            except Exception:  # what this test exists to catch
                outcomes.append(("crash", traceback.format_exc()))
    finally:
        engine.dispose()
        queue.put((outcomes, retries))


def _run_workers(url: str, attempts: list[Attempt]) -> tuple[list[tuple], list[str], float]:
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(WORKERS)
    chunks = [attempts[i::WORKERS] for i in range(WORKERS)]
    procs = [ctx.Process(target=_dispense_worker, args=(url, chunk, barrier, queue))
             for chunk in chunks]
    started = time.monotonic()
    for p in procs:
        p.start()
    outcomes, retries = [], []
    try:
        for _ in procs:
            # A deadlock that nobody breaks would stop the workers here.
            done, retried = queue.get(timeout=180)
            outcomes += done
            retries += retried
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return outcomes, retries, time.monotonic() - started


def test_eight_workstations_dispensing_from_one_pool_use_each_vial_and_slot_once(
        database, make_user):
    vials_needed, serials = _build_pool(database, make_user)
    outcomes, retries, seconds = _run_workers(database.url, _attempts(vials_needed, serials, 8))

    assert len(outcomes) == ATTEMPTS
    crashes = [o[1] for o in outcomes if o[0] == "crash"]
    assert not crashes, crashes[0]
    refusals = [o for o in outcomes if o[0] == "refused"]
    # A refusal is a business answer with a message, never a database failure left over
    # after the retries.
    assert not [r for r in refusals if r[1] in ("DatabaseError", "DatabaseBusy")], refusals[:3]
    assert all(r[2].strip() for r in refusals)
    successes = [o for o in outcomes if o[0] == "ok"]
    assert successes and refusals

    used = [serial for _, _, chosen, _ in successes for serial in chosen]
    assert len(used) == len(set(used)), "a vial was dispensed twice"
    with db.unit_of_work(database.engine) as session:
        doses = session.execute(select(Dose)).scalars().all()
        assert sorted(d.dose_code for d in doses) == sorted(code for *_, code in successes)
        slots = [(d.cycle_id, d.perfusion) for d in doses if d.status == "dispensed"]
        assert len(slots) == len(set(slots)), "a perfusion slot was dispensed twice"
        dose_vials = session.execute(select(DoseVial.vial_id)).scalars().all()
        assert len(dose_vials) == len(set(dose_vials)) == len(used)
        dispensed = set(session.execute(select(Vial.serial).where(
            Vial.status == "dispensed")).scalars())
        assert dispensed == set(used)
        report = audit.verify(session)
    assert report.ok, report.problems
    print(f"\n{database.backend}: {ATTEMPTS} attempts by {WORKERS} processes in {seconds:.1f} s: "
          f"{len(successes)} dispensed, {len(refusals)} refused, {len(retries)} retried")


# --- the retry, one race at a time ---------------------------------------------------

def _system_event(session, note: str) -> None:
    audit.record(session, None, "test", note, "contention", None, {"note": note})


def _events(database) -> int:
    with db.unit_of_work(database.engine) as session:
        return session.execute(select(func.count(AuditEvent.seq))).scalar_one()


def _verify(database) -> None:
    with db.unit_of_work(database.engine) as session:
        report = audit.verify(session)
    # The test events name an entity no model audits, so the row check passes over them.
    assert report.ok, report.problems


def test_a_serialization_failure_is_run_again_and_the_chain_stays_whole(database):
    """PostgreSQL at REPEATABLE READ: the transaction whose snapshot predates another
    writer's commit fails on the chain head (SQLSTATE 40001) and succeeds when run again."""
    if database.backend != "postgresql":
        pytest.skip("serialization failures are PostgreSQL's; SQLite serialises writers")
    with db.unit_of_work(database.engine) as session:
        _system_event(session, "the chain head row exists")
        session.commit()
    engine = database.engine.execution_options(isolation_level="REPEATABLE READ")
    snapshot_taken, other_committed = threading.Event(), threading.Event()
    runs: list[int] = []

    def slow(session):
        runs.append(1)
        session.execute(select(func.count(AuditEvent.seq))).scalar_one()  # takes the snapshot
        if len(runs) == 1:
            snapshot_taken.set()
            assert other_committed.wait(10)
        _system_event(session, "slow")
        return len(runs)

    def fast():
        assert snapshot_taken.wait(10)
        db.retrying(engine, lambda s: _system_event(s, "fast"))
        other_committed.set()

    before = _events(database)
    helper = threading.Thread(target=fast)
    helper.start()
    assert db.retrying(engine, slow) == 2
    helper.join(10)
    assert _events(database) == before + 2
    _verify(database)


def test_a_deadlock_is_broken_and_the_victim_is_run_again(database):
    """Two transactions lock two rows in opposite orders; PostgreSQL aborts one (40P01),
    `retrying` runs it again once the other has committed, and both are written."""
    if database.backend != "postgresql":
        pytest.skip("SQLite takes one write lock per database: it cannot deadlock on rows")
    engine = database.engine
    with db.unit_of_work(engine) as session:
        for note in ("first", "second"):
            _system_event(session, note)
        session.commit()
    both_hold_one = threading.Barrier(2)
    runs = {"a": 0, "b": 0}
    lock_row = "SELECT seq FROM audit_events WHERE entity = 'test' AND entity_id = :n FOR UPDATE"

    def crossing(name: str, first: str, second: str):
        def action(session):
            runs[name] += 1
            session.execute(text(lock_row), {"n": first}).scalar_one()
            if runs[name] == 1:
                both_hold_one.wait(10)
            session.execute(text(lock_row), {"n": second}).scalar_one()
            _system_event(session, f"{name} done")
        return action

    errors: list[BaseException] = []

    def run(name, first, second):
        try:
            db.retrying(engine, crossing(name, first, second))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=("a", "first", "second")),
               threading.Thread(target=run, args=("b", "second", "first"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and not any(t.is_alive() for t in threads), errors
    assert sorted(runs.values()) == [1, 2]
    _verify(database)


def _hold_sqlite_write_lock(path: str, seconds: float, locked: threading.Event) -> None:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    locked.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def _sqlite_path(database) -> str:
    return database.engine.url.database


def test_a_locked_sqlite_file_is_run_again_after_the_busy_timeout(database, monkeypatch):
    """With a busy timeout far shorter than the lock is held, the write fails with
    'database is locked' and succeeds on a later attempt."""
    if database.backend != "sqlite":
        pytest.skip("a database file lock is SQLite's")
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 50)
    engine = db.make_engine(database.url)
    locked = threading.Event()
    holder = threading.Thread(target=_hold_sqlite_write_lock,
                              args=(_sqlite_path(database), 0.4, locked))
    holder.start()
    assert locked.wait(10)
    runs: list[int] = []

    def write(session):
        runs.append(1)
        _system_event(session, "after the lock")

    db.retrying(engine, write, attempts=8)
    holder.join(10)
    engine.dispose()
    assert len(runs) >= 2
    _verify(database)


def test_the_cli_runs_a_command_again_when_the_sqlite_file_was_locked(database, make_user,
                                                                      monkeypatch):
    if database.backend != "sqlite":
        pytest.skip("a database file lock is SQLite's")
    from lotrack.cli.main import cli

    make_user("pharm.chen", "pharmacist")
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 50)
    locked = threading.Event()
    holder = threading.Thread(target=_hold_sqlite_write_lock,
                              args=(_sqlite_path(database), 0.3, locked))
    holder.start()
    assert locked.wait(10)
    result = CliRunner().invoke(cli, ["storage", "add", "SITE/FRZ-B"], env={
        "LOTRACK_DB": database.url, "LOTRACK_USER": "pharm.chen", "LOTRACK_PASSWORD": PASSWORD})
    holder.join(10)
    assert result.exit_code == 0, result.output
    _verify(database)


class _Orig(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _failing(times: int, orig: Exception, calls: list[int]):
    def action(session):
        calls.append(1)
        session.execute(text("SELECT 1"))
        if len(calls) <= times:
            raise OperationalError("SELECT 1", {}, orig)
        return "written"
    return action


@pytest.mark.parametrize("orig", [
    _Orig("could not serialize access due to concurrent update", "40001"),
    _Orig("deadlock detected", "40P01"),
    _Orig("database is locked"),
], ids=["serialization", "deadlock", "sqlite-locked"])
def test_retrying_is_bounded_and_then_says_so_in_one_line(database, orig):
    calls: list[int] = []
    assert db.retrying(database.engine, _failing(2, orig, calls), first_delay=0.001) == "written"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(DatabaseBusy, match=r"still failing after 3 attempts; nothing was written"):
        db.retrying(database.engine, _failing(99, orig, calls), attempts=3, first_delay=0.001)
    assert len(calls) == 3


def test_other_failures_are_not_run_again(database):
    calls: list[int] = []
    with pytest.raises(DatabaseError) as raised:
        db.retrying(database.engine, _failing(1, _Orig("no such table: nope", "42P01"), calls))
    assert not isinstance(raised.value, DatabaseBusy) and len(calls) == 1

    def refused(session):
        calls.append(1)
        raise RuleViolation("lot L001 is on hold")

    calls.clear()
    with pytest.raises(RuleViolation):
        db.retrying(database.engine, refused)
    assert len(calls) == 1
