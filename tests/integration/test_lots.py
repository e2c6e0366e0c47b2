"""GMP lots on both databases: the lifecycle state machine, QC results and release,
specification versions, storage, excursions, certificates of analysis."""

from datetime import UTC, date, datetime, timedelta
from itertools import product

import pytest
from freezegun import freeze_time
from pypdf import PdfReader
from sqlalchemy import select, text
from trialkit import LOT_SETUP, PASSWORD, UTC_TZ, Trial, qc_rows

from lotrack import audit, db
from lotrack.errors import InvalidInput, NotFound, PermissionDenied, RuleViolation
from lotrack.models import Lot, QcResult, Vial
from lotrack.models.lots import LOT_STATUSES
from lotrack.schemas.lots import LotIn, SpecFile, load_spec_file, shipped_spec_path
from lotrack.services import documents, lots, qc, specifications, storage
from lotrack.services.lots import TRANSITIONS


@pytest.fixture
def trial(database, make_user):
    return Trial.build(database, make_user)


def lot_status(trial, number):
    with db.unit_of_work(trial.database.engine) as session:
        return lots.get_lot(session, number).status


def put_lot_in(trial, status):
    """A lot brought to `status` along legal transitions only."""
    number = trial.lot(release=False, vials=3)
    path = {"quarantine": [], "released": ["released"], "rejected": ["rejected"],
            "on_hold": ["released", "on_hold"], "recalled": ["released", "recalled"],
            "destroyed": ["rejected", "destroyed"]}[status]
    for step in path:
        kwargs = {}
        if step == "destroyed":
            kwargs = {"witness": ("qa.huang", PASSWORD), "quantity": 3}
        trial.transition(number, step, **kwargs)
    return number


@pytest.mark.parametrize(("start", "target"), list(product(LOT_STATUSES, LOT_STATUSES)))
def test_every_transition_pair_is_allowed_exactly_when_the_state_machine_says(trial, start,
                                                                              target):
    number = put_lot_in(trial, start)
    kwargs = {"witness": ("qa.huang", PASSWORD), "quantity": 3} if target == "destroyed" else {}
    if (start, target) in TRANSITIONS:
        trial.transition(number, target, **kwargs)
        assert lot_status(trial, number) == target
    else:
        with pytest.raises(RuleViolation, match="cannot become"):
            trial.transition(number, target, **kwargs)
        assert lot_status(trial, number) == start


def test_each_transition_is_signed_with_its_meaning_and_reason(trial):
    number = trial.lot()
    trial.transition(number, "on_hold")
    with db.unit_of_work(trial.database.engine) as session:
        meanings = trial.signature_meanings(session, "lot", f"IPSEXO/{number}")
        events = session.execute(text(
            "SELECT action, reason FROM audit_events WHERE entity = 'lot' ORDER BY seq")).all()
        assert audit.verify(session).ok
    assert {m for m, _ in meanings} == {"QA release", "QA hold"}
    assert ("on_hold", "test: on_hold") in [tuple(e) for e in events]


def test_release_is_refused_naming_each_missing_or_failing_attribute(trial):
    number = trial.lot(release=False, overrides={"endotoxin": "0.9", "ph": "8.1"})
    with pytest.raises(RuleViolation) as error:
        trial.transition(number, "released")
    assert "endotoxin 0.9 EU/mL is out of specification (<= 0.5)" in str(error.value)
    assert "ph 8.1 pH is out of specification (6.8 - 7.6)" in str(error.value)
    assert lot_status(trial, number) == "quarantine"


@freeze_time(LOT_SETUP)  # in date whatever the day the tests run
def test_release_needs_every_required_result(trial):
    number = f"L{next(trial.lot_seq):03d}"
    trial.act("qa.lee", lambda s, a: lots.register_lot(s, a, LotIn(
        lot_number=number, product="PLACEBO", manufactured_on=date(2026, 1, 10),
        expiry_on=date(2026, 12, 1), vials=2)))
    rows = [r for r in qc_rows("PLACEBO") if r.attribute != "sterility"]
    trial.act("qa.lee", lambda s, a: qc.record_results(s, a, lots.get_lot(s, number), rows))
    with pytest.raises(RuleViolation, match="sterility has no result"):
        trial.transition(number, "released")


