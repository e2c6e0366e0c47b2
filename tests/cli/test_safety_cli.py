"""Adverse events, the lot safety summary and the SDTM export from the command line."""

import csv
import json
from pathlib import Path

import pytest
from pypdf import PdfReader
from test_trial_cli import ANSWERS, set_up_site

INV = {"user": "inv.liu"}
MONITOR = {"user": "monitor.sun"}


def dose_given(lotrack, tmp_path: Path) -> str:
    """The site of test_trial_cli, S-001 enrolled and operated, perfusion 1 given."""
    set_up_site(lotrack, tmp_path)
    lotrack.ok("participant", "enroll", "S-001", "--group", "LOW", "--consented", "2026-03-01",
               "--sex", "F", "--birth-date", "1992-04-01", "--iua-score", "14", "--amh", "2.0",
               "--platelets", "210", "--aptt", "1.0", "--hba1c", "5.2", *ANSWERS, **INV)
    lotrack.ok("surgery", "record", "S-001", "--at", "2026-03-05T09:00", **INV)
    serial = json.loads(lotrack.ok("vial", "list", "--lot", "EXO-01", "--json"))[0]["serial"]
    lotrack.ok("dispense", "S-001", "--vial", serial, "--at", "2026-03-06T09:30",
               "--verified-by", "pharm.wang", user="pharm.chen")
    lotrack.ok("administer", "D000001", "--at", "2026-03-06T10:00", "--volume-ml", "1.0", **INV)
    return serial


def test_adverse_events_from_record_to_report_and_export(lotrack, tmp_path):
    serial = dose_given(lotrack, tmp_path)
    out = lotrack.ok("ae", "record", "S-001", "--term", "Pelvic pain", "--grade", "1",
                     "--onset", "2026-03-06", "--relatedness", "possible", "--resolved",
                     "2026-03-07", "--action", "dose not changed", **INV)
    assert out.strip() == ("Recorded AE00001: Pelvic pain, grade 1, possible, recovered; "
                           "CTCAE Pelvic pain (Reproductive system and breast disorders).")
    out = lotrack.ok("ae", "record", "S-001", "--term", "cramps after perfusion", "--grade",
                     "2", "--onset", "2026-03-06", **INV)
    assert "AE00002: cramps after perfusion, grade 2, possible, not_recovered; verbatim term, " \
           "flagged for coding" in out
    assert "recorded as possible until assessed" in out
    out = lotrack.ok("ae", "update", "AE00002", "--grade", "1", "--resolved", "2026-03-08",
                     "--reason", "re-graded after the diary review", **INV)
    assert "Corrected AE00002: cramps after perfusion, grade 1, possible, recovered" in out

    rows = json.loads(lotrack.ok("ae", "list", "--json", **MONITOR))
    assert [(r["ae"], r["grade"], r["needs_coding"], r["lots_before_onset"]) for r in rows] == [
        ("AE00001", 1, False, ["EXO-01"]), ("AE00002", 1, True, ["EXO-01"])]
    assert json.loads(lotrack.ok("ae", "list", "--lot", "EXO-01", "--grade-min", "2", "--json",
                                 user="qa.lee")) == []
    text = lotrack.ok("ae", "list", "--subject", "S-001", **MONITOR)
    assert "cramps after perfusion (to code)" in text and "AE00001" in text
    detail = json.loads(lotrack.ok("ae", "show", "AE00002", "--json", **MONITOR))
    assert detail["history"][1]["changes"] == {
        "grade": {"old": 2, "new": 1}, "outcome": {"old": "not_recovered", "new": "recovered"},
        "resolved_on": {"old": None, "new": "2026-03-08"}}
    assert detail["history"][1]["reason"] == "re-graded after the diary review"
    shown = lotrack.ok("ae", "show", "AE00002", **MONITOR)
    assert "grade: 2 -> 1" in shown and "re-graded after the diary review" in shown
    log = json.loads(lotrack.ok("audit", "log", "--entity", "ae", "--id", "AE00002", "--json",
                                **MONITOR))
    assert [(e["action"], e["reason"]) for e in log] == [
        ("record", None), ("correct", "re-graded after the diary review")]

    # No placebo exposure: the reference is 0, so one participant with an event flags the lot.
    pdf = tmp_path / "safety.pdf"
    done = lotrack("report", "safety", "--out", str(pdf), **MONITOR)
    assert done.exit_code == 0 and "Lots flagged for medical review: EXO-01" in done.stderr
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Lot Safety Summary" in text and "Protocol IPSEXO-IUA-01" in text
    assert "EXO-01" in text and "100% of exposed participants had an adverse event" in text
    assert "Lots flagged for medical review: EXO-01" in text
    assert "Content SHA-256" in text and "Page 1 of 1" in text
    summary = json.loads(lotrack.ok("report", "safety", "--json", **MONITOR))
    [lot] = summary["lots"]
    assert (lot["lot"], lot["exposed"], lot["doses"], lot["aes"], lot["related_aes"]) == (
        "EXO-01", 1, 1, 2, 2)
    lotrack.ok("report", "safety", "--out", str(tmp_path / "safety.csv"), **MONITOR)
    with (tmp_path / "safety.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["lot"], r["exposed"], r["aes"], r["worst_grade_1"]) for r in rows] == [
        ("EXO-01", "1", "2", "1"), ("PLACEBO", "0", "0", "0")]

    folder = tmp_path / "sdtm"
    done = lotrack.script("export", "sdtm", "--out", str(folder), **MONITOR)
    assert done.exit_code == 0, done.stderr
    assert "EX 1, AE 2, DA 1" in done.stdout and "local site time (UTC)" in done.stdout
    with (folder / "EX.csv").open(newline="") as handle:
        [ex] = list(csv.DictReader(handle))
    assert (ex["USUBJID"], ex["EXREFID"], ex["EXLOT"], ex["EXSTDTC"], ex["EXELTM"],
            ex["EXDOSE"]) == ("IPSEXO-IUA-01-S-001", "D000001", "EXO-01", "2026-03-06T10:00",
                              "PT24H", "1")
    with (folder / "DA.csv").open(newline="") as handle:
        [da] = list(csv.DictReader(handle))
    assert (da["DAREFID"], da["DATESTCD"], da["DADTC"]) == (serial, "DISPAMT",
                                                            "2026-03-06T09:30")
    assert "Audit trail intact" in lotrack.ok("audit", "verify", **MONITOR)


