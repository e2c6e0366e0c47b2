"""The SDTM export streams on both databases: a trial read in batches far smaller than it
gives the same bytes as one read whole, with each participant's --SEQ numbers running on
across batch boundaries; an export that fails half way leaves the previous one as it was."""

import csv
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from trialkit import T0, Trial

from lotrack.render.sdtm import write_datasets, write_records
from lotrack.schemas.safety import AdverseEventIn
from lotrack.services import adverse_events
from lotrack.services.sdtm import DATASETS, sdtm_datasets, sdtm_records

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Upper and lower case: code point order (B before a) is not a natural-language collation's.
SUBJECTS = ("a-01", "B-02", "A-03", "b-04")


@pytest.fixture
def trial(database, make_user):
    trial = Trial.build(database, make_user)
    for number, subject in enumerate(SUBJECTS):
        surgery = T0 + timedelta(hours=number)
        trial.enroll_and_operate(subject, "PBO" if subject == "A-03" else "MID", surgery)
        if subject == "A-03":
            dose = trial.dispense(subject, [trial.vial("PLACEBO")], surgery + timedelta(hours=24))
            trial.administer(dose.dose_code, surgery + timedelta(hours=24, minutes=20))
            continue
        # Perfusion 1 from two lots; perfusion 2 returned once, then given.
        lot_a, lot_b = trial.lot(vials=3), trial.lot(vials=3)
        a, b = trial.serials(lot_a), trial.serials(lot_b)
        first = trial.dispense(subject, [b[0], a[0]], surgery + timedelta(hours=24))
        trial.administer(first.dose_code, surgery + timedelta(hours=24, minutes=30))
        returned = trial.dispense(subject, [a[1], b[1]], surgery + timedelta(hours=72))
        trial.close(returned.dose_code, "returned", "procedure postponed")
        second = trial.dispense(subject, [a[2], b[2]], surgery + timedelta(hours=73))
        trial.administer(second.dose_code, surgery + timedelta(hours=73, minutes=5))
    for subject, onset, term in (("b-04", 2, "Pelvic pain"), ("a-01", 3, "cramps"),
                                 ("b-04", 1, "Vaginal bleeding"), ("B-02", 1, "Fever")):
        data = AdverseEventIn(term=term, grade=1, onset=date(2026, 5, 4) + timedelta(days=onset),
                              action="Dose not changed")
        trial.act("inv.liu", lambda s, a, subject=subject, data=data:
                  adverse_events.record_adverse_event(s, a, subject, data, SHANGHAI))
    return trial


def read(trial, action):
    return trial.act("monitor.sun", action)


def file_bytes(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_an_export_read_in_small_batches_equals_one_read_whole(trial, tmp_path):
    whole = read(trial, lambda s, a: sdtm_datasets(s, a, SHANGHAI, batch_size=100_000))
    write_datasets(tmp_path / "whole", whole)
    expected = file_bytes(tmp_path / "whole")
    assert sorted(expected) == ["AE.csv", "DA.csv", "EX.csv", "SUPPDA.csv", "SUPPEX.csv"]
    for batch_size in (1, 2, 3, 5):
        folder = tmp_path / f"batch-{batch_size}"
        counts = read(trial, lambda s, a, out=folder, n=batch_size: write_records(
            out, DATASETS, sdtm_records(s, a, SHANGHAI, batch_size=n)))
        assert file_bytes(folder) == expected, batch_size
        assert counts == {d.name: len(d.rows) for d in whole}

    ex, da, ae = (read_csv(tmp_path / "whole" / f"{name}.csv") for name in ("EX", "DA", "AE"))
    # EX: 3 subjects x 2 doses given x 2 lots, and the placebo; DA: 3 x (6 vials dispensed
    # and 2 returned), and the placebo.
    assert (len(ex), len(da), len(ae)) == (13, 25, 4)
    study = ex[0]["STUDYID"]
    # EX and DA by subject in code point order; every subject's --SEQ runs 1, 2, ... n.
    for rows, seq in ((ex, "EXSEQ"), (da, "DASEQ"), (ae, "AESEQ")):
        subjects = [r["USUBJID"] for r in rows]
        assert subjects == sorted(subjects)
        for subject in SUBJECTS:
            numbers = [int(r[seq]) for r in rows if r["USUBJID"] == f"{study}-{subject}"]
            assert numbers == list(range(1, len(numbers) + 1))
    assert [r["AETERM"] for r in ae if r["USUBJID"].endswith("b-04")] == [
        "Vaginal bleeding", "Pelvic pain"]  # by onset
    # Each vial dispensed, then each returned vial once more, at its return.
    b04 = [(r["DATESTCD"], r["DAREFID"]) for r in da if r["USUBJID"].endswith("b-04")]
    assert [code for code, _ in b04] == ["DISPAMT"] * 6 + ["RETAMT"] * 2
    assert b04[0][1] < b04[1][1]  # a dose's vials by serial
    # Every SUPP record points at a record of its domain.
    for supp, rows, seq in (("SUPPEX", ex, "EXSEQ"), ("SUPPDA", da, "DASEQ")):
        keys = {(r["USUBJID"], r[seq]) for r in rows}
        assert {(r["USUBJID"], r["IDVARVAL"]) for r in
                read_csv(tmp_path / "whole" / f"{supp}.csv")} == keys


def test_an_export_that_fails_half_way_leaves_the_previous_one(trial, tmp_path):
    folder = tmp_path / "sdtm"
    read(trial, lambda s, a: write_records(folder, DATASETS, sdtm_records(s, a, SHANGHAI)))
    before = file_bytes(folder)

    def failing(session, actor):
        records = sdtm_records(session, actor, SHANGHAI, batch_size=2)
        for number, record in enumerate(records):
            if number == 7:
                raise RuntimeError("connection lost")
            yield record

    with pytest.raises(RuntimeError, match="connection lost"):
        read(trial, lambda s, a: write_records(folder, DATASETS, failing(s, a)))
    assert file_bytes(folder) == before  # no partial file left, none replaced
