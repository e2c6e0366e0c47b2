"""`lotrack participant show`: one participant, with doses, vials and lots, as text and JSON."""

import json
from datetime import timedelta

import pytest
from trialkit import T0, Trial


@pytest.fixture
def trial(lotrack, database, make_user):
    return Trial.build(database, make_user)


def test_a_participant_with_a_dispensed_dose_shows_dose_vial_and_lot(lotrack, trial):
    trial.enroll_and_operate("S-001", "LOW", T0)
    serial = trial.vial("IPSEXO")
    dose = trial.dispense("S-001", [serial], T0 + timedelta(hours=24, minutes=30))
    lot = json.loads(lotrack.ok("vial", "show", serial, "--json"))["lot"]

    text = lotrack.ok("participant", "show", "S-001", user="monitor.sun")
    assert dose.dose_code in text and serial in text and lot in text
    assert "LOW" in text and "enrolment: eligibility confirmed" in text
    assert "2026-05-04 09:00 UTC" in text  # the surgery, in the site time zone

    data = json.loads(lotrack.ok("participant", "show", "S-001", "--json", user="monitor.sun"))
    assert (data["subject"], data["group"], data["status"]) == ("S-001", "LOW", "enrolled")
    assert data["enrolment_signature"]["username"] == "inv.liu"
    assert [s["iua_score"] for s in data["surgeries"]] == [16]
    [cycle] = data["cycles"]
    [shown] = cycle["doses"]
    assert (shown["dose"], shown["perfusion"], shown["status"], shown["vials"], shown["lots"]) \
        == (dose.dose_code, 1, "dispensed", [serial], [lot])
    assert shown["hours_since_surgery"] == 24.5


def test_an_unknown_subject_gives_one_error_line(lotrack, trial):
    outcome = lotrack.refuses("participant", "show", "S-404", user="monitor.sun", message="S-404")
    assert len(outcome.stderr.strip().splitlines()) == 1


def test_participant_list_shows_each_participant_with_its_cycles(lotrack, trial):
    trial.enroll_and_operate("S-002", "MID", T0)
    trial.enroll_and_operate("S-001", "LOW", T0)
    rows = json.loads(lotrack.ok("participant", "list", "--json", user="monitor.sun"))
    assert [(r["subject"], r["group"], r["status"], r["cycles"]) for r in rows] == [
        ("S-001", "LOW", "enrolled", 1), ("S-002", "MID", "enrolled", 1)]
    text = lotrack.ok("participant", "list", user="monitor.sun")
    assert text.index("S-001") < text.index("S-002")
