"""QC results: entry, all-or-nothing CSV import, corrections, and judgement against the
specification the lot was registered under."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.db import bulk_insert
from lotrack.errors import InvalidInput, RuleViolation
from lotrack.models import Lot, QcResult, User
from lotrack.models.base import utcnow
from lotrack.schemas import parse
from lotrack.schemas.lots import QcRowIn, SpecAttributeIn, SpecFile
from lotrack.services.roles import require_role

CSV_COLUMNS = ("attribute", "value", "unit", "method", "tested_at", "analyst")


@dataclass(frozen=True)
class Verdict:
    verdict: str  # pass, fail, not_evaluable
    detail: str
    number: float | None


def limit_text(attr: SpecAttributeIn) -> str:
    if attr.expected is not None:
        return attr.expected
    if attr.min is not None and attr.max is not None:
        return f"{attr.min:g} - {attr.max:g}"
    return f">= {attr.min:g}" if attr.min is not None else f"<= {attr.max:g}"


def alert_text(attr: SpecAttributeIn) -> str:
    """The alert limits of an attribute ('' when it has none)."""
    if attr.alert_min is not None and attr.alert_max is not None:
        return f"{attr.alert_min:g} - {attr.alert_max:g}"
    if attr.alert_min is not None:
        return f">= {attr.alert_min:g}"
    return f"<= {attr.alert_max:g}" if attr.alert_max is not None else ""


def alert_of(attr: SpecAttributeIn, value_text: str, verdict: str) -> str | None:
    """Why a passing result is flagged for QA: beyond an alert limit (strictly), inside its
    specification. A censored result is flagged when what it stands for may be beyond."""
    if verdict != "pass" or (attr.alert_min is None and attr.alert_max is None):
        return None
    parsed = _number(value_text)
    if parsed is None:
        return None
    qualifier, number = parsed
    low, high = number, number
    if qualifier.startswith("<"):
        low = -math.inf
    elif qualifier.startswith(">"):
        high = math.inf
    if attr.alert_min is not None and low < attr.alert_min:
        return (f"{value_text.strip()} is below the alert limit {attr.alert_min:g} "
                f"(specification {limit_text(attr)})")
    if attr.alert_max is not None and high > attr.alert_max:
        return (f"{value_text.strip()} is above the alert limit {attr.alert_max:g} "
                f"(specification {limit_text(attr)})")
    return None


def _number(text: str) -> tuple[str, float] | None:
    """A numeric result, possibly censored ('<0.05', '>1e12'): (qualifier, value)."""
    raw = text.strip().replace(" ", "")
    qualifier = ""
    for q in ("<=", ">=", "<", ">"):
        if raw.startswith(q):
            qualifier, raw = q, raw[len(q):]
            break
    try:
        value = float(raw)
    except ValueError:
        return None
    return (qualifier, value) if math.isfinite(value) else None


def evaluate(attr: SpecAttributeIn, value: str) -> Verdict:
    """Judge one value; a value the attribute cannot hold at all is refused (InvalidInput)."""
    if attr.expected is not None:
        ok = value.strip().casefold() == attr.expected.casefold()
        return Verdict("pass" if ok else "fail",
                       f"expected {attr.expected!r}" + ("" if ok else f", found {value.strip()!r}"),
                       None)
    parsed = _number(value)
    if parsed is None:
        raise InvalidInput(f"{attr.name}: {value!r} is not a number")
    qualifier, number = parsed
    low = attr.min if attr.min is not None else -math.inf
    high = attr.max if attr.max is not None else math.inf
    if not qualifier:
        ok = low <= number <= high
        return _with_alert(attr, value, Verdict("pass" if ok else "fail",
                                                f"limits {limit_text(attr)}", number))
    # A censored result (below or above a quantitation limit) is judged only when the
    # whole interval it stands for is inside, or outside, the limits.
    below = qualifier.startswith("<")
    lo, hi = (-math.inf, number) if below else (number, math.inf)
    if low <= lo and hi <= high:
        return _with_alert(attr, value, Verdict(
            "pass", f"{qualifier}{number:g} within {limit_text(attr)}", number))
    if hi < low or lo > high:
        return Verdict("fail", f"{qualifier}{number:g} outside {limit_text(attr)}", number)
    return Verdict("not_evaluable", f"{qualifier}{number:g} cannot be judged against "
                   f"{limit_text(attr)}", number)


def _with_alert(attr: SpecAttributeIn, value: str, verdict: Verdict) -> Verdict:
    why = alert_of(attr, value, verdict.verdict)
    if why is None:
        return verdict
    return Verdict(verdict.verdict, f"{verdict.detail}; ALERT: {why}", verdict.number)


def current_alerts(session: Session, lot: Lot) -> list[dict[str, str]]:
    """The lot's current results that pass but lie beyond an alert limit: flagged for QA."""
    spec = _spec(lot)
    flagged = []
    for name, result in sorted(current_results(session, lot).items()):
        attr = spec.attribute(name)
        why = alert_of(attr, result.value_text, result.verdict) if attr else None
        if why:
            flagged.append({"attribute": name, "value": result.value_text, "unit": result.unit,
                            "alert_limits": alert_text(attr), "detail": why})  # type: ignore[arg-type]
    return flagged


