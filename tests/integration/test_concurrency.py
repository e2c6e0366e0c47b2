"""Two users acting at the same moment leave one consistent state: on PostgreSQL with
concurrent connections, on SQLite with separate processes."""

import multiprocessing
import threading
from datetime import timedelta

import pytest
from trialkit import PASSWORD, T0, UTC_TZ, Trial

from lotrack import audit, db
from lotrack.errors import LotrackError
from lotrack.services import lots


@pytest.fixture
def trial(database, make_user):
    return Trial.build(database, make_user)


def run_together(*actions):
    """Start the actions at the same instant in threads; return (results, errors)."""
    barrier = threading.Barrier(len(actions))
    results, errors = [], []

    def runner(action):
        barrier.wait()
        try:
            results.append(action())
        except LotrackError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results, errors


def verify(trial):
    with db.unit_of_work(trial.database.engine) as session:
        report = audit.verify(session)
    assert report.ok, report.problems


def test_two_pharmacists_dispensing_the_same_vial_exactly_one_succeeds(trial):
    for subject in ("S-1", "S-2"):
        trial.enroll_and_operate(subject, "LOW", T0)
    serial = trial.vial()
    at = T0 + timedelta(hours=24)
    results, errors = run_together(
        lambda: trial.dispense("S-1", [serial], at),
        lambda: trial.dispense("S-2", [serial], at, as_user="pharm.wang", verifier="pharm.chen"))
    assert len(results) == 1 and len(errors) == 1
    assert "cannot be dispensed" in str(errors[0])
    verify(trial)


def test_two_pharmacists_dispensing_the_same_perfusion_exactly_one_succeeds(trial):
    trial.enroll_and_operate("S-3", "LOW", T0)
    first, second = trial.vial(), trial.vial()
    at = T0 + timedelta(hours=24)
    results, errors = run_together(
        lambda: trial.dispense("S-3", [first], at),
        lambda: trial.dispense("S-3", [second], at, as_user="pharm.wang", verifier="pharm.chen"))
    assert len(results) == 1 and len(errors) == 1
    assert results[0].perfusion == 1
    verify(trial)


@pytest.mark.parametrize("second", ["released", "rejected"])
def test_two_qa_users_deciding_on_the_same_lot_at_once_leave_one_consistent_state(trial,
                                                                                   second):
    number = trial.lot(release=False)
    results, errors = run_together(
        lambda: trial.transition(number, "released"),
        lambda: trial.act("qa.huang", lambda s, a: lots.transition(
            s, a, number, second, "decided", PASSWORD, UTC_TZ)))
    assert len(results) == 1 and len(errors) == 1
    assert "cannot become" in str(errors[0])
    verify(trial)


def _dispense_in_process(url: str, subject: str, serial: str, user: str, verifier: str,
                         barrier, queue) -> None:
    from lotrack import db as database
    from lotrack.services import auth, dosing

    engine = database.make_engine(url)
    request = dosing.DispenseRequest(subject, (serial,), T0 + timedelta(hours=24), verifier)
    try:
        barrier.wait(timeout=120)  # all four dispense at once, not one after the other
        with database.unit_of_work(engine) as session:
            actor = auth.authenticate(session, user, PASSWORD)
            dose = dosing.dispense_perfusion(session, actor, request, PASSWORD, PASSWORD, UTC_TZ)
            session.commit()
            queue.put(("ok", dose.dose_code))
    except LotrackError as exc:
        queue.put(("refused", str(exc)))
    except Exception as exc:  # anything else is what this test exists to catch
        queue.put(("crash", repr(exc)))


def test_separate_processes_on_the_same_database_wait_instead_of_failing(trial):
    for subject in ("P-1", "P-2", "P-3", "P-4"):
        trial.enroll_and_operate(subject, "LOW", T0)
    serial = trial.vial()
    ctx = multiprocessing.get_context("spawn")
    users = [("pharm.chen", "pharm.wang"), ("pharm.wang", "pharm.chen")] * 2
    queue, barrier = ctx.Queue(), ctx.Barrier(len(users))
    procs = [ctx.Process(target=_dispense_in_process,
                         args=(trial.database.url, f"P-{i + 1}", serial, u, v, barrier, queue))
             for i, (u, v) in enumerate(users)]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["ok", "refused", "refused", "refused"], outcomes
    assert all("cannot be dispensed" in msg for kind, msg in outcomes if kind == "refused")
    verify(trial)
