"""lotrack benchmarks: figures against targets, each the median of several runs.

    python bench/run.py [--scale small|medium|sponsor] [--db URL] [--runs 5] [--work DIR]

Builds a synthetic trial through the service layer (bench/build.py) in a fresh database
(a SQLite file in the work directory unless --db names an empty database), then measures
what users wait for: start-up, one dispense as a fresh process, traces beside
hand-written SQL returning the same rows (bench/trace_floors.py), a 2,000-vial label
sheet beside a bare ReportLab script drawing the same barcodes (bench/floor_labels.py),
a 100,000-row QC import, audit verification throughput, and peak memory of commands.
Prints a table and writes bench/results/<date>-<scale>-<backend>.json.

With --work DIR naming the directory of an earlier run, the data set built then is
measured again instead of being built anew (the sponsor scale takes a while to build).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
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


def run_script(args: list[str], env: dict[str, str], program: list[str] | None = None) -> float:
    """Wall time of one `lotrack` process (or `program`); a failure stops the bench."""
    start = time.perf_counter()
    done = subprocess.run([*(program or [str(SCRIPT)]), *args], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "")} | env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(program or ['lotrack'])} {' '.join(args)} failed: "
                         f"{done.stderr.strip()}")
    return wall


def peak_child_mb() -> float:
    # ru_maxrss of children is the largest resident set of any child process so far.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class Figures(list):
    def add(self, name: str, value: float, unit: str, target: float | None,
            higher_is_better: bool = False, floor: float | None = None,
            ratio_target: float | None = None) -> None:
        ok = None if target is None else (value >= target if higher_is_better else value <= target)
        row = {"name": name, "value": round(value, 4), "unit": unit, "target": target, "ok": ok}
        if floor is not None:
            ratio = value / floor
            row |= {"floor": round(floor, 4), "ratio": round(ratio, 2),
                    "ratio_target": ratio_target,
                    "ratio_ok": None if ratio_target is None else ratio <= ratio_target}
        self.append(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["small", "medium", "sponsor"], default="small")
    parser.add_argument("--db", help="an empty database URL (default: a SQLite file in --work)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, help="work directory; reuses the data set an "
                        "earlier run built there")
    parser.add_argument("--build-only", action="store_true", help="build the data set in "
                        "--work and stop: measure later, on an idle machine")
    args = parser.parse_args()

    from build import PASSWORD, SCALES, Built, build

    from lotrack import db
    from lotrack.services import users

    work = args.work or Path(tempfile.mkdtemp(prefix="lotrack-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    engine = db.make_engine(url)
    saved = work / "built.json"
    build_s = None
    if saved.exists():
        built = Built(**json.loads(saved.read_text()))
        db.upgrade(engine)  # a migration added since the data set was built
        print(f"Measuring the {args.scale} data set built earlier in {work}")
    else:
        db.upgrade(engine)
        with db.unit_of_work(engine) as session:
            users.create_first_admin(session, "bench.admin", "Bench Admin", PASSWORD)
            session.commit()
        started = time.perf_counter()
        built = build(engine, "bench.admin", SCALES[args.scale],
                      lambda m: print(f"  {time.perf_counter() - started:7.0f} s  {m}", flush=True))
        build_s = time.perf_counter() - started
        saved.write_text(json.dumps(asdict(built)))
        print(f"Built in {build_s:.0f} s")
    if args.build_only:
        return
    if engine.dialect.name == "postgresql":
        analyze(engine)
    env = {"LOTRACK_DB": url, "LOTRACK_HOME": str(work / "home"), "LOTRACK_TZ": "UTC",
           "LOTRACK_USER": "monitor.a", "LOTRACK_PASSWORD": PASSWORD}
    figures = Figures()
    if build_s is not None:
        figures.add(f"build the {args.scale} data set through the services", build_s, "s", None)
    measure(figures, engine, env, built, args, work)
    report(figures, args, engine)


def analyze(engine) -> None:
    """Planner statistics for the tables just filled, as autovacuum gathers them shortly
    after a bulk load; without them (a cluster with autovacuum off) PostgreSQL plans a
    sponsor-scale trace as if every table were empty."""
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


# The machine's own speed, with no lotrack code: VMs of one kind differ (`lotrack --help` took
# 47 ms on one and 96 ms on another) and one VM drifts (this loop took 1.23 s, then 0.82 s an
# hour later), so figures of different runs are compared through these.
MACHINE_PROBES = {
    "machine: Python start-up, `python -c pass` (wall)": "pass",
    "machine: pure-Python loop, 10 million additions (wall)":
        "s = 0\nfor i in range(10_000_000): s += i",
    "machine: `import sqlalchemy.orm` in a fresh process (wall)": "import sqlalchemy.orm",
}


def measure_machine(figures: Figures, runs: int) -> None:
    for name, code in MACHINE_PROBES.items():
        figures.add(name, statistics.median(run_script(["-c", code], {}, [sys.executable])
                                            for _ in range(runs)) * 1000, "ms", None)


def measure(figures: Figures, engine, env: dict[str, str], built, args, work: Path) -> None:
    runs = args.runs
    measure_machine(figures, runs)
    light = {k: v for k, v in env.items() if k in ("LOTRACK_DB", "LOTRACK_HOME")}
    for flag in ("--help", "--version"):
        figures.add(f"lotrack {flag} (wall)", statistics.median(
            run_script([flag], light) for _ in range(runs)) * 1000, "ms", 150)
    measure_dispense(figures, engine, env, runs)
    measure_traces(figures, engine, built, runs)
    measure_labels(figures, engine, env, built, runs, work)
    # The reads before the QC import: each import adds its thousands of lots for good, so
    # reads measured after it would see a larger data set at every run.
    measure_reads(figures, engine, env, built, work)
    measure_qc_import(figures, engine, env, args.scale, work)
    measure_verify(figures, engine, env)
    figures.add("peak memory of any command run here", peak_child_mb(), "MB", 300)


def measure_dispense(figures: Figures, engine, env: dict[str, str], runs: int) -> None:
    """One dispense per fresh process, each for a participant operated yesterday, beside
    the floor: a bare script importing the same libraries and checking two passwords."""
    from build import PASSWORD, due_participants

    due = due_participants(engine, 2 * runs)
    pharm = env | {"LOTRACK_USER": "pharm.a", "LOTRACK_VERIFIER_PASSWORD": PASSWORD}
    for i, (label, extra) in enumerate((("", ["--no-label"]), (", dose label written", []))):
        walls = [run_script(["dispense", subject, "--vial", serial, "--verified-by", "pharm.b",
                             *extra], pharm) for subject, serial in due[i * runs:(i + 1) * runs]]
        floor = statistics.median(run_script([], pharm, [sys.executable, str(
            HERE / "floor_dispense.py")]) for _ in range(runs))
        figures.add(f"one dispense as a fresh process{label}, checks and audit (wall)",
                    statistics.median(walls) * 1000, "ms", 400, floor=floor * 1000)


def measure_traces(figures: Figures, engine, built, runs: int) -> None:
    import trace_floors
    from build import PASSWORD, UTC_TZ
    from sqlalchemy import func, select

    from lotrack import db
    from lotrack.models import Vial
    from lotrack.services import auth, lots, traces

    with db.unit_of_work(engine) as session:
        reader = auth.authenticate(session, "monitor.a", PASSWORD)
        size = session.execute(select(func.count(Vial.id)).where(
            Vial.lot_id == lots.get_lot(session, built.big_lot).id)).scalar_one()
        cases = [
            (f"trace lot ({size} vials, in-process)", 100, built.big_lot,
             lambda k: traces.trace_lot(session, reader, k, None, UTC_TZ),
             trace_floors.lot_floor, trace_floors.same_lot),
            ("trace participant (in-process)", 20, built.subject,
             lambda k: traces.trace_participant(session, reader, k, UTC_TZ),
             trace_floors.participant_floor, trace_floors.same_participant),
            ("trace ae (in-process)", 20, built.ae_code,
             lambda k: traces.trace_ae(session, reader, k, UTC_TZ),
             trace_floors.ae_floor, trace_floors.same_ae),
        ]
        for name, target, key, trace, floor, same in cases:
            assert same(trace(key), floor(session, key)), f"{name}: floor and trace disagree"
            t, f = paired_medians(lambda t=trace, k=key: t(k),
                                  lambda f=floor, k=key: f(session, k), max(runs, TRACE_PAIRS))
            figures.add(name, t * 1000, "ms", target, floor=f * 1000, ratio_target=2)


# A trace takes milliseconds: a few runs would measure the machine's moods, not the trace.
TRACE_PAIRS = 200


def paired_medians(first: Callable[[], object], second: Callable[[], object],
                   pairs: int) -> tuple[float, float]:
    """Median times of two actions run alternately, so that both see the same cache and
    machine state (another process taking the CPU hits both alike)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(pairs):
        for action, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            action()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def measure_labels(figures: Figures, engine, env: dict[str, str], built, runs: int,
                   work: Path) -> None:
    from sqlalchemy import func, select

    from lotrack import db
    from lotrack.models import LabelPrint

    with db.unit_of_work(engine) as session:
        printed = session.execute(select(func.count()).select_from(LabelPrint)).scalar_one()
    qa = env | {"LOTRACK_USER": "qa.a"}
    out = work / "labels.pdf"
    walls = []
    for i in range(min(runs, 3)):
        reprint = ["--reason", "bench reprint"] if printed or i else []
        walls.append(run_script(["label", "vials", built.label_lot, "--sheet", "a4",
                                 "--out", str(out), *reprint], qa))
    floor = statistics.median(
        run_script([built.label_lot, str(work / "floor.pdf")], env,
                   [sys.executable, str(HERE / "floor_labels.py")]) for _ in range(min(runs, 3)))
    figures.add("vial labels PDF, 2,000-vial lot (wall, fresh process, prints audited)",
                statistics.median(walls), "s", 5, floor=floor, ratio_target=1.5)


