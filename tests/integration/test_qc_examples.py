"""The passing example QC results shipped beside the specifications (tests, benchmarks and
the demo release lots with them) still pass those specifications."""

from datetime import date

import pytest
from trialkit import Trial

from lotrack import db
from lotrack.schemas.lots import (
    LotIn,
    example_qc_results,
    example_qc_rows,
    load_spec_file,
    shipped_spec_path,
)
from lotrack.services import lots, qc

PRODUCTS = ("IPSEXO", "PLACEBO")


@pytest.mark.parametrize("product", PRODUCTS)
def test_every_example_result_passes_the_shipped_specification(product):
    spec = load_spec_file(shipped_spec_path(product))
    results = example_qc_results(product)
    names = [name for name, _, _ in results]
    assert sorted(names) == sorted(a.name for a in spec.attributes), "one result per attribute"
    for name, value, unit in results:
        attr = spec.attribute(name)
        verdict = qc.evaluate(attr, value)
        assert (unit, verdict.verdict) == (attr.unit, "pass"), (name, value, verdict.detail)
        assert "ALERT" not in verdict.detail, (name, value, verdict.detail)


def test_lots_with_the_example_results_pass_the_active_specifications(database, make_user):
    trial = Trial.build(database, make_user)  # loads and activates the shipped specifications
    for product in PRODUCTS:
        number = f"EX-{product}"
        trial.act("qa.lee", lambda s, a, n=number, p=product: lots.register_lot(s, a, LotIn(
            lot_number=n, product=p, manufactured_on=date(2026, 1, 10),
            expiry_on=date(2026, 12, 31), vials=2)))
        recorded = trial.act("qa.lee", lambda s, a, n=number, p=product: qc.record_results(
            s, a, lots.get_lot(s, n), example_qc_rows(p, date(2026, 1, 20))))
        assert [r["verdict"] for r in recorded] == ["pass"] * len(recorded), recorded
        with db.unit_of_work(database.engine) as session:
            assert qc.release_blockers(session, lots.get_lot(session, number)) == []
