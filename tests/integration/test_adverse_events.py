"""Adverse events on both databases: recording with CTCAE coding, every refusal, corrections
kept in the audit trail; the lot safety summary on a scenario whose answer is known; the
SDTM export read back field by field."""

import csv
import json
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from trialkit import T0, Trial

from lotrack import audit, db
from lotrack.errors import InvalidInput, NotFound, PermissionDenied, RuleViolation
from lotrack.models import AdverseEvent, AuditEvent
from lotrack.render.sdtm import write_datasets
from lotrack.schemas.safety import AdverseEventChange, AdverseEventIn
from lotrack.services import adverse_events
from lotrack.services.safety_report import lot_safety_summary
from lotrack.services.sdtm import sdtm_datasets

UTC_TZ = ZoneInfo("UTC")
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY1 = date(2026, 5, 5)  # the day after the surgeries at T0 (2026-05-04 09:00 UTC)


@pytest.fixture
def trial(database, make_user):
    return Trial.build(database, make_user)


def record(trial, subject, as_user="inv.liu", tz=UTC_TZ, **fields):
    data = AdverseEventIn(**({"term": "Pelvic pain", "grade": 1, "onset": DAY1} | fields))
    return trial.act(as_user, lambda s, a: adverse_events.record_adverse_event(
        s, a, subject, data, tz))


def update(trial, code, as_user="inv.liu", **fields):
    change = AdverseEventChange(**({"reason": "correction"} | fields))
    return trial.act(as_user, lambda s, a: adverse_events.update_adverse_event(
        s, a, code, change, UTC_TZ))


def read(trial, action):
    return trial.act("monitor.sun", action)


def ae_events(trial, code):
    with db.unit_of_work(trial.database.engine) as session:
        return list(session.execute(select(
            AuditEvent.action, AuditEvent.username, AuditEvent.reason, AuditEvent.before,
            AuditEvent.after).where(AuditEvent.entity == "ae", AuditEvent.entity_id == code)
            .order_by(AuditEvent.seq)).all())


def nothing_written(trial, head_before):
    with db.unit_of_work(trial.database.engine) as session:
        assert audit.head(session) == head_before
        assert session.execute(select(func.count(AdverseEvent.id))).scalar_one() == 0


def chain_head(trial):
    with db.unit_of_work(trial.database.engine) as session:
        return audit.head(session)


# --- recording ---------------------------------------------------------------------------

def test_a_ctcae_term_is_coded_with_its_system_organ_class_and_audited(trial):
    trial.enroll("S-001", "LOW")
    ae = record(trial, "S-001", term="  Pelvic   pain ", grade=2, relatedness="probable",
                resolved=DAY1 + timedelta(days=2), action="dose not changed")
    assert ae.ae_code == "AE00001"
    assert (ae.verbatim_term, ae.ctcae_term, ae.system_organ_class, ae.needs_coding) == (
        "Pelvic pain", "Pelvic pain", "Reproductive system and breast disorders", False)
    assert (ae.grade, ae.serious, ae.relatedness, ae.outcome) == (2, False, "probable",
                                                                  "recovered")
    [event] = ae_events(trial, "AE00001")
    assert (event.action, event.username, event.before) == ("record", "inv.liu", None)
    assert json.loads(event.after)["grade"] == 2
    with db.unit_of_work(trial.database.engine) as session:
        assert audit.verify(session).ok


def test_an_alias_is_coded_to_its_ctcae_term_and_the_verbatim_term_is_kept(trial):
    trial.enroll("S-001", "LOW")
    ae = record(trial, "S-001", term="vaginal bleeding")
    assert (ae.verbatim_term, ae.ctcae_term, ae.needs_coding) == (
        "vaginal bleeding", "Vaginal hemorrhage", False)
    assert ae.outcome == "not_recovered" and ae.relatedness == "possible"


