"""Hostile input, generated: every command either succeeds or says what is wrong in one
`Error:` line with a non-zero exit status (never a traceback, never a database error no
service anticipated), and a command that fails writes nothing (the audit chain head is
where it was).

Each test builds one small trial and runs its examples against it, so successes
accumulate; that is the point: later examples meet the records earlier ones wrote.
"""

from __future__ import annotations

import os
import string
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from trialkit import PROTOCOL, T0, Trial

from lotrack import db
from lotrack.models import AuditHead

# LOTRACK_TEST_FUZZ_EXAMPLES=500 for a longer hunt than the suite's.
FUZZ = settings(max_examples=int(os.environ.get("LOTRACK_TEST_FUZZ_EXAMPLES", "25")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Text a keyboard, a scanner or a script could send: anything but NUL (argv cannot
# carry it) and lone surrogates (not text).
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                   max_size=40)
HOSTILE = st.sampled_from([
    "", " ", "\t", "\n", "'", '"', "\\", "%", "_", "*", "--", ";",
    "'; DROP TABLE lots; --", "\" OR 1=1 --", "L001' OR '1'='1", "1; DELETE FROM vials",
    "NULL", "None", "null", "true", "[]", "{}", "${HOME}", "$(id)", "`id`",
    "../../etc/passwd", "C:\\Windows", "<script>alert(1)</script>", "%s%s%s%n",
    "\u202e\u0644\u0648\u062a", "Ω≈ç√∫", "💉🧪", "ｌｏｔ", "İ", "ß", "\u00a0", "\ufeff",
    "x" * 1000, "9" * 400, "-1", "0", "-0", "1e309", "nan", "inf", "-inf", "0x10",
    "１２", "٣", "2**64", str(2**63), str(-(2**63) - 1), str(10**30),
])
TEXT = st.one_of(HOSTILE, ANY_TEXT)
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "1", "-1", "81", "100", "1000", "100000", "100001", "2147483648",
                     "9223372036854775808", "1.5", "1e3", "nan", "inf", "", "one"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    HOSTILE)
DATE_FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%d.%m.%Y", "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%d %B %Y", "%b %d, %Y",
                "%Y-W%W-%w", "%Y-%j", "%A", "%c", "%x", "%Y"]
DATE = st.one_of(
    st.builds(lambda d, f: d.strftime(f), st.datetimes(timezones=st.timezones()),
              st.sampled_from(DATE_FORMATS)),
    st.sampled_from(["2026-02-30", "2026-13-01", "2026-00-10", "2026-05-04T25:00",
                     "2026-05-04T09:60", "2026-03-29T02:30", "0000-01-01", "0001-01-01",
                     "9999-12-31", "9999-12-31T23:59:59+14:00", "10000-01-01", "1970-01-01",
                     "-2026-05-04", "2026-5-4", "26-05-04", "2026/05/04", "2026-05-04Z",
                     "2026-05-04T09:00:00.123456789Z", "2026-05-04T09:00+25:00",
                     "2026-05-04T09:00 Asia/Shanghai", "now", "today", "yesterday",
                     "1746349200", "２０２６-０５-０４", "2026年5月4日", "", " "]),
    st.dates().map(str), HOSTILE)


