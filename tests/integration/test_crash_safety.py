"""A lotrack process killed (SIGKILL) in the middle of a QC import, a lot registration of
2,000 vials or a dispense leaves the database with all of it or none of it, and the audit
trail still verifies.

Each command is killed at known moments (with its transaction written but not committed,
and just after the commit) by running the CLI in a Python subprocess whose commit pauses,
and at random moments of its transaction: the subprocess says when its first transaction
begins, and is killed a random time later, within how long the transaction took when the
same command ran to the end."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from trialkit import GOOD_RESULTS, PASSWORD, T0, Trial

from lotrack import audit, db
from lotrack.models import Dose, LabelPrint, Lot, QcResult, Signature, Vial
from lotrack.models.participants import Participant
from lotrack.schemas.lots import LotIn
from lotrack.services import lots

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).with_name("lotrack")
RANDOM_KILLS = 3
BIG_LOT = 2000
MARKER = "lotrack-test: paused"

# The real CLI, with the unit of work's commit paused on one side of the real commit:
# the parent kills the process once the marker is printed.
PAUSED_CLI = """
import sys, time
from sqlalchemy.orm import Session

real_commit = Session.commit
where = sys.argv.pop(1)

def paused_commit(self):
    if where == "after":
        real_commit(self)
    else:
        self.flush()
    print("{marker}", where, file=sys.stderr, flush=True)
    time.sleep(120)

Session.commit = paused_commit
from lotrack.cli.main import main
sys.argv[0] = "lotrack"
main()
""".replace("{marker}", MARKER)

# The real CLI, saying on stderr when its first transaction begins (and nothing else).
BEGAN = "lotrack-test: began"
MARKED_CLI = """
import sys
from sqlalchemy import event
from sqlalchemy.orm import Session

said = []

@event.listens_for(Session, "after_begin")
def began(session, transaction, connection):
    if not said:
        said.append(True)
        print("{began}", file=sys.stderr, flush=True)

