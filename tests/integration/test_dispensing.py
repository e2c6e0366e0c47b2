"""Dispensing rules, each both ways, on both databases: a dose never reaches a participant
from a lot that is not released, expired, on hold, recalled, or of the wrong product."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from trialkit import PASSWORD, T0, Trial

from lotrack import audit, db
from lotrack.errors import InvalidInput, NotFound, PermissionDenied, RuleViolation
from lotrack.services import dosing, lots, stock, storage
from lotrack.services.schedule import participant_schedule

UTC_TZ = ZoneInfo("UTC")


@pytest.fixture
def trial(database, make_user):
    return Trial.build(database, make_user)


def test_a_dose_in_its_window_is_dispensed_verified_signed_and_audited(trial):
    trial.enroll_and_operate("S-001", "LOW", T0)
    serial = trial.vial("IPSEXO")
    dose = trial.dispense("S-001", [serial], T0 + timedelta(hours=24, minutes=30))
    assert (dose.perfusion, dose.hours_since_surgery, dose.post_op_day) == (1, 24.5, 1)
    assert dose.in_window and dose.deviation is None
    assert dose.use_by == dose.dispensed_at + timedelta(hours=2)
    with db.unit_of_work(trial.database.engine) as session:
        assert audit.verify(session).ok
        meanings = trial.signature_meanings(session, "dose", dose.dose_code)
        assert meanings == {("dispensed", "Pharm Chen"),
                            ("second-person verification", "Pharm Wang")}
        assert trial.vial_status(session, serial) == "dispensed"


@pytest.mark.parametrize(("after", "in_window"), [
    (timedelta(hours=18), True), (timedelta(hours=18, seconds=-1), False),
    (timedelta(hours=30), True), (timedelta(hours=30, seconds=1), False)])
def test_the_window_holds_at_its_exact_edges_to_the_second(trial, after, in_window):
    trial.enroll_and_operate("S-002", "LOW", T0)
    at = T0 + after
    if in_window:
        with pytest.raises(InvalidInput, match=r"inside its window .* no deviation to record"):
            trial.dispense("S-002", [trial.vial("IPSEXO")], at, deviation="theatre delay")
        assert trial.dispense("S-002", [trial.vial("IPSEXO")], at).in_window
        return
    with pytest.raises(RuleViolation, match="give --deviation"):
        trial.dispense("S-002", [trial.vial("IPSEXO")], at)
    dose = trial.dispense("S-002", [trial.vial("IPSEXO")], at, deviation="theatre delay")
    assert not dose.in_window and dose.deviation == "theatre delay"


def test_a_perfusion_whose_window_closed_is_missed_once_the_next_window_opens(trial):
    trial.enroll_and_operate("S-010", "LOW", T0)
    # 40 h: perfusion 1's window (18-30 h) has closed, perfusion 2's (66-78 h) is not
    # open: this is perfusion 1, late.
    with pytest.raises(RuleViolation, match="perfusion 1 of cycle 1 is due 18-30 h"):
        trial.dispense("S-010", [trial.vial("IPSEXO")], T0 + timedelta(hours=40))
    trial.enroll_and_operate("S-011", "LOW", T0)
    # 72 h: perfusion 2's window is open: perfusion 1 was missed, this is perfusion 2.
    dose = trial.dispense("S-011", [trial.vial("IPSEXO")], T0 + timedelta(hours=72))
    assert (dose.perfusion, dose.in_window) == (2, True)
    dose = trial.dispense("S-011", [trial.vial("IPSEXO")], T0 + timedelta(hours=120))
    assert dose.perfusion == 3
    with pytest.raises(RuleViolation, match="all 3 perfusions"):
        trial.dispense("S-011", [trial.vial("IPSEXO")], T0 + timedelta(hours=121))


def test_perfusions_are_dispensed_in_order_and_a_fourth_is_refused(trial):
    trial.enroll_and_operate("S-003", "LOW", T0)
    for number, hours in ((1, 24), (2, 72), (3, 120)):
        assert trial.dispense("S-003", [trial.vial("IPSEXO")],
                              T0 + timedelta(hours=hours)).perfusion == number
    with pytest.raises(RuleViolation, match="all 3 perfusions"):
        trial.dispense("S-003", [trial.vial("IPSEXO")], T0 + timedelta(hours=121))


def test_the_group_dose_needs_its_number_of_vials(trial):
    trial.enroll_and_operate("S-004", "MID", T0)
    with pytest.raises(RuleViolation, match="2 vial"):
        trial.dispense("S-004", [trial.vial("IPSEXO")], T0 + timedelta(hours=24))
    dose = trial.dispense("S-004", [trial.vial("IPSEXO"), trial.vial("IPSEXO")],
                          T0 + timedelta(hours=24))
    assert len(dose.vials) == 2


def test_the_wrong_product_for_the_group_is_refused(trial):
    trial.enroll_and_operate("S-005", "PBO", T0)
    with pytest.raises(RuleViolation, match="receives PLACEBO"):
        trial.dispense("S-005", [trial.vial("IPSEXO")], T0 + timedelta(hours=24))
    assert trial.dispense("S-005", [trial.vial("PLACEBO")], T0 + timedelta(hours=24))


@pytest.mark.parametrize("lot_state", ["quarantine", "on_hold", "recalled", "expired"])
def test_a_vial_of_a_lot_that_is_not_usable_is_refused(trial, lot_state):
    trial.enroll_and_operate("S-006", "LOW", T0)
    serial = trial.vial_in_lot_state(lot_state)
    with pytest.raises(RuleViolation, match=f"vial {serial} cannot be dispensed"):
        trial.dispense("S-006", [serial], T0 + timedelta(hours=24))
    with db.unit_of_work(trial.database.engine) as session:
        assert trial.vial_status(session, serial) != "dispensed"
        assert trial.dose_count(session) == 0


def test_a_dose_entered_later_is_judged_by_the_lot_and_vial_as_they_were_at_its_time(trial):
    """A dispensing recorded after the event carries its real time: the lot must have been
    released, and the vial received, by then; what they are now does not count."""
    trial.enroll_and_operate("S-030", "LOW", T0)
    given = T0 + timedelta(hours=24)
    late = trial.lot(at=given + timedelta(hours=1))  # registered, released an hour after
    serial = trial.serials(late)[0]
    with pytest.raises(RuleViolation, match=f"lot {late} was not yet registered at "
                       r"2026-05-05 09:00 UTC, the time given"):
        trial.dispense("S-030", [serial], given)
    unreleased = trial.lot(release=False)  # registered and received before, released after
    with freeze_time(given + timedelta(hours=1)):
        trial.transition(unreleased, "released")
    with pytest.raises(RuleViolation, match=f"lot {unreleased} was quarantine at 2026-05-05"):
        trial.dispense("S-030", [trial.serials(unreleased)[0]], given)
    held = trial.lot()  # released before; on hold at the time; released again since
    with freeze_time(given - timedelta(hours=2)):
        trial.transition(held, "on_hold")
    with freeze_time(given + timedelta(hours=2)):
        trial.transition(held, "released")
    with pytest.raises(RuleViolation, match=f"lot {held} was on hold at 2026-05-05 09:00"):
        trial.dispense("S-030", [trial.serials(held)[0]], given)
    with db.unit_of_work(trial.database.engine) as session:
        assert trial.dose_count(session) == 0
        proposed = {v.serial for v in stock.dispensable_stock(session, given, UTC_TZ)}
    assert proposed.isdisjoint(trial.serials(late) + trial.serials(unreleased)
                               + trial.serials(held))
    # Released at the time (the hold came and went before it): dispensed.
    assert trial.dispense("S-030", [trial.serials(held)[1]], given + timedelta(hours=3)).in_window


def test_a_vial_received_after_the_dispensing_time_is_refused(trial):
    trial.enroll_and_operate("S-031", "LOW", T0)
    given = T0 + timedelta(hours=24)
    number = trial.lot(receive=False)
    with freeze_time(given + timedelta(hours=1)):
        trial.act("pharm.chen", lambda s, a: storage.receive_lot(
            s, a, lots.get_lot(s, number), ["SITE/FRZ-A/R1/BOX-1"], given + timedelta(hours=1)))
    serial = trial.serials(number)[0]
    with pytest.raises(RuleViolation, match="the vial was received at the site only at "
                       "2026-05-05 10:00 UTC"):
        trial.dispense("S-031", [serial], given)
    assert trial.dispense("S-031", [serial], given + timedelta(hours=2)).in_window


def test_a_lot_expiring_before_the_use_by_time_is_refused(trial):
    trial.enroll_and_operate("S-007", "LOW", T0)
    serial = trial.vial_expiring_on((T0 + timedelta(hours=24)).date() - timedelta(days=1))
    with pytest.raises(RuleViolation, match="cannot be dispensed"):
        trial.dispense("S-007", [serial], T0 + timedelta(hours=24))


def test_the_same_vial_cannot_be_dispensed_twice(trial):
    trial.enroll_and_operate("S-008", "LOW", T0)
    trial.enroll_and_operate("S-009", "LOW", T0)
    serial = trial.vial("IPSEXO")
    trial.dispense("S-008", [serial], T0 + timedelta(hours=24))
    with pytest.raises(RuleViolation, match="cannot be dispensed"):
        trial.dispense("S-009", [serial], T0 + timedelta(hours=24))


def test_the_verifier_must_be_another_qualified_user_with_the_right_password(trial):
    trial.enroll_and_operate("S-010", "LOW", T0)
    at = T0 + timedelta(hours=24)
    with pytest.raises(PermissionDenied, match="another user"):
        trial.dispense("S-010", [trial.vial("IPSEXO")], at, verifier="pharm.chen")
    with pytest.raises(PermissionDenied, match="needs the pharmacist or investigator role"):
        trial.dispense("S-010", [trial.vial("IPSEXO")], at, verifier="qa.lee")
    with pytest.raises(PermissionDenied, match="wrong password"):
        trial.dispense("S-010", [trial.vial("IPSEXO")], at, verifier_password="nope-nope-1")
    with pytest.raises(NotFound):
        trial.dispense("S-010", [trial.vial("IPSEXO")], at, verifier="ghost")
    assert trial.dispense("S-010", [trial.vial("IPSEXO")], at, verifier="inv.liu")


def test_only_a_pharmacist_dispenses(trial):
    trial.enroll_and_operate("S-011", "LOW", T0)
    with pytest.raises(PermissionDenied, match="pharmacist"):
        trial.dispense("S-011", [trial.vial("IPSEXO")], T0 + timedelta(hours=24), as_user="inv.liu",
                       verifier="pharm.wang")


def test_no_dose_before_surgery_for_a_withdrawn_or_unknown_participant(trial):
    trial.enroll("S-012", "LOW")
    with pytest.raises(RuleViolation, match="no surgery"):
        trial.dispense("S-012", [trial.vial("IPSEXO")], T0)
    trial.operate("S-012", T0)
    with pytest.raises(RuleViolation, match="before the cycle's surgery"):
        trial.dispense("S-012", [trial.vial("IPSEXO")], T0 - timedelta(minutes=1))
    trial.withdraw("S-012")
    with pytest.raises(RuleViolation, match="withdrawn"):
        trial.dispense("S-012", [trial.vial("IPSEXO")], T0 + timedelta(hours=24))
    with pytest.raises(NotFound):
        trial.dispense("S-404", [trial.vial("IPSEXO")], T0 + timedelta(hours=24))


def test_a_mistyped_serial_is_caught_by_its_check_character(trial):
    trial.enroll_and_operate("S-013", "LOW", T0)
    serial = trial.vial("IPSEXO")
    wrong = serial[:-1] + ("A" if serial[-1] != "A" else "B")
    with pytest.raises((InvalidInput, NotFound)):
        trial.dispense("S-013", [wrong], T0 + timedelta(hours=24))


def test_administration_after_use_by_is_refused_and_the_dose_is_wasted_then_replaced(trial):
    trial.enroll_and_operate("S-014", "LOW", T0)
    dose = trial.dispense("S-014", [trial.vial("IPSEXO")], T0 + timedelta(hours=24))
    with pytest.raises(RuleViolation, match="use-by"):
        trial.administer(dose.dose_code, dose.use_by + timedelta(minutes=1))
    trial.close(dose.dose_code, "wasted", "use-by time passed")
    replacement = trial.dispense("S-014", [trial.vial("IPSEXO")], T0 + timedelta(hours=27))
    assert (replacement.perfusion, replacement.attempt) == (1, 2)
    given = trial.administer(replacement.dose_code, replacement.dispensed_at + timedelta(minutes=20))
    assert given.status == "administered"
    with db.unit_of_work(trial.database.engine) as session:
        assert audit.verify(session).ok
        rows = participant_schedule(session, trial.user(session, "monitor.sun"), "S-014",
                                    now=T0 + timedelta(hours=30))
    first = next(r for r in rows if r["perfusion"] == 1)
    assert (first["status"], first["dose"], first["attempts"]) == ("administered",
                                                                   replacement.dose_code, 2)


def test_second_cycle_dosing_counts_hours_from_the_repeat_surgery(trial):
    trial.enroll_and_operate("S-015", "LOW", T0)
    for hours in (24, 72, 120):
        trial.dispense("S-015", [trial.vial("IPSEXO")], T0 + timedelta(hours=hours))
    trial.hysteroscopy("S-015", T0 + timedelta(days=30), recurrence=True)
    t2 = T0 + timedelta(days=32)
    trial.operate("S-015", t2)
    dose = trial.dispense("S-015", [trial.vial("IPSEXO")], t2 + timedelta(hours=25))
    assert (dose.perfusion, dose.hours_since_surgery) == (1, 25.0)


def test_hours_and_post_op_day_across_a_daylight_saving_change(trial):
    berlin = ZoneInfo("Europe/Berlin")
    # Surgery Saturday 28 March 2026 10:00 CET; clocks go forward on Sunday 29 March.
    surgery_at = datetime(2026, 3, 28, 10, 0, tzinfo=berlin).astimezone(UTC)
    trial.enroll_and_operate("S-016", "LOW", surgery_at, site_tz=berlin)
    # 10:00 CEST on Sunday is only 23 hours later; 11:00 CEST is 24 hours.
    at = datetime(2026, 3, 29, 11, 0, tzinfo=berlin).astimezone(UTC)
    dose = trial.dispense("S-016", [trial.vial("IPSEXO")], at, site_tz=berlin)
    assert (dose.hours_since_surgery, dose.post_op_day) == (24.0, 1)


def test_returned_dose_vials_never_go_back_to_stock(trial):
    trial.enroll_and_operate("S-017", "LOW", T0)
    serial = trial.vial("IPSEXO")
    dose = trial.dispense("S-017", [serial], T0 + timedelta(hours=24))
    trial.close(dose.dose_code, "returned", "procedure postponed")
    with db.unit_of_work(trial.database.engine) as session:
        assert trial.vial_status(session, serial) == "returned"
    with pytest.raises(RuleViolation):
        trial.dispense("S-017", [serial], T0 + timedelta(hours=26))


def test_hours_since_and_post_op_day_helpers():
    start = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)
    assert dosing.hours_since(start, start + timedelta(minutes=90)) == 1.5
    shanghai = ZoneInfo("Asia/Shanghai")
    # 23:30 UTC is 07:30 next day in Shanghai; +30 min is still the same local day.
    assert dosing.post_op_day(start, start + timedelta(minutes=30), shanghai) == 0
    assert dosing.post_op_day(start, start + timedelta(hours=17), shanghai) == 1
    assert PASSWORD


def test_a_released_lot_corrected_out_of_specification_is_not_dispensed(trial):
    from trialkit import qc_rows

    from lotrack.services import lots, qc, vials

    trial.enroll_and_operate("S-020", "LOW", T0)
    serial = trial.vial("IPSEXO")
    with db.unit_of_work(trial.database.engine) as session:
        number = vials.get_vial(session, serial).lot.lot_number
    rows = [r for r in qc_rows("IPSEXO", {"endotoxin": "0.9"}) if r.attribute == "endotoxin"]
    trial.act("qa.lee", lambda s, a: qc.record_results(s, a, lots.get_lot(s, number), rows,
                                                       reason="recalculated"))
    with db.unit_of_work(trial.database.engine) as session:
        lot = lots.get_lot(session, number)
        assert (lot.status, lot.qa_review_needed) == ("released", True)
    with pytest.raises(RuleViolation, match=r"out of specification \(endotoxin\) awaiting QA"):
        trial.dispense("S-020", [serial], T0 + timedelta(hours=24))