def measure_qc_import(figures: Figures, engine, env: dict[str, str], scale: str,
                      work: Path) -> None:
    from build import SCALES, qc_import_file

    path, rows = qc_import_file(engine, SCALES[scale].qc_import_rows, work)
    wall = run_script(["lot", "import-qc", str(path)], env | {"LOTRACK_USER": "qa.a"})
    figures.add(f"QC import, {rows:,}-row CSV (wall, fresh process)", wall, "s", 5)


VERIFY_RUNS = 3  # each reads the whole trail: seconds at sponsor scale


def measure_verify(figures: Figures, engine, env: dict[str, str]) -> None:
    from sqlalchemy import func, select

    from lotrack import audit, db
    from lotrack.models import AuditEvent

    with db.unit_of_work(engine) as session:
        events = session.execute(select(func.count(AuditEvent.seq))).scalar_one()
    times = []
    for _ in range(VERIFY_RUNS):  # the median, as for every figure: the first reads cold pages
        with db.unit_of_work(engine) as session:
            start = time.perf_counter()
            result = audit.verify(session)
            times.append(time.perf_counter() - start)
        assert result.ok, result.problems[:3]
    figures.add(f"audit verify, {events:,} events (in-process, median of {VERIFY_RUNS})",
                events / statistics.median(times), "events/s", 200_000, higher_is_better=True)
    wall = run_script(["audit", "verify"], env)
    figures.add("audit verify (wall, fresh process)", events / wall, "events/s", 200_000,
                higher_is_better=True)
    run_script(["trace", "lot", "BIG-500", "--json"], env)


