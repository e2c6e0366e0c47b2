"""lotrack benchmarks: figures against targets, each the median of several runs.

    python bench/run.py [--scale small] [--db URL] [--runs 5]

Builds a synthetic trial through the service layer (bench/build.py) in a fresh database
(a temporary SQLite file unless --db names an empty database), then measures what
users wait for: start-up, one dispense as a fresh process, traces beside a hand-written
SQL query returning the same rows, a 2,000-vial label sheet beside a bare ReportLab
script drawing the same barcodes, audit verification throughput, and peak memory of
commands. Prints a table and writes bench/results/<date>-<scale>-<backend>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SCRIPT = Path(sys.executable).with_name("lotrack")


def median_time(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_script(args: list[str], env: dict[str, str], check: bool = True) -> tuple[float, int]:
    """Wall time and peak RSS (MB) of one `lotrack` process."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/env", *env_args(env), str(SCRIPT), *args],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if check and done.returncode != 0:
        raise SystemExit(f"lotrack {' '.join(args)} failed: {done.stderr.strip()}")
    return wall, peak_child_mb()


def env_args(env: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in env.items()]


_last_peak = 0.0


def peak_child_mb() -> float:
    # ru_maxrss of children is the largest of any child so far: report it when it grows.
    global _last_peak
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    _last_peak = max(_last_peak, peak)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small"], default="small")
    parser.add_argument("--db", help="an empty database URL (default: a temporary SQLite file)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from build import PASSWORD, SCALES, build

    from lotrack import db
    from lotrack.services import users

    work = Path(tempfile.mkdtemp(prefix="lotrack-bench-"))
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    with db.unit_of_work(engine) as session:
        users.create_first_admin(session, "bench.admin", "Bench Admin", PASSWORD)
        session.commit()
    started = time.perf_counter()
    built = build(engine, "bench.admin", SCALES[args.scale], lambda m: print(f"  {m}", flush=True))
    build_s = time.perf_counter() - started
    env = {"LOTRACK_DB": url, "LOTRACK_HOME": str(work / "home"), "LOTRACK_TZ": "UTC",
           "LOTRACK_USER": "monitor.a", "LOTRACK_PASSWORD": PASSWORD}
    figures = measure(engine, env, built, args.runs, work)
    figures.insert(0, {"name": f"build the {args.scale} data set through the services", "value":
                       round(build_s, 1), "unit": "s", "target": None, "ok": None})
    report(figures, args, url, engine)


def measure(engine, env: dict[str, str], built, runs: int, work: Path) -> list[dict]:
    from build import PASSWORD, UTC_TZ
    from sqlalchemy import func, select, text

    from lotrack import audit, db
    from lotrack.models import AuditEvent
    from lotrack.services import auth, traces

    figures: list[dict] = []

    def add(name: str, value: float, unit: str, target: float | None, higher_is_better=False,
            beside: float | None = None, ratio_target: float | None = None) -> None:
        ok = None if target is None else (value >= target if higher_is_better else value <= target)
        row = {"name": name, "value": round(value, 4), "unit": unit, "target": target, "ok": ok}
        if beside is not None:
            row |= {"floor": round(beside, 4), "ratio": round(value / beside, 2),
                    "ratio_target": ratio_target,
                    "ratio_ok": None if ratio_target is None else value / beside <= ratio_target}
        figures.append(row)

    light = {k: v for k, v in env.items() if k in ("LOTRACK_DB", "LOTRACK_HOME")}
    add("lotrack --help (wall)", statistics.median(run_script(["--help"], light)[0]
                                                     for _ in range(runs)) * 1000, "ms", 150)
    add("lotrack --version (wall)", statistics.median(run_script(["--version"], light)[0]
                                                        for _ in range(runs)) * 1000, "ms", 150)

    pharm = env | {"LOTRACK_USER": "pharm.a", "LOTRACK_VERIFIER_PASSWORD": PASSWORD}
    walls = [run_script(["dispense", subject, "--vial", serial, "--verified-by", "pharm.b",
                         "--no-label"], pharm)[0] for subject, serial in built.due[:runs]]
    add("one dispense as a fresh process, checks and audit included (wall)",
        statistics.median(walls) * 1000, "ms", 400)

    with db.unit_of_work(engine) as session:
        reader = auth.authenticate(session, "monitor.a", PASSWORD)
        vials_sql = text(
            "SELECT v.serial, v.status, d.id, p.subject_id FROM vials v JOIN lots l ON l.id = v.lot_id "
            "LEFT JOIN dose_vials dv ON dv.vial_id = v.id LEFT JOIN doses d ON d.id = dv.dose_id "
            "LEFT JOIN participants p ON p.id = d.participant_id WHERE l.lot_number = :lot "
            "ORDER BY v.number")
        traced = traces.trace_lot(session, reader, built.big_lot, None, UTC_TZ)
        rows = session.execute(vials_sql, {"lot": built.big_lot}).all()
        assert len(rows) == len(traced["vials"])
        t = median_time(lambda: traces.trace_lot(session, reader, built.big_lot, None, UTC_TZ), runs)
        floor = median_time(lambda: session.execute(vials_sql, {"lot": built.big_lot}).all(), runs)
        add(f"trace lot ({len(rows)} vials, in-process)", t * 1000, "ms", 100, beside=floor * 1000,
            ratio_target=2)
        person_sql = text(
            "SELECT d.id, v.serial, l.lot_number FROM doses d JOIN participants p ON p.id = d.participant_id "
            "JOIN dose_vials dv ON dv.dose_id = d.id JOIN vials v ON v.id = dv.vial_id "
            "JOIN lots l ON l.id = v.lot_id WHERE p.subject_id = :s ORDER BY d.dispensed_at")
        t = median_time(lambda: traces.trace_participant(session, reader, built.subject, UTC_TZ), runs)
        floor = median_time(lambda: session.execute(person_sql, {"s": built.subject}).all(), runs)
        add("trace participant (in-process)", t * 1000, "ms", 20, beside=floor * 1000, ratio_target=2)
        ae_sql = text(
            "SELECT d.id, v.serial, l.lot_number FROM adverse_events ae "
            "JOIN doses d ON d.participant_id = ae.participant_id JOIN dose_vials dv ON dv.dose_id = d.id "
            "JOIN vials v ON v.id = dv.vial_id JOIN lots l ON l.id = v.lot_id "
            "WHERE ae.id = :id AND d.dispensed_at <= :onset")
        from lotrack.models.safety import parse_ae_code
        ae_id = parse_ae_code(built.ae_code)
        onset = session.execute(text("SELECT onset_on FROM adverse_events WHERE id = :i"),
                                {"i": ae_id}).scalar()
        t = median_time(lambda: traces.trace_ae(session, reader, built.ae_code, UTC_TZ), runs)
        params = {"id": ae_id, "onset": f"{onset} 23:59:59"}
        floor = median_time(lambda: session.execute(ae_sql, params).all(), runs)
        add("trace ae (in-process)", t * 1000, "ms", 20, beside=floor * 1000, ratio_target=2)

        events = session.execute(select(func.count(AuditEvent.seq))).scalar_one()
        start = time.perf_counter()
        result = audit.verify(session)
        elapsed = time.perf_counter() - start
        assert result.ok, result.problems[:3]
        add(f"audit verify ({events} events)", events / elapsed, "events/s", 200_000,
            higher_is_better=True)

    labels_pdf = work / "labels.pdf"
    qa = env | {"LOTRACK_USER": "qa.a"}
    walls = []
    for i in range(min(runs, 3)):
        extra = ["--reason", "bench reprint"] if i else []
        walls.append(run_script(["label", "vials", built.label_lot, "--sheet", "a4",
                                 "--out", str(labels_pdf), *extra], qa)[0])
    floor = statistics.median(
        run_floor(labels_pdf.with_name("floor.pdf"), built.label_lot, env) for _ in range(min(runs, 3)))
    add("vial labels PDF, 2,000-vial lot (wall, fresh process)", statistics.median(walls), "s", 5,
        beside=floor, ratio_target=1.5)

    for command in (["trace", "lot", built.big_lot, "--json"], ["audit", "verify"]):
        run_script(command, env)
    add("peak memory of any command run here", _last_peak, "MB", 300)
    return figures


def run_floor(out: Path, lot: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "floor_labels.py"), lot, str(out)],
                   env=os.environ | env, check=True)
    return time.perf_counter() - start


def report(figures: list[dict], args, url: str, engine) -> None:
    backend = engine.dialect.name
    print(f"\nlotrack bench, scale {args.scale}, {backend}, {platform.node()}, "
          f"{os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"{'figure':<66} {'value':>12}  {'target':>10}  {'floor / ratio':>18}")
    for f in figures:
        target = "" if f["target"] is None else f"{'>=' if f['unit'] == 'events/s' else '<='} {f['target']}"
        mark = "" if f["ok"] is None else (" ok" if f["ok"] else " MISSED")
        side = ""
        if "floor" in f:
            side = f"{f['floor']:g} / {f['ratio']}x" + ("" if f["ratio_ok"] else " MISSED")
        print(f"{f['name']:<66} {f['value']:>9g} {f['unit']:<4} {target:>10}{mark:<7} {side:>18}")
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{datetime.now(UTC):%Y-%m-%d}-{args.scale}-{backend}.json"
    path.write_text(json.dumps({"scale": args.scale, "backend": backend,
                                "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                                            "python": platform.python_version()},
                                "at": datetime.now(UTC).isoformat(), "figures": figures}, indent=2))
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
