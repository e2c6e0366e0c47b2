"""The drug accountability record, produced lot by lot: a site's record is its lots' records
one after the other, its streamed hash is the hash `report verify` recomputes, and the
queries behind it do not multiply with the doses."""

from __future__ import annotations

import csv
from datetime import timedelta

import pytest
from sqlalchemy import event
from trialkit import T0, UTC_TZ, Trial

from lotrack.render.pdf.accountability import write_accountability_csv, write_accountability_pdf
from lotrack.render.pdf.base import StoryOnDemand
from lotrack.render.pdf.readback import read_claims
from lotrack.render.provenance import StreamedContentHash, content_hash
from lotrack.services import documents, report_check
from lotrack.services.accountability import accountability, accountability_record


@pytest.fixture
def trial(database, make_user):
    return Trial.build(database, make_user)


@pytest.fixture
def site(trial):
    """Two IPSEXO lots and a placebo lot; a dose drawing on both IPSEXO lots, two doses
    dispensed at the same instant, one wasted, one returned."""
    first, second, placebo = trial.lot(vials=6), trial.lot(vials=6), trial.lot("PLACEBO", vials=4)
    a, b = trial.serials(first), trial.serials(second)
    for subject, group in (("S-001", "MID"), ("S-002", "LOW"), ("S-003", "LOW"), ("S-004", "PBO")):
        trial.enroll_and_operate(subject, group, T0)
    at = T0 + timedelta(hours=24, minutes=30)
    both = trial.dispense("S-001", [a[0], b[0]], at)
    trial.administer(both.dose_code, at + timedelta(minutes=20))
    trial.close(trial.dispense("S-002", [a[1]], at).dose_code, "wasted", "dropped in theatre")
    trial.close(trial.dispense("S-003", [b[1]], at + timedelta(minutes=5)).dose_code,
                "returned", "surgery postponed")
    trial.dispense("S-004", [trial.serials(placebo)[0]], at)
    return trial, [first, second, placebo]


def read(trial, action):
    return trial.act("monitor.sun", action)


def test_a_site_record_is_its_lots_records_one_after_the_other(site):
    trial, numbers = site
    whole = read(trial, lambda s, a: accountability(s, a, None))
    each = [read(trial, lambda s, a, n=n: accountability(s, a, n)) for n in numbers]
    assert [lot["lot"] for lot in whole["lots"]] == numbers
    assert whole["lots"] == [record["lots"][0] for record in each]
    assert {record["protocol"] for record in each} == {whole["protocol"]} != {""}


def test_the_lines_and_the_reconciliation_of_a_lot(site):
    trial, (first, second, _) = site
    lot = read(trial, lambda s, a: accountability(s, a, first))["lots"][0]
    kinds = [(line["kind"], line.get("participant"), line["quantity_out"], line["balance"])
             for line in lot["lines"]]
    # The two doses dispensed at the same instant come in dose order, every time.
    assert kinds == [("received", None, 0, 6), ("dispensed", "S-001", 1, 5),
                     ("dispensed", "S-002", 1, 4), ("wasted", "S-002", 0, 4)]
    assert lot["lines"][1]["cycle_perfusion"] == "C1P1"
    assert lot["lines"][3]["note"] == "dropped in theatre"
    rec = lot["reconciliation"]
    assert (rec["received"], rec["dispensed"], rec["wasted"], rec["in_stock"], rec["flags"]) == (
        6, 1, 1, 4, [])
    # The dose that drew on both lots counts one vial in each.
    other = read(trial, lambda s, a: accountability(s, a, second))["lots"][0]
    assert [(line["kind"], line["quantity_out"]) for line in other["lines"][1:]] == [
        ("dispensed", 1), ("dispensed", 1), ("returned", 0)]
    assert other["reconciliation"]["returned"] == 1


def test_the_streamed_hash_is_the_hash_of_the_whole_content(site):
    trial, _ = site
    whole = read(trial, lambda s, a: accountability(s, a, None))

    def streamed(session, actor):
        record = accountability_record(session, actor, None)
        digest = StreamedContentHash(record.head(), "lots")
        for lot in record.lots:
            digest.add(lot)
        return digest.hexdigest()

    assert read(trial, streamed) == content_hash(whole)


@pytest.mark.parametrize("head", [{"document": "x", "protocol": "P-1"}, {},
                                  {"a": 1, "z": ["é", None], "lots_x": {"k": 2.5}}])
