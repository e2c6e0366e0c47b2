"""The schema exists only through the migrations: every revision up and down, one head,
no drift between models and migrations, on both databases."""

import subprocess

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from lotrack import db
from lotrack.migrations_head import HEAD
from lotrack.models import Base


def revisions() -> list[str]:
    script = ScriptDirectory(str(db.migrations_path()))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_there_is_one_head_and_the_code_expects_it():
    script = ScriptDirectory(str(db.migrations_path()))
    assert script.get_heads() == [HEAD]


def test_every_revision_upgrades_and_downgrades_one_step_at_a_time(empty_database):
    engine = empty_database.engine
    for revision in revisions():
        db.upgrade(engine, revision)
        assert db.current_revision(engine) == revision
    for previous in reversed([None, *revisions()[:-1]]):
        db.downgrade(engine, previous or "base")
        assert db.current_revision(engine) == previous
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    db.upgrade(engine)
    assert db.current_revision(engine) == HEAD


def test_the_models_match_the_migrated_schema(database):
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    assert diff == []


def test_lotrack_init_runs_the_migrations_from_any_directory(tmp_path):
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("lotrack")
    env = {"PATH": "/usr/bin:/bin", "LOTRACK_PASSWORD": "first-admin-pw",
           "LOTRACK_HOME": str(tmp_path / "home")}
    done = subprocess.run([str(script), "--db", "sqlite:///fresh.db", "init", "--admin", "root",
                           "--name", "Root Admin"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    again = subprocess.run([str(script), "--db", "sqlite:///fresh.db", "init"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already has users" in again.stdout
    current = subprocess.run([str(script), "--db", "sqlite:///fresh.db", "db", "current"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert f"revision {HEAD}" in current.stdout
