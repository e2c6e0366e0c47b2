"""Batch-to-batch consistency and lot comparison on both databases: the numbers, the trend
flags with the lots' exposure, out-of-specification apart from out-of-trend, and bad input
that yields a clear message instead of a crash."""

from datetime import date, timedelta

import pytest
from trialkit import PASSWORD, T0, UTC_TZ, Trial

from lotrack.errors import InvalidInput, NotFound, RuleViolation
from lotrack.schemas.lots import LotIn, QcRowIn, SpecFile, load_spec_file, shipped_spec_path
from lotrack.services import lots, qc, specifications
from lotrack.services.consistency import compare_lots, consistency_report

SIZE = "modal_particle_size"


@pytest.fixture
def trial(database, make_user):
    return Trial.build(database, make_user)


def report(trial, product="IPSEXO", reader="monitor.sun", **options):
    return trial.act(reader, lambda s, a: consistency_report(s, a, product, **options))


def section(content, name=SIZE):
    return next(s for s in content["numeric"] + content["categorical"] if s["name"] == name)


def size_lots(trial, sizes, **kwargs):
    return [trial.lot(overrides={SIZE: str(v)}, **kwargs) for v in sizes]


def test_statistics_limits_and_capability_match_a_hand_computation(trial):
    # Sizes 110, 112, 111, 113, 114 nm against 50 - 200 nm:
    #   mean 112; sd sqrt(10 / 4) = 1.58113883; CV 1.41173%
    #   MR 2, 1, 2, 1; MR-bar 1.5; sigma 1.5 / 1.128 = 1.32978723
    #   CL 112, UCL 115.98936170, LCL 108.01063830; MR UCL 3.267 x 1.5 = 4.9005
    #   Cpk min(200 - 112, 112 - 50) / (3 x 1.32978723) = 62 / 3.98936170 = 15.54133333
    #   Ppk 62 / (3 x 1.58113883) = 62 / 4.74341649 = 13.07074760
    numbers = size_lots(trial, [110, 112, 111, 113, 114])
    content = report(trial, baseline=None, attributes=[SIZE])
    size = section(content)
    stats, limits, cap = size["statistics"], size["limits"], size["capability"]
    assert [p["lot"] for p in size["points"]] == numbers
    assert stats["n"] == 5 and stats["mean"] == pytest.approx(112)
    assert stats["sd"] == pytest.approx(1.58113883, abs=1e-8)
    assert stats["cv_pct"] == pytest.approx(1.41173110, abs=1e-7)
    assert (stats["min"], stats["max"]) == (110, 114)
    assert limits["centre"] == pytest.approx(112)
    assert limits["mr_bar"] == pytest.approx(1.5)
    assert limits["ucl"] == pytest.approx(115.98936170, abs=1e-8)
    assert limits["lcl"] == pytest.approx(108.01063830, abs=1e-8)
    assert limits["mr_ucl"] == pytest.approx(4.9005)
    assert cap["cpk"] == pytest.approx(15.54133333, abs=1e-7)
    assert cap["ppk"] == pytest.approx(13.07074760, abs=1e-7)
    assert [p["moving_range"] for p in size["points"]] == [None, 2, 1, 2, 1]
    assert size["spec"] == {"lsl": 50, "usl": 200, "text": "50 - 200"}
    assert content["flags"] == [] and content["baseline"]["description"] == "all 5 lots shown"
    assert [s["name"] for s in content["numeric"]] == [SIZE] and content["categorical"] == []