def test_only_qa_releases_and_a_wrong_password_signs_nothing(trial):
    number = trial.lot(release=False)
    for user in ("pharm.chen", "inv.liu", "monitor.sun", "admin"):
        with pytest.raises(PermissionDenied, match="qa role"):
            trial.act(user, lambda s, a: lots.transition(s, a, number, "released", "ok",
                                                         PASSWORD, UTC_TZ))
    with pytest.raises(PermissionDenied, match="wrong password"):
        trial.act("qa.lee", lambda s, a: lots.transition(s, a, number, "released", "ok",
                                                         "not-the-password", UTC_TZ))
    assert lot_status(trial, number) == "quarantine"


def test_an_expired_lot_cannot_be_released_and_reads_expired(trial):
    with freeze_time(datetime(2026, 2, 1, tzinfo=UTC)):
        number = trial.lot(release=False, expiry=date(2026, 3, 1), receive=False)
    with pytest.raises(RuleViolation, match="expired on 2026-03-01"):
        trial.transition(number, "released")
    with db.unit_of_work(trial.database.engine) as session:
        lot = lots.get_lot(session, number)
        assert lot.status == "quarantine"  # expired is never stored
        assert lots.effective_status(lot, datetime.now(UTC), UTC_TZ) == "expired"


def test_registration_rules(trial):
    def register(**changes):
        values = dict(lot_number="R-1", product="IPSEXO", manufactured_on=date(2026, 1, 10),
                      expiry_on=date(2026, 12, 1), vials=2) | changes
        return trial.act("qa.lee", lambda s, a: lots.register_lot(s, a, LotIn(**values)))

    register()
    with pytest.raises(RuleViolation, match="already registered"):
        register()
    with pytest.raises(RuleViolation, match="beyond the shelf life"):
        register(lot_number="R-2", expiry_on=date(2027, 6, 1))
    with pytest.raises(NotFound, match="no product"):
        register(lot_number="R-3", product="NOPE")
    with pytest.raises(ValueError, match="must follow manufacture"):
        register(lot_number="R-4", expiry_on=date(2026, 1, 1))
    with pytest.raises(ValueError):
        register(lot_number="R-5", vials=-3)


def test_vials_get_unique_serials_with_check_characters_and_are_audited(trial):
    first, second = trial.serials(trial.lot(vials=5)), trial.serials(trial.lot(vials=5))
    assert len(set(first + second)) == 10
    with db.unit_of_work(trial.database.engine) as session:
        report = audit.verify(session)
    assert report.ok and report.rows >= 10


def test_qc_import_is_all_or_nothing_with_the_row_number_of_the_bad_row(trial):
    number = trial.lot(release=False, receive=False)
    csv_text = "attribute,value,unit,method,tested_at,analyst\n" + "".join(
        f"{name},{value},{unit},m,2026-01-20,A\n" for name, value, unit in
        [("ph", "7.0", "pH"), ("osmolality", "abc", "mOsm/kg"), ("bdnf", "400", "pg/mL")])
    rows = qc.parse_csv(csv_text)
    with pytest.raises(InvalidInput, match="row 3: osmolality: 'abc' is not a number"):
        trial.act("qa.lee", lambda s, a: qc.record_results(
            s, a, lots.get_lot(s, f"{number}"), rows, reason="re-test", source="csv"))
    bad_unit = qc.parse_csv("attribute,value,unit,method,tested_at,analyst\n"
                            "total_protein,0.18,mg/mL,BCA,2026-01-20,A\n")
    with pytest.raises(InvalidInput, match="row 2: total_protein must be reported in 'ug/mL'"):
        trial.act("qa.lee", lambda s, a: qc.record_results(
            s, a, lots.get_lot(s, number), bad_unit, reason="x", source="csv"))
    with pytest.raises(InvalidInput, match="lacks column"):
        qc.parse_csv("attribute,value\nph,7\n")
    with db.unit_of_work(trial.database.engine) as session:
        lot = lots.get_lot(session, number)
        ph = [r.value_text for r in qc.all_results(session, lot) if r.attribute == "ph"]
    assert ph == ["7.3"]  # the failed imports wrote nothing