@pytest.mark.parametrize(("args", "user", "message"), [
    (["ae", "record", "S-404", "--term", "Fever", "--grade", "1", "--onset", "2026-03-06"],
     "inv.liu", "Error: no participant 'S-404'"),
    (["ae", "record", "S-001", "--term", "Endometrial infection", "--grade", "1", "--onset",
      "2026-03-06"], "inv.liu", "has no grade 1 for 'Endometrial infection'"),
    (["ae", "record", "S-001", "--term", "Fever", "--grade", "1", "--onset", "2026-02-01"],
     "inv.liu", "onset 2026-02-01 precedes S-001's consent on 2026-03-01"),
    (["ae", "record", "S-001", "--term", "Fever", "--grade", "1", "--onset", "2026-03-06",
      "--resolved", "2026-03-05"], "inv.liu", "resolution on 2026-03-05 precedes onset"),
    (["ae", "record", "S-001", "--term", "Fever", "--grade", "1", "--onset", "2099-03-06"],
     "inv.liu", "is in the future"),
    (["ae", "record", "S-001", "--term", "Fever", "--grade", "1", "--onset", "yesterday"],
     "inv.liu", "onset"),
    (["ae", "record", "S-001", "--term", "Fever", "--grade", "7", "--onset", "2026-03-06"],
     "inv.liu", "grade"),
    (["ae", "record", "S-001", "--term", "Fever", "--grade", "5", "--onset", "2026-03-06",
      "--outcome", "recovered", "--resolved", "2026-03-07"], "inv.liu", "must be fatal"),
    (["ae", "record", "S-001", "--term", "Fever", "--grade", "1", "--onset", "2026-03-06"],
     "monitor.sun", "recording an adverse event needs the investigator role"),
    (["ae", "update", "AE00001", "--reason", "x"], "inv.liu", "give at least one field"),
    (["ae", "update", "AE00001", "--grade", "2", "--reason", "   "], "inv.liu", "reason"),
    (["ae", "update", "AE00099", "--grade", "2", "--reason", "x"], "inv.liu",
     "no adverse event 'AE00099'"),
    (["ae", "update", "AE00001", "--grade", "2", "--reason", "x"], "qa.lee",
     "needs the investigator role"),
    (["ae", "show", "XYZ"], "monitor.sun", "'XYZ' is not an adverse event code"),
    (["ae", "show", "AE00001"], "pharm.chen", "reading an adverse event needs the"),
    (["ae", "list", "--lot", "NOPE"], "monitor.sun", "no lot 'NOPE'"),
    (["ae", "list", "--grade-min", "9"], "monitor.sun", "is not a CTCAE grade"),
    (["report", "safety", "--out", "x.txt"], "monitor.sun", "must end in .pdf or .csv"),
    (["report", "safety"], "pharm.chen", "lot safety summary needs the"),
    (["export", "sdtm", "--out", "sdtm"], "pharm.chen", "exporting SDTM datasets needs the"),
])
def test_bad_input_gives_one_clear_error_and_changes_nothing(lotrack, tmp_path, args, user,
                                                              message):
    dose_given(lotrack, tmp_path)
    lotrack.ok("ae", "record", "S-001", "--term", "Fever", "--grade", "1", "--onset",
               "2026-03-06", **INV)
    lotrack.refuses(*args, user=user, message=message)