def test_an_unknown_term_is_kept_verbatim_and_flagged_for_coding(trial):
    trial.enroll("S-001", "LOW")
    ae = record(trial, "S-001", term="cramps after the perfusion", grade=2)
    assert (ae.verbatim_term, ae.ctcae_term, ae.system_organ_class, ae.needs_coding) == (
        "cramps after the perfusion", None, None, True)
    rows = read(trial, lambda s, a: adverse_events.list_adverse_events(s, a, UTC_TZ))
    assert [(r["ae"], r["needs_coding"]) for r in rows] == [("AE00001", True)]


def test_grade_5_means_fatal_and_serious(trial):
    trial.enroll("S-001", "LOW")
    ae = record(trial, "S-001", term="Sepsis", grade=5, relatedness="unrelated")
    assert (ae.outcome, ae.serious) == ("fatal", True)


@pytest.mark.parametrize(("fields", "error", "message"), [
    ({"term": "Endometrial infection", "grade": 1}, InvalidInput,
     "CTCAE v5.0 has no grade 1 for 'Endometrial infection': its grades are 2, 3, 4, 5"),
    ({"term": "Anaphylaxis", "grade": 2}, InvalidInput, "no grade 2 for 'Anaphylaxis'"),
    ({"onset": date(2026, 2, 28)}, RuleViolation,
     "onset 2026-02-28 precedes S-001's consent on 2026-03-01"),
    ({"resolved": DAY1 - timedelta(days=1)}, InvalidInput,
     "resolution on 2026-05-04 precedes onset on 2026-05-05"),
    ({"onset": date(2099, 1, 1)}, InvalidInput, "onset 2099-01-01 is in the future"),
    ({"resolved": date(2099, 1, 1)}, InvalidInput, "resolution date 2099-01-01 is in the future"),
    ({"grade": 5, "term": "Fever", "outcome": "recovered", "resolved": DAY1}, InvalidInput,
     "grade 5 is death related to the event: the outcome must be fatal"),
    ({"grade": 3, "term": "Fever", "outcome": "fatal"}, InvalidInput,
     "an outcome fatal is CTCAE grade 5, not grade 3"),
    ({"outcome": "recovered"}, InvalidInput, "outcome recovered needs the resolution date"),
    ({"outcome": "recovering", "resolved": DAY1}, InvalidInput,
     "an event with outcome recovering has no resolution date"),
])
def test_inconsistent_events_are_refused_and_nothing_is_written(trial, fields, error, message):
    trial.enroll("S-001", "LOW")
    head = chain_head(trial)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        record(trial, "S-001", **fields)
    nothing_written(trial, head)


def test_an_unknown_subject_is_refused(trial):
    head = chain_head(trial)
    with pytest.raises(NotFound, match="no participant 'S-404'"):
        record(trial, "S-404")
    nothing_written(trial, head)


@pytest.mark.parametrize("username", ["monitor.sun", "pharm.chen", "qa.lee"])
def test_only_investigators_record(trial, username):
    trial.enroll("S-001", "LOW")
    head = chain_head(trial)
    with pytest.raises(PermissionDenied, match="recording an adverse event needs the "
                                               "investigator role"):
        record(trial, "S-001", as_user=username)
    nothing_written(trial, head)


def test_the_onset_day_is_the_site_calendar_day(trial):
    """At 2026-05-04 20:00 UTC it is already 04:00 on the 5th in Shanghai, not yet in UTC."""
    from freezegun import freeze_time

    trial.enroll("S-001", "LOW")
    with freeze_time("2026-05-04 20:00:00"):
        with pytest.raises(InvalidInput, match="in the future"):
            record(trial, "S-001", onset=DAY1, tz=UTC_TZ)
        assert record(trial, "S-001", onset=DAY1, tz=SHANGHAI).onset_on == DAY1


def test_input_is_validated_at_the_boundary():
    with pytest.raises(ValidationError, match="grade"):
        AdverseEventIn(term="Fever", grade=6, onset=DAY1)
    with pytest.raises(ValidationError, match="relatedness"):
        AdverseEventIn(term="Fever", grade=1, onset=DAY1, relatedness="maybe")
    with pytest.raises(ValidationError, match="reason"):
        AdverseEventChange(reason="   ", grade=2)
    assert AdverseEventIn(term="Fever", grade=1, onset=DAY1, outcome="Not recovered").outcome \
        == "not_recovered"


