"""Results files for many lots at once, as a QC laboratory exports them.

A file names each row's lot (and, where two products share a lot number, its product);
the whole file is one transaction: one bad row, unknown lot or refused correction and
nothing is recorded. Each lot's rows go through `qc.record_results`, so the rules are
those of entering the results lot by lot.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, contains_eager

from lotrack.errors import InvalidInput, NotFound
from lotrack.memory import collector_paused
from lotrack.models import Lot, Product, User
from lotrack.schemas.lots import QcRowIn
from lotrack.services import qc
from lotrack.services.roles import require_role

FILE_COLUMNS = ("lot", *qc.CSV_COLUMNS)  # and, optionally, product


class FileRow(NamedTuple):  # a tuple: a file holds a hundred thousand of them
    line: int
    lot: str
    product: str | None
    row: QcRowIn


def parse_file(text: str) -> list[FileRow]:
    """The rows of a multi-lot results file; the first bad row refuses the file."""
    with collector_paused():
        rows = []
        for line, (lot, product), row in qc.read_csv(text, FILE_COLUMNS, keep=("lot", "product")):
            if not lot.strip():
                raise InvalidInput(f"row {line}: the lot is empty")
            rows.append(FileRow(line, lot.strip(), product.strip() or None, row))
        return rows


def import_results(session: Session, actor: User, rows: list[FileRow],
                   reason: str | None = None) -> list[dict[str, object]]:
    """Record every row, lot by lot, all or nothing; one summary line per lot."""
    require_role(actor, "qa", action="importing QC results")
    with collector_paused():
        by_lot: dict[tuple[str, str | None], list[FileRow]] = {}
        for item in rows:
            by_lot.setdefault((item.lot, item.product), []).append(item)
        lots = _lots(session, list(by_lot))
        batches = [qc.LotResults(lots[key], [i.row for i in items], [f"row {i.line}" for i in items])
                   for key, items in by_lot.items()]
        summary = []
        for start in range(0, len(batches), LOTS_AT_ONCE):
            summary += _summary(batches[start:start + LOTS_AT_ONCE],
                                qc.record_many_lots(session, actor,
                                                    batches[start:start + LOTS_AT_ONCE], reason))
        return summary




# Lots recorded per pass, all in the one transaction: bounds the memory a large file takes
# (the rows, their audit states and events exist for one pass at a time).
LOTS_AT_ONCE = 500


def _summary(batches: list[qc.LotResults],
             recorded_per_lot: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    summary = []
    for batch, recorded in zip(batches, recorded_per_lot, strict=True):
        verdicts = Counter(str(r["verdict"]) for r in recorded)
        summary.append({"lot": batch.lot.lot_number, "product": batch.lot.product.code,
                        "results": len(recorded), "pass": verdicts["pass"],
                        "fail": verdicts["fail"], "not_evaluable": verdicts["not_evaluable"]})
    return summary


def _lots(session: Session, keys: list[tuple[str, str | None]]) -> dict[tuple[str, str | None], Lot]:
    """Every lot the file names, in one query; an unknown or ambiguous lot refuses the file."""
    found: dict[str, list[Lot]] = {}
    numbers = sorted({number for number, _ in keys})
    for start in range(0, len(numbers), 500):  # bounded IN lists for every backend
        for lot in session.execute(select(Lot).join(Product).options(contains_eager(Lot.product))
                                   .where(Lot.lot_number.in_(numbers[start:start + 500]))).scalars():
            found.setdefault(lot.lot_number, []).append(lot)
    out = {}
    for number, product in keys:
        matches = [lot for lot in found.get(number, [])
                   if product is None or lot.product.code == product]
        if not matches:
            raise NotFound(f"no lot {number!r}" + (f" of {product}" if product else ""))
        if len(matches) > 1:
            raise InvalidInput(f"lot number {number} exists for several products: give a "
                               "product column")
        out[(number, product)] = matches[0]
    return out
