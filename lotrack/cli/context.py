"""What every command shares: settings, the engine, authentication and passwords.

Imports of SQLAlchemy and the services happen inside functions so that
`lotrack --help` and `lotrack --version` stay light.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import click

from lotrack.config import Settings
from lotrack.errors import InvalidInput

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from lotrack.models import User

T = TypeVar("T")


@dataclass
class App:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)
    _checked: bool = False
    _recorded_tz: str | None = None  # the database's site time zone, read with the schema check

    def engine(self, check_schema: bool = True) -> Engine:
        from lotrack.db import check_schema_current, make_engine
        from lotrack.memory import freeze_loaded

        if self._engine is None:
            # The first use of the database: the command has loaded what it needs.
            freeze_loaded()
            self._engine = make_engine(self.settings.db_url)
        if check_schema and not self._checked:
            from lotrack.services.site_settings import recorded_zone_name

            self._recorded_tz = check_schema_current(self._engine, recorded_zone_name)
            self._checked = True
        return self._engine

    @property
    def site_tz(self) -> ZoneInfo:
        """The site time zone: the database's when it records one (read with the first use of
        the database), else the workstation's --tz / LOTRACK_TZ, else UTC. A workstation
        configured with another zone than the database's is refused rather than followed:
        it would read typed times, expiry days and post-operative days differently."""
        conflict = self.zone_conflict()
        if conflict:
            raise InvalidInput(conflict)
        if self._recorded_tz is None:
            return self.settings.site_tz
        from lotrack.config import parse_timezone

        return parse_timezone(self._recorded_tz)

    @property
    def recorded_tz(self) -> str | None:
        """The site time zone recorded in the database, or None (none recorded yet)."""
        self.engine()
        return self._recorded_tz

    def zone_conflict(self) -> str | None:
        """Why the workstation's configured zone cannot be used with this database, or None."""
        from lotrack.config import parse_timezone, same_zone

        recorded, given = self.recorded_tz, self.settings.site_tz_from
        if recorded is None or given is None or same_zone(self.settings.site_tz,
                                                          parse_timezone(recorded)):
            return None
        how = "unset it" if given == "LOTRACK_TZ" else "leave --tz out"
        return (f"this database's site time zone is {recorded}; {given} says "
                f"{self.settings.site_tz.key}: {how} or make it {recorded} (an administrator "
                "changes the database's with `lotrack settings set-tz`)")

    def close(self) -> None:
        """Close the database connections (SQLite checkpoints its write-ahead log)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        from lotrack.db import unit_of_work

        with unit_of_work(self.engine()) as session:
            yield session

    def run(self, action: Callable[[Session, User], T]) -> T:
        """Authenticate, then run one service call as one transaction.

        A transaction that lost a race with another user's (a serialization failure, a
        deadlock, a locked SQLite file) is run again from the start, a few times, before
        the command fails (`db.retrying`); so `action` must not write files or read input.
        """
        from lotrack.db import retrying

        def transaction(session: Session) -> T:
            # The schema check uses a connection of its own; it runs (once) before this
            # session begins, inside the retries, since on SQLite it too waits for the lock.
            self.engine()
            return action(session, self.current_user(session))

        return retrying(self.engine(check_schema=False), transaction)

    def read(self, action: Callable[[Session, User], T]) -> T:
        """Like `run`, for reads; the login session's idle clock is still refreshed."""
        return self.run(action)

    # --- who is acting ---------------------------------------------------

    def session_file(self) -> Path:
        digest = hashlib.sha256(self.settings.db_url.encode()).hexdigest()[:16]
        return self.settings.state_dir / f"session-{digest}"

    def current_user(self, session: Session) -> User:
        from lotrack.services import auth

        username = os.environ.get("LOTRACK_USER")
        if username:
            password = os.environ.get("LOTRACK_PASSWORD")
            if not password:
                raise InvalidInput("LOTRACK_USER is set but LOTRACK_PASSWORD is not")
            return auth.authenticate(session, username, password)
        token = self.read_token()
        return auth.resume(session, token or "", self.settings.idle_minutes)

    def read_token(self) -> str | None:
        path = self.session_file()
        return path.read_text().strip() if path.exists() else None

    def write_token(self, token: str) -> None:
        path = self.session_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token)

    def forget_token(self) -> None:
        self.session_file().unlink(missing_ok=True)


pass_app = click.make_pass_decorator(App)

# A version number or row count, bounded by what a database integer column holds: a larger
# one is refused as it is typed, not by the database driver (SQLite overflows past 2**63).
POSITIVE_INT = click.IntRange(min=1, max=2**31 - 1)


def read_password(password_stdin: bool, prompt: str, env: str = "LOTRACK_PASSWORD",
                  confirm: bool = False) -> str:
    """A password from stdin (one line), the environment, or a hidden prompt."""
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise InvalidInput("--password-stdin given but no password was read from stdin")
        return line
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise InvalidInput(f"no password: give it with --password-stdin or {env}")
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--json` for every read command (one renderer feeds every format)."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def emit(data: object, as_json: bool, text: Callable[[], str]) -> None:
    from lotrack.render.tables import to_json

    click.echo(to_json(data) if as_json else text())
