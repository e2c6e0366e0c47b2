"""`lotrack report consistency` and `lotrack lot compare` from the command line: the PDF
read back, the JSON and CSV, and bad input that gives one clear error."""

import csv
import json

import pytest
from freezegun import freeze_time
from pypdf import PdfReader
from test_label_cli import enrol_and_operate
from test_trial_cli import RESULTS, set_up_site

# EXO-01 (from set_up_site) has a modal particle size of 112 nm; the others follow.
# Baseline (--baseline 4): 112 118 110 111; mean 112.75; MR 6 8 1, MR-bar 5;
#   sigma 5 / 1.128 = 4.43262411; UCL 112.75 + 13.29787 = 126.04787; LCL 99.45213
# Then 113 114 115 116: 110 111 113 114 115 116 are 6 points rising, so rule 3 flags
#   EXO-08 and nothing else (no point beyond 2 sigma = 121.61525, no run of 9,
#   moving ranges 6 8 1 2 1 1 1 all below 3.267 x 5 = 16.335).
SIZES = {"EXO-02": 118, "EXO-03": 110, "EXO-04": 111, "EXO-05": 113, "EXO-06": 114,
         "EXO-07": 115, "EXO-08": 116}
QA = {"user": "qa.lee"}


def add_lot(lotrack, tmp_path, number: str, day: int, size: float, release: bool = True) -> None:
    with freeze_time("2026-02-01 12:00:00"):  # released before the tests' doses
        _add_lot(lotrack, tmp_path, number, day, size, release)


def _add_lot(lotrack, tmp_path, number: str, day: int, size: float, release: bool) -> None:
    lotrack.ok("lot", "register", number, "--product", "IPSEXO", "--manufactured",
               f"2026-01-{day:02d}", "--expiry", "2026-12-31", "--vials", "2", **QA)
    results = tmp_path / f"{number}.csv"
    results.write_text(RESULTS.replace("modal_particle_size,112,", f"modal_particle_size,{size},"))
    lotrack.ok("lot", "qc", number, "--file", str(results), **QA)
    if release:
        lotrack.ok("lot", "release", number, "--reason", "QC complete", **QA)


def drifting_site(lotrack, tmp_path) -> None:
    set_up_site(lotrack, tmp_path)
    for day, (number, size) in enumerate(SIZES.items(), start=11):
        add_lot(lotrack, tmp_path, number, day, size)
    lotrack.ok("lot", "receive", "EXO-08", "--at", "SITE/FRZ-A/R1/BOX-1", "--time",
               "2026-02-01T10:00", user="pharm.chen")
    enrol_and_operate(lotrack, "S-001")
    serial = json.loads(lotrack.ok("vial", "list", "--lot", "EXO-08", "--json"))[0]["serial"]
    lotrack.ok("dispense", "S-001", "--vial", serial, "--at", "2026-03-06T09:30",
               "--verified-by", "pharm.wang", "--no-label", user="pharm.chen")


def test_the_consistency_report_as_pdf_json_and_csv(lotrack, tmp_path):
    drifting_site(lotrack, tmp_path)
    monitor = {"user": "monitor.sun"}

    pdf = tmp_path / "consistency.pdf"
    out = lotrack.ok("report", "consistency", "IPSEXO", "--baseline", "4", "--out", str(pdf),
                     **monitor)
    assert "8 lot(s); 0 out-of-specification and 1 out-of-trend flag(s) in EXO-08." in out
    pages = [page.extract_text() for page in PdfReader(pdf).pages]
    text = "\n".join(pages)
    assert "Summary of flags" in pages[0] and "EXO-08" in pages[0]
    assert "Flagged lots that reached participants: EXO-08." in pages[0].replace("\n", " ")
    for expected in ("Modal particle size", "Particle concentration", "Osmolality", "CD63",
                     "Batch-to-Batch Consistency", "Page 1 of", "Content SHA-256",
                     "Lots and exposure", "6 points in a row increasing", "first 4 released lots"):
        assert expected in text, expected
    size_page = next(p for p in pages if p.startswith("Modal particle size"))
    assert "UCL 126" in size_page and "R3" in size_page and "EXO-08" in size_page

    content = json.loads(lotrack.ok("report", "consistency", "IPSEXO", "--baseline", "4",
                                    "--attribute", "modal_particle_size", "--json", **monitor))
    (flag,) = content["flags"]
    assert (flag["kind"], flag["lot"], flag["rule"], flag["participants_exposed"]) == (
        "OOT", "EXO-08", 3, 1)
    (size,) = content["numeric"]
    assert size["limits"]["ucl"] == pytest.approx(126.04787, abs=1e-5)
    assert size["limits"]["centre"] == pytest.approx(112.75)
    assert content["baseline"]["lots"] == ["EXO-01", "EXO-02", "EXO-03", "EXO-04"]

    lotrack.ok("report", "consistency", "IPSEXO", "--baseline", "4", "--out",
               str(tmp_path / "c.csv"), **monitor)
    with (tmp_path / "c-flags.csv").open() as handle:
        flags = list(csv.DictReader(handle))
    assert [(f["kind"], f["attribute"], f["lot"], f["rule"], f["participants_exposed"])
            for f in flags] == [("OOT", "modal_particle_size", "EXO-08", "3", "1")]
    with (tmp_path / "c.csv").open() as handle:
        points = [r for r in csv.DictReader(handle) if r["attribute"] == "modal_particle_size"]
    assert [float(p["value"]) for p in points] == [112, *SIZES.values()]
    assert [p["rules"] for p in points][-1] == "3"
    with (tmp_path / "c-statistics.csv").open() as handle:
        stats = {r["attribute"]: r for r in csv.DictReader(handle)}
    assert float(stats["modal_particle_size"]["mr_bar"]) == pytest.approx(5)
    assert stats["cd63"]["pass_rate_pct"] == "100.0"

    lotrack.ok("report", "consistency", "IPSEXO", "--baseline", "4", "--out",
               str(tmp_path / "c.json"), **monitor)
    assert json.loads((tmp_path / "c.json").read_text())["summary"]["oot"] == 1

    screen = lotrack.ok("report", "consistency", "IPSEXO", "--baseline", "4", **monitor)
    assert "modal_particle_size" in screen and "OOT" in screen and "EXO-08" in screen