def _spec(lot: Lot) -> SpecFile:
    return _parsed_spec(lot.specification.content)


@lru_cache(maxsize=16)
def _parsed_spec(content: str) -> SpecFile:
    # A specification version never changes once loaded; an import of thousands of lots
    # parses each version once.
    return SpecFile.model_validate_json(content)


@lru_cache(maxsize=16)
def _spec_attributes(content: str) -> dict[str, SpecAttributeIn]:
    """The attributes of a specification version by name, for judging many rows."""
    return {attr.name: attr for attr in _parsed_spec(content).attributes}


def current_results(session: Session, lot: Lot) -> dict[str, QcResult]:
    rows = session.execute(select(QcResult).where(QcResult.lot_id == lot.id,
                                                  QcResult.superseded.is_(False))).scalars()
    return {r.attribute: r for r in rows}


def all_results(session: Session, lot: Lot) -> list[QcResult]:
    return list(session.execute(select(QcResult).where(QcResult.lot_id == lot.id)
                                .order_by(QcResult.attribute, QcResult.id)).scalars())


def release_blockers(session: Session, lot: Lot) -> list[str]:
    """Every required attribute that is missing, out of specification or not evaluable."""
    current = current_results(session, lot)
    problems: list[str] = []
    for attr in _spec(lot).attributes:
        result = current.get(attr.name)
        if result is None:
            if attr.required:
                problems.append(f"{attr.name} has no result")
        elif result.verdict == "fail":
            problems.append(f"{attr.name} {result.value_text} {result.unit} is out of "
                            f"specification ({limit_text(attr)})")
        elif result.verdict == "not_evaluable":
            problems.append(f"{attr.name} {result.value_text} is not evaluable "
                            f"({result.verdict_detail})")
    return problems


def _checked_row(attributes: dict[str, SpecAttributeIn], row: QcRowIn,
                 where: str) -> tuple[SpecAttributeIn, Verdict]:
    attr = attributes.get(row.attribute)
    if attr is None:
        raise InvalidInput(f"{where}: {row.attribute!r} is not an attribute of the specification")
    if row.unit != attr.unit:
        raise InvalidInput(f"{where}: {row.attribute} must be reported in {attr.unit!r}, "
                           f"not {row.unit!r}")
    try:
        return attr, evaluate(attr, row.value)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None


@dataclass(frozen=True)
class LotResults:
    """One lot's rows for `record_many_lots`, with how messages name each row."""

    lot: Lot
    rows: list[QcRowIn]
    where: list[str]


def record_results(session: Session, actor: User, lot: Lot, rows: list[QcRowIn],
                   reason: str | None = None, source: str = "entry",
                   lines: Sequence[int] | None = None) -> list[dict[str, object]]:
    """Record results all-or-nothing; a result for an attribute that already has one is a
    correction: it needs a reason and supersedes the old result, which stays visible.
    `lines` are the rows' lines in the file they came from, for the messages."""
    if lines is None and source != "entry":
        lines = range(2, len(rows) + 2)
    where = [f"row {n}" for n in lines] if lines is not None else [r.attribute for r in rows]
    return record_many_lots(session, actor, [LotResults(lot, rows, where)], reason)[0]