# --- corrections ---------------------------------------------------------------------------

def test_a_correction_keeps_old_and_new_values_and_the_reason_in_the_audit_trail(trial):
    trial.enroll("S-001", "LOW")
    record(trial, "S-001", term="Uterine pain", grade=1)
    ae = update(trial, "AE00001", grade=2, relatedness="probable",
                reason="re-graded: oral analgesic needed")
    assert (ae.grade, ae.relatedness) == (2, "probable")
    recorded, corrected = ae_events(trial, "AE00001")
    assert (corrected.action, corrected.reason, corrected.username) == (
        "correct", "re-graded: oral analgesic needed", "inv.liu")
    before, after = json.loads(corrected.before), json.loads(corrected.after)
    assert (before["grade"], after["grade"]) == (1, 2)
    assert (before["relatedness"], after["relatedness"]) == ("possible", "probable")
    assert json.loads(recorded.after) == before
    detail = read(trial, lambda s, a: adverse_events.adverse_event_detail(s, a, "ae00001",
                                                                          UTC_TZ))
    assert detail["history"][1]["changes"] == {"grade": {"old": 1, "new": 2},
                                               "relatedness": {"old": "possible",
                                                               "new": "probable"}}
    assert detail["history"][1]["reason"] == "re-graded: oral analgesic needed"
    with db.unit_of_work(trial.database.engine) as session:
        assert audit.verify(session).ok


def test_a_resolution_date_given_alone_marks_the_event_recovered_and_can_be_withdrawn(trial):
    trial.enroll("S-001", "LOW")
    record(trial, "S-001")
    assert update(trial, "AE00001", resolved=DAY1 + timedelta(days=1)).outcome == "recovered"
    ae = update(trial, "AE00001", resolved=None)
    assert (ae.outcome, ae.resolved_on) == ("not_recovered", None)


def test_a_new_term_is_coded_again(trial):
    trial.enroll("S-001", "LOW")
    record(trial, "S-001", term="tummy ache", grade=2)
    ae = update(trial, "AE00001", term="Abdominal pain", reason="coded by the medical coder")
    assert (ae.ctcae_term, ae.system_organ_class, ae.needs_coding, ae.verbatim_term) == (
        "Abdominal pain", "Gastrointestinal disorders", False, "Abdominal pain")


def test_raising_the_grade_to_5_makes_the_event_fatal_and_serious(trial):
    trial.enroll("S-001", "LOW")
    record(trial, "S-001", term="Fever", grade=3)
    ae = update(trial, "AE00001", grade=5, reason="participant died")
    assert (ae.outcome, ae.serious) == ("fatal", True)
    with pytest.raises(InvalidInput, match="had outcome fatal: give the new --outcome"):
        update(trial, "AE00001", grade=4)


@pytest.mark.parametrize(("code", "fields", "error", "message"), [
    ("AE00001", {}, InvalidInput, "give at least one field to change"),
    ("AE00001", {"grade": 1}, RuleViolation, "AE00001 already has these values"),
    ("AE00001", {"term": "Endometrial infection"}, InvalidInput, "no grade 1"),
    ("AE00001", {"onset": date(2026, 1, 1)}, RuleViolation, "precedes S-001's consent"),
    ("AE00001", {"resolved": date(2026, 5, 1)}, InvalidInput, "precedes onset"),
    ("AE00009", {"grade": 2}, NotFound, "no adverse event 'AE00009'"),
    ("X-1", {"grade": 2}, InvalidInput, "is not an adverse event code"),
])
def test_refused_corrections_change_nothing(trial, code, fields, error, message):
    trial.enroll("S-001", "LOW")
    record(trial, "S-001")
    head = chain_head(trial)
    with pytest.raises(error, match=message):
        update(trial, code, **fields)
    assert chain_head(trial) == head
    assert len(ae_events(trial, "AE00001")) == 1