def test_a_slow_drift_within_specification_is_flagged_out_of_trend_with_its_exposure(trial):
    # Baseline (first 8 released lots): 112 116 113 115 111 114 113 115
    #   mean 909 / 8 = 113.625; MR 4 3 2 4 3 1 2, MR-bar 19 / 7 = 2.71428571
    #   sigma 2.40628166; UCL 120.84384; 2-sigma upper 118.43756
    # Then 116 117 118 119 120: still within 50 - 200 nm and below the UCL, but
    #   rule 3 (6 rising) at the 12th lot (113 115 116 117 118 119) and the 13th;
    #   rule 4 (2 of 3 beyond 2 sigma) at the 13th (119 and 120 beyond 118.43756).
    numbers = size_lots(trial, [112, 116, 113, 115, 111, 114, 113, 115, 116, 117, 118, 119, 120])
    trial.enroll_and_operate("S-001", "LOW", T0)
    trial.dispense("S-001", [trial.serials(numbers[12])[0]], T0 + timedelta(hours=24))
    trial.enroll_and_operate("S-002", "LOW", T0)
    wasted = trial.dispense("S-002", [trial.serials(numbers[11])[0]], T0 + timedelta(hours=24))
    trial.close(wasted.dose_code, "wasted", "dropped")  # a wasted dose reached no one

    content = report(trial)
    size = section(content)
    assert content["baseline"]["lots"] == numbers[:8]
    assert size["limits"]["centre"] == pytest.approx(113.625)
    assert size["limits"]["mr_bar"] == pytest.approx(19 / 7)
    assert size["limits"]["ucl"] == pytest.approx(120.84384, abs=1e-5)
    found = {(v["rule"], v["lot"]) for v in size["violations"]}
    assert found == {(3, numbers[11]), (3, numbers[12]), (4, numbers[12])}
    trend = next(v for v in size["violations"] if v["rule"] == 3 and v["lot"] == numbers[11])
    assert trend["lots"] == numbers[6:12] and not trend["oos"]
    flags = [f for f in content["flags"] if f["attribute"] == SIZE]
    assert {f["kind"] for f in flags} == {"OOT"}
    exposure = {f["lot"]: (f["participants_exposed"], f["doses"]) for f in flags}
    assert exposure == {numbers[11]: (0, 0), numbers[12]: (1, 1)}
    assert content["summary"]["exposed_flagged_lots"] == [numbers[12]]
    lot_rows = {row["lot"]: row for row in content["lots"]}
    assert lot_rows[numbers[12]]["exposure"] == {"participants": 1, "doses": 1}
    assert [p["rules"] for p in size["points"]][11:] == [[3], [3, 4]]


def test_out_of_specification_is_told_apart_and_a_rejected_lot_stays_on_the_chart(trial):
    good = size_lots(trial, [112, 113, 114])
    bad = trial.lot(release=False, receive=False, overrides={"endotoxin": "1.2", SIZE: "113"})
    trial.transition(bad, "rejected")
    negative = trial.lot(release=False, receive=False, overrides={"cd63": "negative"})
    content = report(trial)
    oos = [(f["attribute"], f["lot"], f["lot_status"]) for f in content["flags"]
           if f["kind"] == "OOS"]
    assert sorted(oos) == [("cd63", negative, "quarantine"), ("endotoxin", bad, "rejected")]
    size = section(content)
    assert [(p["lot"], p["status"]) for p in size["points"]][3] == (bad, "rejected")
    assert content["baseline"]["lots"] == good  # only released lots make the baseline
    endotoxin = section(content, "endotoxin")
    # Every other result is "<0.05": censored values are no measurement.
    assert endotoxin["statistics"]["n"] == 1 and endotoxin["statistics"]["sd"] is None
    assert any("censored" in n for n in endotoxin["notes"])
    cd63 = section(content, "cd63")
    assert (cd63["tested_lots"], cd63["passed"], cd63["failed"]) == (5, 4, 1)
    assert cd63["pass_rate_pct"] == pytest.approx(80)
    assert cd63["failing_lots"] == [negative]


def test_only_current_results_count_after_a_correction(trial):
    numbers = size_lots(trial, [110, 112, 111])
    trial.act("qa.lee", lambda s, a: qc.record_results(
        s, a, lots.get_lot(s, numbers[1]), [QcRowIn(attribute=SIZE, value="140", unit="nm",
                                                    tested_on=date(2026, 1, 21),
                                                    analyst="J. Analyst")],
        reason="transcription error"))
    size = section(report(trial, baseline=None))
    assert [p["value"] for p in size["points"]] == [110, 140, 111]