def test_lot_compare_side_by_side(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    add_lot(lotrack, tmp_path, "EXO-02", 11, 127)
    out = lotrack.ok("lot", "compare", "EXO-01", "EXO-02", user="monitor.sun")
    line = next(x for x in out.splitlines() if x.startswith("modal_particle_size"))
    assert "112" in line and "127" in line and "+15" in line and "+10.00" in line
    data = json.loads(lotrack.ok("lot", "compare", "EXO-01", "EXO-02", "--json",
                                 user="monitor.sun"))
    size = next(a for a in data["attributes"] if a["attribute"] == "modal_particle_size")
    assert size["difference"] == pytest.approx(15) and size["pct_of_spec_range"] == pytest.approx(10)


def test_too_few_lots_still_gives_a_report_that_says_why(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    pdf = tmp_path / "one.pdf"
    outcome = lotrack("report", "consistency", "IPSEXO", "--out", str(pdf), user="monitor.sun")
    assert outcome.exit_code == 0, outcome.stderr
    assert "Warning: IPSEXO has 1 lot(s): batch-to-batch statistics need at least 2 lots" in (
        outcome.stderr)
    assert "Traceback" not in outcome.stderr + outcome.stdout
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "need at least 2 lots" in text.replace("\n", " ") and "n/c" in text


@pytest.mark.parametrize(("args", "message"), [
    (["report", "consistency", "IPSEXO", "--baseline", "5"],
     "--baseline 5 asks for more lots than the 2 released lot(s) shown"),
    (["report", "consistency", "IPSEXO", "--baseline", "1"], "at least 2 lots"),
    (["report", "consistency", "IPSEXO", "--baseline", "some"], "a number of lots or 'all'"),
    (["report", "consistency", "IPSEXO", "--out", "x.txt"], "must end in .pdf, .csv or .json"),
    (["report", "consistency", "NOPE"], "Error: no product 'NOPE'"),
    (["report", "consistency", "IPSEXO", "--attribute", "colour"], "unknown attribute(s) colour"),
    (["report", "consistency", "IPSEXO", "--since", "2026-13-01"], "is not a date"),
    (["lot", "compare", "EXO-01"], "give at least 2 lots to compare"),
    (["lot", "compare", "EXO-01", "EXO-01"], "given twice"),
    (["lot", "compare", "EXO-01", "NOPE"], "Error: no lot 'NOPE'"),
])
def test_bad_input_gives_one_clear_error_and_changes_nothing(lotrack, tmp_path, args, message):
    set_up_site(lotrack, tmp_path)
    add_lot(lotrack, tmp_path, "EXO-02", 11, 114)
    lotrack.refuses(*args, user="monitor.sun", message=message)


def test_the_baseline_setting_falls_back_when_there_are_fewer_lots(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    add_lot(lotrack, tmp_path, "EXO-02", 11, 114)
    outcome = lotrack("report", "consistency", "IPSEXO", "--json", user="monitor.sun",
                      LOTRACK_BASELINE_LOTS="6")
    assert outcome.exit_code == 0, outcome.stderr
    assert "Warning: the default baseline of the first 6 released lots was not available" in (
        outcome.stderr)
    assert json.loads(outcome.stdout)["baseline"]["description"] == "all 2 released lots"
