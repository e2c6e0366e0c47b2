"""Migrations on the benchmarks' `small` trial: down and back up, every row of every table
kept to the byte (issue 8).

The data set is bench/build.py's, built through the services as `bench/run.py` builds it
(an administrator first, then `build(engine, admin, SCALES["small"], say)`): 10 lots and
3,300 vials, 60 participants operated and dosed, 90 adverse events, 8,500 audit events. The
tables it leaves empty get rows here, through the services too, in three stages, because
a downgrade past the migration that made a table drops it and its rows by design (the
service refuses such a downgrade; a test going through the alembic functions would simply
lose them):
  A. the small build plus hysteroscopies, an excursion, label prints and reprints, login
     sessions: every table up to revision 0004 holds rows; shipments and settings are empty
     and the offsets and expiry time 0005 added hold only their defaults. Down to 0004.
  B. plus shipments (received and confirmed, in transit, cancelled), a product with
     offsets, a lot with an expiry time: down to 0005.
  C. plus the site time zone in settings: every table holds rows, no revision below head
     is reachable without loss, and the service refuses the step down.
Each stage walks down one revision at a time to the lowest revision whose downgrade drops
no data (computed, then checked against the expected one), and back up one at a time. The
fingerprint of every table (row count and SHA-256 of all its rows, all columns, in primary
key order) must be identical after the round trip, the surviving tables and columns must
be identical after each step, and `audit verify` must pass.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import time as clock
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection, Engine

from lotrack import db, gs1
from lotrack.errors import RuleViolation
from lotrack.migrations_head import HEAD
from lotrack.models import Dose, Vial
from lotrack.schemas.lots import LotIn, ProductIn
from lotrack.services import (
    audit_trail,
    auth,
    labels,
    lots,
    participants,
    products,
    schema_changes,
    shipments,
    site_settings,
    storage,
    users,
)
from lotrack.services.shipments import LotPick

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "bench.admin"
SAT_BOX = "SAT/FRZ-1/BOX-1"  # a second site, to ship to


def _bench_build():
    """bench/build.py, loaded under its own name: the bench folder is not a package, and a
    bare `import build` would find PyPA's `build` wherever that is installed."""
    name = "lotrack_bench_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "build.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    return sys.modules[name]


bench = _bench_build()
PASSWORD = bench.PASSWORD
UTC_TZ = bench.UTC_TZ


# --- fingerprints -------------------------------------------------------------------------

@dataclass(frozen=True)
class TablePrint:
    rows: int
    digest: str  # SHA-256 of every row, all columns, in primary-key order
    columns: dict[str, str]  # SHA-256 of each column's values in the same order