def test_the_since_option_and_the_attribute_choice(trial):
    size_lots(trial, [110, 112, 111])
    assert report(trial, since=date(2026, 1, 11))["lots"] == []
    assert len(report(trial, since=date(2026, 1, 10))["lots"]) == 3
    chosen = report(trial, attributes=["ph", "cd81"])
    assert [s["name"] for s in chosen["numeric"]] == ["ph"]
    assert [s["name"] for s in chosen["categorical"]] == ["cd81"]


# --- bad input: a clear message, never a crash ------------------------------------------------


def test_a_product_with_one_lot_gives_a_report_that_says_what_it_could_not_compute(trial):
    trial.lot(overrides={SIZE: "112"})
    content = report(trial)
    assert any("at least 2 lots" in n for n in content["notes"])
    size = section(content)
    assert size["statistics"]["n"] == 1 and size["statistics"]["sd"] is None
    assert size["limits"]["ucl"] is None and size["capability"]["cpk"] is None
    assert any("not computable" in n for n in size["notes"])
    assert size["violations"] == [] and not size["computed"]


def test_a_product_with_no_lot_gives_an_empty_report(trial):
    content = report(trial, product="PLACEBO")
    assert content["lots"] == [] and content["flags"] == []
    assert any("0 lot(s)" in n for n in content["notes"])
    assert all(not s["computed"] for s in content["numeric"])


def test_identical_results_give_not_computable_limits_not_a_division_by_zero(trial):
    size_lots(trial, [112, 112, 112])
    size = section(report(trial))
    assert size["statistics"]["sd"] == 0
    assert size["limits"]["sigma"] is None and size["capability"]["cpk"] is None
    assert any("MR-bar = 0" in n for n in size["notes"])


def test_results_in_mixed_units_are_not_averaged(trial):
    size_lots(trial, [112, 113])
    raw = load_spec_file(shipped_spec_path("IPSEXO")).model_dump()
    for attr in raw["attributes"]:
        if attr["name"] == SIZE:
            attr.update(unit="um", min=0.05, max=0.2)
    version = trial.act("qa.lee", lambda s, a: specifications.load_spec(
        s, a, SpecFile.model_validate(raw), "spec-um.toml"))
    trial.act("qa.lee", lambda s, a: specifications.activate_spec(s, a, "IPSEXO",
                                                                  version.version, PASSWORD))
    trial.act("qa.lee", lambda s, a: lots.register_lot(s, a, LotIn(
        lot_number="UM-1", product="IPSEXO", manufactured_on=date(2026, 1, 11),
        expiry_on=date(2026, 12, 31), vials=2)))
    trial.act("qa.lee", lambda s, a: qc.record_results(s, a, lots.get_lot(s, "UM-1"), [
        QcRowIn(attribute=SIZE, value="0.114", unit="um", tested_on=date(2026, 1, 20),
                analyst="J. Analyst")]))
    content = report(trial)
    size = section(content)
    assert size["unit"] == "mixed" and size["statistics"]["mean"] is None
    assert any("mixed units: nm (2 lot(s)), um (1 lot(s))" in n for n in size["notes"])
    assert size["violations"] == [] and size["limits"]["ucl"] is None


def test_a_baseline_larger_than_the_released_lots(trial):
    size_lots(trial, [110, 112, 111])
    with pytest.raises(InvalidInput, match="--baseline 5 asks for more lots than the 3 released"):
        report(trial, baseline=5, baseline_explicit=True)
    content = report(trial)  # the default of 8 falls back, and says so
    assert content["baseline"]["description"] == "all 3 released lots"
    assert any("default baseline of the first 8 released lots was not available" in n
               for n in content["notes"])


def test_unknown_product_and_attribute(trial):
    with pytest.raises(NotFound):
        report(trial, product="NOPE")
    with pytest.raises(InvalidInput, match=r"unknown attribute.*colour"):
        report(trial, attributes=["colour"])


# --- lot compare -----------------------------------------------------------------------------