def read_commands(built, serial: str, work: Path) -> list[list[str]]:
    """Every command that reads or reports, on the largest thing it can be given: the
    whole site where it takes no key, the 500-vial lot, a participant with two cycles."""
    out = work / "reads"
    big, subject, ae = built.big_lot, built.subject, built.ae_code
    return [
        ["lot", "list"], ["lot", "show", big], ["lot", "compare", big, "B0001", "B0002"],
        ["vial", "list", "--lot", big], ["vial", "list", "--site", "SITE"],
        ["vial", "show", serial],
        ["participant", "list"], ["participant", "show", subject],
        ["participant", "schedule", subject],
        ["ae", "list"], ["ae", "show", ae],
        ["trace", "lot", big], ["trace", "participant", subject], ["trace", "ae", ae],
        ["storage", "list"], ["product", "list"], ["user", "list"], ["protocol", "list"],
        ["spec", "show", "IPSEXO"], ["shipment", "list"], ["settings", "show"],
        ["audit", "log", "--limit", "1000000"],
        ["report", "safety", "--out", str(out / "safety.pdf")],
        ["report", "consistency", "IPSEXO", "--out", str(out / "consistency.pdf")],
        ["report", "accountability", "--lot", big, "--out", str(out / "darf-lot.pdf")],
        ["report", "accountability", "--out", str(out / "darf-site.pdf")],
        ["report", "custody", "--lot", big, "--out", str(out / "custody.pdf")],
        ["report", "coa", big, "--out", str(out / "coa.pdf")],
        ["export", "sdtm", "--out", str(out / "sdtm")],
        # Each report written above, read back and recomputed.
        *(["report", "verify", str(out / name)] for name in (
            "safety.pdf", "consistency.pdf", "darf-lot.pdf", "darf-site.pdf", "custody.pdf",
            "coa.pdf")),
    ]


