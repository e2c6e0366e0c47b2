"""Every command, fuzzed (issue 8): each leaf command of the Click tree gets generated
arguments, mostly sensible with one or two drawn wild (unicode, SQL fragments, huge numbers,
empty strings, dates in every format, files that are folders), and must either succeed or
fail with one `Error:` line and a non-zero exit status, writing nothing: no audit event
(but the failed password count that lockout needs) and no file.

One site per backend serves the whole sweep, so successes accumulate and later commands
meet the records earlier ones wrote; commands that would spoil the site for the rest
(backup, restore, downgrade, the site time zone, other users' accounts) run last, and the
staff's accounts are put right between examples when a wrong password locked one.

LOTRACK_TEST_FUZZ_EXAMPLES_EACH=40 for a longer hunt than the suite's 6 per command.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, literal, select, union_all
from test_fuzz import DATE, HOSTILE, NUMBER, TEXT, head, safe_file_name
from test_fuzz import site as site  # the fuzzed site of test_fuzz.py, extended below
from trialkit import PASSWORD, PROTOCOL

from lotrack import db
from lotrack.cli.main import cli
from lotrack.models import AuditEvent, User
from lotrack.models.base import Base
from lotrack.schemas.lots import shipped_spec_path
from lotrack.schemas.protocol import default_protocol_path
from lotrack.services import auth, site_settings, users

EXAMPLES = int(os.environ.get("LOTRACK_TEST_FUZZ_EXAMPLES_EACH", "6"))
# No shrinking: the site changes with every example, so a failure does not replay; the
# message names the command and its argv instead.
# The suite's sweep draws the same examples every run (a CI run must not fail on what
# the previous one did not try); a longer hunt, asked for with the variable, draws new ones.
HUNT = "LOTRACK_TEST_FUZZ_EXAMPLES_EACH" in os.environ
EACH = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not HUNT,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.filter_too_much])

STAFF = ["admin", "qa.lee", "qa.huang", "pharm.chen", "pharm.wang", "inv.liu", "monitor.sun"]
# An administrator kept out of the sweep, to put the staff's accounts right.
KEEPER = "admin.keeper"
THROWAWAY = "temp.user"  # the account that user deactivate / roles / unlock / passwd act on
QC_CSV = """attribute,value,unit,method,tested_at,analyst
particle_concentration,3.2e11,particles/mL,NTA,2026-01-20,J. Wu
total_protein,180,ug/mL,BCA,2026-01-20,J. Wu
endotoxin,<0.05,EU/mL,LAL,2026-01-20,J. Wu
"""


# --- the Click tree --------------------------------------------------------------------

def leaf_commands() -> dict[str, click.Command]:
    """Every command a user can run, by its full name ("lot release")."""
    ctx = click.Context(cli)
    found: dict[str, click.Command] = {}

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), (*path, name))
        else:
            found[" ".join(path)] = command

    walk(cli, ())
    return found


def fuzzed_params(command: click.Command) -> list[click.Parameter]:
    return [p for p in command.params if p.name != "help"]


def is_flag(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and param.is_flag


# --- the site ----------------------------------------------------------------------------

@dataclass
class Site:
    out: Path  # what commands write; a failed command must leave it as it was
    work: Path  # the harness's working folder (dose labels by default)
    inputs: Path  # files the commands read
    serials: list[str]
    in_stock: list[str]  # L001's vials not yet dispensed
    dose: str
    ae: str
    shipment: str
    backups: list[str] = field(default_factory=list)

    @property
    def blocker(self) -> Path:
        """An existing file in out: a path under it cannot be written."""
        return self.out / "blocker.pdf"


@pytest.fixture
def sweep_site(lotrack, database, make_user, site) -> Site:
    """test_fuzz's site (L001 released, L002 in quarantine, S-1 dosed), with an adverse
    event, a prepared shipment to a second site, input files, and the extra accounts."""
    trial = site["trial"]
    make_user(KEEPER, "admin")
    make_user(THROWAWAY, "monitor")
    l001 = trial.serials("L001")
    trial.lot()  # L003, released, in SITE/FRZ-A/R1/BOX-1: stock for the shipment
    lotrack.ok("storage", "add", "SITE-2/FRZ-1/R1/BOX-1", "--capacity", "81", user="pharm.chen")
    created = lotrack.ok("shipment", "create", "--from", "SITE", "--to", "SITE-2", "--lot",
                         "L003", "--count", "2", user="pharm.chen")
    shipment = created.split()[1]
    lotrack.ok("ae", "record", "S-1", "--term", "Headache", "--grade", "1", "--onset",
               "2026-05-06", user="inv.liu")
    ae = json.loads(lotrack.ok("ae", "list", "--json", user="inv.liu"))[0]["ae"]
    dose = json.loads(lotrack.ok("participant", "show", "S-1", "--json", user="inv.liu")
                      )["cycles"][0]["doses"][0]["dose"]
    inputs = site["out"].parent / "inputs"
    inputs.mkdir()
    (inputs / "results.csv").write_text(QC_CSV)
    header, *rows = QC_CSV.splitlines()
    (inputs / "import.csv").write_text("\n".join([f"lot,{header}", *(f"L002,{r}" for r in rows)])
                                       + "\n")
    (inputs / "not-utf8.csv").write_bytes(b"attribute,value\n\xff\xfe,1\n")
    lotrack.ok("report", "coa", "L001", "--out", str(inputs / "coa.pdf"), user="monitor.sun")
    (site["out"] / "blocker.pdf").write_bytes(b"%PDF-1.4 not really\n")
    work = lotrack.workdir
    work.mkdir(parents=True, exist_ok=True)
    return Site(out=site["out"], work=work, inputs=inputs, serials=site["serials"],
                in_stock=l001[1:], dose=dose, ae=ae, shipment=shipment)


# --- values ------------------------------------------------------------------------------

Draw = Callable[[Site], st.SearchStrategy[str]]


def pick(*values: str) -> Draw:
    return lambda s: st.sampled_from(values)


def of_site(values: Callable[[Site], list[str]]) -> Draw:
    return lambda s: st.sampled_from(values(s))


def wild(strategy: st.SearchStrategy[str]) -> Draw:
    return lambda s: strategy


EXTENSIONS = [".pdf", ".csv", ".toml", ".json", ".zpl", ".svg", ".png", ""]


def out_file(*extensions: str, names: tuple[str, ...] = ("report", "labels", "x")) -> Draw:
    """A new or existing file in out with a name that makes sense."""
    return lambda s: st.builds(lambda n, e: str(s.out / (n + e)), st.sampled_from(names),
                               st.sampled_from(extensions))


def any_out_path(s: Site) -> st.SearchStrategy[str]:
    """A generated name and extension in out; out itself (a folder); a path under a file;
    a path in a folder that does not exist."""
    return st.one_of(
        st.builds(lambda n, e: str(s.out / (safe_file_name(n) + e)), TEXT,
                  st.sampled_from([*EXTENSIONS, ".PDF", ".db", ".txt"])),
        st.sampled_from([str(s.out), str(s.blocker / "x.pdf"), str(s.blocker),
                         str(s.out / "missing" / "deeper" / "x.pdf"), ""]))


def input_file(*names: str) -> Draw:
    return lambda s: st.sampled_from([str(s.inputs / n) if "/" not in n else n for n in names])


@dataclass(frozen=True)
class Values:
    """How one parameter is given: sensible values for the site, and wild ones."""

    sensible: Draw
    wild: Draw | None = None  # default: NUMBER for numbers, TEXT otherwise
    many: tuple[int, int] = (1, 2)  # how many values of a multiple option or nargs=-1


def V(sensible: Draw, wild_values: Draw | st.SearchStrategy[str] | None = None,
      many: tuple[int, int] = (1, 2)) -> Values:
    if isinstance(wild_values, st.SearchStrategy):
        wild_values = wild(wild_values)
    return Values(sensible, wild_values, many)


FILE = lambda s: any_out_path(s)  # noqa: E731
DATES = ["2026-05-07T09:00", "2026-05-05T09:30", "2026-05-04T08:00", "2026-12-01T10:00"]
DAYS = ["2026-05-06", "2026-03-01", "2026-01-20"]
REASON = V(pick("QC complete, batch record reviewed", "label damaged", "re-test",
                "complaint under investigation"))
LOTS = ["L001", "L002", "L003"]
PRODUCTS = ["IPSEXO", "PLACEBO"]
BOX = "SITE/FRZ-A/R1/BOX-1"
ANSWERS = ([f"{q.code}=yes" for q in PROTOCOL.eligibility.inclusions]
           + [f"{q.code}=no" for q in PROTOCOL.eligibility.exclusions])

# The sensible values of each parameter, by its Click name.
SENSIBLE: dict[str, Values] = {
    # who and what
    "subject": V(pick("S-1", "S-2", "S-404")),
    "lot_number": V(pick(*LOTS)),
    "lot_numbers": V(pick(*LOTS), many=(1, 3)),
    "product_code": V(pick(*PRODUCTS)),
    "serial": V(of_site(lambda s: s.serials)),
    "serials": V(of_site(lambda s: s.in_stock)),
    "scans": V(of_site(lambda s: s.in_stock)),
    "dose_code": V(of_site(lambda s: [s.dose, "D000002"])),
    "dose_codes": V(of_site(lambda s: [s.dose])),
    "ae_code": V(of_site(lambda s: [s.ae, "AE00404"])),
    "code": V(of_site(lambda s: [s.ae])),  # per command below
    "username": V(pick("new.user", "pharm.li")),  # per command below
    "full_name": V(pick("Li Pharmacist", "Ana María Núñez")),
    "admin_username": V(pick("admin")),
    "admin_name": V(pick("Ada Admin")),
    "roles": V(pick("pharmacist", "monitor", "qa")),
    "verifier": V(pick("pharm.wang", "pharm.chen", "inv.liu")),
    "witness": V(pick("qa.huang", "qa.lee")),
    "reason": REASON,
    "note": V(pick("door left open")),
    "deviation": V(pick("theatre list ran late")),
    "action": V(pick("dose not changed", "")),
    "analyst": V(pick("J. Wu")),
    # times
    "at_text": V(pick(*DATES), DATE),
    "time_text": V(pick(*DATES), DATE),
    "start": V(pick("2026-05-07T01:10"), DATE),
    "end": V(pick("2026-05-07T02:40"), DATE),
    "since": V(pick("2026-01-01", "2026-05-04T09:00"), DATE),
    "tested": V(pick("2026-01-20"), DATE),
    "onset": V(pick(*DAYS), DATE),
    "resolved": V(pick("2026-05-08", "none"), DATE),
    "consented": V(pick("2026-03-01"), DATE),
    "birth_date": V(pick("1992-04-01"), DATE),
    "manufactured": V(pick("2026-01-10"), DATE),
    "expiry": V(pick("2026-12-31", "2026-12-31T18:00"), DATE),
    # numbers
    "volume_ml": V(pick("1.0", "0.5")),
    "grade": V(pick("1", "2", "3")),
    "grade_min": V(pick("1", "3")),
    "limit": V(pick("10", "200")),
    "quantity": V(pick("5", "1")),
    "vials": V(pick("4", "1")),
    "passage": V(pick("18")),
    "fill_ml": V(pick("1.0")),
    "fill_volume_ml": V(pick("1.0")),
    "capacity": V(pick("81")),
    "position": V(pick("1", "81")),
    "copies": V(pick("1", "2")),
    "dpi": V(pick("150", "300")),
    "counts": V(pick("1", "2")),
    "version": V(pick("1", "2")),
    "max_temp": V(pick("-80", "-52")),
    "iua_score": V(pick("14", "16")),
    "amh": V(pick("2.0")),
    "afc": V(pick("6")),
    "platelets": V(pick("210")),
    "aptt": V(pick("1.0")),
    "hba1c": V(pick("5.2")),
    "storage_max_c": V(pick("-70")),
    "shelf_life_days": V(pick("365")),
    "post_thaw_hours": V(pick("4")),
    "dnd_days": V(pick("0", "30")),
    "dns_days": V(pick("0", "45")),
    "baseline": V(pick("3", "all")),
    # kinds and choices
    "term": V(pick("Pelvic pain", "Headache", "Fever", "odd feeling")),
    "relatedness": V(pick("possible", "unrelated")),
    "outcome": V(pick("recovered", "fatal")),
    "recurrence": V(pick("yes", "no")),
    "sex": V(pick("F", "f")),
    "group_code": V(pick("LOW", "MID")),
    "answers": V(pick(*ANSWERS), many=(len(ANSWERS), len(ANSWERS))),
    "status": V(pick("released", "quarantine", "expired")),
    "entity": V(pick("lot", "vial", "user")),
    "entity_id": V(pick("L001", "admin")),
    "name": V(pick("Vehicle", "Placebo buffer")),
    "gtin": V(pick("09506000134369", "12345678901231"),
              st.one_of(TEXT, st.text("0123456789", max_size=20))),
    "storage_condition": V(pick("Store at or below -70 C")),
    "cell_line": V(pick("iPSC-GD01")),
    "cell_bank": V(pick("MCB-1")),
    "results": V(pick("total_protein=180", "ph=7.3", "endotoxin=<0.05", "cd63=positive")),
    "attributes": V(pick("total_protein", "endotoxin")),
    "substitute": V(pick("<GS>")),
    "text": V(of_site(lambda s: [*s.serials, s.dose, BOX])),
    "site": V(pick("SITE", "SITE-2")),
    "origin": V(pick("SITE", "SITE/FRZ-A")),
    "courier": V(pick("World Courier")),
    "tracking_number": V(pick("WC-9")),
    "monitor_id": V(pick("TL-0042")),
    "revision": V(pick("head")),
    "zone": V(pick("UTC")),
    # places
    "path": V(pick(BOX, "SITE/FRZ-B/R1/BOX-9", "SITE-2")),
    "paths": V(pick(BOX, "SITE-2/FRZ-1/R1/BOX-1")),
    "box_paths": V(pick(BOX, "SITE-2/FRZ-1/R1/BOX-1")),
    "to_path": V(pick(BOX, "SITE/FRZ-A")),
    "template_name": V(pick("cryovial", "box", "dose")),
    "sheet": V(pick("a4", "letter")),
    "fmt": V(pick("pdf", "zpl", "svg", "png")),
    # files
    "out_path": V(out_file(*EXTENSIONS), FILE),
    "out_dir": V(out_file("", names=("sdtm", "export")), FILE),
    "label_path": V(out_file(".pdf", names=("dose",)), FILE),
    "file": V(input_file(str(shipped_spec_path("IPSEXO"))), FILE),
    "csv_file": V(input_file("results.csv", "not-utf8.csv"), FILE),
    "pdf": V(input_file("coa.pdf"), FILE),
}

# Where a name means something else in one command.
OVERRIDES: dict[str, dict[str, Values]] = {
    "ae show": {"code": V(of_site(lambda s: [s.ae, "AE00404"]))},
    "ae update": {"code": V(of_site(lambda s: [s.ae]))},
    "product add": {"code": V(pick("VEH1", "VEH2", "IPSEXO"))},
    "protocol activate": {"code": V(pick(PROTOCOL.protocol.code))},
    "protocol load": {"file": V(pick(str(default_protocol_path())), FILE)},
    "report manifest": {"code": V(of_site(lambda s: [s.shipment]))},
    **{f"shipment {name}": {"code": V(of_site(lambda s: [s.shipment, "SH000404"]))}
       for name in ("cancel", "confirm", "dispatch", "lost", "manifest", "receive",
                    "release-quarantine", "show")},
    "shipment create": {"site": V(pick("SITE-2", "SITE")),
                        "lot_numbers": V(pick("L003", "L001")),
                        "serials": V(of_site(lambda s: s.in_stock))},
    "shipment list": {"status": V(pick("prepared", "in_transit", "received"))},
    "shipment receive": {"box_paths": V(pick("SITE-2/FRZ-1/R1/BOX-1"))},
    "shipment confirm": {"scans": V(of_site(lambda s: s.serials))},
    "storage excursion": {"path": V(pick("SITE-2/FRZ-1", "SITE/FRZ-A"))},
    "vial list": {"site": V(pick("SITE", "SITE-2"))},
    "label check": {"path": V(pick(*(str(p) for p in sorted(
        (Path(__file__).resolve().parents[2] / "labels").glob("*.toml")))), FILE)},
    "label vials": {"serials": V(of_site(lambda s: s.serials))},
    "label box": {"paths": V(pick(BOX))},
    "label dose": {"out_path": V(out_file(".pdf", ".zpl", ".png", ".svg", names=("dose",)),
                                 FILE)},
    "lot compare": {"lot_numbers": V(pick(*LOTS), many=(2, 3))},
    "lot import-qc": {"csv_file": V(input_file("import.csv", "not-utf8.csv"), FILE)},
    "lot receive": {"box_paths": V(pick(BOX))},
    "lot list": {"status": V(pick("released", "quarantine", "expired", "recalled"))},
    "lot register": {"lot_number": V(pick("L900", "L901", "L001", "EXO-26/01"))},
    "report consistency": {"out_path": V(out_file(".pdf", ".csv", ".json", ""), FILE)},
    "report safety": {"out_path": V(out_file(".pdf", ".csv"), FILE)},
    "report accountability": {"out_path": V(out_file(".pdf", ".csv"), FILE)},
    "report coa": {"out_path": V(out_file(".pdf"), FILE)},
    "report custody": {"out_path": V(out_file(".pdf"), FILE)},
    "participant enroll": {"subject": V(pick("S-2", "S-3", "S-1"))},
    "login": {"username": V(pick(*STAFF))},
    "user add": {"username": V(pick("new.user", "pharm.li", THROWAWAY)),
                 "roles": V(pick("pharmacist", "monitor"))},
    **{f"user {name}": {"username": V(pick(THROWAWAY))}
       for name in ("deactivate", "roles", "unlock", "passwd")},
    "settings set-tz": {"zone": V(pick("UTC"))},
    # Only wild revisions: a real one would take the schema from under the sweep.
    "db downgrade": {"revision": V(wild(TEXT)), "reason": V(pick("roll back the upgrade"))},
    "db backup": {"file": V(lambda s: st.builds(lambda n: str(s.out / f"backup-{n}.db"),
                                                st.integers(0, 10**6)), FILE)},
    "db restore": {"file": V(lambda s: st.sampled_from(
        [*s.backups, str(s.out / "missing.db")]), FILE)},
    "export sdtm": {"out_dir": V(out_file("", names=("sdtm", "export")), FILE)},
}

# Whose command it is: the acting user has the right role (a few examples take another).
ACTOR = {"product": "qa.lee", "spec": "qa.lee", "lot": "qa.lee", "lot receive": "pharm.chen",
         "storage": "pharm.chen", "vial": "pharm.chen", "dispense": "pharm.chen",
         "dose": "pharm.chen", "label": "pharm.chen", "scan": "pharm.chen",
         "shipment": "pharm.chen", "shipment release-quarantine": "qa.lee",
         "participant": "inv.liu", "surgery": "inv.liu", "hysteroscopy": "inv.liu",
         "administer": "inv.liu", "ae": "inv.liu", "protocol": "inv.liu",
         "report": "monitor.sun", "trace": "monitor.sun", "audit": "monitor.sun",
         "export": "monitor.sun", "whoami": "monitor.sun", "login": "monitor.sun",
         "logout": "monitor.sun", "user": "admin", "db": "admin", "settings": "admin",
         "init": "admin"}

# Run last, in this order: each could spoil the site for the commands after it.
LAST = ["user add", "user roles", "user unlock", "user passwd", "user deactivate",
        "settings set-tz", "db backup", "db upgrade", "db downgrade", "db restore"]

# Not fuzzed by the sweep, with why.
EXCLUDED = {
    # Builds a whole trial in its own database (seconds per run); its --out is fuzzed
    # below in test_demo_refuses_an_out_that_is_not_a_folder.
    "demo",
}

# The password (or, for accounts, new password) a command reads from stdin.
NEW_PASSWORD = "brand-new-pass-77"
STDIN_RIGHT = {"user add": NEW_PASSWORD, "user passwd": NEW_PASSWORD, "init": PASSWORD}


def values_for(command: str, param: click.Parameter) -> Values | None:
    return OVERRIDES.get(command, {}).get(param.name) or SENSIBLE.get(param.name)


def actor_of(command: str) -> str:
    return ACTOR.get(command) or ACTOR[command.split()[0]]


def sweep_order(commands: list[str]) -> list[str]:
    return sorted(commands, key=lambda c: (LAST.index(c) if c in LAST else -1, c))


def swept_commands() -> list[str]:
    """The commands the sweep runs, in its order."""
    return sweep_order(sorted(set(leaf_commands()) - EXCLUDED))


def default_wild(param: click.Parameter) -> st.SearchStrategy[str]:
    numeric = isinstance(param.type, click.types.IntParamType | click.types.FloatParamType)
    return NUMBER if numeric else TEXT


@dataclass
class Example:
    argv: list[str]
    user: str
    stdin: str | None


def draw_example(data: st.DataObject, site_: Site, name: str, command: click.Command) -> Example:
    """Sensible values, except one or two parameters drawn wild, as test_fuzz.draw_fields."""
    params = fuzzed_params(command)
    valued = [p for p in params if not is_flag(p)]
    wild_names = data.draw(st.sets(st.sampled_from([p.name for p in valued]), max_size=2)
                           if valued else st.just(set()), label="wild")
    options: list[str] = []
    arguments: list[str] = []
    for param in params:
        if is_flag(param):
            choices: list[list[str]] = [[], [param.opts[0]]]
            if param.secondary_opts:
                choices.append([param.secondary_opts[0]])
            options += data.draw(st.sampled_from(choices), label=param.name)
            continue
        entry = values_for(name, param)
        assert entry is not None, (name, param.name)
        many = param.multiple or param.nargs == -1
        if param.name in wild_names:
            strategy = (entry.wild or wild(default_wild(param)))(site_)
            given = data.draw(st.lists(strategy, min_size=0, max_size=3) if many
                              else strategy.map(lambda v: [v]), label=f"{param.name} (wild)")
        else:
            strategy = entry.sensible(site_)
            low, high = entry.many if many else (1, 1)
            leave_out = not param.required and data.draw(st.booleans(),
                                                         label=f"{param.name} left out")
            given = [] if leave_out else data.draw(
                st.lists(strategy, min_size=low, max_size=high), label=param.name)
        if isinstance(param, click.Argument):
            arguments += given
        else:
            options += [item for value in given for item in (param.opts[0], value)]
    user = actor_of(name)
    if data.draw(st.integers(0, 9), label="another user?") == 0:
        user = data.draw(st.sampled_from(STAFF), label="user")
    stdin = None
    if any(p.name == "password_stdin" for p in params) or name == "shipment confirm":
        right = STDIN_RIGHT.get(name, PASSWORD)
        line = st.one_of(st.just(right), st.just("wrong-password-1"), st.just(""), TEXT)
        stdin = data.draw(st.one_of(
            st.just(f"{right}\n"), st.just(f"{right}\n{right}\n"), st.just(""),
            st.lists(line, min_size=1, max_size=3).map(lambda lines: "\n".join(lines) + "\n"),
            HOSTILE), label="stdin")
    return Example(options + arguments, user, stdin)


# --- the checks --------------------------------------------------------------------------

# A wrong password is counted even though the command fails: lockout needs it (db.py).
FAILED_PASSWORD_EVENTS = {"login_failed", "locked"}


def files_in(*folders: Path) -> dict[Path, tuple[int, int]]:
    """Every path under `folders` with its size and modification time: a failed command
    must neither add a file nor overwrite or truncate one."""
    return {p: (stat.st_size, stat.st_mtime_ns) for folder in folders for p in folder.rglob("*")
            for stat in (p.stat(),)}


def row_counts(database) -> dict[str, int]:
    """Rows in every table but the audit trail's (checked by its head), in one query: a
    failed command must not add or remove a record the audit trail does not cover."""
    tables = [t for t in Base.metadata.sorted_tables
              if t.name not in ("audit_events", "audit_head")]
    query = union_all(*(select(literal(t.name), func.count()).select_from(t) for t in tables))
    with db.unit_of_work(database.engine) as session:
        return {name: count for name, count in session.execute(query)}


def events_since(database, seq: int) -> list[str]:
    with db.unit_of_work(database.engine) as session:
        return list(session.execute(select(AuditEvent.action).where(AuditEvent.seq > seq)
                                    .order_by(AuditEvent.seq)).scalars())


def run_example(lotrack, database, site_: Site, name: str, example: Example) -> None:
    before, files_before = head(database), files_in(site_.out, site_.work)
    rows_before = row_counts(database)
    where = f"`lotrack {name}` as {example.user}, argv {example.argv!r}, stdin {example.stdin!r}"
    try:
        outcome = lotrack(*name.split(), *example.argv, user=example.user, input=example.stdin)
    except Exception as exc:  # the harness re-raises anything but an exit
        raise AssertionError(f"{where} raised {exc!r}") from exc
    finally:
        if name == "db restore":
            database.engine.dispose()  # the database file was replaced (or not)
    event(f"{name}: exit status {outcome.exit_code}")
    said = f"{where}\nstdout: {outcome.stdout}\nstderr: {outcome.stderr}"
    assert "Traceback" not in outcome.stdout + outcome.stderr, said
    if outcome.exit_code == 0:
        if name == "db backup":
            site_.backups.append(example.argv[-1])
        return
    try:
        outcome.assert_one_error()
    except AssertionError as exc:
        raise AssertionError(f"{said}\n{exc}") from None
    after = head(database)
    if after != before:
        written = events_since(database, before[0])
        assert set(written) <= FAILED_PASSWORD_EVENTS, (said, "a failed command wrote", written)
    files_after = files_in(site_.out, site_.work)
    changed = sorted(str(p) for p in files_after.keys() | files_before.keys()
                     if files_after.get(p) != files_before.get(p))
    assert not changed, (said, "a failed command added or changed files", changed)
    rows_after = row_counts(database)
    assert rows_after == rows_before, (said, "a failed command added or removed rows", {
        t: (rows_before.get(t), n) for t, n in rows_after.items() if rows_before.get(t) != n})


def put_staff_right(database) -> None:
    """Between examples: unlock a locked account, clear a count of wrong passwords that
    would lock one, and bring the site's time zone back to the harness's, so that one
    command's examples do not refuse every later command."""
    with db.unit_of_work(database.engine) as session:
        rows = session.execute(select(User.username, User.locked, User.failed_logins, User.active)
                               .where(User.username.in_(STAFF))).all()
        zone = site_settings.recorded_zone_name(session)
    assert all(active for _, _, _, active in rows), rows
    for username, locked, failed, _ in rows:
        if locked or failed:
            with db.unit_of_work(database.engine) as session:
                if locked:
                    keeper = auth.authenticate(session, KEEPER, PASSWORD)
                    users.unlock_user(session, keeper, username, "fuzz sweep: unlock")
                else:
                    auth.authenticate(session, username, PASSWORD)
                session.commit()
    if zone not in (None, "UTC"):
        with db.unit_of_work(database.engine) as session:
            keeper = auth.authenticate(session, KEEPER, PASSWORD)
            site_settings.set_site_time_zone(session, keeper, "UTC", "fuzz sweep: back to UTC")
            session.commit()


