"""The demo trial, built through the same service functions the CLI uses.

Every step calls a service as a named user inside a unit of work, exactly as a
command would; nothing is inserted behind the services' back, so the demo
database passes `lotrack audit verify`. The demo replays the trial's calendar
(January to July 2026, site time Asia/Shanghai): each step runs at its simulated
date, so records, signatures and the audit trail tell one consistent story.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lotrack import db
from lotrack.demo.core import DEMO_PASSWORD, SITE_TZ, Demo

__all__ = ["DEMO_PASSWORD", "SITE_TZ", "build_demo"]


def build_demo(out: Path, say: Callable[[str], None]) -> Path:
    """Create `out`/lotrack.db from scratch and run the trial through it."""
    from lotrack.demo import consistency, custody, outputs, safety, shipping, supply, trial
    from lotrack.render.files import prepare_folder

    prepare_folder(out)
    db_path = out / "lotrack.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    engine = db.make_engine(f"sqlite:///{db_path}")
    db.upgrade(engine)
    demo = Demo(engine, out, say)
    supply.create_staff(demo)
    supply.set_up_products(demo)
    protocol = trial.load_protocol(demo)  # labels carry its trial code and sponsor
    supply.make_lots(demo)
    trial.run_trial(demo, protocol)
    safety.record_adverse_events(demo)
    outputs.write_outputs(demo)
    shipping.write_manifests(demo)
    consistency.write_consistency(demo)
    safety.write_safety_outputs(demo)
    custody.write_custody_reports(demo)
    engine.dispose()
    return db_path
