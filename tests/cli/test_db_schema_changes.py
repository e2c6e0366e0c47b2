"""`lotrack db downgrade`: an administrator's act with a reason, audited, and refused where
the migrations undone would drop a table or column holding data (records are never
deleted; the way back from an upgrade is the backup taken before it). `lotrack db upgrade`
of a database with users: an administrator's, audited; of a new one: anyone's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from trialkit import T0, Trial

from lotrack import db
from lotrack.migrations_head import HEAD
from lotrack.services import schema_changes

SCRIPT = Path(sys.executable).with_name("lotrack")
PREVIOUS = schema_changes.revisions()[-2]  # the revision before head


@pytest.fixture
def trial(lotrack, database, make_user):
    trial = Trial.build(database, make_user)
    trial.lot()
    trial.enroll_and_operate("S-1", "LOW", T0)
    trial.dispense("S-1", [trial.serials("L001")[0]], T0 + timedelta(hours=24))
    return trial


def downgrade_events(lotrack, action: str = "downgrade") -> list[dict]:
    events = json.loads(lotrack.ok("audit", "log", "--json", "--entity", "database",
                                   user="monitor.sun"))
    return [e for e in events if e["action"] == action]


def test_a_downgrade_that_drops_only_empty_tables_is_done_and_audited(lotrack, database, trial):
    # Head's own table (the site settings) is empty in this trial: nothing is lost.
    out = lotrack.ok("db", "downgrade", PREVIOUS, "--reason", "roll back the test upgrade")
    assert f"from revision {HEAD} to {PREVIOUS}" in out
    assert db.current_revision(database.engine) == PREVIOUS
    assert "settings" not in inspect(database.engine).get_table_names()
    # Back at head, the trail holds the downgrade, who did it and why, and still verifies.
    lotrack.ok("db", "upgrade")
    [event] = downgrade_events(lotrack)
    assert event["user"] == "admin"
    assert event["reason"] == "roll back the test upgrade"
    assert (event["before"], event["after"]) == ({"revision": HEAD}, {"revision": PREVIOUS})
    assert "Audit trail intact" in lotrack.ok("audit", "verify", user="monitor.sun")


@pytest.mark.parametrize(("revision", "lost"), [
    ("base", "table audit_events"),
    ("0004", "products.do_not_dispense_days"),  # added by 0005, set on every product
    ("0002", "table participants"),
])
def test_a_downgrade_that_would_delete_records_is_refused(lotrack, database, trial, revision,
                                                          lost):
    tables = inspect(database.engine).get_table_names()
    outcome = lotrack.refuses("db", "downgrade", revision, "--reason", "try",
                              message="would delete recorded data")
    assert lost in outcome.stderr and "db restore" in outcome.stderr
    assert db.current_revision(database.engine) == HEAD
    assert inspect(database.engine).get_table_names() == tables
    assert downgrade_events(lotrack) == []


def test_recorded_site_settings_keep_the_previous_revision_away(lotrack, database, trial):
    lotrack.ok("settings", "set-tz", "UTC")
    lotrack.refuses("db", "downgrade", PREVIOUS, "--reason", "try",
                    message="table settings (1 row)")
    assert db.current_revision(database.engine) == HEAD


@pytest.mark.parametrize(("args", "user", "message"), [
    ([PREVIOUS, "--reason", "try"], "qa.lee", "admin"),
    ([PREVIOUS, "--reason", "  "], "admin", "needs a reason"),
    (["--reason", "try", "--", "-1"], "admin", "unknown revision '-1'"),
    (["0099", "--reason", "try"], "admin", "unknown revision"),
    ([HEAD, "--reason", "try"], "admin", "is not older"),
])
def test_bad_downgrades_are_refused_and_change_nothing(lotrack, database, trial, args, user,
                                                       message):
    lotrack.refuses("db", "downgrade", *args, user=user, message=message)
    assert db.current_revision(database.engine) == HEAD


def test_a_downgrade_without_a_reason_is_a_usage_error(lotrack, database, trial):
    lotrack.script("db", "downgrade", PREVIOUS).assert_one_error("--reason", exit_code=2)
    assert db.current_revision(database.engine) == HEAD


def test_the_installed_script_refuses_a_wrong_password(lotrack, database, trial):
    outcome = lotrack.script("db", "downgrade", PREVIOUS, "--reason", "try",
                             LOTRACK_PASSWORD="not-the-password")
    outcome.assert_one_error()
    assert db.current_revision(database.engine) == HEAD


def test_an_upgrade_is_for_administrators_and_audited(lotrack, database, trial):
    lotrack.ok("db", "downgrade", PREVIOUS, "--reason", "roll back the test upgrade")
    outcome = lotrack("db", "upgrade", user="pharm.chen")
    outcome.assert_one_error("upgrading the database needs the admin role")
    assert db.current_revision(database.engine) == PREVIOUS
    assert lotrack.script("db", "upgrade").stdout.strip() == f"Database at revision {HEAD}."
    [event] = downgrade_events(lotrack, "upgrade")
    assert event["user"] == "admin"
    assert (event["before"], event["after"]) == ({"revision": PREVIOUS}, {"revision": HEAD})
    lotrack.ok("db", "upgrade")  # at head already: nothing changes, nothing is recorded
    assert len(downgrade_events(lotrack, "upgrade")) == 1
    assert "Audit trail intact" in lotrack.ok("audit", "verify", user="monitor.sun")


def test_a_new_database_is_upgraded_by_whoever_installs_it(empty_database, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOTRACK_")}
    env |= {"LOTRACK_DB": empty_database.url, "LOTRACK_HOME": str(tmp_path / "home")}
    done = subprocess.run([str(SCRIPT), "db", "upgrade"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert db.current_revision(empty_database.engine) == HEAD
