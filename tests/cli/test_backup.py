"""`lotrack db backup` and `lotrack db restore`: an administrator's SQLite backup, taken
while others work, restores to a database whose audit trail verifies and whose traces
answer as before; PostgreSQL is pointed to pg_dump and pg_restore, and the README's
pg_dump and pg_restore commands restore a database that does the same."""

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from trialkit import T0, UTC_TZ, Trial

from lotrack.schemas.safety import AdverseEventIn
from lotrack.services import adverse_events, storage

README = Path(__file__).resolve().parents[2] / "README.md"
MONITOR = {"user": "monitor.sun"}


def _build_trial(database, make_user) -> Trial:
    """L001's first vial given to S-1, who then has an adverse event: something for every
    trace (lot, vial, participant, adverse event) to answer."""
    trial = Trial.build(database, make_user)
    trial.enroll_and_operate("S-1", "LOW", T0)
    dose = trial.dispense("S-1", [trial.vial()], T0 + timedelta(hours=24))
    trial.administer(dose.dose_code, T0 + timedelta(hours=24, minutes=30))
    trial.act("inv.liu", lambda s, a: adverse_events.record_adverse_event(
        s, a, "S-1", AdverseEventIn(term="Pelvic pain", grade=2,
                                    onset=(T0 + timedelta(days=2)).date()), UTC_TZ))
    return trial


@pytest.fixture
def trial(lotrack, database, make_user):
    if database.backend != "sqlite":
        pytest.skip("backup and restore are SQLite's; PostgreSQL has pg_dump and pg_restore")
    return _build_trial(database, make_user)


def _trace(lotrack, run=None, **extra) -> dict:
    """Every trace of the trial as JSON: lot L001, participant S-1, her adverse event AE00001
    (linked to her dose) and the vial she received. `run` is lotrack.ok (in process) unless
    given."""
    def read(*args: str) -> object:
        if run is None:
            return json.loads(lotrack.ok(*args, "--json", **MONITOR, **extra))
        done = run(*args, "--json", **MONITOR, **extra)
        assert done.exit_code == 0, (args, done.stderr)
        return json.loads(done.stdout)

    traces = {"lot": read("trace", "lot", "L001"), "participant": read("trace", "participant",
                                                                        "S-1"),
              "ae": read("trace", "ae", "AE00001")}
    [dose] = traces["ae"]["doses_before_onset"]  # the adverse event is linked to the dose
    [serial] = dose["vials"]
    traces["vial"] = read("trace", "vial", serial)
    return traces


def _database_events(lotrack) -> list[dict]:
    return json.loads(lotrack.ok("audit", "log", "--entity", "database", "--json"))


def test_a_restored_database_verifies_and_answers_the_same_traces(lotrack, trial, tmp_path):
    before = _trace(lotrack)
    backup = tmp_path / "backups" / "lotrack-backup.db"
    backup.parent.mkdir()
    done = lotrack.script("db", "backup", str(backup))
    assert done.exit_code == 0, done.stderr
    sha = done.stdout.split("sha256 ")[1].rstrip(").\n")
    events = _database_events(lotrack)
    assert [(e["action"], e["user"], e["after"]["file"]) for e in events] == [
        ("backup", "admin", str(backup)), ("backup_written", "admin", str(backup))]
    assert events[1]["after"]["sha256"] == sha
    # The backup holds the record of its own making (its checksum cannot be in it).
    with sqlite3.connect(f"{backup.as_uri()}?mode=ro", uri=True) as copy:
        assert copy.execute("SELECT action FROM audit_events WHERE entity = 'database'"
                            ).fetchall() == [("backup",)]

    # Life goes on after the backup: another dose, and the lot put on hold.
    trial.enroll_and_operate("S-2", "LOW", T0)
    trial.dispense("S-2", [trial.vial()], T0 + timedelta(hours=25))
    trial.transition("L001", "on_hold")
    changed = _trace(lotrack)
    assert changed != before

    done = lotrack.script("db", "restore", str(backup), "--yes")
    assert done.exit_code == 0, done.stderr
    assert f"sha256 {sha}" in done.stdout and "audit trail intact" in done.stdout
    assert _trace(lotrack) == before
    assert "Audit trail intact" in lotrack.ok("audit", "verify", user="monitor.sun")
    restore = _database_events(lotrack)[-1]
    assert (restore["action"], restore["user"], restore["after"]["sha256"]) == (
        "restore", "admin", sha)
    assert (restore["after"]["upgraded_from"], restore["after"]["upgraded_to"]) == (None, None)

    # The database replaced is kept, whole, beside the database.
    kept = done.stdout.split("kept as ")[1].strip().rstrip(".")
    kept_db = lotrack.db_url.replace(lotrack.db_url.split("///")[1], kept)
    assert _trace(lotrack, LOTRACK_DB=kept_db) == changed