def _first_few(names: list[str], shown: int = 5) -> str:
    """A list for one line of error: a whole file sent twice names thousands of lots."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more:,} more" if more > 0 else "")


def record_many_lots(session: Session, actor: User, batches: list[LotResults],
                     reason: str | None = None) -> list[list[dict[str, object]]]:
    """`record_results` for many lots in one pass: the rules per lot are the same, the
    reads, inserts and audit events are done once for all (a laboratory's file of
    100,000 results records in seconds). One summary list per lot, in order."""
    require_role(actor, "qa", action="recording QC results")
    judged: dict[tuple[str, ...], tuple[SpecAttributeIn, Verdict]] = {}
    checked = [_checked_batch(batch, judged) for batch in batches]
    current = _current_of(session, [batch.lot for batch in batches])
    of_batch = [current[b.lot.id] for b in batches]
    corrected = [lot_current[r.attribute] for b, lot_current in zip(batches, of_batch, strict=True)
                 for r in b.rows if r.attribute in lot_current]
    if corrected and not (reason and reason.strip()):
        names = sorted({r.attribute for r in corrected})
        lot_names = sorted({b.lot.lot_number for b, lot_current in zip(batches, of_batch, strict=True)
                            if any(r.attribute in lot_current for r in b.rows)})
        where = f" (lot {_first_few(lot_names)})" if len(batches) > 1 else ""
        raise InvalidInput(f"{_first_few(names)} already {'has' if len(names) == 1 else 'have'} "
                           f"a result{where}: a correction needs --reason")
    now = utcnow()
    if corrected:
        _supersede(session, actor, corrected, reason or "")
    values = [_lot_values(b, pairs, lot_current, actor, now, reason)
              for b, pairs, lot_current in zip(batches, checked, of_batch, strict=True)]
    flat = [v for lot_values in values for v in lot_values]
    # A plain Core executemany, then the new ids read back: an INSERT ... RETURNING of many
    # rows in parameter order grows worse than linearly in SQLAlchemy (30 s for 8,500 rows),
    # and the ORM's bulk insert costs more per row than the rest of the import.
    bulk_insert(session, QcResult.__table__, flat)
    new_ids = _current_ids(session, [b.lot.id for b in batches])
    audit.record_many(session, actor, [
        audit.Entry("qc_result", str(new_ids[(v["lot_id"], v["attribute"])]),
                    "correct" if v["supersedes_id"] else "enter", None, _state(v),
                    v["correction_reason"])
        for v in flat])
    del flat
    for batch, lot_values in zip(batches, values, strict=True):
        _flag_if_failing(session, actor, batch.lot, lot_values)
    return [[{"attribute": v["attribute"], "value": v["value_text"], "unit": v["unit"],
              "verdict": v["verdict"], "detail": v["verdict_detail"]} for v in lot_values]
            for lot_values in values]


def _checked_batch(batch: LotResults, judged: dict[tuple[str, ...], tuple[SpecAttributeIn, Verdict]]
                   ) -> list[tuple[SpecAttributeIn, Verdict]]:
    """Each row's attribute and verdict. A judgement depends only on the specification
    and the row's attribute, unit and value, so `judged` keeps each one for the rows that
    repeat it (a file for many lots repeats most of its qualitative results)."""
    if batch.lot.status == "destroyed":
        raise RuleViolation(f"lot {batch.lot.lot_number} is destroyed")
    content = batch.lot.specification.content
    attributes = _spec_attributes(content)
    checked = []
    for row, at in zip(batch.rows, batch.where, strict=True):
        key = (content, row.attribute, row.unit, row.value)
        found = judged.get(key)
        if found is None:
            found = judged[key] = _checked_row(attributes, row, at)
        checked.append(found)
    seen: set[str] = set()
    for row in batch.rows:
        if row.attribute in seen:
            raise InvalidInput(f"{row.attribute} is given twice")
        seen.add(row.attribute)
    return checked


def _current_of(session: Session, lots: list[Lot]) -> dict[int, dict[str, QcResult]]:
    """The current results of many lots, in bounded IN lists (one query per 500 lots)."""
    ids = sorted({lot.id for lot in lots})
    out: dict[int, dict[str, QcResult]] = {lot_id: {} for lot_id in ids}
    for start in range(0, len(ids), 500):
        for result in session.execute(select(QcResult).where(
                QcResult.lot_id.in_(ids[start:start + 500]),
                QcResult.superseded.is_(False))).scalars():
            out[result.lot_id][result.attribute] = result
    return out


def _current_ids(session: Session, lot_ids: list[int]) -> dict[tuple[object, object], int]:
    """(lot id, attribute) -> id of the current result: after a recording, the new rows
    (each attribute has one current result, the rest are superseded)."""
    ids = sorted(set(lot_ids))
    out: dict[tuple[object, object], int] = {}
    for start in range(0, len(ids), 500):
        out.update(((lot_id, attribute), result_id) for lot_id, attribute, result_id in session.execute(
            select(QcResult.lot_id, QcResult.attribute, QcResult.id).where(
                QcResult.lot_id.in_(ids[start:start + 500]), QcResult.superseded.is_(False))))
    return out


def _flag_if_failing(session: Session, actor: User, lot: Lot,
                     values: list[dict[str, object]]) -> None:
    failing = sorted(str(v["attribute"]) for v in values if v["verdict"] != "pass")
    if failing and lot.status != "quarantine" and not lot.qa_review_needed:
        # A released lot with a new failing result is no longer dispensed (see
        # failing_attributes) and goes to QA, who decide on hold, recall or correction.
        before = lot.audit_state()
        lot.qa_review_needed = True
        audit.record_row(session, actor, lot, "flag_for_review", before,
                         f"QC result out of specification after {lot.status}: {', '.join(failing)}")


def _lot_values(batch: LotResults, checked: list[tuple[SpecAttributeIn, Verdict]],
                current: dict[str, QcResult], actor: User, now: datetime,
                reason: str | None) -> list[dict[str, object]]:
    """The new result rows of one lot, as inserted."""
    lot_id, actor_id = batch.lot.id, actor.id
    correction = reason.strip() if reason else None
    out = []
    for row, (attr, verdict) in zip(batch.rows, checked, strict=True):
        old = current.get(row.attribute)
        out.append({"lot_id": lot_id, "attribute": row.attribute, "value_text": row.value.strip(),
                    "value_number": verdict.number, "unit": row.unit,
                    "method": row.method or attr.method, "tested_on": row.tested_on,
                    "analyst": row.analyst, "verdict": verdict.verdict,
                    "verdict_detail": verdict.detail[:300], "entered_at": now,
                    "entered_by_id": actor_id, "supersedes_id": old.id if old else None,
                    "correction_reason": correction if old else None, "superseded": False})
    return out


def _state(v: dict[str, object]) -> dict[str, object]:
    tested = v["tested_on"]
    return {"lot_id": v["lot_id"], "attribute": v["attribute"], "value": v["value_text"],
            "unit": v["unit"], "method": v["method"],
            "tested_on": tested.isoformat() if isinstance(tested, date) else tested,
            "analyst": v["analyst"], "verdict": v["verdict"],
            "supersedes_id": v["supersedes_id"], "correction_reason": v["correction_reason"],
            "superseded": v["superseded"]}


def _supersede(session: Session, actor: User, old: list[QcResult], reason: str) -> None:
    session.execute(update(QcResult).where(QcResult.id.in_([r.id for r in old]))
                    .values(superseded=True).execution_options(synchronize_session=False))
    for result in old:
        before = result.audit_state()
        session.refresh(result)
        audit.record(session, actor, "qc_result", str(result.id), "supersede", before,
                     result.audit_state(), reason=reason.strip())


def parse_csv(text: str) -> list[QcRowIn]:
    """Rows of a results file; the first bad row refuses the whole file, naming its line."""
    return [row for _, _, row in read_csv(text, CSV_COLUMNS)]


def read_csv(text: str, columns: tuple[str, ...],
             keep: tuple[str, ...] = ()) -> list[tuple[int, tuple[str, ...], QcRowIn]]:
    """(line, the row's `keep` columns, validated row) for each row of a results file.

    Rows are validated a few thousand at a time (one pydantic call each, which is what
    makes a 100,000-row file quick) and only what is kept stays in memory; the first bad
    row refuses the file, by line. Blank lines are skipped and not counted, as
    csv.DictReader does; a repeated column name means its last column."""
    reader = csv.reader(io.StringIO(text))
    header = tuple(next(reader, ()))
    missing = [c for c in columns if c not in header]
    if missing:
        raise InvalidInput(f"the CSV file lacks column(s) {', '.join(missing)}; expected "
                           f"{', '.join(columns)}")
    index = {name: i for i, name in enumerate(header)}
    width = len(header)
    attribute, value, unit, method, tested_at, analyst = (index[c] for c in CSV_COLUMNS)
    kept_at = [index.get(k) for k in keep]
    out: list[tuple[int, tuple[str, ...], QcRowIn]] = []
    lines: list[int] = []
    kept: list[tuple[str, ...]] = []
    raw: list[dict[str, str]] = []
    for line, record in enumerate(filter(None, reader), start=2):
        if len(record) != width:
            raise InvalidInput(f"row {line}: wrong number of fields")
        lines.append(line)
        kept.append(tuple("" if i is None else record[i] for i in kept_at))
        raw.append({"attribute": record[attribute], "value": record[value],
                    "unit": record[unit], "method": record[method],
                    "tested_on": record[tested_at].strip()[:10], "analyst": record[analyst]})
        if len(raw) == _VALIDATE_AT_ONCE:
            out += zip(lines, kept, _validated_rows(raw, lines), strict=True)
            lines, kept, raw = [], [], []
    out += zip(lines, kept, _validated_rows(raw, lines), strict=True)
    if not out:
        raise InvalidInput("the CSV file has no result rows")
    return out


_VALIDATE_AT_ONCE = 5_000


def _validated_rows(raw: list[dict[str, str]], lines: list[int]) -> list[QcRowIn]:
    try:
        return _row_list().validate_python(raw)
    except ValidationError as exc:
        first = min(int(e["loc"][0]) for e in exc.errors())
        # The first bad row alone, validated again for a message about it only.
        parse(QcRowIn, raw[first], what=f"row {lines[first]}")
        raise AssertionError("unreachable: the row failed in the list") from exc


@lru_cache(maxsize=1)
def _row_list() -> TypeAdapter[list[QcRowIn]]:
    return TypeAdapter(list[QcRowIn])


def failing_attributes(session: Session, lot: Lot) -> list[str]:
    """Attributes whose current (not superseded) result does not pass."""
    return sorted(r.attribute for r in current_results(session, lot).values() if r.verdict != "pass")
