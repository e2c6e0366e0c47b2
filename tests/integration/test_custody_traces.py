"""Chain of custody, `report verify`, traces and recall impact on a scenario whose answer is
known in advance: one participant receives lot A in cycle 1 and lot B in cycle 2."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import text
from trialkit import T0, UTC_TZ, Trial

from lotrack import db
from lotrack.errors import RuleViolation
from lotrack.models.base import utcnow
from lotrack.render.pdf.custody import write_custody
from lotrack.render.pdf.readback import read_claims
from lotrack.services import custody, documents, lots, recall, report_check, storage, traces
from lotrack.services.custody import Step, _flag


@pytest.fixture
def scenario(database, make_user):
    """S-001 (LOW): cycle 1 from lot A (L001), recurrence, cycle 2 from lot B (L002)."""
    trial = Trial.build(database, make_user)
    lot_a, lot_b = made_received_released(trial), made_received_released(trial)
    a, b = trial.serials(lot_a), trial.serials(lot_b)
    trial.enroll_and_operate("S-001", "LOW", T0)
    for n, hours in enumerate((24, 72, 120)):
        dose = trial.dispense("S-001", [a[n]], T0 + timedelta(hours=hours))
        trial.administer(dose.dose_code, T0 + timedelta(hours=hours, minutes=30))
    trial.hysteroscopy("S-001", T0 + timedelta(days=30), recurrence=True)
    second = T0 + timedelta(days=32)
    trial.operate("S-001", second)
    last = None
    for n, hours in enumerate((24, 72)):
        last = trial.dispense("S-001", [b[n]], second + timedelta(hours=hours))
        if n == 0:
            trial.administer(last.dose_code, second + timedelta(hours=hours, minutes=20))
    return trial, lot_a, lot_b, a, b, last


def made_received_released(trial: Trial, receive: bool = True) -> str:
    """A lot made 8 days before the first surgery, received and released the next day."""
    with freeze_time(T0 - timedelta(days=8)):
        number = trial.lot(vials=4, receive=False, release=False)
    with freeze_time(T0 - timedelta(days=7)):
        if receive:
            trial.act("pharm.chen", lambda s, a: storage.receive_lot(
                s, a, lots.get_lot(s, number), ["SITE/FRZ-A/R1/BOX-1"], utcnow()))
        trial.transition(number, "released")
    return number


def read(trial, action):
    with db.unit_of_work(trial.database.engine) as session:
        reader = trial.user(session, "monitor.sun")
        return action(session, reader)


def test_a_vials_custody_in_order_with_who_where_and_signatures(scenario):
    trial, lot_a, _, a, _, _ = scenario
    record = read(trial, lambda s, u: custody.custody(s, u, serial=a[0], tz=UTC_TZ))
    steps = [(r["step"], r["who"].split(" (")[-1].rstrip(")")) for r in record["steps"]]
    assert steps == [
        ("lot registered (quarantine)", "qa.lee"),
        ("manufactured (filled with the lot)", "qa.lee"),
        ("received at site", "pharm.chen"),
        ("lot QC released", "qa.lee"),
        ("dispensed", "pharm.chen"),
        ("administered", "inv.liu"),
    ]
    by_step = {r["step"]: r for r in record["steps"]}
    assert by_step["received at site"]["where"] == "SITE/FRZ-A/R1/BOX-1 #1"
    assert by_step["dispensed"]["where"] == "SITE/FRZ-A/R1/BOX-1 #1"
    assert "participant S-001, perfusion 1, 24 h after surgery, in window" in by_step["dispensed"]["detail"]
    assert [s.split(":")[0] for s in by_step["dispensed"]["signatures"]] == [
        "dispensed", "second-person verification"]
    assert by_step["lot QC released"]["signatures"][0].startswith("QA release: Qa Lee, ")
    assert record["gaps"] == []
    header = record["header"]
    assert (header["subject"], header["lot"], header["gtin"]) == (a[0], lot_a, "09506000134352")


def test_lot_and_participant_custody_cover_every_vial(scenario):
    trial, lot_a, lot_b, a, b, _ = scenario
    lot_record = read(trial, lambda s, u: custody.custody(s, u, lot_number=lot_a, tz=UTC_TZ))
    assert {r["vial"] for r in lot_record["steps"] if r["vial"]} == set(a)
    person = read(trial, lambda s, u: custody.custody(s, u, subject="S-001", tz=UTC_TZ))
    assert {r["vial"] for r in person["steps"] if r["vial"]} == {a[0], a[1], a[2], b[0], b[1]}
    assert person["header"]["lots"] == f"{lot_a}, {lot_b}"


def test_a_vial_dispensed_without_receipt_is_a_gap():
    # Dispensing refuses a vial never received, so this gap arises only from records
    # made before that rule or changed behind the application's back: flag it anyway.
    at = utcnow()
    steps = [Step(1, at, at, "manufactured (filled with the lot)", "V1", "a", "", ""),
             Step(2, at + timedelta(days=1), at, "dispensed", "V1", "a", "", "")]
    _flag(steps, {"V1": object()})
    assert steps[1].flags == ["dispensed with no receipt at site recorded"]


def test_a_step_out_of_time_order_is_flagged():
    at = utcnow()
    steps = [Step(1, at, at, "received at site", "V1", "a", "", ""),
             Step(2, at - timedelta(hours=2), at, "moved", "V1", "a", "", ""),
             Step(3, at + timedelta(hours=1), at, "dispensed", "V1", "a", "", "")]
    _flag(steps, {"V1": object()})
    assert steps[0].flags == [] and steps[2].flags == []
    assert steps[1].flags == [f"out of time order: before the previous step at {at.isoformat()}"]


def _write(trial, tmp_path, **which):
    def build(session, reader):
        return (custody.custody(session, reader, tz=UTC_TZ, **which),
                documents.provenance(session, reader))

    content, prov = read(trial, build)
    path = tmp_path / "custody.pdf"
    params = {"vial": which.get("serial"), "lot": which.get("lot_number"),
              "participant": which.get("subject")}
    write_custody(path, content, prov, UTC_TZ, {"report": "custody", "params": {
        k: v for k, v in params.items() if v}, "summary": report_check.summary_of("custody", content)})
    return path


def test_report_verify_holds_after_later_steps_and_catches_tampering(scenario, tmp_path):
    trial, _, _, _, b, last = scenario
    path = _write(trial, tmp_path, serial=b[1])
    verdict = read(trial, lambda s, u: report_check.verify(s, u, read_claims(path)))
    assert verdict.matches and verdict.printed_sha256 == verdict.current_sha256

    # A step recorded after the report was printed does not make the report wrong...
    trial.administer(last.dose_code, last.dispensed_at + timedelta(minutes=30))
    verdict = read(trial, lambda s, u: report_check.verify(s, u, read_claims(path)))
    assert verdict.matches, verdict.problems
    # ...but a new report shows it.
    newer = read(trial, lambda s, u: custody.custody(s, u, serial=b[1], tz=UTC_TZ))
    assert newer["steps"][-1]["step"] == "administered"

    # A row changed behind the application's back: the trail no longer verifies.
    path = _write(trial, tmp_path, serial=b[2])
    with trial.database.engine.begin() as conn:
        conn.execute(text("UPDATE vials SET position = 9 WHERE serial = :s"), {"s": b[2]})
    verdict = read(trial, lambda s, u: report_check.verify(s, u, read_claims(path)))
    assert not verdict.matches
    assert "the audit trail fails verification" in verdict.problems[-1]

    # An audit event the report shows, rewritten: its content and the chain both break.
    path = _write(trial, tmp_path, serial=b[3])
    with trial.database.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET username = 'qa.huang' "
                          "WHERE entity = 'vial' AND entity_id = :s AND action = 'receive'"),
                     {"s": b[3]})
    verdict = read(trial, lambda s, u: report_check.verify(s, u, read_claims(path)))
    assert verdict.problems[0] == "the database no longer gives the content this report shows"
    assert "audit trail fails verification" in verdict.problems[-1]


def test_an_altered_pdf_is_caught(scenario, tmp_path):
    from pypdf import PdfReader, PdfWriter

    trial, _, _, a, _, _ = scenario
    path = _write(trial, tmp_path, serial=a[0])
    writer = PdfWriter(clone_from=PdfReader(path))
    keywords = PdfReader(path).metadata["/Keywords"]
    writer.add_metadata({"/Keywords": keywords.replace('"sha256":"', '"sha256":"0')[:-1] + "}"})
    forged = tmp_path / "forged.pdf"
    with forged.open("wb") as handle:
        writer.write(handle)
    verdict = read(trial, lambda s, u: report_check.verify(s, u, read_claims(forged)))
    assert not verdict.matches
    assert verdict.problems[0].startswith("the hash printed on the pages is not the one")


def test_forward_trace_of_a_lot_and_a_vial(scenario):
    trial, lot_a, _, a, _, _ = scenario
    data = read(trial, lambda s, u: traces.trace_lot(s, u, lot_a, None, UTC_TZ))
    assert [(v["serial"], v["status"], v["participant"]) for v in data["vials"]] == [
        (a[0], "administered", "S-001"), (a[1], "administered", "S-001"),
        (a[2], "administered", "S-001"), (a[3], "in_stock", None)]
    [person] = data["participants"]
    assert [(d["cycle"], d["perfusion"]) for d in person["doses"]] == [(1, 1), (1, 2), (1, 3)]
    assert data["unused_at_site"] == [a[3]]
    assert data["counts"] == {"administered": 3, "in_stock": 1}
    vial = read(trial, lambda s, u: traces.trace_vial(s, u, a[3], UTC_TZ))
    assert vial["participants"] == [] and vial["where"] == "SITE/FRZ-A/R1/BOX-1 #4"


def test_backward_trace_of_a_participant_lists_both_lots(scenario):
    trial, lot_a, lot_b, a, b, _ = scenario
    data = read(trial, lambda s, u: traces.trace_participant(s, u, "S-001", UTC_TZ))
    assert [(d["cycle"], d["perfusion"], d["vials"], d["lots"]) for d in data["doses"]] == [
        (1, 1, [a[0]], [lot_a]), (1, 2, [a[1]], [lot_a]), (1, 3, [a[2]], [lot_a]),
        (2, 1, [b[0]], [lot_b]), (2, 2, [b[1]], [lot_b])]
    assert [lot["lot"] for lot in data["lots"]] == [lot_a, lot_b]
    assert all(lot["holds"] == lot["deviations"] == 0 for lot in data["lots"])


def test_recall_dry_run_changes_nothing_then_the_recall_blocks_the_pending_dose(scenario):
    trial, _, lot_b, _, b, last = scenario
    before = read(trial, lambda s, u: s.execute(text("SELECT count(*) FROM audit_events")).scalar())
    impact = read(trial, lambda s, u: recall.recall_impact(s, u, lot_b, None))
    assert impact["recall_allowed"]
    assert [v["serial"] for v in impact["vials_to_quarantine"]] == [b[2], b[3]]
    assert impact["participants_exposed"] == ["S-001"]
    assert impact["doses_dispensed_not_administered"] == [
        {"dose": last.dose_code, "participant": "S-001", "vials": [b[1]]}]
    after = read(trial, lambda s, u: s.execute(text("SELECT count(*) FROM audit_events")).scalar())
    assert after == before

    trial.transition(lot_b, "recalled")
    with db.unit_of_work(trial.database.engine) as session:
        assert {trial.vial_status(session, s) for s in b[2:]} == {"quarantined"}
    with pytest.raises(RuleViolation, match=f"lot {lot_b} is recalled; record it returned"):
        trial.administer(last.dose_code, last.dispensed_at + timedelta(minutes=30))
    with pytest.raises(RuleViolation, match="cannot be dispensed"):
        trial.dispense("S-001", [b[2]], last.dispensed_at + timedelta(hours=48))


def record_ae(trial: Trial, term: str, grade: int, onset, relatedness: str = "possible"):
    from lotrack.schemas.safety import AdverseEventIn
    from lotrack.services import adverse_events

    data = AdverseEventIn(term=term, grade=grade, onset=onset, relatedness=relatedness)
    return trial.act("inv.liu", lambda s, a: adverse_events.record_adverse_event(
        s, a, "S-001", data, UTC_TZ))


def test_an_ae_between_two_cycles_traces_back_to_the_first_lot_only(scenario):
    trial, lot_a, lot_b, a, _, _ = scenario
    # Cycle 1 doses on days 1, 3 and 5 after T0; cycle 2 starts on day 32.
    ae = record_ae(trial, "Pelvic pain", 2, (T0 + timedelta(days=10)).date())
    data = read(trial, lambda s, u: traces.trace_ae(s, u, ae.ae_code, UTC_TZ))
    assert data["lots"] == [lot_a]
    assert [(d["cycle"], d["perfusion"], d["vials"], d["days_to_onset"])
            for d in data["doses_before_onset"]] == [
        (1, 1, [a[0]], 9), (1, 2, [a[1]], 7), (1, 3, [a[2]], 5)]
    assert data["doses_before_onset"][0]["lot_flags"] == {
        lot_a: {"holds": 0, "recalls": 0, "excursions": 0, "deviations": 0}}
    assert data["ae"]["days_after_first_exposure"] == 9

    forward_a = read(trial, lambda s, u: traces.trace_lot(s, u, lot_a, None, UTC_TZ))
    [person] = forward_a["participants"]
    assert [e["ae"] for e in person["adverse_events_after_exposure"]] == [ae.ae_code]
    forward_b = read(trial, lambda s, u: traces.trace_lot(s, u, lot_b, None, UTC_TZ))
    [person] = forward_b["participants"]
    assert person["adverse_events_after_exposure"] == []  # onset before she received lot B


def test_a_wasted_dose_is_no_exposure(database, make_user):
    trial = Trial.build(database, make_user)
    lot = made_received_released(trial)
    serial = trial.serials(lot)[0]
    trial.enroll_and_operate("S-001", "LOW", T0)
    dose = trial.dispense("S-001", [serial], T0 + timedelta(hours=24))
    trial.close(dose.dose_code, "wasted", "dropped")
    data = read(trial, lambda s, u: traces.trace_lot(s, u, lot, None, UTC_TZ))
    assert data["participants"] == []
    first = data["vials"][0]
    assert (first["serial"], first["status"], first["participant"]) == (serial, "wasted", "S-001")


def _rewrite_footer(path, out, rewrite):
    """The PDF with the footer of its first page rewritten in the page's content stream."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(path))
    page = writer.pages[0]
    contents = page.get_contents()
    data = contents.get_data()
    start = data.index(b"(Content SHA-256 ")
    end = data.index(b")", start) + 1
    contents.set_data(data[:start] + rewrite(data[start:end]) + data[end:])
    page.replace_contents(contents)
    with out.open("wb") as handle:
        writer.write(handle)
    return out


def test_a_page_stripped_of_its_printed_hash_is_caught(scenario, tmp_path):
    trial, _, _, a, _, _ = scenario
    path = _write(trial, tmp_path, serial=a[0])
    stripped = _rewrite_footer(path, tmp_path / "stripped.pdf", lambda drawn: b"()")
    verdict = read(trial, lambda s, u: report_check.verify(s, u, read_claims(stripped)))
    assert not verdict.matches
    assert verdict.problems == ["page 1 carries no content hash: lotrack prints it on every "
                                "page, so the file was altered after lotrack wrote it"]


def test_a_footer_written_differently_is_still_read(scenario, tmp_path):
    """A tool that rewrites the file may draw the footer as a hex string: the page's text
    is extracted instead of its stream searched, and the report still verifies."""
    trial, _, _, a, _, _ = scenario
    path = _write(trial, tmp_path, serial=a[0])
    hexed = _rewrite_footer(path, tmp_path / "hexed.pdf",
                            lambda drawn: b"<" + drawn[1:-1].hex().encode() + b">")
    assert b"(Content SHA-256" not in hexed.read_bytes()
    verdict = read(trial, lambda s, u: report_check.verify(s, u, read_claims(hexed)))
    assert verdict.matches, verdict.problems
