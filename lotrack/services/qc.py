"""QC results: entry, all-or-nothing CSV import, corrections, and judgement against the
specification the lot was registered under."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from lotrack import audit
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
    return SpecFile.model_validate_json(lot.specification.content)


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


def _checked_row(spec: SpecFile, row: QcRowIn, where: str) -> tuple[SpecAttributeIn, Verdict]:
    attr = spec.attribute(row.attribute)
    if attr is None:
        raise InvalidInput(f"{where}: {row.attribute!r} is not an attribute of the specification")
    if row.unit != attr.unit:
        raise InvalidInput(f"{where}: {row.attribute} must be reported in {attr.unit!r}, "
                           f"not {row.unit!r}")
    try:
        return attr, evaluate(attr, row.value)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None


def record_results(session: Session, actor: User, lot: Lot, rows: list[QcRowIn],
                   reason: str | None = None, source: str = "entry") -> list[dict[str, object]]:
    """Record results all-or-nothing; a result for an attribute that already has one is a
    correction: it needs a reason and supersedes the old result, which stays visible."""
    require_role(actor, "qa", action="recording QC results")
    if lot.status == "destroyed":
        raise RuleViolation(f"lot {lot.lot_number} is destroyed")
    spec = _spec(lot)
    checked = [_checked_row(spec, row, f"row {i}" if source != "entry" else row.attribute)
               for i, row in enumerate(rows, start=1 if source == "entry" else 2)]
    seen: set[str] = set()
    for row in rows:
        if row.attribute in seen:
            raise InvalidInput(f"{row.attribute} is given twice")
        seen.add(row.attribute)
    current = current_results(session, lot)
    corrected = [current[r.attribute] for r in rows if r.attribute in current]
    if corrected and not (reason and reason.strip()):
        names = ", ".join(sorted(r.attribute for r in corrected))
        raise InvalidInput(f"{names} already has a result: a correction needs --reason")
    now = utcnow()
    if corrected:
        _supersede(session, actor, corrected, reason or "")
    values = [_row_values(lot, actor, row, attr, verdict, now, current.get(row.attribute),
                          reason) for row, (attr, verdict) in zip(rows, checked, strict=True)]
    inserted = session.execute(insert(QcResult).returning(QcResult.id, sort_by_parameter_order=True),
                               values).scalars().all()
    for result_id, row_values in zip(inserted, values, strict=True):
        state = _state(row_values)
        audit.record(session, actor, "qc_result", str(result_id),
                     "correct" if row_values["supersedes_id"] else "enter", None, state,
                     reason=row_values["correction_reason"])
    failing = sorted(v["attribute"] for v in values if v["verdict"] != "pass")
    if failing and lot.status != "quarantine" and not lot.qa_review_needed:
        # A released lot with a new failing result is no longer dispensed (see
        # failing_attributes) and goes to QA, who decide on hold, recall or correction.
        before = lot.audit_state()
        lot.qa_review_needed = True
        audit.record_row(session, actor, lot, "flag_for_review", before,
                         f"QC result out of specification after {lot.status}: {', '.join(failing)}")
    return [{"attribute": v["attribute"], "value": v["value_text"], "unit": v["unit"],
             "verdict": v["verdict"], "detail": v["verdict_detail"]} for v in values]


def _row_values(lot: Lot, actor: User, row: QcRowIn, attr: SpecAttributeIn, verdict: Verdict,
                now: datetime, old: QcResult | None, reason: str | None) -> dict[str, object]:
    return {"lot_id": lot.id, "attribute": row.attribute, "value_text": row.value.strip(),
            "value_number": verdict.number, "unit": row.unit,
            "method": row.method or attr.method, "tested_on": row.tested_on,
            "analyst": row.analyst, "verdict": verdict.verdict,
            "verdict_detail": verdict.detail[:300], "entered_at": now, "entered_by_id": actor.id,
            "supersedes_id": old.id if old else None,
            "correction_reason": reason.strip() if old and reason else None,
            "superseded": False}


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
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(reader.fieldnames or ())
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(f"the CSV file lacks column(s) {', '.join(missing)}; expected "
                           f"{', '.join(CSV_COLUMNS)}")
    rows: list[QcRowIn] = []
    for line, record in enumerate(reader, start=2):
        if None in record or any(v is None for v in record.values()):
            raise InvalidInput(f"row {line}: wrong number of fields")
        tested = (record["tested_at"] or "").strip()[:10]
        rows.append(parse(QcRowIn, {"attribute": record["attribute"], "value": record["value"],
                                    "unit": record["unit"], "method": record["method"],
                                    "tested_on": tested, "analyst": record["analyst"]},
                          what=f"row {line}"))
    if not rows:
        raise InvalidInput("the CSV file has no result rows")
    return rows


def failing_attributes(session: Session, lot: Lot) -> list[str]:
    """Attributes whose current (not superseded) result does not pass."""
    return sorted(r.attribute for r in current_results(session, lot).values() if r.verdict != "pass")
