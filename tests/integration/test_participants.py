"""Enrolment, withdrawal, surgeries and cycles through the services, on both databases."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from lotrack import audit, db
from lotrack.errors import InvalidInput, PermissionDenied, RuleViolation
from lotrack.models import Signature
from lotrack.schemas.protocol import default_protocol_path, load_protocol_file
from lotrack.services import auth, participants, protocols
from lotrack.services.eligibility import Candidate

PASSWORD = "correct-horse-42"
PROTOCOL = load_protocol_file(default_protocol_path())
ANSWERS = ({q.code: True for q in PROTOCOL.eligibility.inclusions}
           | {q.code: False for q in PROTOCOL.eligibility.exclusions})
UTC_TZ = ZoneInfo("UTC")


def candidate(**changes) -> Candidate:
    values = dict(sex="F", birth_date=date(1993, 1, 10), consented=date(2026, 3, 1),
                  iua_score=15, amh_ng_ml=1.8, afc=7, platelets_10e9_l=220, aptt_x_uln=1.0,
                  hba1c_percent=5.5, answers=dict(ANSWERS))
    values.update(changes)
    return Candidate(**values)


def act(database, username, action):
    with db.unit_of_work(database.engine) as session:
        actor = auth.authenticate(session, username, PASSWORD)
        result = action(session, actor)
        session.commit()
        return result


@pytest.fixture
def study(database, make_user):
    make_user("inv.liu", "investigator")
    make_user("pharm.chen", "pharmacist")
    version = act(database, "inv.liu",
                  lambda s, a: protocols.load_protocol(s, a, PROTOCOL, "protocol.toml"))
    act(database, "inv.liu",
        lambda s, a: protocols.activate_protocol(s, a, version.code, version.version, PASSWORD))
    return database


def enroll(database, subject, group="LOW", **changes):
    return act(database, "inv.liu", lambda s, a: participants.enroll(
        s, a, subject, group, candidate(**changes), PASSWORD))


def test_enrolment_is_signed_and_audited(study):
    enroll(study, "S-001")
    with db.unit_of_work(study.engine) as session:
        signatures = session.execute(select(Signature).where(
            Signature.entity == "participant", Signature.entity_id == "S-001")).scalars().all()
        assert [(s.meaning, s.printed_name) for s in signatures] == [
            (participants.ENROLMENT_MEANING, "Inv Liu")]
        report = audit.verify(session)
        assert report.ok, report.problems
        p = participants.get_participant(session, "S-001")
        assert (p.group_code, p.status, p.age_at_consent) == ("LOW", "enrolled", 33)
        assert "birth_date" not in p.screening


def test_an_ineligible_candidate_is_refused_with_every_failure_and_nothing_written(study):
    with pytest.raises(RuleViolation) as error:
        enroll(study, "S-002", iua_score=5, hba1c_percent=8.0)
    assert "IUA score 5" in str(error.value) and "HbA1c" in str(error.value)
    with db.unit_of_work(study.engine) as session:
        assert participants.list_participants(session) == []


def test_enrolment_needs_an_investigator_and_the_right_password(study):
    with pytest.raises(PermissionDenied):
        act(study, "pharm.chen", lambda s, a: participants.enroll(
            s, a, "S-003", "LOW", candidate(), PASSWORD))
    with pytest.raises(PermissionDenied):
        act(study, "inv.liu", lambda s, a: participants.enroll(
            s, a, "S-003", "LOW", candidate(), "wrong-password"))


def test_unknown_group_and_duplicate_subject_are_refused(study):
    with pytest.raises(InvalidInput, match="unknown group"):
        enroll(study, "S-004", group="NOPE")
    enroll(study, "S-004")
    with pytest.raises(RuleViolation, match="already enrolled"):
        enroll(study, "S-004")


def test_a_group_is_closed_when_its_planned_number_is_reached(study):
    planned = PROTOCOL.group("MID").planned
    for i in range(planned):
        enroll(study, f"M-{i:03d}", group="MID")
    with pytest.raises(RuleViolation, match="group MID is full"):
        enroll(study, "M-999", group="MID")


def surgery(database, subject, at, score=16):
    return act(database, "inv.liu", lambda s, a: participants.record_surgery(
        s, a, subject, at, score, UTC_TZ))


def hysteroscopy(database, subject, at, recurrence):
    return act(database, "inv.liu", lambda s, a: participants.record_hysteroscopy(
        s, a, subject, at, recurrence))


def test_second_cycle_needs_a_recurrence_and_a_third_is_refused(study):
    enroll(study, "S-010")
    t0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert surgery(study, "S-010", t0).number == 1
    with pytest.raises(RuleViolation, match="only after a follow-up hysteroscopy"):
        surgery(study, "S-010", t0 + timedelta(days=20))
    hysteroscopy(study, "S-010", t0 + timedelta(days=30), recurrence=True)
    with pytest.raises(RuleViolation, match="must follow the hysteroscopy"):
        surgery(study, "S-010", t0 + timedelta(days=29))
    assert surgery(study, "S-010", t0 + timedelta(days=31)).number == 2
    hysteroscopy(study, "S-010", t0 + timedelta(days=61), recurrence=True)
    with pytest.raises(RuleViolation, match="at most 2"):
        surgery(study, "S-010", t0 + timedelta(days=62))


def test_no_second_cycle_without_recurrence(study):
    enroll(study, "S-011")
    t0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    surgery(study, "S-011", t0)
    hysteroscopy(study, "S-011", t0 + timedelta(days=30), recurrence=False)
    with pytest.raises(RuleViolation, match="records recurrent adhesions"):
        surgery(study, "S-011", t0 + timedelta(days=31))


def test_a_surgery_before_consent_or_in_the_future_is_refused(study):
    enroll(study, "S-012")
    with pytest.raises(RuleViolation, match="precedes consent"):
        surgery(study, "S-012", datetime(2026, 2, 27, tzinfo=UTC))
    with pytest.raises(InvalidInput, match="future"):
        surgery(study, "S-012", datetime.now(UTC) + timedelta(days=2))


def test_a_withdrawn_participant_gets_no_surgery_and_withdrawal_needs_a_reason(study):
    enroll(study, "S-013")
    with pytest.raises(InvalidInput):
        act(study, "inv.liu", lambda s, a: participants.withdraw(s, a, "S-013", "  "))
    act(study, "inv.liu", lambda s, a: participants.withdraw(s, a, "S-013", "withdrew consent"))
    with pytest.raises(RuleViolation, match="withdrawn"):
        surgery(study, "S-013", datetime(2026, 3, 10, tzinfo=UTC))


def test_the_follow_up_hysteroscopy_comes_after_the_cycles_perfusions(study):
    enroll(study, "S-013")
    t0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    surgery(study, "S-013", t0)
    # The last perfusion's window closes 126 h after surgery (120 h +- 6 h).
    with pytest.raises(RuleViolation, match="cannot precede the end of its last perfusion window"):
        hysteroscopy(study, "S-013", t0 + timedelta(hours=3), recurrence=True)
    with pytest.raises(RuleViolation, match="cannot precede"):
        hysteroscopy(study, "S-013", t0 + timedelta(hours=125, minutes=59), recurrence=True)
    assert hysteroscopy(study, "S-013", t0 + timedelta(hours=126), recurrence=True)