def _text(value: object) -> str:
    """A value as text, its Python type kept (an integer turned into a string is a change)."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes | memoryview):
        return f"bytes:{bytes(value).hex()}"
    return f"{type(value).__name__}:{value}"


def fingerprint(engine: Engine) -> dict[str, TablePrint]:
    """Every table but alembic_version: its rows (all columns by name, raw values as the
    database returns them) hashed in primary-key order."""
    prints = {}
    with engine.connect() as conn:
        found = inspect(conn)
        quote = conn.dialect.identifier_preparer.quote
        for name in sorted(found.get_table_names()):
            if name == "alembic_version":
                continue
            columns = sorted(c["name"] for c in found.get_columns(name))
            key = found.get_pk_constraint(name)["constrained_columns"]
            assert key, f"table {name} has no primary key to order its rows by"
            rows = conn.execute(text(
                f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(name)} "
                f"ORDER BY {', '.join(quote(c) for c in key)}"))
            whole = hashlib.sha256()
            each = {c: hashlib.sha256() for c in columns}
            count = 0
            for row in rows:
                values = [_text(v) for v in row]
                whole.update(json.dumps(dict(zip(columns, values, strict=True))).encode() + b"\n")
                for column, value in zip(columns, values, strict=True):
                    each[column].update(json.dumps(value).encode() + b"\n")
                count += 1
            prints[name] = TablePrint(count, whole.hexdigest(),
                                      {c: h.hexdigest() for c, h in each.items()})
    return prints


def assert_kept(before: dict[str, TablePrint], after: dict[str, TablePrint], step: str) -> None:
    """Every table and column present after `step` that was there before holds what it held."""
    for name, now in after.items():
        if name not in before:
            continue
        was = before[name]
        assert now.rows == was.rows, f"{step}: {name} had {was.rows} rows, now {now.rows}"
        changed = sorted(c for c in now.columns if c in was.columns
                         and now.columns[c] != was.columns[c])
        assert not changed, f"{step}: values of {name}.{', '.join(changed)} changed"


# --- how far down without loss ------------------------------------------------------------

def revisions() -> list[str]:
    return schema_changes.revisions()


@cache
def schema_at(revision: str) -> dict[str, set[str]]:
    return schema_changes.schema_at(revision)


def _holds_data(conn: Connection, name: str, column: str, default: str | None) -> bool:
    """A column holds data unless every value is NULL or its server default: an upgrade
    re-adds it with that default, so nothing else can come back."""
    quote = conn.dialect.identifier_preparer.quote
    where = f"{quote(column)} IS NOT NULL"
    if default is not None:
        where += f" AND NOT ({quote(column)} = {default})"
    return bool(conn.execute(text(f"SELECT count(*) FROM {quote(name)} WHERE {where}")).scalar())


def lowest_lossless(engine: Engine) -> str:
    """The lowest revision reachable step by step from the current one without dropping a
    table that has rows or a column that holds anything but its default. (The service
    counts a default as data too, and so refuses 0004 wherever a product exists; the test
    goes further through the alembic functions, as the older migration tests do.)"""
    steps = revisions()
    at = steps.index(db.current_revision(engine))
    with engine.connect() as conn:
        found = inspect(conn)
        defaults = {name: {c["name"]: c.get("default") for c in found.get_columns(name)}
                    for name in found.get_table_names() if name != "alembic_version"}
        quote = conn.dialect.identifier_preparer.quote
        while at > 0:
            upper, lower = schema_at(steps[at]), schema_at(steps[at - 1])
            for name, columns in upper.items():
                if name not in lower:
                    if conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar():
                        return steps[at]
                    continue
                if any(_holds_data(conn, name, c, defaults[name][c])
                       for c in columns - lower[name]):
                    return steps[at]
            at -= 1
    return steps[0]


# --- the round trip -----------------------------------------------------------------------

def act(engine: Engine, username: str, action):
    with db.unit_of_work(engine) as session:
        actor = auth.authenticate(session, username, PASSWORD)
        result = action(session, actor)
        session.commit()
        return result


def verify(engine: Engine) -> None:
    """`lotrack audit verify`, as the monitor runs it."""
    report = act(engine, "monitor.a", audit_trail.verify)
    assert report.ok, report.problems[:10]
    with engine.connect() as conn:
        assert report.events == conn.execute(text("SELECT count(*) FROM audit_events")).scalar()


def round_trip(engine: Engine, expected_floor: str, timings: dict[str, float],
               stage: str) -> dict[str, TablePrint]:
    """Down one revision at a time to the lowest lossless one, up one at a time to head;
    every table identical at the end, and the service refuses to go lower."""
    started = clock.perf_counter()
    floor = lowest_lossless(engine)
    assert floor == expected_floor, (
        f"stage {stage}: the lowest revision reachable without loss is {floor}, the test "
        f"expects {expected_floor} (a new migration? see the module docstring)")
    steps = revisions()
    assert db.current_revision(engine) == HEAD == steps[-1]
    if floor != steps[0]:
        below = steps[steps.index(floor) - 1]
        with pytest.raises(RuleViolation, match="would delete recorded data"):
            schema_changes.downgrade(engine, lambda s: auth.authenticate(s, ADMIN, PASSWORD),
                                     below, "migration round trip test")
        assert db.current_revision(engine) == HEAD
    original = fingerprint(engine)
    was = original
    for revision in reversed(steps[steps.index(floor):-1]):
        db.downgrade(engine, revision)
        assert db.current_revision(engine) == revision
        now = fingerprint(engine)
        assert_kept(was, now, f"stage {stage}, down to {revision}")
        was = now
    for revision in steps[steps.index(floor) + 1:]:
        db.upgrade(engine, revision)
        assert db.current_revision(engine) == revision
        now = fingerprint(engine)
        assert_kept(was, now, f"stage {stage}, up to {revision}")
        was = now
    assert db.current_revision(engine) == HEAD
    final = fingerprint(engine)
    assert set(final) == set(original)
    differing = {name: (original[name].rows, final[name].rows) for name in original
                 if final[name] != original[name]}
    assert not differing, f"stage {stage}: tables changed by the round trip: {differing}"
    verify(engine)
    timings[f"round trip {stage} ({floor}..{HEAD})"] = clock.perf_counter() - started
    return final


# --- the data ---------------------------------------------------------------------------

def complete_up_to_0004(engine: Engine, now: datetime) -> None:
    """Rows in the tables the small build leaves empty that exist at 0004."""
    for subject in ("B-00001", "B-00002"):  # operated some 260 days ago
        act(engine, "inv.a", lambda s, a, p=subject: participants.record_hysteroscopy(
            s, a, p, now - timedelta(days=200), recurrence=p == "B-00002"))
    act(engine, "pharm.a", lambda s, a: storage.record_excursion(
        s, a, "SITE/FRZ-B0003/BOX-001", now - timedelta(hours=3), now - timedelta(hours=2),
        -52.5, "freezer door left ajar"))

    def print_labels(s, a):
        dose_code = s.execute(select(Dose).order_by(Dose.id).limit(1)).scalar_one().dose_code
        for kind, made in (("vial", labels.vial_labels(s, "B0001", None, [])),
                           ("box", labels.box_labels(s, ["SITE/FRZ-B0001/BOX-001"])),
                           ("dose", labels.dose_labels(s, [dose_code], UTC_TZ))):
            labels.record_prints(s, a, kind, made, labels.load_template(None, kind), "pdf", 1,
                                 None)
        labels.record_prints(s, a, "vial", labels.vial_labels(s, "B0001", None, []),
                             labels.load_template(None, "vial"), "zpl", 2, "smudged sheet")

    act(engine, "pharm.a", print_labels)
    with db.unit_of_work(engine) as session:
        auth.login(session, "monitor.a", PASSWORD)
        ended = auth.login(session, "qa.a", PASSWORD)
        session.commit()
    with db.unit_of_work(engine) as session:
        auth.logout(session, ended.token)
        session.commit()


def scan(s, serial: str) -> str:
    vial = s.execute(select(Vial).where(Vial.serial == serial)).scalar_one()
    return "]d2" + gs1.element_string([
        ("01", vial.lot.product.gtin), ("10", vial.lot.lot_number),
        ("17", gs1.yymmdd(vial.lot.expiry_on)), ("21", serial)], "<GS>")


def add_0005(engine: Engine, today: date) -> None:
    """Shipments in three states, a product with offsets, a lot with an expiry time."""
    act(engine, "qa.a", lambda s, a: products.add_product(s, a, ProductIn(
        code="EXOLATE", name="iPS-Exo, late formulation", do_not_dispense_days=30,
        do_not_ship_days=45)))
    act(engine, "qa.a", lambda s, a: lots.register_lot(s, a, LotIn(
        lot_number="T0001", product="IPSEXO", manufactured_on=today - timedelta(days=10),
        expiry_on=today + timedelta(days=300), expiry_time=time(17, 30), vials=3)))
    act(engine, "pharm.a", lambda s, a: storage.add_location(s, a, SAT_BOX, 50))

    def ship(count: int) -> str:
        return act(engine, "pharm.a", lambda s, a: shipments.create_shipment(
            s, a, "SITE/FRZ-LBL-2000", "SAT", [LotPick("LBL-2000", count)], [], UTC_TZ)).code

    def dispatch(code: str) -> None:
        act(engine, "pharm.a", lambda s, a: shipments.dispatch_shipment(
            s, a, code, "World Courier", f"WC-{code}", "TL-0042", datetime.now(UTC), PASSWORD,
            UTC_TZ))

    received, travelling, cancelled = ship(4), ship(3), ship(2)
    dispatch(received)
    dispatch(travelling)
    act(engine, "pharm.b", lambda s, a: shipments.receive_shipment(
        s, a, received, [SAT_BOX], datetime.now(UTC), -78.0, PASSWORD, UTC_TZ))

    def confirm_two(s, a):
        members = shipments.get_shipment(s, received).vials
        serials = sorted(s.get(Vial, member.vial_id).serial for member in members)[:2]
        return shipments.confirm_scans(s, a, received, [scan(s, x) for x in serials], PASSWORD,
                                       None, UTC_TZ)

    act(engine, "pharm.b", confirm_two)
    act(engine, "pharm.a", lambda s, a: shipments.cancel_shipment(
        s, a, cancelled, "visit postponed"))


def test_small_data_set_down_and_up_keeps_every_table_byte_for_byte(database):
    engine = database.engine
    timings: dict[str, float] = {}
    started = clock.perf_counter()
    with db.unit_of_work(engine) as session:
        users.create_first_admin(session, ADMIN, "Bench Admin", PASSWORD)
        session.commit()
    bench.build(engine, ADMIN, bench.SCALES["small"], lambda message: None)
    timings["small build"] = clock.perf_counter() - started
    now = datetime.now(UTC)
    built = {name: p.rows for name, p in fingerprint(engine).items()}
    assert built["vials"] == 3_300 and built["participants"] == 60 and built["doses"] == 180
    # What the small build leaves empty (no cycle 2, no shipping, no printing, no login).
    assert sorted(name for name, n in built.items() if not n) == [
        "excursions", "hysteroscopies", "label_prints", "login_sessions", "settings",
        "shipment_vials", "shipments"]

    started = clock.perf_counter()
    complete_up_to_0004(engine, now)
    timings["stage A rows"] = clock.perf_counter() - started
    a = round_trip(engine, "0004", timings, "A")
    tables_0004 = set(schema_at("0004"))
    assert all(a[name].rows for name in tables_0004), {n: a[n].rows for n in tables_0004}

    started = clock.perf_counter()
    add_0005(engine, now.date())
    timings["stage B rows"] = clock.perf_counter() - started
    b = round_trip(engine, "0005", timings, "B")
    assert b["shipments"].rows == 3 and b["shipment_vials"].rows == 9

    act(engine, ADMIN, lambda s, a: site_settings.set_site_time_zone(s, a, "UTC", None))
    c = round_trip(engine, HEAD, timings, "C")
    assert all(p.rows for p in c.values()), sorted(n for n, p in c.items() if not p.rows)
    print(f"\n{database.backend}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + f"; {sum(p.rows for p in c.values())} rows in {len(c)} tables")
