"""A QC laboratory's results file for many lots: all or nothing, judged lot by lot."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select
from trialkit import Trial, qc_rows

from lotrack import audit, db
from lotrack.errors import InvalidInput, NotFound, PermissionDenied
from lotrack.models import AuditEvent, QcResult
from lotrack.schemas.lots import LotIn
from lotrack.services import lots, qc, qc_files

HEADER = "lot,attribute,value,unit,method,tested_at,analyst\n"


@pytest.fixture
def trial(database, make_user):
    return Trial.build(database, make_user)


def register(trial: Trial, number: str, product: str = "IPSEXO") -> None:
    trial.act("qa.lee", lambda s, a: lots.register_lot(s, a, LotIn(
        lot_number=number, product=product, manufactured_on=date(2026, 1, 10),
        expiry_on=date(2026, 12, 31), vials=2)))


def file_rows(number: str, product: str = "IPSEXO", overrides: dict[str, str] | None = None,
              with_product: bool = False) -> str:
    lead = f"{number},{product}" if with_product else number
    return "".join(f"{lead},{r.attribute},\"{r.value}\",{r.unit},HPLC,2026-01-20,J. Analyst\n"
                   for r in qc_rows(product, overrides))


def results(trial: Trial) -> int:
    with db.unit_of_work(trial.database.engine) as session:
        return session.execute(select(func.count(QcResult.id))).scalar_one()


def run(trial: Trial, text: str, user: str = "qa.lee"):
    rows = qc_files.parse_file(text)
    return trial.act(user, lambda s, a: qc_files.import_results(s, a, rows))


def test_one_file_records_every_lot_judged_and_audited_and_the_lots_can_be_released(trial):
    for number in ("Q1", "Q2", "Q3"):
        register(trial, number)
    register(trial, "P1", "PLACEBO")
    text = (HEADER + file_rows("Q1") + file_rows("Q2", overrides={"ph": "8.9"})
            + file_rows("Q3") + file_rows("P1", "PLACEBO"))
    summary = run(trial, text)
    assert [(r["lot"], r["product"], r["results"], r["fail"]) for r in summary] == [
        ("Q1", "IPSEXO", 17, 0), ("Q2", "IPSEXO", 17, 1), ("Q3", "IPSEXO", 17, 0),
        ("P1", "PLACEBO", 5, 0)]
    with db.unit_of_work(trial.database.engine) as session:
        enters = session.execute(select(func.count(AuditEvent.seq)).where(
            AuditEvent.entity == "qc_result", AuditEvent.action == "enter")).scalar_one()
        assert enters == 17 * 3 + 5
        assert audit.verify(session).ok
        q2 = lots.get_lot(session, "Q2")
        assert qc.release_blockers(session, q2) == [
            "ph 8.9 pH is out of specification (6.8 - 7.6)"]
        assert qc.release_blockers(session, lots.get_lot(session, "Q1")) == []
    trial.transition("Q1", "released")


def test_one_bad_row_anywhere_refuses_the_whole_file_naming_its_line(trial):
    for number in ("Q1", "Q2"):
        register(trial, number)
    good = HEADER + file_rows("Q1")
    bad_value = good + file_rows("Q2", overrides={"osmolality": "abc"})
    line = 2 + 17 + [r.attribute for r in qc_rows("IPSEXO")].index("osmolality")
    with pytest.raises(InvalidInput, match=f"row {line}: osmolality: 'abc' is not a number"):
        run(trial, bad_value)
    with pytest.raises(InvalidInput, match="row 3: tested_on"):
        run(trial, HEADER + "Q1,ph,7.3,pH,m,2026-01-20,A\nQ1,osmolality,295,mOsm/kg,m,"
                            "20-01-2026,A\n")
    with pytest.raises(InvalidInput, match="row 2: the lot is empty"):
        run(trial, HEADER + ",ph,7.3,pH,m,2026-01-20,A\n")
    with pytest.raises(NotFound, match="no lot 'NOPE'"):
        run(trial, good + "NOPE,ph,7.3,pH,m,2026-01-20,A\n")
    with pytest.raises(InvalidInput, match="ph is given twice"):
        run(trial, good + "Q1,ph,7.3,pH,m,2026-01-20,A\n")
    with pytest.raises(InvalidInput, match="lacks column"):
        qc_files.parse_file("attribute,value,unit,method,tested_at,analyst\nph,7,pH,m,"
                            "2026-01-20,A\n")
    assert results(trial) == 0


def test_a_lot_number_two_products_share_needs_the_product_column(trial):
    register(trial, "S1")
    register(trial, "S1", "PLACEBO")
    with pytest.raises(InvalidInput, match="several products: give a product column"):
        run(trial, HEADER + file_rows("S1"))
    header = "lot,product,attribute,value,unit,method,tested_at,analyst\n"
    summary = run(trial, header + file_rows("S1", "PLACEBO", with_product=True))
    assert [(r["lot"], r["product"]) for r in summary] == [("S1", "PLACEBO")]


def test_a_whole_file_sent_twice_is_refused_in_one_short_line(trial):
    numbers = [f"R{n}" for n in range(1, 8)]
    for number in numbers:
        register(trial, number)
    whole = HEADER + "".join(file_rows(number) for number in numbers)
    run(trial, whole)
    attributes = sorted({r.attribute for r in qc_rows("IPSEXO")})
    with pytest.raises(InvalidInput) as refused:
        run(trial, whole)
    message = str(refused.value)
    assert message == (f"{', '.join(attributes[:5])} and {len(attributes) - 5} more already "
                       "have a result (lot R1, R2, R3, R4, R5 and 2 more): a correction needs "
                       "--reason")


def test_only_qa_imports_and_a_correction_needs_a_reason(trial, make_user):
    register(trial, "Q1")
    with pytest.raises(PermissionDenied):
        run(trial, HEADER + file_rows("Q1"), user="pharm.chen")
    run(trial, HEADER + file_rows("Q1"))
    again = HEADER + "Q1,ph,7.4,pH,m,2026-01-21,A\n"
    with pytest.raises(InvalidInput, match="ph already has a result: a correction needs"):
        run(trial, again)
    rows = qc_files.parse_file(again)
    trial.act("qa.lee", lambda s, a: qc_files.import_results(s, a, rows, "re-test"))
    with db.unit_of_work(trial.database.engine) as session:
        current = qc.current_results(session, lots.get_lot(session, "Q1"))
        assert current["ph"].value_text == "7.4"
        assert current["ph"].correction_reason == "re-test"