# --- the tests -----------------------------------------------------------------------------

def test_every_parameter_has_sensible_values():
    """A command added later joins the sweep only when its parameters have values here."""
    missing = [f"{name}: {param.name}" for name, command in leaf_commands().items()
               if name not in EXCLUDED for param in fuzzed_params(command)
               if not is_flag(param) and values_for(name, param) is None]
    assert not missing, missing
    unknown = [name for name in [*OVERRIDES, *LAST] if name not in leaf_commands()]
    assert not unknown, unknown
    assert all(actor_of(name) for name in leaf_commands() if name not in EXCLUDED)


def test_the_sweep_covers_every_command_but_the_excluded():
    every = set(leaf_commands())
    assert every >= EXCLUDED
    assert len(every) >= 80, sorted(every)  # the whole Click tree was walked
    swept = swept_commands()
    assert len(swept) == len(set(swept))
    assert set(swept) == every - EXCLUDED


def test_every_command_takes_hostile_input(lotrack, database, sweep_site):
    """The sweep: every command, EXAMPLES examples each, on one site; every command's
    failure is reported, not only the first."""
    commands = leaf_commands()

    def fuzz_command(name: str, command: click.Command) -> Callable[[], None]:
        @EACH
        @given(data=st.data())
        def fuzz(data):
            example = draw_example(data, sweep_site, name, command)
            try:
                run_example(lotrack, database, sweep_site, name, example)
            finally:
                put_staff_right(database)

        return fuzz

    failures = []
    for name in swept_commands():
        try:
            fuzz_command(name, commands[name])()
        except Exception as exc:
            failures.append(f"--- {name}:\n{exc}")
    assert not failures, "\n".join(failures)
    assert "Audit trail intact" in lotrack.ok("audit", "verify", user="monitor.sun")