def test_a_streamed_hash_equals_content_hash_whatever_the_keys(head):
    items = [{"b": 1, "a": "ü\"]"}, {"n": None}, [1, 2]]
    for listed in (items, []):
        digest = StreamedContentHash(head, "lots")
        for item in listed:
            digest.add(item)
        assert digest.hexdigest() == content_hash({**head, "lots": listed})


def test_a_streamed_pdf_verifies_and_the_csv_matches_the_whole_content(site, tmp_path):
    trial, _ = site
    meta = {"report": "accountability", "params": {"lot": None, "product": None}}

    def write(session, actor):
        prov = documents.provenance(session, actor)
        record = accountability_record(session, actor, None)
        digest = write_accountability_pdf(tmp_path / "darf.pdf", record, prov, UTC_TZ, meta)
        write_accountability_csv(tmp_path / "streamed.csv",
                                 accountability_record(session, actor, None))
        write_accountability_csv(tmp_path / "whole.csv", accountability(session, actor, None))
        return digest, record.flagged

    digest, flagged = read(trial, write)
    assert flagged == []
    verdict = read(trial, lambda s, a: report_check.verify(s, a, read_claims(
        tmp_path / "darf.pdf")))
    assert verdict.matches and verdict.current_sha256 == digest
    for name in ("", "-reconciliation"):
        streamed = (tmp_path / f"streamed{name}.csv").read_bytes()
        assert streamed == (tmp_path / f"whole{name}.csv").read_bytes()
    rows = list(csv.DictReader((tmp_path / "streamed.csv").open(encoding="utf-8")))
    assert len(rows) == 4 + 4 + 2 and rows[-1]["product"] == "PLACEBO"


def test_the_queries_do_not_multiply_with_lots_or_doses(site, database):
    trial, _ = site
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def lines(session, actor):
        statements.clear()
        return sum(len(lot["lines"]) for lot in accountability_record(session, actor, None).lots)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        few = read(trial, lines), len(statements)
        for n in range(5, 9):
            subject = f"S-{n:03d}"
            trial.enroll_and_operate(subject, "LOW", T0)
            trial.dispense(subject, [trial.vial()], T0 + timedelta(hours=25))
        more = read(trial, lines), len(statements)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    assert more[0] > few[0] and more[1] == few[1]


def test_the_story_is_filled_one_section_at_a_time():
    drawn: list[int] = []

    def sections():
        for n in range(3):
            drawn.append(n)
            yield [f"heading {n}", f"table {n}"]

    story = StoryOnDemand(sections())
    assert drawn == [] and len(story) == 2 and drawn == [0]
    del story[0]
    assert len(story) == 3 and drawn == [0, 1]
    del story[:3]
    assert len(story) == 2 and drawn == [0, 1, 2]
    del story[:2]
    assert len(story) == 0


def test_an_unknown_lot_is_refused_before_anything_is_read(trial):
    from lotrack.errors import NotFound

    with pytest.raises(NotFound, match="NOPE"):
        read(trial, lambda s, a: accountability_record(s, a, "NOPE"))


def test_a_csv_that_fails_half_way_leaves_the_previous_one(site, tmp_path):
    trial, _ = site
    out = tmp_path / "darf.csv"
    read(trial, lambda s, a: write_accountability_csv(out, accountability_record(s, a, None)))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing(session, actor):
        record = accountability_record(session, actor, None)
        lots = record.lots

        def lost_after_one():
            yield next(lots)
            raise RuntimeError("connection lost")
        record.lots = lost_after_one()
        return write_accountability_csv(out, record)

    with pytest.raises(RuntimeError, match="connection lost"):
        read(trial, failing)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_verify_counts_the_lines_it_recomputes(site, tmp_path):
    trial, _ = site
    meta = {"report": "accountability", "params": {"lot": None, "product": None}}
    whole = read(trial, lambda s, a: accountability(s, a, None))
    read(trial, lambda s, a: write_accountability_pdf(
        tmp_path / "darf.pdf", accountability_record(s, a, None),
        documents.provenance(s, a), UTC_TZ, meta))
    verdict = read(trial, lambda s, a: report_check.verify(s, a, read_claims(
        tmp_path / "darf.pdf")))
    assert verdict.matches
    assert verdict.summary_now == {"lines": sum(len(lot["lines"]) for lot in whole["lots"])} \
        == {"lines": 10}