def test_a_backup_taken_while_another_user_writes_is_consistent(lotrack, trial, tmp_path):
    """The online backup API copies one snapshot, whatever is in the WAL included."""
    stop = threading.Event()

    def write_meanwhile():
        n = 0
        while not stop.is_set() and n < 20:
            n += 1
            trial.act("pharm.chen", lambda s, a, n=n: storage.add_location(
                s, a, f"SITE/FRZ-B/R{n}", None))

    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    backups = [tmp_path / f"b{i}.db" for i in range(3)]
    for backup in backups:
        lotrack.ok("db", "backup", str(backup))
    stop.set()
    writer.join(60)
    for backup in backups:
        url = f"sqlite:///{backup}"
        assert "Audit trail intact" in lotrack.ok("audit", "verify", LOTRACK_DB=url)


def _tamper(path):
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE lots SET status = 'released' WHERE lot_number = 'L001'")
        conn.execute("UPDATE vials SET status = 'in_stock' "
                      "WHERE status IN ('dispensed', 'administered')")


@pytest.mark.parametrize(("step", "exit_code", "message"), [
    ("backup as a pharmacist", 3, "backing up the database needs the admin role"),
    ("backup onto a file", 2, "a backup never overwrites a file"),
    ("backup onto the database", 2, "is the database itself"),
    ("restore without --yes", 2, "give --yes to confirm"),
    ("restore as a pharmacist", 3, "restoring the database needs the admin role"),
    ("restore a text file", 2, "is not an SQLite database"),
    ("restore a missing file", 2, "no backup file"),
    ("restore a tampered backup", 4, "does not verify"),
    ("restore an SQLite file lotrack did not write", 2, "is not a lotrack database"),
])
def test_refusals_are_one_error_line_and_change_nothing(lotrack, trial, tmp_path, step,
                                                        exit_code, message):
    backup = tmp_path / "b.db"
    lotrack.ok("db", "backup", str(backup))
    database_file = lotrack.db_url.split("///")[1]
    args, user = {
        "backup as a pharmacist": (["db", "backup", str(tmp_path / "c.db")], "pharm.chen"),
        "backup onto a file": (["db", "backup", str(backup)], "admin"),
        "backup onto the database": (["db", "backup", database_file], "admin"),
        "restore without --yes": (["db", "restore", str(backup)], "admin"),
        "restore as a pharmacist": (["db", "restore", str(backup), "--yes"], "pharm.chen"),
        "restore a text file": (["db", "restore", str(tmp_path / "notes.db"), "--yes"], "admin"),
        "restore a missing file": (["db", "restore", str(tmp_path / "none.db"), "--yes"], "admin"),
        "restore a tampered backup": (["db", "restore", str(backup), "--yes"], "admin"),
        "restore an SQLite file lotrack did not write": (
            ["db", "restore", str(tmp_path / "other.db"), "--yes"], "admin"),
    }[step]
    (tmp_path / "notes.db").write_text("not a database\n")
    with sqlite3.connect(tmp_path / "other.db") as other:
        other.execute("CREATE TABLE t (x)")
    if step == "restore a tampered backup":
        _tamper(backup)
    lotrack.refuses(*args, user=user, message=message, exit_code=exit_code)
    assert not (tmp_path / "c.db").exists()
    leftovers = [p.name for p in tmp_path.rglob(".lotrack-*")]
    assert leftovers == []
    assert not list(tmp_path.rglob("*.replaced-*"))


def test_on_postgresql_backup_and_restore_point_to_pg_dump_and_pg_restore(lotrack, database,
                                                                           tmp_path):
    if database.backend != "postgresql":
        pytest.skip("the PostgreSQL refusal")
    for args in (["db", "backup", str(tmp_path / "b.db")],
                 ["db", "restore", str(tmp_path / "b.db"), "--yes"]):
        outcome = lotrack.refuses(*args, message="pg_dump", exit_code=1)
        assert outcome.stderr.startswith("Error: ") and len(outcome.stderr.splitlines()) == 1
        assert "pg_restore" in outcome.stderr
    assert not (tmp_path / "b.db").exists()


