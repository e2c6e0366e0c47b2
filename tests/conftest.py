"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

A migrated template database is built once per backend and session; each test
gets a fresh copy (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on
PostgreSQL), so tests never share state and never skip the real migrations.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from lotrack import db
from lotrack.models import User
from lotrack.services import auth, users

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "correct-horse-42"
BACKENDS = [b for b in os.environ.get("LOTRACK_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]


def _pg_server_url() -> str:
    return os.environ.get("LOTRACK_TEST_PG", PG_DEFAULT)


def _pg_available() -> str | None:
    """None when the PostgreSQL server answers, else the reason it does not."""
    try:
        engine = create_engine(_pg_server_url())
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "not available"
        return f"PostgreSQL at {_pg_server_url()} is not reachable: {str(exc).splitlines()[0]}"


def _admin_engine() -> Engine:
    return create_engine(_pg_server_url(), isolation_level="AUTOCOMMIT")


@dataclass
class DatabaseUnderTest:
    backend: str
    url: str
    engine: Engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)


class _Templates:
    def __init__(self, tmp_root: Path) -> None:
        self.tmp_root = tmp_root
        self.made: dict[str, str] = {}
        self.pg_databases: list[str] = []

    def template(self, backend: str) -> str:
        if backend not in self.made:
            self.made[backend] = self._build(backend)
        return self.made[backend]

    def _build(self, backend: str) -> str:
        if backend == "sqlite":
            path = self.tmp_root / "template.db"
            engine = db.make_engine(f"sqlite:///{path}")
            db.upgrade(engine)
            engine.dispose()
            return str(path)
        name = f"lotrack_tpl_{uuid.uuid4().hex[:10]}"
        self.create_pg(name)
        engine = db.make_engine(self.pg_url(name))
        db.upgrade(engine)
        engine.dispose()
        return name

    def pg_url(self, name: str) -> str:
        return make_url(_pg_server_url()).set(database=name).render_as_string(hide_password=False)

    def create_pg(self, name: str, template: str | None = None) -> None:
        admin = _admin_engine()
        with admin.connect() as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
        admin.dispose()
        self.pg_databases.append(name)

    def drop_pg(self, name: str) -> None:
        admin = _admin_engine()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    made = _Templates(tmp_path_factory.mktemp("templates"))
    yield made
    if "postgresql" in made.made or made.pg_databases:
        for name in made.pg_databases:
            made.drop_pg(name)


def _skip_or_fail_pg() -> None:
    reason = _pg_available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        _skip_or_fail_pg()
    return str(request.param)


@pytest.fixture
def database(backend: str, templates: _Templates, tmp_path: Path) -> Iterator[DatabaseUnderTest]:
    """A fresh database at head on the parametrised backend."""
    template = templates.template(backend)
    if backend == "sqlite":
        path = tmp_path / "lotrack.db"
        shutil.copyfile(template, path)
        url = f"sqlite:///{path}"
        engine = db.make_engine(url)
        yield DatabaseUnderTest(backend, url, engine)
        engine.dispose()
        return
    name = f"lotrack_t_{uuid.uuid4().hex[:12]}"
    templates.create_pg(name, template)
    url = templates.pg_url(name)
    engine = db.make_engine(url)
    yield DatabaseUnderTest(backend, url, engine)
    engine.dispose()
    templates.drop_pg(name)
    templates.pg_databases.remove(name)


@pytest.fixture
def empty_database(backend: str, templates: _Templates, tmp_path: Path) -> Iterator[DatabaseUnderTest]:
    """A database with no tables at all, for migration tests."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        engine = db.make_engine(url)
        yield DatabaseUnderTest(backend, url, engine)
        engine.dispose()
        return
    name = f"lotrack_e_{uuid.uuid4().hex[:12]}"
    templates.create_pg(name)
    url = templates.pg_url(name)
    engine = db.make_engine(url)
    yield DatabaseUnderTest(backend, url, engine)
    engine.dispose()
    templates.drop_pg(name)
    templates.pg_databases.remove(name)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's LOTRACK_* settings or login sessions."""
    for key in list(os.environ):
        if key.startswith("LOTRACK_") and key not in ("LOTRACK_TEST_PG", "LOTRACK_TEST_BACKENDS"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LOTRACK_HOME", str(tmp_path / "lotrack-home"))


MakeUser = Callable[..., User]


@pytest.fixture
def make_user(database: DatabaseUnderTest) -> MakeUser:
    """Create a user with the given roles through the services; the first is the admin."""

    def make(username: str, *roles: str, full_name: str | None = None) -> User:
        with db.unit_of_work(database.engine) as session:
            name = full_name or username.replace(".", " ").title()
            if not users.has_users(session):
                admin = users.create_first_admin(session, "admin", "Ada Admin", PASSWORD)
                session.commit()
                if username == "admin":
                    return admin
            actor = auth.authenticate(session, "admin", PASSWORD)
            if username == "admin":
                return actor
            user = users.add_user(session, actor, username, name, list(roles), PASSWORD)
            session.commit()
            return user

    return make
