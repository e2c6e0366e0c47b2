"""The demo trial, built through the same service functions the CLI uses.

Every step calls a service with an acting user inside a unit of work, exactly
as a command would; nothing is inserted behind the services' back, so the demo
database passes `lotrack audit verify`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lotrack import db
from lotrack.models import User
from lotrack.services import auth, users

DEMO_PASSWORD = "demo-pass-2026"

# The study team: who does what, with separation of duties (the QA person who
# releases a lot is not the pharmacist who dispenses it).
STAFF = [
    ("admin", "Wei Zhang", ["admin"]),
    ("qa.lee", "Min Lee", ["qa"]),
    ("qa.huang", "Jing Huang", ["qa"]),
    ("pharm.chen", "Li Chen", ["pharmacist"]),
    ("pharm.wang", "Fang Wang", ["pharmacist"]),
    ("inv.liu", "Dr. Yang Liu", ["investigator"]),
    ("inv.zhou", "Dr. Hui Zhou", ["investigator"]),
    ("monitor.sun", "Qing Sun", ["monitor"]),
]


@dataclass
class Demo:
    engine: Engine
    out: Path
    say: Callable[[str], None]

    def act(self, username: str, action: Callable[[Session, User], object]) -> object:
        with db.unit_of_work(self.engine) as session:
            actor = auth.authenticate(session, username, DEMO_PASSWORD)
            result = action(session, actor)
            session.commit()
            return result


def build_demo(out: Path, say: Callable[[str], None]) -> Path:
    """Create `out`/lotrack.db from scratch and run the trial through it."""
    out.mkdir(parents=True, exist_ok=True)
    db_path = out / "lotrack.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    engine = db.make_engine(f"sqlite:///{db_path}")
    db.upgrade(engine)
    demo = Demo(engine, out, say)
    _create_staff(demo)
    engine.dispose()
    return db_path


def _create_staff(demo: Demo) -> None:
    admin_name, admin_full, _ = STAFF[0]
    with db.unit_of_work(demo.engine) as session:
        users.create_first_admin(session, admin_name, admin_full, DEMO_PASSWORD)
        session.commit()
    for username, name, roles in STAFF[1:]:
        demo.act(admin_name, lambda s, a, u=username, n=name, r=roles:
                 users.add_user(s, a, u, n, r, DEMO_PASSWORD))
    demo.say(f"Created {len(STAFF)} users (password for all: {DEMO_PASSWORD}).")