from lotrack.cli.main import main
sys.argv[0] = "lotrack"
main()
""".replace("{began}", BEGAN)


@dataclass
class Operation:
    """A command to kill, the state it leaves for one item, and that state done and not done."""

    args: Callable[[int], list[str]]
    user: str
    state: Callable[[int], tuple]
    none: Callable[[int], tuple]
    done: Callable[[int], tuple]


@dataclass
class Killer:
    database: object
    workdir: Path

    def env(self, user: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOTRACK_")}
        return env | {"LOTRACK_DB": self.database.url, "LOTRACK_HOME": str(self.workdir / "home"),
                      "LOTRACK_TZ": "UTC", "LOTRACK_USER": user, "LOTRACK_PASSWORD": PASSWORD,
                      "LOTRACK_VERIFIER_PASSWORD": PASSWORD}

    def complete(self, args: list[str], user: str) -> float:
        started = time.monotonic()
        done = subprocess.run([str(SCRIPT), *args], env=self.env(user), cwd=self.workdir,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return time.monotonic() - started

    def _began(self, args: list[str], user: str) -> subprocess.Popen:
        """The CLI in a Python subprocess, returned once its first transaction has begun."""
        proc = subprocess.Popen([sys.executable, "-c", MARKED_CLI, *args], env=self.env(user),
                                cwd=self.workdir, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(BEGAN):
                return proc
        proc.wait(timeout=30)
        raise AssertionError(f"no transaction began (exit {proc.returncode}): {''.join(lines)}")

    def transaction_seconds(self, args: list[str], user: str) -> float:
        """From the first transaction's start to the end of the command, run to the end."""
        proc = self._began(args, user)
        started = time.monotonic()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
        return time.monotonic() - started

    def kill_in_transaction(self, args: list[str], user: str, delay: float) -> int | None:
        """Killed `delay` s after its first transaction began; its exit status if it
        finished first."""
        proc = self._began(args, user)
        try:
            return proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return None
        finally:
            proc.stderr.close()

    def kill_paused(self, args: list[str], user: str, where: str) -> None:
        """The CLI in a Python subprocess, killed while its commit is paused `where`."""
        proc = subprocess.Popen([sys.executable, "-c", PAUSED_CLI, where, *args],
                                env=self.env(user), cwd=self.workdir, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        watchdog = threading.Timer(90, proc.kill)
        watchdog.start()
        try:
            lines = []
            for line in proc.stderr:
                lines.append(line)
                if line.startswith(MARKER):
                    break
            assert lines and lines[-1].startswith(MARKER), "".join(lines)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            watchdog.cancel()

    def audit_verifies(self) -> None:
        done = subprocess.run([str(SCRIPT), "audit", "verify"], env=self.env("monitor.sun"),
                              cwd=self.workdir, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "Audit trail intact" in done.stdout, done.stdout + done.stderr


def _scalar(database, stmt):
    with db.unit_of_work(database.engine) as session:
        return session.execute(stmt).scalar()


def _kill_at_every_moment(killer: Killer, op: Operation) -> list[str]:
    """Item 0 runs to the end as the installed script; item 1 is killed with its rows
    written but not committed, item 2 just after its commit; item 3 runs to the end to
    time its transaction, and the rest are killed at random moments within that time."""
    seen = []
    killer.complete(op.args(0), op.user)
    assert op.state(0) == op.done(0)
    killer.kill_paused(op.args(1), op.user, "before")
    assert op.state(1) == op.none(1), "a killed, uncommitted command left rows behind"
    killer.kill_paused(op.args(2), op.user, "after")
    assert op.state(2) == op.done(2), "a committed command lost rows"
    seconds = killer.transaction_seconds(op.args(3), op.user)
    assert op.state(3) == op.done(3)
    rng = random.Random()
    for item in range(4, 4 + RANDOM_KILLS):
        delay = rng.uniform(0.05, 1.0) * seconds
        status = killer.kill_in_transaction(op.args(item), op.user, delay)
        state = op.state(item)
        assert state in (op.none(item), op.done(item)), (
            f"killed {delay:.3f} s into a {seconds:.3f} s transaction: {state} is neither "
            f"{op.none(item)} nor {op.done(item)}")
        assert status in (None, 0)
        seen.append(f"killed {delay:.3f} s into {seconds:.3f} s, "
                    + ("after commit" if state == op.done(item) else "nothing kept")
                    if status is None else "finished first")
    killer.audit_verifies()
    return seen


@pytest.fixture
def trial(database, make_user):
    return Trial.build(database, make_user)


@pytest.fixture
def killer(database, tmp_path) -> Killer:
    workdir = tmp_path / "work"
    workdir.mkdir()
    return Killer(database, workdir)


def _lot_state(database, number: str) -> tuple[bool, int]:
    lot_id = _scalar(database, select(Lot.id).where(Lot.lot_number == number))
    vials = _scalar(database, select(func.count(Vial.id)).where(Vial.lot_id == lot_id))
    return lot_id is not None, vials


def test_a_killed_registration_of_2000_vials_leaves_the_lot_whole_or_absent(database, trial,
                                                                            killer):
    before = _scalar(database, select(func.count(Vial.id)))
    op = Operation(
        args=lambda i: ["lot", "register", f"K{i}", "--product", "IPSEXO", "--manufactured",
                        "2026-01-10", "--expiry", "2026-12-31", "--vials", str(BIG_LOT)],
        user="qa.lee",
        state=lambda i: _lot_state(database, f"K{i}"),
        none=lambda i: (False, 0), done=lambda i: (True, BIG_LOT))
    seen = _kill_at_every_moment(killer, op)
    lots_done = _scalar(database, select(func.count(Lot.id)).where(Lot.lot_number.like("K%")))
    # Serials are numbered from the vial count: no gap, no duplicate after the kills.
    assert _scalar(database, select(func.count(Vial.id))) == before + lots_done * BIG_LOT
    assert _scalar(database, select(func.count(func.distinct(Vial.serial)))) == (
        before + lots_done * BIG_LOT)
    print(f"\n{database.backend}: lot register killed at random: {seen}")


def _qc_csv(path: Path) -> Path:
    lines = ["attribute,value,unit,method,tested_at,analyst"]
    lines += [f'{name},"{value}",{unit},,2026-01-20,J. Wu'
              for name, (value, unit) in GOOD_RESULTS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_killed_qc_import_records_every_result_or_none(database, trial, killer):
    for i in range(4 + RANDOM_KILLS):
        trial.act("qa.lee", lambda s, a, i=i: lots.register_lot(s, a, LotIn(
            lot_number=f"Q{i}", product="IPSEXO", manufactured_on=date(2026, 1, 10),
            expiry_on=date(2026, 12, 31), vials=4)))
    csv_file = _qc_csv(killer.workdir / "results.csv")

    def results(i: int) -> tuple[int]:
        lot_id = _scalar(database, select(Lot.id).where(Lot.lot_number == f"Q{i}"))
        return (_scalar(database, select(func.count(QcResult.id)).where(
            QcResult.lot_id == lot_id)),)

    op = Operation(args=lambda i: ["lot", "qc", f"Q{i}", "--file", str(csv_file)],
                   user="qa.lee", state=results,
                   none=lambda i: (0,), done=lambda i: (len(GOOD_RESULTS),))
    seen = _kill_at_every_moment(killer, op)
    print(f"\n{database.backend}: lot qc killed at random: {seen}")


IMPORT_LOTS = 40  # lots in each bulk import file


def test_a_killed_bulk_qc_import_records_every_lot_or_none(database, trial, killer):
    """`lot import-qc`, the bulk path of the 100,000-row import: one file, many lots."""
    def register_all(session, actor):
        for i in range(4 + RANDOM_KILLS):
            for n in range(IMPORT_LOTS):
                lots.register_lot(session, actor, LotIn(
                    lot_number=f"M{i}-{n:02d}", product="IPSEXO", manufactured_on=date(2026, 1, 10),
                    expiry_on=date(2026, 12, 31), vials=1))

    trial.act("qa.lee", register_all)
    files = {}
    for i in range(4 + RANDOM_KILLS):
        lines = ["lot,attribute,value,unit,method,tested_at,analyst"]
        lines += [f'M{i}-{n:02d},{name},"{value}",{unit},,2026-01-20,J. Wu'
                  for n in range(IMPORT_LOTS) for name, (value, unit) in GOOD_RESULTS.items()]
        files[i] = killer.workdir / f"import-{i}.csv"
        files[i].write_text("\n".join(lines) + "\n")

    def results(i: int) -> tuple[int]:
        return (_scalar(database, select(func.count(QcResult.id)).join(
            Lot, Lot.id == QcResult.lot_id).where(Lot.lot_number.like(f"M{i}-%"))),)

    op = Operation(args=lambda i: ["lot", "import-qc", str(files[i])], user="qa.lee",
                   state=results, none=lambda i: (0,),
                   done=lambda i: (IMPORT_LOTS * len(GOOD_RESULTS),))
    seen = _kill_at_every_moment(killer, op)
    print(f"\n{database.backend}: lot import-qc killed at random: {seen}")


def test_a_killed_dispense_leaves_the_dose_signed_and_labelled_or_not_at_all(database, trial,
                                                                            killer):
    serials = {}
    for i in range(4 + RANDOM_KILLS):
        trial.enroll_and_operate(f"D-{i}", "LOW", T0)
        serials[i] = trial.vial()

    def dose_state(i: int) -> tuple:
        with db.unit_of_work(database.engine) as session:
            doses = session.execute(select(Dose).join(Participant).where(
                Participant.subject_id == f"D-{i}")).scalars().all()
            vial = session.execute(select(Vial.status).where(
                Vial.serial == serials[i])).scalar_one()
            codes = [d.dose_code for d in doses]
            signatures = session.execute(select(func.count(Signature.id)).where(
                Signature.entity == "dose", Signature.entity_id.in_(codes))).scalar_one()
            labels = session.execute(select(func.count(LabelPrint.id)).where(
                LabelPrint.kind == "dose", LabelPrint.subject.in_(codes))).scalar_one()
        return len(doses), vial, signatures, labels

    at = (T0 + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M")
    op = Operation(args=lambda i: ["dispense", f"D-{i}", "--vial", serials[i], "--at", at,
                                   "--verified-by", "pharm.wang"],
                   user="pharm.chen", state=dose_state,
                   none=lambda i: (0, "in_stock", 0, 0), done=lambda i: (1, "dispensed", 2, 1))
    seen = _kill_at_every_moment(killer, op)
    with db.unit_of_work(database.engine) as session:
        report = audit.verify(session)
    assert report.ok, report.problems
    print(f"\n{database.backend}: dispense killed at random: {seen}")