def test_two_lots_side_by_side_with_the_difference_against_the_specification_range(trial):
    a = trial.lot(overrides={SIZE: "110", "ph": "7.1"})
    b = trial.lot(overrides={SIZE: "125", "ph": "7.3", "cd63": "negative"}, release=False)
    data = trial.act("monitor.sun", lambda s, actor: compare_lots(s, actor, [a, b]))
    rows = {r["attribute"]: r for r in data["attributes"]}
    assert [lot["lot"] for lot in data["lots"]] == [a, b]
    size = rows[SIZE]
    assert size["values"] == {a: "110", b: "125"} and size["limit"] == "50 - 200"
    assert size["difference"] == pytest.approx(15)
    assert size["pct_of_spec_range"] == pytest.approx(10)  # 15 of 150 nm
    assert rows["ph"]["pct_of_spec_range"] == pytest.approx(25)  # 0.2 of 0.8
    assert rows["cd63"]["difference"] == "differs" and rows["cd63"]["verdicts"][b] == "fail"
    assert rows["cd81"]["difference"] == "same"
    assert rows["endotoxin"]["difference"] is None and "censored" in rows["endotoxin"]["note"]
    assert rows["particle_to_protein_ratio"]["pct_of_spec_range"] is None
    assert "one-sided" in rows["particle_to_protein_ratio"]["note"]


def test_three_lots_show_the_spread(trial):
    numbers = size_lots(trial, [110, 125, 116])
    data = trial.act("qa.lee", lambda s, actor: compare_lots(s, actor, numbers))
    size = next(r for r in data["attributes"] if r["attribute"] == SIZE)
    assert size["difference"] == pytest.approx(15) and "spread" in size["note"]


def test_compare_refuses_one_lot_a_repeat_or_two_products(trial):
    a = trial.lot()
    p = trial.lot(product="PLACEBO")

    def compare(numbers):
        return trial.act("qa.lee", lambda s, actor: compare_lots(s, actor, numbers))

    with pytest.raises(InvalidInput, match="at least 2 lots"):
        compare([a])
    with pytest.raises(InvalidInput, match="given twice"):
        compare([a, a])
    with pytest.raises(RuleViolation, match="different products"):
        compare([a, p])
    with pytest.raises(NotFound):
        compare([a, "NOPE"])


def test_the_document_in_table_parts_shows_every_lot_and_verifies(trial, tmp_path, monkeypatch):
    """A product's thousands of lots are laid out in tables of ROWS_PER_TABLE rows, the
    sections unpacked one at a time: here 2 rows a table, and the same content hash."""
    from pypdf import PdfReader

    from lotrack.render.pdf import base
    from lotrack.render.pdf.consistency import write_consistency_pdf
    from lotrack.render.pdf.readback import read_claims
    from lotrack.render.provenance import content_hash
    from lotrack.services import documents, report_check
    from lotrack.services.consistency import consistency_record

    monkeypatch.setattr(base, "ROWS_PER_TABLE", 2)
    numbers = size_lots(trial, [112, 116, 113, 115, 111, 114, 113, 115, 116, 117, 118, 119, 120])
    out = tmp_path / "consistency.pdf"
    meta = {"report": "consistency", "params": {"product": "IPSEXO", "attributes": [],
                                                "since": None, "baseline": 8,
                                                "baseline_explicit": False}}

    def write(session, actor):
        record = consistency_record(session, actor, "IPSEXO")
        assert record.digest() == content_hash(record.whole())
        return record.digest(), write_consistency_pdf(
            out, record, documents.provenance(session, actor), UTC_TZ, meta)

    digest, printed = trial.act("monitor.sun", write)
    assert printed == digest == content_hash(report(trial))
    text = "".join(page.extract_text() for page in PdfReader(out).pages)
    assert all(number in text for number in numbers)
    assert text.count("Lots in the pattern") == 2  # three violations: two tables
    verdict = trial.act("monitor.sun", lambda s, a: report_check.verify(s, a, read_claims(out)))
    assert verdict.matches, verdict.problems