def test_a_monitor_cannot_correct(trial):
    trial.enroll("S-001", "LOW")
    record(trial, "S-001")
    with pytest.raises(PermissionDenied, match="correcting an adverse event needs the "
                                               "investigator role"):
        update(trial, "AE00001", as_user="monitor.sun", grade=2)


# --- reading -------------------------------------------------------------------------------

def test_lists_filter_by_subject_lot_and_grade_and_pharmacists_cannot_read(trial):
    trial.enroll_and_operate("S-001", "LOW", T0)
    trial.enroll_and_operate("S-002", "LOW", T0)
    lot_a = trial.lot("IPSEXO", vials=4)
    dose = trial.dispense("S-001", [trial.serials(lot_a)[0]], T0 + timedelta(hours=24))
    trial.administer(dose.dose_code, T0 + timedelta(hours=24, minutes=30))
    record(trial, "S-001", onset=date(2026, 5, 4), term="Abdominal pain", grade=2)  # pre-dose
    record(trial, "S-001", onset=DAY1, grade=1)
    record(trial, "S-002", onset=DAY1, term="Headache", grade=3, relatedness="unrelated")

    def codes(**filters):
        rows = read(trial, lambda s, a: adverse_events.list_adverse_events(s, a, UTC_TZ,
                                                                           **filters))
        return [r["ae"] for r in rows]

    assert codes() == ["AE00001", "AE00002", "AE00003"]
    assert codes(subject_id="S-001") == ["AE00001", "AE00002"]
    assert codes(lot_number=lot_a) == ["AE00002"]  # on or after her first dose of the lot
    assert codes(grade_min=2) == ["AE00001", "AE00003"]
    assert codes(lot_number=lot_a, grade_min=2) == []
    rows = read(trial, lambda s, a: adverse_events.list_adverse_events(s, a, UTC_TZ))
    assert [r["lots_before_onset"] for r in rows] == [[], [lot_a], []]
    assert trial.act("qa.lee", lambda s, a: adverse_events.list_adverse_events(s, a, UTC_TZ))
    with pytest.raises(PermissionDenied, match="reading adverse events"):
        trial.act("pharm.chen", lambda s, a: adverse_events.list_adverse_events(s, a, UTC_TZ))
    with pytest.raises(NotFound, match="no participant"):
        read(trial, lambda s, a: adverse_events.list_adverse_events(s, a, UTC_TZ, "S-404"))


def test_lots_before_onset_count_from_each_lots_first_site_local_day(trial):
    trial.enroll_and_operate("S-001", "LOW", T0)
    lot_a, lot_b = trial.lot("IPSEXO", vials=2), trial.lot("IPSEXO", vials=2)
    for hours, lot in ((24, lot_a), (72, lot_b)):  # 2026-05-05 and 05-07, 09:00 UTC
        dose = trial.dispense("S-001", [trial.serials(lot)[0]], T0 + timedelta(hours=hours))
        trial.administer(dose.dose_code, T0 + timedelta(hours=hours, minutes=20))
    for onset in (date(2026, 5, 4), date(2026, 5, 6), date(2026, 5, 8)):
        record(trial, "S-001", onset=onset, grade=1)

    def listed(tz, **filters):
        rows = read(trial, lambda s, a: adverse_events.list_adverse_events(s, a, tz, **filters))
        return [(r["ae"], r["lots_before_onset"]) for r in rows]

    assert listed(UTC_TZ) == [("AE00001", []), ("AE00002", [lot_a]),
                              ("AE00003", sorted([lot_a, lot_b]))]
    assert listed(UTC_TZ, lot_number=lot_b) == [("AE00003", sorted([lot_a, lot_b]))]
    # 09:20 UTC on 2026-05-05 is 23:20 on 05-04 in Honolulu: a site there counts lot A
    # as received on the day of the first event.
    honolulu = ZoneInfo("Pacific/Honolulu")
    assert listed(honolulu)[0] == ("AE00001", [lot_a])
    assert listed(honolulu, lot_number=lot_a)[0] == ("AE00001", [lot_a])
    detail = read(trial, lambda s, a: adverse_events.adverse_event_detail(s, a, "AE00002",
                                                                          UTC_TZ))
    assert detail["lots_before_onset"] == [lot_a]