def test_a_correction_needs_a_reason_supersedes_and_keeps_the_old_result(trial):
    number = trial.lot(release=False, receive=False, overrides={"ph": "8.0"})
    row = [r for r in qc_rows("IPSEXO", {"ph": "7.2"}) if r.attribute == "ph"]
    with pytest.raises(InvalidInput, match="needs --reason"):
        trial.act("qa.lee", lambda s, a: qc.record_results(s, a, lots.get_lot(s, number), row))
    trial.act("qa.lee", lambda s, a: qc.record_results(s, a, lots.get_lot(s, number), row,
                                                       reason="transcription error"))
    trial.transition(number, "released")
    with db.unit_of_work(trial.database.engine) as session:
        ph = session.execute(select(QcResult).where(QcResult.attribute == "ph")
                             .order_by(QcResult.id)).scalars().all()
        assert [(r.value_text, r.superseded, r.verdict) for r in ph] == [
            ("8.0", True, "fail"), ("7.2", False, "pass")]
        assert ph[1].correction_reason == "transcription error"
        assert audit.verify(session).ok


@pytest.mark.parametrize(("value", "verdict"), [
    ("<0.05", "pass"), ("<1.0", "not_evaluable"), (">0.6", "fail"), ("0.5", "pass"),
    ("0.51", "fail")])
def test_censored_endotoxin_results_are_judged_only_when_decidable(value, verdict):
    spec = load_spec_file(shipped_spec_path("IPSEXO"))
    assert qc.evaluate(spec.attribute("endotoxin"), value).verdict == verdict


def test_a_lot_is_judged_against_the_specification_active_when_it_was_registered(trial):
    old_lot = trial.lot(release=False, receive=False)
    spec = load_spec_file(shipped_spec_path("IPSEXO"))
    tighter = SpecFile(product="IPSEXO", attributes=[
        a.model_copy(update={"max": 7.25}) if a.name == "ph" else a for a in spec.attributes])
    version = trial.act("qa.lee", lambda s, a: specifications.load_spec(s, a, tighter, "v2"))
    with pytest.raises(PermissionDenied):
        trial.act("pharm.chen", lambda s, a: specifications.activate_spec(
            s, a, "IPSEXO", version.version, PASSWORD))
    trial.act("qa.huang", lambda s, a: specifications.activate_spec(
        s, a, "IPSEXO", version.version, PASSWORD))
    new_lot = trial.lot(release=False, receive=False)  # pH 7.3 fails version 2
    trial.transition(old_lot, "released")
    with pytest.raises(RuleViolation, match=r"ph 7.3 pH is out of specification \(6.8 - 7.25\)"):
        trial.transition(new_lot, "released")
    with db.unit_of_work(trial.database.engine) as session:
        versions = {n: lots.get_lot(session, n).specification.version for n in (old_lot, new_lot)}
        statuses = [s.status for s in specifications.list_specs(
            session, lots.get_lot(session, old_lot).product)]
    assert versions == {old_lot: 1, new_lot: 2}
    assert statuses == ["superseded", "active"]


def test_a_position_holds_one_vial_and_moves_are_audited(trial):
    serials = trial.serials(trial.lot(vials=2))
    trial.act("pharm.chen", lambda s, a: storage.add_location(s, a, "SITE/FRZ-B/R1/BOX-9", 4))
    trial.act("pharm.chen", lambda s, a: storage.move_vial(s, a, serials[0],
                                                           "SITE/FRZ-B/R1/BOX-9", 2))
    with pytest.raises(RuleViolation, match="position 2 of SITE/FRZ-B/R1/BOX-9 is occupied"):
        trial.act("pharm.chen", lambda s, a: storage.move_vial(s, a, serials[1],
                                                               "SITE/FRZ-B/R1/BOX-9", 2))
    with pytest.raises(RuleViolation, match="a box; it cannot contain"):
        trial.act("pharm.chen", lambda s, a: storage.add_location(
            s, a, "SITE/FRZ-B/R1/BOX-9/X", None))
    with db.unit_of_work(trial.database.engine) as session:
        assert audit.verify(session).ok


