"""`audit verify` reads the trail and the audited rows through driver cursors, not the ORM.

Its chain loop writes each event's payload itself and each opted-in model's rows are
written straight from their columns; these tests hold both byte-identical to
`event_hash` and to every model's audit_key/audit_state(), and check that the problems
found through the fast paths are named as before, on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from trialkit import PASSWORD, T0, UTC_TZ, Trial

from lotrack import audit, audit_verify, db
from lotrack.models import AuditEvent
from lotrack.schemas.safety import AdverseEventIn
from lotrack.services import adverse_events, auth, labels, site_settings, storage

FAST_ENTITIES = {"ae", "cycle", "dose", "excursion", "hysteroscopy", "label_print", "location",
                 "participant", "protocol", "qc_result", "setting", "signature", "surgery",
                 "vial"}


@pytest.fixture
def trial(database, make_user):
    """A little of every audited record: lots, vials, QC, signatures, doses, labels..."""
    trial = Trial.build(database, make_user)
    trial.act("admin", lambda s, a: site_settings.set_site_time_zone(s, a, "Asia/Shanghai", None))
    trial.lot()
    trial.lot("PLACEBO", release=False)
    trial.enroll_and_operate("S-1", "LOW", T0)
    dose = trial.dispense("S-1", [trial.vial()], T0 + timedelta(hours=24))
    trial.administer(dose.dose_code, T0 + timedelta(hours=24, minutes=30))
    trial.hysteroscopy("S-1", T0 + timedelta(days=30), recurrence=True)
    trial.act("inv.liu", lambda s, a: adverse_events.record_adverse_event(
        s, a, "S-1", AdverseEventIn(term="Douleur pelvienne « aiguë »", grade=2,
                                    onset=(T0 + timedelta(days=1)).date()), UTC_TZ))
    start = datetime.now(UTC) - timedelta(hours=5)
    for peak, note in ((-48.0, "door left open"), (-47.5, None)):
        trial.act("pharm.chen", lambda s, a, p=peak, n=note: storage.record_excursion(
            s, a, "SITE/FRZ-A", start, start + timedelta(hours=1), p, n))
    template = labels.load_template(None, "vial")
    trial.act("pharm.chen", lambda s, a: labels.record_prints(
        s, a, "vial", labels.vial_labels(s, "L001", None, []), template, "pdf", 1, None))
    return trial


def verify(trial) -> audit.VerifyReport:
    with db.unit_of_work(trial.database.engine) as session:
        return audit.verify(session)


def raw(trial, sql: str, **params) -> None:
    with trial.database.engine.connect() as conn:
        conn.execute(text(sql), params)
        conn.commit()


def test_the_chain_loop_hashes_every_event_exactly_as_event_hash(trial):
    odd = [  # (before, after, reason, at): nothing, unicode and escapes, a whole second
        (None, None, None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ({"n": 70.0, "x": [1, 2.5]}, None, "naïve — 日本語 \"quoted\" \\ tab\t nl\n \x01",
         datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=UTC)),
        (None, {"when": "2026-01-02", "ok": True, "none": None}, "", None),
    ]
    with db.unit_of_work(trial.database.engine) as session:
        admin = auth.authenticate(session, "admin", PASSWORD)
        for before, after, reason, at in odd:
            audit.record(session, admin, "note", "n-1", "comment", before, after, reason, at)
        session.commit()
    with db.unit_of_work(trial.database.engine) as session:
        events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        assert all(audit.event_hash(e) == e.hash for e in events)
        report = audit.verify(session)
    assert report.ok, report.problems
    assert report.events == len(events) > 50


def test_a_timestamp_stored_in_another_form_is_parsed_not_refused(trial):
    with db.unit_of_work(trial.database.engine) as session:
        admin = auth.authenticate(session, "admin", PASSWORD)
        seq = audit.record(session, admin, "note", "n-2", "comment", None, None, None,
                           datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)).seq
        session.commit()
    # The same instant written without microseconds (as another tool might on SQLite).
    raw(trial, "UPDATE audit_events SET occurred_at = :at WHERE seq = :seq",
        at="2026-01-02 03:04:05" if trial.database.backend == "sqlite"
        else "2026-01-02 04:04:05+01", seq=seq)
    assert verify(trial).ok
    raw(trial, "UPDATE audit_events SET occurred_at = :at WHERE seq = :seq",
        at="2026-01-02 03:04:06" if trial.database.backend == "sqlite"
        else "2026-01-02 03:04:06+00", seq=seq)
    assert verify(trial).problems == [
        f"audit event {seq} (note n-2 comment) was altered: its hash does not match its content"]


def test_every_column_reader_gives_the_key_and_state_the_orm_gives(trial):
    if trial.database.backend == "sqlite":  # a value in a form the reader does not expect
        raw(trial, "UPDATE vials SET received_at = '2026-04-27 09:00:00' WHERE id = 1")
    checked = set()
    with db.unit_of_work(trial.database.engine) as session:
        dialect = session.get_bind().dialect
        for model in audit.audited_models():
            reader = audit_verify.row_reader(model, dialect)
            if reader is None:
                continue
            fast = sorted(reader.states(session))
            orm = sorted((row.audit_key, audit.canonical(row.audit_state()))
                         for row in session.execute(select(model)).scalars())
            assert fast == orm, model.__audit_entity__
            if fast:
                checked.add(model.__audit_entity__)
    assert checked == FAST_ENTITIES


def test_rows_read_by_columns_changed_inserted_or_deleted_behind_lotrack_are_named(trial):
    with trial.database.engine.connect() as conn:
        serial = conn.execute(text("SELECT serial FROM vials WHERE id NOT IN "
                                   "(SELECT vial_id FROM dose_vials) ORDER BY id")).scalars().first()
        other = conn.execute(text("SELECT serial FROM vials WHERE serial <> :s AND id NOT IN "
                                  "(SELECT vial_id FROM dose_vials) ORDER BY id"),
                             {"s": serial}).scalars().first()
    raw(trial, "UPDATE vials SET on_hold = NOT on_hold WHERE serial = :s", s=serial)
    raw(trial, "UPDATE excursions SET max_temp_c = -48.25 WHERE max_temp_c = -48")
    raw(trial, "DELETE FROM vials WHERE serial = :s", s=other)
    raw(trial, "INSERT INTO storage_locations (path, parent_id, capacity, created_at) "
               "VALUES ('SITE/FRZ-Z', NULL, NULL, '2026-01-01 00:00:00')")
    found = verify(trial).problems
    assert f"vial {serial} differs from its last audited state: it was changed outside lotrack" \
        in found
    assert any(p.startswith("excursion ") and "changed outside lotrack" in p for p in found)
    assert f"vial {other} was deleted outside lotrack" in found
    assert "location SITE/FRZ-Z has no audit event: it was written outside lotrack" in found
    assert len(found) == 4, found


def tamper(trial) -> None:
    """One of each problem verify names: events altered, missing and out of the chain,
    rows changed, deleted and written behind lotrack, a record with an odd key."""
    with db.unit_of_work(trial.database.engine) as session:
        admin = auth.authenticate(session, "admin", PASSWORD)
        for key in ("007", "-1", "zz", "Ω"):  # keys that sort apart from the rows' keys
            audit.record(session, admin, "signature", key, "create", None, {"x": key})
        session.commit()
    with trial.database.engine.connect() as conn:
        last = conn.execute(text("SELECT max(seq) FROM audit_events")).scalar_one()
    raw(trial, "UPDATE audit_events SET reason = 'edited' WHERE seq IN (3, :m)", m=last // 2)
    raw(trial, "DELETE FROM audit_events WHERE seq IN (10, 11, :m)", m=last // 2 + 1)
    raw(trial, "UPDATE vials SET on_hold = NOT on_hold WHERE id = 2")
    raw(trial, "DELETE FROM qc_results WHERE id = 1")
    raw(trial, "INSERT INTO storage_locations (path, parent_id, capacity, created_at) "
               "VALUES ('SITE/FRZ-Z', NULL, NULL, '2026-01-01 00:00:00')")


def test_rows_merged_in_key_order_find_what_matching_each_key_finds(trial, monkeypatch):
    tamper(trial)
    merged = verify(trial)
    monkeypatch.setattr(audit_verify, "_key_order", lambda *args: None)
    matched = verify(trial)
    assert merged.rows == matched.rows
    assert sorted(merged.problems) == sorted(matched.problems)
    assert "signature 007 was deleted outside lotrack" in merged.problems
    assert len(merged.problems) >= 12, merged.problems


def in_runs(monkeypatch) -> tuple[list[int], list[int]]:
    """Verify in two processes from here on, in runs of 7 events. The first list grows by
    one for each run this process checks itself, the second for each the other sends."""
    monkeypatch.setattr(audit_verify, "_RUN_SIZE", 7)
    monkeypatch.setattr(audit_verify, "_PARALLEL_FROM", 20)
    checked_here: list[int] = []
    real = audit_verify._check_run
    monkeypatch.setattr(audit_verify, "_check_run",
                        lambda *a: checked_here.append(1) or real(*a))
    received: list[int] = []
    real_received = audit_verify._received

    def counted(receiver):
        for index, run in real_received(receiver):
            received.append(index)
            yield index, run

    monkeypatch.setattr(audit_verify, "_received", counted)
    return checked_here, received


def test_the_chain_checked_in_two_processes_finds_what_one_pass_finds(trial, monkeypatch):
    tamper(trial)
    # A timestamp in another form than SQLAlchemy writes, read by the other process too.
    raw(trial, "UPDATE audit_events SET occurred_at = :at WHERE seq = 2",
        at="2026-01-02 03:04:05" if trial.database.backend == "sqlite"
        else "2026-01-02 04:04:05+01")
    one_pass = verify(trial)
    checked_here, received = in_runs(monkeypatch)
    two = verify(trial)
    assert two.problems == one_pass.problems
    assert (two.events, two.rows) == (one_pass.events, one_pass.rows)
    assert 0 < len(checked_here) < two.events // 7  # this process took only some runs
    assert received  # and the other process the rest


def test_both_processes_read_the_state_verify_started_from(trial, monkeypatch):
    if trial.database.backend != "postgresql":
        pytest.skip("on SQLite verify holds the write lock: nothing commits while it runs")
    tamper(trial)
    one_pass = verify(trial)
    checked_here, received = in_runs(monkeypatch)
    real = audit_verify._verify_rows

    def commits_meanwhile(session, report):
        # Another user's change lands after the snapshot was taken: events appended, a
        # row changed (and, from here, a snapshot taken later would see an event altered).
        with db.unit_of_work(trial.database.engine) as other:
            admin = auth.authenticate(other, "admin", PASSWORD)
            audit.record(other, admin, "note", "n-9", "comment", None, None)
            other.commit()
        raw(trial, "UPDATE vials SET on_hold = NOT on_hold WHERE id = 3")
        raw(trial, "UPDATE audit_events SET reason = 'late edit' WHERE seq = 5")
        return real(session, report)

    monkeypatch.setattr(audit_verify, "_verify_rows", commits_meanwhile)
    two = verify(trial)
    assert two.problems == one_pass.problems
    assert (two.events, two.rows) == (one_pass.events, one_pass.rows)
    assert 0 < len(checked_here) < two.events // 7
    assert received


def test_a_transaction_that_wrote_is_verified_with_its_own_changes(trial, monkeypatch):
    in_runs(monkeypatch)
    with db.unit_of_work(trial.database.engine) as session:
        admin = auth.authenticate(session, "admin", PASSWORD)
        before = audit.verify(session)
        audit.record(session, admin, "note", "n-3", "comment", None, None)
        serial = session.execute(text("SELECT serial FROM vials WHERE id = 2")).scalar_one()
        session.execute(text("UPDATE vials SET on_hold = NOT on_hold WHERE id = 2"))
        after = audit.verify(session)
    assert before.ok, before.problems
    assert after.events == before.events + 1
    assert after.problems == [
        f"vial {serial} differs from its last audited state: it was changed outside lotrack"]


def test_runs_the_second_process_did_not_check_are_checked_here(trial, monkeypatch):
    tamper(trial)
    one_pass = verify(trial)
    monkeypatch.setattr(audit_verify, "_RUN_SIZE", 7)
    monkeypatch.setattr(audit_verify, "_PARALLEL_FROM", 20)

    def dies_after_claiming(path, bounds, shared, claimed, sender):
        for _ in range(3):
            audit_verify._claim(claimed, shared)

    monkeypatch.setattr(audit_verify, "_chain_worker", dies_after_claiming)
    assert verify(trial).problems == one_pass.problems