@pytest.mark.parametrize("under", ["file", "under a file"])
def test_demo_refuses_an_out_that_is_not_a_folder(lotrack, tmp_path, under):
    existing = tmp_path / "demo.txt"
    existing.write_text("not a folder\n")
    out = existing if under == "file" else existing / "demo"
    outcome = lotrack("demo", "--out", str(out), user=None)
    outcome.assert_one_error()
    assert existing.read_text() == "not a folder\n"


def test_a_document_to_an_empty_path_is_refused(lotrack, database, site):
    """`--out ""` is the working folder: it raised IsADirectoryError."""
    before = head(database)
    lotrack("report", "coa", "L001", "--out", "", user="monitor.sun").assert_one_error(
        "give a file name")
    assert head(database) == before


BIG = str(10**30)


@pytest.mark.parametrize(("args", "message"), [
    (["db", "upgrade", ""], "give the revision"),  # Alembic asserted
    # An expiry time with an offset was stored without it: the record then differed from
    # its audited state, and `audit verify` failed.
    (["lot", "register", "L900", "--product", "IPSEXO", "--manufactured", "2026-01-10",
      "--expiry", "2026-12-31T18:00+14:00", "--vials", "1"], "without an offset"),
    # A template name longer than a file name may be raised OSError (file name too long).
    (["label", "vials", "L001", "--template", "x" * 1000, "--out", "{tmp}/v.pdf"],
     "no label template"),
    # Integers past SQLite's 64 bits overflowed in the driver.
    (["audit", "log", "--limit", BIG], "'--limit'"),
    (["spec", "show", "IPSEXO", "--version", BIG], "'--version'"),
    (["spec", "activate", "IPSEXO", BIG], "'VERSION'"),
    (["protocol", "activate", "IPSEXO-IUA-01", BIG], "'VERSION'"),
    # A settings file that is not UTF-8 text raised UnicodeDecodeError.
    (["spec", "load", "{tmp}/binary.toml"], "not UTF-8 text"),
    (["protocol", "load", "{tmp}/binary.toml"], "not UTF-8 text"),
    # A report to a path under a file, or to an empty path, raised the OSError.
    (["report", "safety", "--out", "{tmp}/binary.toml/safety.pdf"], "is a file, not a folder"),
    (["report", "safety", "--out", "{tmp}/binary.toml/safety.csv"], "is a file, not a folder"),
    (["export", "sdtm", "--out", "{tmp}/binary.toml/sdtm"], "is a file, not a folder"),
])
def test_what_the_sweep_found(lotrack, database, make_user, tmp_path, args, message):
    make_user("monitor.sun", "monitor")
    make_user("qa.lee", "qa")
    (tmp_path / "binary.toml").write_bytes(b"[protocol]\ncode = \"\xff\xfe\"\n")
    lotrack.workdir.mkdir(parents=True, exist_ok=True)
    before, files_before = head(database), files_in(tmp_path)
    outcome = lotrack(*[a.format(tmp=tmp_path) for a in args],
                      user={"report": "monitor.sun", "export": "monitor.sun",
                            "db": "admin"}.get(args[0], "qa.lee"))
    outcome.assert_one_error(message)
    assert head(database) == before
    assert {p for p in files_in(tmp_path).keys() - files_before.keys()
            if "lotrack.db" not in p.name} == set()
