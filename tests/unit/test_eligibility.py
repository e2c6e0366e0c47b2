"""Eligibility follows the registry entry at its exact edges and lists every failure."""

from dataclasses import replace
from datetime import date

import pytest

from lotrack.schemas.protocol import default_protocol_path, load_protocol_file
from lotrack.services.eligibility import Candidate, age_on, failed_criteria

RULES = load_protocol_file(default_protocol_path()).eligibility
ALL_ANSWERS = {q.code: True for q in RULES.inclusions} | {q.code: False for q in RULES.exclusions}


def eligible() -> Candidate:
    return Candidate(sex="F", birth_date=date(1994, 6, 15), consented=date(2026, 3, 1),
                     iua_score=14, amh_ng_ml=2.0, afc=None, platelets_10e9_l=200,
                     aptt_x_uln=1.0, hba1c_percent=5.4, answers=dict(ALL_ANSWERS))


def test_a_typical_candidate_is_eligible():
    assert failed_criteria(RULES, eligible()) == []


@pytest.mark.parametrize(("birth", "ok"), [
    (date(2006, 3, 1), True),    # 20th birthday on the consent date
    (date(2006, 3, 2), False),   # 19 until tomorrow
    (date(1985, 3, 2), True),    # 40, turns 41 tomorrow
    (date(1985, 3, 1), False),   # 41 on the consent date
])
def test_age_is_20_to_40_at_consent(birth, ok):
    failures = failed_criteria(RULES, replace(eligible(), birth_date=birth))
    assert (failures == []) is ok, failures


@pytest.mark.parametrize(("score", "ok"), [(8, False), (9, True), (18, True), (19, True),
                                           (28, True), (29, False)])
def test_iua_score_must_be_moderate_or_severe(score, ok):
    assert (failed_criteria(RULES, replace(eligible(), iua_score=score)) == []) is ok


@pytest.mark.parametrize(("amh", "afc", "ok"), [
    (1.1, None, True), (1.09, None, False), (None, 5, True), (None, 4, False),
    (0.5, 5, True), (1.1, 0, True), (0.5, 4, False), (None, None, False),
])
def test_ovarian_reserve_is_amh_or_afc(amh, afc, ok):
    candidate = replace(eligible(), amh_ng_ml=amh, afc=afc)
    assert (failed_criteria(RULES, candidate) == []) is ok


@pytest.mark.parametrize(("field", "value", "ok"), [
    ("platelets_10e9_l", 50, True), ("platelets_10e9_l", 49.9, False),
    ("aptt_x_uln", 1.5, True), ("aptt_x_uln", 1.51, False),
    ("hba1c_percent", 7.0, True), ("hba1c_percent", 7.1, False),
])
def test_laboratory_limits_at_their_edges(field, value, ok):
    assert (failed_criteria(RULES, replace(eligible(), **{field: value})) == []) is ok


def test_every_failure_is_listed_not_only_the_first():
    bad = replace(eligible(), sex="M", iua_score=30, platelets_10e9_l=10, hba1c_percent=9,
                  answers={**ALL_ANSWERS, "malignancy": True})
    failures = failed_criteria(RULES, bad)
    joined = " | ".join(failures)
    assert len(failures) == 5
    for word in ("women only", "IUA score 30", "platelets", "HbA1c", "malignancy"):
        assert word in joined


def test_each_question_must_be_answered():
    answers = dict(ALL_ANSWERS)
    del answers["hyaluronic_acid_hypersensitivity"]
    del answers["fertility_desire"]
    failures = failed_criteria(RULES, replace(eligible(), answers=answers))
    assert len(failures) == 2
    assert all("not answered" in f for f in failures)


def test_an_inclusion_answered_no_excludes():
    failures = failed_criteria(RULES, replace(eligible(), answers={**ALL_ANSWERS,
                                                                   "surgical_candidate": False}))
    assert failures == [f for f in failures if "surgical_candidate" in f] and failures


def test_age_on_counts_completed_years():
    assert age_on(date(2000, 2, 29), date(2021, 2, 28)) == 20
    assert age_on(date(2000, 2, 29), date(2021, 3, 1)) == 21
