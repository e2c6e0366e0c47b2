"""Eligibility of a candidate against the protocol's criteria: every failure is listed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from lotrack.schemas.protocol import Eligibility


@dataclass(frozen=True)
class Candidate:
    """What the investigator records at screening; None means not measured or not answered."""

    sex: str | None
    birth_date: date | None
    consented: date
    iua_score: int | None
    amh_ng_ml: float | None
    afc: int | None
    platelets_10e9_l: float | None
    aptt_x_uln: float | None
    hba1c_percent: float | None
    answers: dict[str, bool] = field(default_factory=dict)


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def failed_criteria(rules: Eligibility, c: Candidate) -> list[str]:
    """Every criterion the candidate fails or leaves unanswered, in protocol order."""
    failures: list[str] = []
    if c.sex != "F":
        failures.append("sex: the study enrols women only (give --sex F)")
    if c.birth_date is None:
        failures.append("age: the birth date is needed to compute the age at consent")
    else:
        age = age_on(c.birth_date, c.consented)
        if not rules.age_min <= age <= rules.age_max:
            failures.append(f"age {age} at consent is outside {rules.age_min}-{rules.age_max}")
    failures += _range("IUA score", c.iua_score, rules.iua_score_min, rules.iua_score_max)
    failures += _ovarian_reserve(rules, c)
    failures += _at_least("platelets", c.platelets_10e9_l, rules.platelets_min_10e9_l, "x10^9/L")
    failures += _at_most("aPTT", c.aptt_x_uln, rules.aptt_max_x_uln, "x ULN")
    failures += _at_most("HbA1c", c.hba1c_percent, rules.hba1c_max_percent, "%")
    failures += _questions(rules, c.answers)
    return failures


def _range(name: str, value: float | None, low: float, high: float) -> list[str]:
    if value is None:
        return [f"{name}: not given"]
    return [] if low <= value <= high else [f"{name} {value} is outside {low}-{high}"]


def _at_least(name: str, value: float | None, low: float, unit: str) -> list[str]:
    if value is None:
        return [f"{name}: not given"]
    return [] if value >= low else [f"{name} {value} {unit} is below {low} {unit}"]


def _at_most(name: str, value: float | None, high: float, unit: str) -> list[str]:
    if value is None:
        return [f"{name}: not given"]
    return [] if value <= high else [f"{name} {value} {unit} is above {high} {unit}"]


def _ovarian_reserve(rules: Eligibility, c: Candidate) -> list[str]:
    # The registry's criterion is a disjunction: AMH >= 1.1 ng/mL OR AFC >= 5.
    if c.amh_ng_ml is None and c.afc is None:
        return ["ovarian reserve: give AMH or AFC"]
    amh_ok = c.amh_ng_ml is not None and c.amh_ng_ml >= rules.amh_min_ng_ml
    afc_ok = c.afc is not None and c.afc >= rules.afc_min
    if amh_ok or afc_ok:
        return []
    return [f"ovarian reserve: needs AMH >= {rules.amh_min_ng_ml} ng/mL or AFC >= "
            f"{rules.afc_min} (AMH {c.amh_ng_ml}, AFC {c.afc})"]


def _questions(rules: Eligibility, answers: dict[str, bool]) -> list[str]:
    failures: list[str] = []
    known = {q.code for q in rules.inclusions + rules.exclusions}
    for unknown in sorted(set(answers) - known):
        failures.append(f"{unknown}: not a question of this protocol")
    for q in rules.inclusions:
        if q.code not in answers:
            failures.append(f"{q.code}: not answered ({q.question})")
        elif not answers[q.code]:
            failures.append(f"{q.code}: inclusion criterion not met ({q.question})")
    for q in rules.exclusions:
        if q.code not in answers:
            failures.append(f"{q.code}: not answered ({q.question})")
        elif answers[q.code]:
            failures.append(f"{q.code}: exclusion criterion present ({q.question})")
    return failures