def test_a_backup_from_an_older_lotrack_is_upgraded_as_it_is_restored(lotrack, trial, tmp_path):
    from lotrack import db
    from lotrack.migrations_head import HEAD

    before = _trace(lotrack)
    backup = tmp_path / "old.db"
    lotrack.ok("db", "backup", str(backup))
    engine = db.make_engine(f"sqlite:///{backup}")
    previous = str(int(HEAD) - 1).zfill(len(HEAD))
    db.downgrade(engine, previous)  # as the lotrack before the last migration left it
    engine.dispose()
    # Refused as a restore, before anything is upgraded, to one not an administrator.
    lotrack.refuses("db", "restore", str(backup), "--yes", user="pharm.chen",
                    message="restoring the database needs the admin role", exit_code=3)
    assert [p.name for p in tmp_path.rglob(".lotrack-*")] == []
    done = lotrack.script("db", "restore", str(backup), "--yes")
    assert done.exit_code == 0, done.stderr
    assert f"upgraded from revision {previous}" in done.stdout
    assert f"revision {HEAD}" in lotrack.ok("db", "current")
    assert _trace(lotrack) == before
    assert "Audit trail intact" in lotrack.ok("audit", "verify", user="monitor.sun")
    # The upgrade is audited as `lotrack db upgrade` audits it, on the backup's chain, and
    # the restore says from which revision the backup was upgraded.
    *_, backed_up, upgraded, restored = _database_events(lotrack)
    assert backed_up["action"] == "backup"
    assert (upgraded["action"], upgraded["user"], upgraded["before"], upgraded["after"]) == (
        "upgrade", "admin", {"revision": previous}, {"revision": HEAD})
    assert (restored["action"], restored["user"]) == ("restore", "admin")
    assert (restored["after"]["upgraded_from"], restored["after"]["upgraded_to"]) == (
        previous, HEAD)


# --- PostgreSQL: the README's pg_dump and pg_restore --------------------------------------

def _readme_commands() -> dict[str, list[str]]:
    """The README's PostgreSQL backup and restore commands, word for word, by program."""
    text = README.read_text()
    section = text[text.index("**Backup and restore.**"):]
    start = section.index("```sh\n") + len("```sh\n")
    block = section[start:section.index("```", start)]
    commands = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands[words[0]] = words
    return commands


@pytest.fixture
def pg_trial(lotrack, database, make_user):
    if database.backend != "postgresql":
        pytest.skip("pg_dump and pg_restore are PostgreSQL's")
    missing = [tool for tool in ("pg_dump", "pg_restore") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH")
    return _build_trial(database, make_user)


@pytest.fixture
def second_pg_database(templates):
    """A fresh, empty database on the same server, dropped at the end."""
    name = f"lotrack_r_{uuid.uuid4().hex[:12]}"
    templates.create_pg(name)
    yield name, templates.pg_url(name)
    templates.drop_pg(name)
    templates.pg_databases.remove(name)


def test_the_readme_pg_dump_and_pg_restore_restore_a_database_that_verifies_and_traces_the_same(
        lotrack, database, pg_trial, second_pg_database, tmp_path):
    commands = _readme_commands()
    source = make_url(database.url)
    target, target_url = second_pg_database
    server = {"PGHOST": source.host or "", "PGPORT": str(source.port or 5432),
              "PGUSER": source.username or "", "PGPASSWORD": source.password or ""}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env |= {k: v for k, v in server.items() if v}

    def run(words: list[str], name: str) -> None:
        # The README's command as it is, its database `lotrack` being this test's.
        assert words.count("lotrack") == 1, words
        argv = [name if word == "lotrack" else word for word in words]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, (argv, done.stderr)

    assert commands["pg_dump"][:2] == ["pg_dump", "-Fc"]
    assert commands["pg_restore"][:3] == ["pg_restore", "--clean", "--if-exists"]
    before = _trace(lotrack, run=lotrack.script)
    run(commands["pg_dump"], source.database)
    assert (tmp_path / "lotrack.dump").is_file()
    run(commands["pg_restore"], target)

    restored = {"LOTRACK_DB": target_url}
    verified = lotrack.script("audit", "verify", **MONITOR, **restored)
    assert verified.exit_code == 0, verified.stderr
    assert "Audit trail intact" in verified.stdout
    assert _trace(lotrack, run=lotrack.script, **restored) == before