# --- the lot safety summary --------------------------------------------------------------

def give(trial, subject, serials, hours, administer=True):
    dose = trial.dispense(subject, serials, T0 + timedelta(hours=hours))
    if administer:
        trial.administer(dose.dose_code, T0 + timedelta(hours=hours, minutes=20))
    return dose


def test_the_safety_summary_counts_a_scenario_known_in_advance(trial):
    """Lots A, B, C (active) and P (placebo); surgeries at T0 (4 May), perfusion 1 on 5 May,
    perfusion 2 on 7 May.

    S-01: A on 5 May, B on 7 May; pelvic pain G1 possible (5 May) and uterine infection
          G3 probable SAE (6 May): both count for A only (B came later).
    S-02: A on 5 May; abdominal pain G2 on 4 May (before any dose: counts nowhere),
          fever G1 unlikely on 6 May (A).
    S-03: a dose of A wasted (no exposure), then B on 5 May; headache G1 unrelated (B).
    S-04, S-05: placebo P; S-04 pelvic pain G1 possible -> placebo 1 of 2 (50%).
    S-06: C dispensed, not yet given (exposure all the same); nausea G2 unlikely.
    """
    lot_a, lot_b, lot_c = (trial.lot("IPSEXO", vials=4) for _ in range(3))
    lot_p = trial.lot("PLACEBO", vials=4)
    a, b, c, p = (trial.serials(n) for n in (lot_a, lot_b, lot_c, lot_p))
    for subject, group in (("S-01", "LOW"), ("S-02", "LOW"), ("S-03", "LOW"), ("S-04", "PBO"),
                           ("S-05", "PBO"), ("S-06", "LOW")):
        trial.enroll_and_operate(subject, group, T0)
    give(trial, "S-01", [a[0]], 24)
    give(trial, "S-01", [b[0]], 72)
    give(trial, "S-02", [a[1]], 24)
    wasted = give(trial, "S-03", [a[2]], 24, administer=False)
    trial.close(wasted.dose_code, "wasted", "dropped")
    give(trial, "S-03", [b[1]], 27)
    give(trial, "S-04", [p[0]], 24)
    give(trial, "S-05", [p[1]], 24)
    give(trial, "S-06", [c[0]], 24, administer=False)
    record(trial, "S-01", onset=DAY1, term="Pelvic pain", relatedness="possible")
    infection = record(trial, "S-01", onset=date(2026, 5, 6), term="Uterine infection",
                       grade=3, relatedness="probable", serious=True)
    record(trial, "S-02", onset=date(2026, 5, 4), term="Abdominal pain", grade=2)
    record(trial, "S-02", onset=date(2026, 5, 6), term="Fever", relatedness="unlikely")
    record(trial, "S-03", onset=DAY1, term="Headache", relatedness="unrelated")
    record(trial, "S-04", onset=date(2026, 5, 6), term="Pelvic pain", relatedness="possible")
    record(trial, "S-06", onset=DAY1, term="Nausea", grade=2, relatedness="unlikely")

    summary = read(trial, lambda s, a: lot_safety_summary(s, a, UTC_TZ))
    lots = {row["lot"]: row for row in summary["lots"]}
    assert list(lots) == [lot_a, lot_b, lot_c, lot_p]

    def shape(row):
        return (row["exposed"], row["doses"], row["aes"], row["saes"],
                row["participants_with_ae"], row["incidence"])

    assert shape(lots[lot_a]) == (2, 2, 3, 1, 2, 1.0)
    assert shape(lots[lot_b]) == (2, 2, 1, 0, 1, 0.5)
    assert shape(lots[lot_c]) == (1, 1, 1, 0, 1, 1.0)
    assert shape(lots[lot_p]) == (2, 2, 1, 0, 1, 0.5)
    assert lots[lot_a]["participants_by_worst_grade"] == {"1": 1, "2": 0, "3": 1, "4": 0,
                                                          "5": 0}
    assert lots[lot_a]["aes_by_grade"] == {"1": 2, "2": 0, "3": 1, "4": 0, "5": 0}
    assert lots[lot_a]["aes_by_relatedness"] == {"unrelated": 0, "unlikely": 1, "possible": 1,
                                                 "probable": 1, "definite": 0}
    assert lots[lot_a]["related_aes"] == 2
    assert lots[lot_b]["aes_by_relatedness"]["unrelated"] == 1
    assert lots[lot_b]["participants_by_worst_grade"]["1"] == 1
    placebo = summary["placebo"]
    assert (placebo["lots"], placebo["exposed"], placebo["participants_with_ae"],
            summary["placebo_reference"]) == ([lot_p], 2, 1, 0.5)

    assert lots[lot_a]["flags"] == [
        "100% of exposed participants had an adverse event vs 50% on placebo (margin 20 points)",
        f"related grade >= 3: {infection.ae_code}", f"related SAE: {infection.ae_code}"]
    assert lots[lot_b]["flags"] == []  # 50% against 50% on placebo, nothing related
    assert lots[lot_c]["flags"] == [
        "100% of exposed participants had an adverse event vs 50% on placebo (margin 20 points)"]
    assert lots[lot_p]["flags"] == []
    assert summary["flagged"] == [lot_a, lot_c]