def measure_reads(figures: Figures, engine, env: dict[str, str], built, work: Path) -> None:
    """Each read and report command once as a fresh process: its own peak memory (wait4
    gives the child's resource use) and wall time; the largest and slowest are figures."""
    from sqlalchemy import select

    from lotrack import db
    from lotrack.models import Lot, Vial

    with db.unit_of_work(engine) as session:
        serial = session.execute(select(Vial.serial).join(Lot, Lot.id == Vial.lot_id).where(
            Lot.lot_number == built.big_lot).order_by(Vial.number).limit(1)).scalar_one()
    runs = []
    # A child's ru_maxrss starts at the peak of the process that forked it (Linux copies
    # the high-water mark at fork and keeps it across exec), so every command measured
    # straight from this process would show at least this process's own peak. GNU time,
    # a small process, forks the command instead and reports its own peak.
    gnu_time = shutil.which("time")
    peak_file = work / "peak-kb.txt"
    for args in read_commands(built, serial, work):
        start = time.perf_counter()
        argv = [str(SCRIPT), *args]
        if gnu_time:
            argv = [gnu_time, "-f", "%M", "-o", str(peak_file), *argv]
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 env={"PATH": os.environ.get("PATH", "")} | env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        error = child.stderr.read().decode().strip() if child.stderr else ""
        if child.returncode != 0:
            raise SystemExit(f"lotrack {' '.join(args)} failed: {error}")
        kb = (int(peak_file.read_text().split()[-1]) if gnu_time else usage.ru_maxrss)
        runs.append((kb / 1024, wall, " ".join(args[:3])))
        print(f"  {kb / 1024:7.0f} MB {wall:7.1f} s  lotrack {' '.join(args)}", flush=True)
    mb, _, name = max(runs)
    figures.add(f"peak memory, {len(runs)} read and report commands (largest: {name})", mb, "MB", 300)
    _, wall, name = max(runs, key=lambda r: r[1])
    figures.add(f"slowest read or report command ({name}, wall)", wall, "s", None)


def report(figures: Figures, args, engine) -> None:
    backend = engine.dialect.name
    print(f"\nlotrack bench, scale {args.scale}, {backend}, {platform.node()}, "
          f"{os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"{'figure':<72} {'value':>12}       {'target':>11}  {'floor / ratio':>18}")
    for f in figures:
        target = "" if f["target"] is None else f"{'>=' if f['unit'] == 'events/s' else '<='} {f['target']:g}"
        mark = "" if f["ok"] is None else (" ok" if f["ok"] else " MISSED")
        side = ""
        if "floor" in f:
            side = f"{f['floor']:g} / {f['ratio']}x"
            side += "" if f["ratio_ok"] is None else ("" if f["ratio_ok"] else " MISSED")
        print(f"{f['name']:<72} {f['value']:>12,.1f} {f['unit']:<8} {target:>9}{mark:<7} {side:>18}")
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
