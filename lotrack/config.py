"""Settings from command-line options and LOTRACK_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from zoneinfo import TZPATH, ZoneInfo, ZoneInfoNotFoundError

from lotrack.errors import InvalidInput

DEFAULT_DB_URL = "sqlite:///lotrack.db"
DEFAULT_IDLE_MINUTES = 15


def _state_dir() -> Path:
    env = os.environ.get("LOTRACK_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lotrack"


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long
        raise InvalidInput(f"unknown time zone {name!r} (use an IANA name such as Asia/Shanghai)") from exc


def same_zone(first: ZoneInfo, second: ZoneInfo) -> bool:
    """Whether two zone names are one zone: equal, or links to the same rules in the time
    zone database (PRC and Asia/Shanghai, US/Eastern and America/New_York), looked up
    where ZoneInfo looks (the system's TZPATH, then the tzdata package)."""
    if first.key == second.key:
        return True
    rules = _rules(first.key)
    return rules is not None and rules == _rules(second.key)


def _rules(key: str) -> bytes | None:
    try:
        for root in TZPATH:
            path = Path(root) / key
            if path.is_file():
                return path.read_bytes()
        return resources.files("tzdata.zoneinfo").joinpath(*key.split("/")).read_bytes()
    except (ModuleNotFoundError, OSError):  # no tzdata package, or no such file
        return None


@dataclass(frozen=True)
class Settings:
    db_url: str = DEFAULT_DB_URL
    # The site time zone is used only to display times and to read times typed
    # without an offset; everything is stored in UTC. This is the workstation's own
    # (--tz, LOTRACK_TZ, else UTC): the zone recorded in the database prevails, and
    # `site_tz_from` names where a configured one came from (None: the default), so a
    # disagreement with the database is refused (cli/context.App.site_tz).
    site_tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    site_tz_from: str | None = None
    idle_minutes: int = DEFAULT_IDLE_MINUTES
    state_dir: Path = field(default_factory=_state_dir)
    # What the site's scanners send for the GS1 separator when not ASCII 29 (for
    # example "<GS>" or "^]"), and a watermark for labels of a test installation.
    gs_substitute: str | None = None
    label_watermark: str | None = None

    @classmethod
    def from_env(cls, db_url: str | None = None, site_tz: str | None = None,
                 site_tz_from: str = "--tz") -> Settings:
        url = db_url or os.environ.get("LOTRACK_DB") or DEFAULT_DB_URL
        if site_tz:
            tz_from: str | None = site_tz_from
        elif os.environ.get("LOTRACK_TZ"):
            site_tz, tz_from = os.environ["LOTRACK_TZ"], "LOTRACK_TZ"
        else:
            tz_from = None
        tz = parse_timezone(site_tz or "UTC")
        idle_text = os.environ.get("LOTRACK_IDLE_MINUTES", str(DEFAULT_IDLE_MINUTES))
        try:
            idle = int(idle_text)
        except ValueError as exc:
            raise InvalidInput(f"LOTRACK_IDLE_MINUTES must be a whole number, not {idle_text!r}") from exc
        if idle < 1:
            raise InvalidInput("LOTRACK_IDLE_MINUTES must be at least 1")
        return cls(db_url=url, site_tz=tz, site_tz_from=tz_from, idle_minutes=idle,
                   state_dir=_state_dir(), gs_substitute=os.environ.get("LOTRACK_GS_SUBSTITUTE") or None,
                   label_watermark=os.environ.get("LOTRACK_LABEL_WATERMARK") or None)