def test_an_excursion_holds_the_vials_present_and_flags_their_lots_until_qa_review(trial):
    number = trial.lot(vials=3)
    serial = trial.serials(number)[0]
    start = datetime.now(UTC) - timedelta(hours=5)
    trial.act("pharm.chen", lambda s, a: storage.record_excursion(
        s, a, "SITE/FRZ-A", start, start + timedelta(hours=2), -48.0, "door left open"))
    trial.enroll_and_operate("S-100", "LOW", datetime.now(UTC) - timedelta(hours=24))
    with pytest.raises(RuleViolation, match="on hold after a temperature excursion"):
        trial.dispense("S-100", [serial], datetime.now(UTC))
    with db.unit_of_work(trial.database.engine) as session:
        assert lots.get_lot(session, number).qa_review_needed
    cleared = trial.act("qa.lee", lambda s, a: storage.clear_vial_holds(
        s, a, lots.get_lot(s, number), "within stability data", PASSWORD))
    assert cleared == 3
    assert trial.dispense("S-100", [serial], datetime.now(UTC))


def test_recall_quarantines_the_stock_left(trial):
    number = trial.lot(vials=3)
    trial.transition(number, "recalled")
    with db.unit_of_work(trial.database.engine) as session:
        statuses = session.execute(select(Vial.status).join(Lot).where(
            Lot.lot_number == number)).scalars().all()
    assert statuses == ["quarantined"] * 3


def test_destruction_needs_a_witness_and_the_stock_quantity(trial):
    number = trial.lot(vials=3, release=False)
    trial.transition(number, "rejected")
    with pytest.raises(RuleViolation, match="has 3 vial"):
        trial.transition(number, "destroyed", witness=("qa.huang", PASSWORD), quantity=2)
    with pytest.raises(PermissionDenied, match="another user"):
        trial.transition(number, "destroyed", witness=("qa.lee", PASSWORD), quantity=3)
    trial.transition(number, "destroyed", witness=("qa.huang", PASSWORD), quantity=3)
    with db.unit_of_work(trial.database.engine) as session:
        meanings = {m for m, _ in trial.signature_meanings(session, "lot", f"IPSEXO/{number}")}
    assert meanings >= {"QA destruction", "witness of destruction"}


def test_the_certificate_of_analysis_states_every_result_and_the_release_signature(trial,
                                                                                   tmp_path):
    from lotrack.render.pdf.coa import write_coa

    number = trial.lot(overrides={"ph": "7.31"})
    with db.unit_of_work(trial.database.engine) as session:
        reader = trial.user(session, "monitor.sun")
        content = documents.certificate_of_analysis(session, reader, number, None, UTC_TZ)
        prov = documents.provenance(session, reader)
    digest = write_coa(tmp_path / "coa.pdf", content, prov, UTC_TZ)
    pdf = PdfReader(tmp_path / "coa.pdf")
    text_all = "\n".join(page.extract_text() for page in pdf.pages)
    assert f"lot {number}" in text_all and "Certificate of Analysis" in text_all
    for label in ("Particle concentration", "Bacterial endotoxin", "Osmolality", "TGF-beta1"):
        assert label in text_all
    assert "7.31" in text_all and "6.8 - 7.6" in text_all
    assert "QA release" in text_all and "Qa Lee" in text_all
    assert f"Page 1 of {len(pdf.pages)}" in text_all
    assert digest in text_all.replace("\n", "")
    assert "CONFORMS" in text_all


def test_an_excursion_holds_the_vials_that_were_there_then_not_those_there_now(trial):

    trial.act("pharm.chen", lambda s, a: storage.add_location(s, a, "SITE/FRZ-B/R1/BOX-2", 10))
    moved_in, moved_out, stayed = trial.serials(trial.lot(vials=3))  # all in FRZ-A at first
    start = datetime.now(UTC) - timedelta(hours=5)
    with freeze_time(start - timedelta(hours=1)):  # before the excursion: out of FRZ-A
        trial.act("pharm.chen", lambda s, a: storage.move_vial(s, a, moved_in, "SITE/FRZ-B/R1/BOX-2", None))
    with freeze_time(start + timedelta(hours=3)):  # after it: moved_out leaves FRZ-A
        trial.act("pharm.chen", lambda s, a: storage.move_vial(s, a, moved_out, "SITE/FRZ-B/R1/BOX-2", None))
    trial.act("pharm.chen", lambda s, a: storage.record_excursion(
        s, a, "SITE/FRZ-A", start, start + timedelta(hours=2), -48.0, "compressor failure"))
    with db.unit_of_work(trial.database.engine) as session:
        held = dict(session.execute(select(Vial.serial, Vial.on_hold).where(
            Vial.serial.in_([moved_in, moved_out, stayed]))).all())
    assert held == {moved_in: False, moved_out: True, stayed: True}