def sometimes(valid: str | list[str], wild: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value that makes sense, or a wild one (for lists of values)."""
    options = [valid] if isinstance(valid, str) else valid
    return st.one_of(st.sampled_from(options), wild)


Field = tuple[list[str | None], st.SearchStrategy[str]]


def draw_fields(data: st.DataObject, fields: dict[str, Field]) -> dict[str, str | None]:
    """A value for each field: sensible ones (None: the option left out), except one or two
    fields drawn wild, so that a command gets past its other checks to the one under test."""
    wild = data.draw(st.sets(st.sampled_from(sorted(fields)), max_size=2), label="wild fields")
    return {name: data.draw(hostile if name in wild else st.sampled_from(valid), label=name)
            for name, (valid, hostile) in fields.items()}


def options(values: dict[str, str | None], *names: str) -> list[str]:
    return [item for name in names if values[name] is not None
            for item in (name, values[name])]


def safe_file_name(text: str) -> str:
    """A generated name, made harmless as a file name under the test's own folder."""
    cleaned = "".join(c for c in text if c not in "/\\\x00")[:60].strip(". ")
    return cleaned or "out"


@pytest.fixture
def site(lotrack, database, make_user, tmp_path):
    trial = Trial.build(database, make_user)
    trial.lot()  # L001: six released vials in SITE/FRZ-A/R1/BOX-1
    trial.lot(release=False)  # L002 in quarantine
    trial.enroll_and_operate("S-1", "LOW", T0)
    trial.dispense("S-1", [trial.serials("L001")[0]], T0 + timedelta(hours=24))
    out = tmp_path / "out"
    out.mkdir()
    return {"trial": trial, "serials": trial.serials("L001") + trial.serials("L002"), "out": out}


def head(database) -> tuple[int, str]:
    with db.unit_of_work(database.engine) as session:
        row = session.get(AuditHead, 1)
        return row.seq, row.hash


def run_hostile(lotrack, database, args: list[str], user: str) -> None:
    before = head(database)
    outcome = lotrack(*args, user=user)  # the harness re-raises anything but an exit
    event(f"exit status {outcome.exit_code}")  # pytest --hypothesis-show-statistics
    assert "Traceback" not in outcome.stdout + outcome.stderr, args
    if outcome.exit_code == 0:
        return
    outcome.assert_one_error()
    # The audit head, not `audit log` as Lotrack.refuses reads it: two commands fewer per
    # example keeps the fuzzing fast.
    assert head(database) == before, (args, "a failed command wrote to the audit trail")


# --- the commands ------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_lot_register(lotrack, database, site, data):
    v = draw_fields(data, {
        "lot": (["L900", "L901", "L001", "EXO-26/01"], TEXT),
        "--product": (["IPSEXO", "PLACEBO"], TEXT),
        "--manufactured": (["2026-01-10"], DATE),
        "--expiry": (["2026-12-31", "2026-12-31T18:00"], DATE),
        "--vials": (["4", "1"], NUMBER),
        "--cell-line": ([None, "iPSC-GD01"], TEXT), "--cell-bank": ([None, "MCB-1"], TEXT),
        "--passage": ([None, "18"], NUMBER), "--fill-ml": ([None, "1.0"], NUMBER)})
    args = ["lot", "register", v["lot"], *options(
        v, "--product", "--manufactured", "--expiry", "--vials", "--cell-line", "--cell-bank",
        "--passage", "--fill-ml")]
    run_hostile(lotrack, database, args, "qa.lee")


@FUZZ
@given(data=st.data())
def test_lot_qc_result(lotrack, database, site, data):
    v = draw_fields(data, {
        "lot": (["L002", "L001"], TEXT),
        "attribute": (["total_protein", "ph", "endotoxin", "cd63"], TEXT),
        "value": (["180", "7.3", "<0.05", "positive", "9.9"], st.one_of(TEXT, NUMBER)),
        "--tested": ([None, "2026-01-20"], DATE), "--analyst": ([None, "J. Wu"], TEXT),
        "--reason": ([None, "re-test"], TEXT)})
    args = ["lot", "qc", v["lot"], "--result", f"{v['attribute']}={v['value']}",
            *options(v, "--tested", "--analyst", "--reason")]
    run_hostile(lotrack, database, args, "qa.lee")


@FUZZ
@given(data=st.data())
def test_product_add(lotrack, database, site, data):
    v = draw_fields(data, {
        "code": (["VEH1", "VEH2", "IPSEXO"], TEXT),
        "--name": (["Vehicle"], TEXT),
        "--gtin": ([None, "09506000134369", "09506000134352", "12345678901231"],
                   st.one_of(TEXT, st.text(string.digits, max_size=20))),
        "--storage": ([None, "Store at or below -70 C"], TEXT),
        "--storage-max-c": ([None, "-70"], NUMBER), "--shelf-life-days": ([None, "365"], NUMBER),
        "--post-thaw-hours": ([None, "4"], NUMBER), "--fill-ml": ([None, "1.0"], NUMBER),
        "--dnd-days": ([None, "30"], NUMBER), "--dns-days": ([None, "45"], NUMBER)})
    args = ["product", "add", v["code"], *options(
        v, "--name", "--gtin", "--storage", "--storage-max-c", "--shelf-life-days",
        "--post-thaw-hours", "--fill-ml", "--dnd-days", "--dns-days")]
    args += data.draw(st.sampled_from([[], ["--placebo"], ["--vehicle"], ["--placebo", "--vehicle"]]))
    run_hostile(lotrack, database, args, "qa.lee")


ANSWERS = ([f"{q.code}=yes" for q in PROTOCOL.eligibility.inclusions]
           + [f"{q.code}=no" for q in PROTOCOL.eligibility.exclusions])


@FUZZ
@given(data=st.data())
def test_participant_enroll(lotrack, database, site, data):
    v = draw_fields(data, {
        "subject": (["S-2", "S-3", "S-1"], TEXT), "--group": (["LOW", "PBO"], TEXT),
        "--consented": (["2026-03-01"], DATE), "--sex": (["F", "f"], TEXT),
        "--birth-date": (["1992-04-01"], DATE), "--iua-score": (["14"], NUMBER),
        "--amh": (["2.0"], NUMBER), "--platelets": (["210"], NUMBER), "--aptt": (["1.0"], NUMBER),
        "--hba1c": (["5.2"], NUMBER), "--afc": ([None, "6"], NUMBER)})
    answers = data.draw(st.one_of(st.just(ANSWERS), st.lists(sometimes(ANSWERS, TEXT),
                                                             max_size=4)))
    args = ["participant", "enroll", v["subject"], *options(
        v, "--group", "--consented", "--sex", "--birth-date", "--iua-score", "--amh",
        "--platelets", "--aptt", "--hba1c", "--afc"), *[f"--answer={a}" for a in answers]]
    run_hostile(lotrack, database, args, "inv.liu")


@FUZZ
@given(data=st.data())
def test_dispense(lotrack, database, site, data):
    v = draw_fields(data, {
        "subject": (["S-1", "S-404"], TEXT),
        "source": (["--vial", "--scan"], st.sampled_from(["--vial", "--scan"])),
        "serial": (site["serials"], TEXT),
        "--at": (["2026-05-07T09:00", "2026-05-09T09:30", "2026-05-05T09:30"], DATE),
        "--verified-by": (["pharm.wang", "pharm.chen", "qa.lee"], TEXT),
        "--deviation": ([None, "theatre list ran late"], TEXT), "--gs": ([None, "<GS>"], TEXT),
        "--label": (["--no-label", "dose.pdf"], TEXT)})
    args = ["dispense", v["subject"], v["source"], v["serial"],
            *options(v, "--at", "--verified-by", "--deviation", "--gs")]
    args += (["--no-label"] if v["--label"] == "--no-label"
             else ["--label", str(site["out"] / (safe_file_name(v["--label"]) + ".pdf"))])
    run_hostile(lotrack, database, args, "pharm.chen")


GS1_PIECES = st.sampled_from(["]d2", "]C1", "01", "09506000134352", "10", "L001", "17",
                              "261231", "21", "\x1d", "<GS>", "(01)", "(10)", "(21)", "7003",
                              "V00000013", "D000001", "SITE/FRZ-A/R1/BOX-1", "99", "00"])


@FUZZ
@given(data=st.data())
def test_scan(lotrack, database, site, data):
    v = draw_fields(data, {
        "text": (site["serials"] + ["D000001", "SITE/FRZ-A/R1/BOX-1"],
                 st.one_of(st.lists(GS1_PIECES, max_size=10).map("".join), TEXT)),
        "--gs": ([None, "<GS>"], TEXT)})
    args = ["scan", v["text"], *options(v, "--gs")]
    args += data.draw(st.sampled_from([[], ["--json"]]))
    run_hostile(lotrack, database, args, "pharm.chen")


@FUZZ
@given(data=st.data())
def test_label_vials(lotrack, database, site, data):
    v = draw_fields(data, {
        "lot": (["L001", "L002"], TEXT),
        "name": (["vials"], TEXT),
        "extension": ([".pdf", ".zpl", ".svg"], st.sampled_from([".png", ".txt", "", ".PDF"])),
        "--serial": ([None, *site["serials"]], TEXT),
        "--sheet": ([None, "a4", "letter"], TEXT), "--copies": ([None, "1", "2"], NUMBER),
        "--reason": ([None, "label damaged"], TEXT), "--dpi": ([None, "150"], NUMBER),
        "--format": ([None], st.sampled_from(["pdf", "zpl", "png", "svg", "PDF", "jpeg"]))})
    out = site["out"] / (safe_file_name(v["name"]) + v["extension"])
    args = ["label", "vials", v["lot"], "--out", str(out),
            *options(v, "--serial", "--sheet", "--copies", "--reason", "--dpi", "--format")]
    run_hostile(lotrack, database, args, "pharm.chen")


@FUZZ
@given(data=st.data())
def test_ae_record(lotrack, database, site, data):
    v = draw_fields(data, {
        "subject": (["S-1", "S-2"], TEXT),
        "--term": (["Pelvic pain", "Headache", "Fever", "odd feeling"], TEXT),
        "--grade": (["1", "2", "5"], NUMBER),
        "--onset": (["2026-05-06", "2026-02-01"], DATE),
        "--relatedness": ([None, "possible", "not_related"], TEXT),
        "--outcome": ([None, "recovered", "fatal"], TEXT),
        "--resolved": ([None, "2026-05-08"], DATE), "--action": ([None, "dose not changed"], TEXT)})
    args = ["ae", "record", v["subject"], *options(
        v, "--term", "--grade", "--onset", "--relatedness", "--outcome", "--resolved",
        "--action")]
    args += data.draw(st.sampled_from([[], ["--serious"]]))
    run_hostile(lotrack, database, args, "inv.liu")


@FUZZ
@given(data=st.data())
def test_storage_add(lotrack, database, site, data):
    v = draw_fields(data, {
        "path": (["SITE/FRZ-B/R1/BOX-9", "SITE/FRZ-A/R1/BOX-1", "SITE-2"],
                 st.one_of(TEXT, st.lists(TEXT, min_size=1, max_size=6).map("/".join))),
        "--capacity": ([None, "81"], NUMBER)})
    args = ["storage", "add", v["path"], *options(v, "--capacity")]
    run_hostile(lotrack, database, args, "pharm.chen")


@FUZZ
@given(data=st.data())
def test_vial_move(lotrack, database, site, data):
    v = draw_fields(data, {
        "serial": (site["serials"], TEXT),
        "--to": (["SITE/FRZ-A/R1/BOX-1", "SITE/FRZ-A"], TEXT),
        "--position": ([None, "1", "81", "499"], NUMBER)})
    args = ["vial", "move", v["serial"], *options(v, "--to", "--position")]
    run_hostile(lotrack, database, args, "pharm.chen")


@FUZZ
@given(data=st.data())
def test_report_custody(lotrack, database, site, data):
    v = draw_fields(data, {
        "name": (["custody"], TEXT),
        "extension": ([".pdf"], st.sampled_from([".PDF", ".csv", ""])),
        "--vial": ([None, *site["serials"]], TEXT),
        "--lot": ([None, "L001", "L002"], TEXT),
        "--participant": ([None, "S-1"], TEXT)})
    out = site["out"] / (safe_file_name(v["name"]) + v["extension"])
    args = ["report", "custody", "--out", str(out),
            *options(v, "--vial", "--lot", "--participant")]
    run_hostile(lotrack, database, args, "monitor.sun")


def test_the_fuzzed_site_still_verifies(lotrack, site):
    """The trail the fuzzed commands above build on is sound to begin with."""
    assert "Audit trail intact" in lotrack.ok("audit", "verify", user="monitor.sun")
    assert Path(site["out"]).is_dir()


@pytest.mark.parametrize(("first", "then", "message"), [
    (None, ["--out", "{out}/x.png", "--dpi", "0"], "'--dpi'"),
    (None, ["--out", "{out}/x.png", "--dpi", "100000000"], "'--dpi'"),
    # One label to vials.svg makes a file; several labels need vials.svg to be a folder.
    (["--serial", "{serial}", "--out", "{out}/vials.svg"], ["--out", "{out}/vials.svg"],
     "is a file, not a folder"),
    # Several SVG labels make the folder x.pdf; a PDF cannot then be written there.
    (["--format", "svg", "--out", "{out}/x.pdf"], ["--out", "{out}/x.pdf"], "it is a folder"),
    # A label under a file: staging beside it raised NotADirectoryError (the sweep's find).
    (["--serial", "{serial}", "--out", "{out}/x.pdf"], ["--out", "{out}/x.pdf/vials.pdf"],
     "is a file, not a folder"),
])
def test_what_fuzzing_found_in_label_printing(lotrack, database, site, first, then, message):
    def fill(args):
        return [a.format(out=site["out"], serial=site["serials"][1]) for a in args]

    if first:
        lotrack.ok("label", "vials", "L001", *fill(first), user="pharm.chen")
    before = head(database)
    outcome = lotrack("label", "vials", "L001", *fill(then), "--reason", "again",
                      user="pharm.chen")
    outcome.assert_one_error(message, exit_code=2)
    assert head(database) == before
    assert not list(site["out"].rglob(".lotrack-labels-*"))