def test_without_placebo_exposure_the_reference_is_zero(trial):
    lot_a = trial.lot("IPSEXO", vials=4)
    trial.enroll_and_operate("S-01", "LOW", T0)
    give(trial, "S-01", [trial.serials(lot_a)[0]], 24)
    summary = read(trial, lambda s, a: lot_safety_summary(s, a, UTC_TZ))
    assert summary["placebo"]["exposed"] == 0 and summary["placebo_reference"] is None
    assert summary["lots"][0]["flags"] == [] and summary["lots"][0]["incidence"] == 0.0
    record(trial, "S-01", onset=DAY1)
    summary = read(trial, lambda s, a: lot_safety_summary(s, a, UTC_TZ))
    assert summary["flagged"] == [lot_a]
    with pytest.raises(PermissionDenied):
        trial.act("pharm.chen", lambda s, a: lot_safety_summary(s, a, UTC_TZ))


# --- SDTM ----------------------------------------------------------------------------------

def read_csv(path):
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_the_sdtm_export_reads_back_field_by_field(trial, tmp_path):
    """Site time Asia/Shanghai (UTC+8): T0 09:00 UTC is 17:00 local."""
    lot_a, lot_b = trial.lot("IPSEXO", vials=4), trial.lot("IPSEXO", vials=4)
    lot_p = trial.lot("PLACEBO", vials=2)
    a, b, p = trial.serials(lot_a), trial.serials(lot_b), trial.serials(lot_p)
    trial.enroll_and_operate("S-001", "MID", T0)  # two vials per perfusion
    trial.enroll_and_operate("S-002", "PBO", T0)
    first = trial.dispense("S-001", [a[0], b[0]], T0 + timedelta(hours=24, minutes=30))
    trial.administer(first.dose_code, T0 + timedelta(hours=24, minutes=45))
    returned = trial.dispense("S-001", [a[1], a[2]], T0 + timedelta(hours=72))
    trial.close(returned.dose_code, "returned", "procedure postponed")
    second = trial.dispense("S-001", [a[3], b[1]], T0 + timedelta(hours=73),
                            deviation=None)
    trial.administer(second.dose_code, T0 + timedelta(hours=73, minutes=10))
    placebo = trial.dispense("S-002", [p[0]], T0 + timedelta(hours=23))
    trial.administer(placebo.dose_code, T0 + timedelta(hours=23, minutes=5))
    record(trial, "S-001", tz=SHANGHAI, term="Vaginal bleeding", grade=2, relatedness="probable",
           onset=DAY1, resolved=DAY1 + timedelta(days=1), action="Dose not changed; observation")
    record(trial, "S-002", tz=SHANGHAI, term="cramps", grade=1, relatedness="unrelated",
           onset=DAY1, serious=True, action="hospital observation")

    datasets = read(trial, lambda s, a_: sdtm_datasets(s, a_, SHANGHAI))
    written = write_datasets(tmp_path / "sdtm", datasets)
    assert sorted(p.name for p in written) == ["AE.csv", "DA.csv", "EX.csv", "SUPPDA.csv",
                                               "SUPPEX.csv"]
    study = "IPSEXO-IUA-01"

    columns, ex = read_csv(tmp_path / "sdtm" / "EX.csv")
    assert columns[:4] == ["STUDYID", "DOMAIN", "USUBJID", "EXSEQ"]
    # S-001: the first dose came from two lots (two records, the 1.0 mL split by vial);
    # the returned dose is no exposure; the second dose again from two lots.
    assert [(r["USUBJID"], r["EXSEQ"], r["EXREFID"], r["EXLOT"], r["EXDOSE"]) for r in ex] == [
        (f"{study}-S-001", "1", first.dose_code, lot_a, "0.5"),
        (f"{study}-S-001", "2", first.dose_code, lot_b, "0.5"),
        (f"{study}-S-001", "3", second.dose_code, lot_a, "0.5"),
        (f"{study}-S-001", "4", second.dose_code, lot_b, "0.5"),
        (f"{study}-S-002", "1", placebo.dose_code, lot_p, "1"),
    ]
    row = ex[0]
    assert {k: row[k] for k in ("STUDYID", "DOMAIN", "EXTRT", "EXDOSU", "EXDOSFRM", "EXROUTE",
                                "VISITNUM", "VISIT", "EPOCH", "EXSTDTC", "EXENDTC", "EXTPT",
                                "EXTPTNUM", "EXELTM", "EXTPTREF", "EXRFTDTC")} == {
        "STUDYID": study, "DOMAIN": "EX", "EXTRT": "iPS-Exo intrauterine suspension",
        "EXDOSU": "mL", "EXDOSFRM": "SUSPENSION", "EXROUTE": "INTRAUTERINE",
        "VISITNUM": "11", "VISIT": "CYCLE 1 PERFUSION 1", "EPOCH": "TREATMENT",
        "EXSTDTC": "2026-05-05T17:45", "EXENDTC": "2026-05-05T17:45", "EXTPT": "PERFUSION 1",
        "EXTPTNUM": "1", "EXELTM": "PT24H", "EXTPTREF": "SURGERY",
        "EXRFTDTC": "2026-05-04T17:00"}
    assert (ex[2]["VISIT"], ex[2]["EXELTM"], ex[2]["EXSTDTC"]) == (
        "CYCLE 1 PERFUSION 2", "PT72H", "2026-05-07T18:10")
    assert (ex[4]["EXTRT"], ex[4]["EXSTDTC"]) == ("PLACEBO", "2026-05-05T16:05")

    _, suppex = read_csv(tmp_path / "sdtm" / "SUPPEX.csv")
    supp = {(r["USUBJID"][-5:], r["IDVARVAL"], r["QNAM"]): r["QVAL"] for r in suppex}
    assert supp[("S-001", "1", "EXAELTM")] == "PT24H45M"
    assert supp[("S-001", "1", "EXVIALS")] == a[0]
    assert supp[("S-001", "2", "EXVIALS")] == b[0]
    assert supp[("S-001", "3", "EXAELTM")] == "PT73H10M"
    assert supp[("S-002", "1", "EXAELTM")] == "PT23H5M"
    assert {r["RDOMAIN"] for r in suppex} == {"EX"} and {r["IDVAR"] for r in suppex} == {"EXSEQ"}

    _, ae = read_csv(tmp_path / "sdtm" / "AE.csv")
    assert [{k: r[k] for k in ("USUBJID", "AESEQ", "AESPID", "AETERM", "AEDECOD", "AEBODSYS",
                               "AETOXGR", "AESER", "AEREL", "AEACN", "AEACNOTH", "AEOUT",
                               "AESTDTC", "AEENDTC")} for r in ae] == [
        {"USUBJID": f"{study}-S-001", "AESEQ": "1", "AESPID": "AE00001",
         "AETERM": "Vaginal bleeding", "AEDECOD": "Vaginal hemorrhage",
         "AEBODSYS": "Reproductive system and breast disorders", "AETOXGR": "2", "AESER": "N",
         "AEREL": "PROBABLY RELATED", "AEACN": "DOSE NOT CHANGED", "AEACNOTH": "observation",
         "AEOUT": "RECOVERED/RESOLVED", "AESTDTC": "2026-05-05", "AEENDTC": "2026-05-06"},
        {"USUBJID": f"{study}-S-002", "AESEQ": "1", "AESPID": "AE00002", "AETERM": "cramps",
         "AEDECOD": "", "AEBODSYS": "", "AETOXGR": "1", "AESER": "Y", "AEREL": "NOT RELATED",
         "AEACN": "", "AEACNOTH": "hospital observation", "AEOUT": "NOT RECOVERED/NOT RESOLVED",
         "AESTDTC": "2026-05-05", "AEENDTC": ""},
    ]
    assert {(r["STUDYID"], r["DOMAIN"]) for r in ae} == {(study, "AE")}

    _, da = read_csv(tmp_path / "sdtm" / "DA.csv")
    s1 = [(r["DASEQ"], r["DAREFID"], r["DASPID"], r["DATESTCD"], r["DADTC"]) for r in da
          if r["USUBJID"] == f"{study}-S-001"]
    assert s1 == [
        ("1", a[0], first.dose_code, "DISPAMT", "2026-05-05T17:30"),
        ("2", b[0], first.dose_code, "DISPAMT", "2026-05-05T17:30"),
        ("3", a[1], returned.dose_code, "DISPAMT", "2026-05-07T17:00"),
        ("4", a[2], returned.dose_code, "DISPAMT", "2026-05-07T17:00"),
        ("5", a[3], second.dose_code, "DISPAMT", "2026-05-07T18:00"),
        ("6", b[1], second.dose_code, "DISPAMT", "2026-05-07T18:00"),
        ("7", a[1], returned.dose_code, "RETAMT", s1[6][4]),
        ("8", a[2], returned.dose_code, "RETAMT", s1[7][4]),
    ]
    assert s1[6][4] >= "2026-05-07T17:00"  # returned when recorded (closing time is "now")
    assert {(r["DATEST"], r["DAORRES"], r["DAORRESU"], r["DASTRESN"]) for r in da} == {
        ("Dispensed Amount", "1", "VIAL", "1"), ("Returned Amount", "1", "VIAL", "1")}
    assert {r["DACAT"] for r in da} == {"iPS-Exo intrauterine suspension", "PLACEBO"}
    _, suppda = read_csv(tmp_path / "sdtm" / "SUPPDA.csv")
    lots_by_seq = {(r["USUBJID"][-5:], r["IDVARVAL"]): r["QVAL"] for r in suppda
                   if r["QNAM"] == "DALOT"}
    assert [lots_by_seq[("S-001", seq)] for seq, *_ in s1] == [
        lot_a, lot_b, lot_a, lot_a, lot_a, lot_b, lot_a, lot_a]
    assert lots_by_seq[("S-002", "1")] == lot_p
    with pytest.raises(PermissionDenied):
        trial.act("pharm.chen", lambda s, a_: sdtm_datasets(s, a_, SHANGHAI))


def test_an_empty_trial_exports_headers_only(trial, tmp_path):
    datasets = read(trial, lambda s, a: sdtm_datasets(s, a, UTC_TZ))
    write_datasets(tmp_path, datasets)
    columns, rows = read_csv(tmp_path / "AE.csv")
    assert rows == [] and "AETOXGR" in columns
