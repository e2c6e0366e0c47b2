"""What every demo step shares: the simulated calendar and acting as a named user."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lotrack import db
from lotrack.models import User
from lotrack.models.base import simulated_time
from lotrack.services import auth

DEMO_PASSWORD = "demo-pass-2026"
SITE_TZ = ZoneInfo("Asia/Shanghai")


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=SITE_TZ)


@dataclass
class Demo:
    engine: Engine
    out: Path
    say: Callable[[str], None]
    rng: random.Random = field(default_factory=lambda: random.Random(2026))

    def act(self, username: str, at: datetime, action: Callable[[Session, User], object]):
        """Run one service call as `username` at the simulated time `at`."""
        with simulated_time(at), db.unit_of_work(self.engine) as session:
            actor = auth.authenticate(session, username, DEMO_PASSWORD)
            result = action(session, actor)
            session.commit()
            return result

    def read(self, action: Callable[[Session], object]):
        with db.unit_of_work(self.engine) as session:
            return action(session)
