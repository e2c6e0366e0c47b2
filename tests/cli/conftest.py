"""A command-line harness: run `lotrack` through CliRunner or the installed script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lotrack.cli.main import cli

PASSWORD = "correct-horse-42"
SCRIPT = Path(sys.executable).with_name("lotrack")


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    def assert_one_error(self, message: str = "", exit_code: int | None = None) -> None:
        """A refusal as a user should see it: a failing exit status (exactly `exit_code` when
        given), one `Error: ...` line naming what is wrong, and no traceback anywhere."""
        everything = self.stdout + self.stderr
        assert "Traceback" not in everything, everything
        if exit_code is None:
            assert self.exit_code in (1, 2, 3, 4, 5), (self.exit_code, self.stderr)
        else:
            assert self.exit_code == exit_code, (self.exit_code, self.stderr)
        errors = [line for line in self.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and errors[0].strip() != "Error:", self.stderr
        assert message in errors[0], (message, self.stderr)
        # A database failure that no service anticipated is a check missing at the edge.
        assert not errors[0].startswith("Error: database error:"), errors[0]


@dataclass
class Lotrack:
    db_url: str
    home: Path

    @property
    def workdir(self) -> Path:
        return self.home.parent / "work"

    def env(self, user: str | None, **extra: str | None) -> dict[str, str | None]:
        """The environment of a command; an `extra` value None unsets that variable (say,
        LOTRACK_TZ on a database that records its own site time zone)."""
        env: dict[str, str | None] = {"LOTRACK_DB": self.db_url, "LOTRACK_HOME": str(self.home),
                                      "LOTRACK_TZ": "UTC"}
        if user:
            env |= {"LOTRACK_USER": user, "LOTRACK_PASSWORD": PASSWORD,
                    "LOTRACK_VERIFIER_PASSWORD": PASSWORD}
        return env | extra

    def __call__(self, *args: str, user: str | None = "admin", input: str | None = None,
                 **extra: str | None) -> Outcome:
        # Commands that write files by default (dose labels) write them in a scratch folder.
        self.workdir.mkdir(parents=True, exist_ok=True)
        cwd = os.getcwd()
        os.chdir(self.workdir)
        try:
            result: Result = CliRunner().invoke(cli, list(args), env=self.env(user, **extra),
                                                input=input, catch_exceptions=True)
        finally:
            os.chdir(cwd)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)

    def script(self, *args: str, user: str | None = "admin", input: str | None = None,
               cwd: Path | None = None, **extra: str | None) -> Outcome:
        """The installed console script, in a subprocess, as a user runs it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOTRACK_")}
        env |= {k: v for k, v in self.env(user, **extra).items() if v is not None}
        self.workdir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([str(SCRIPT), *args], env=env, input=input, capture_output=True,
                              text=True, timeout=120, cwd=cwd or self.workdir)
        return Outcome(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **kwargs) -> str:
        outcome = self(*args, **kwargs)
        assert outcome.exit_code == 0, (args, outcome.stdout, outcome.stderr)
        return outcome.stdout

    def audit_log(self) -> str:
        return self.ok("audit", "log", "--json", "--limit", "100000")

    def refuses(self, *args: str, message: str = "", exit_code: int | None = None,
                **kwargs) -> Outcome:
        """Run a command that must be refused: one clear error and an unchanged audit trail."""
        before = self.audit_log()
        outcome = self(*args, **kwargs)
        outcome.assert_one_error(message, exit_code)
        assert self.audit_log() == before, (args, "a refused command wrote to the audit trail")
        return outcome


@pytest.fixture
def lotrack(database, tmp_path, make_user) -> Lotrack:
    make_user("admin")
    return Lotrack(database.url, tmp_path / "home")


SetupTrial = Callable[[], None]
