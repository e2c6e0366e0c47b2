"""The consistency statistics, checked against numbers worked out by hand, and each trend
rule at its exact edge."""

import math

import pytest

from lotrack.errors import InvalidInput
from lotrack.services.consistency import (
    capability,
    imr_limits,
    moving_range_violations,
    moving_ranges,
    parse_baseline,
    summary_statistics,
    trend_violations,
)

# The hand-computed data set: five lots, specification 8 - 17.
#   values               10, 12, 11, 13, 14
#   mean                 (10 + 12 + 11 + 13 + 14) / 5 = 60 / 5 = 12
#   deviations           -2, 0, -1, 1, 2; squares 4, 0, 1, 1, 4; sum 10
#   sample variance      10 / (5 - 1) = 2.5;  sd = sqrt(2.5) = 1.58113883...
#   CV%                  100 x 1.58113883 / 12 = 13.1761569...
#   moving ranges        |12-10| = 2, |11-12| = 1, |13-11| = 2, |14-13| = 1;  MR-bar = 6 / 4 = 1.5
#   sigma (within)       1.5 / 1.128 = 1.32978723...
#   I chart              CL 12; UCL 12 + 3 x 1.32978723 = 15.98936170; LCL 8.01063830
#   2-sigma zone         12 +/- 2.65957447 = 9.34042553 .. 14.65957447
#   MR chart             CL 1.5; UCL 3.267 x 1.5 = 4.9005; LCL 0
#   Cpk                  min((17 - 12), (12 - 8)) / (3 x 1.32978723) = 4 / 3.98936170
#                        = 4 x 1.128 / 4.5 = 1.00266667  (the lower side governs)
#   Ppk                  4 / (3 x 1.58113883) = 4 / 4.74341649 = 0.84327404
#   USL only (17)        Cpk = 5 x 1.128 / 4.5 = 1.25333333; Ppk = 5 / 4.74341649 = 1.05409255
VALUES = [10.0, 12.0, 11.0, 13.0, 14.0]


def test_summary_statistics_match_the_hand_computation():
    stats = summary_statistics(VALUES)
    assert stats["n"] == 5
    assert stats["mean"] == pytest.approx(12.0)
    assert stats["sd"] == pytest.approx(1.58113883, abs=1e-8)
    assert stats["cv_pct"] == pytest.approx(13.1761569, abs=1e-6)
    assert (stats["min"], stats["max"]) == (10.0, 14.0)
    assert stats["notes"] == []


def test_individuals_and_moving_range_limits_match_the_hand_computation():
    assert moving_ranges(VALUES) == [2.0, 1.0, 2.0, 1.0]
    limits = imr_limits(VALUES)
    assert limits.baseline_n == 5
    assert limits.centre == pytest.approx(12.0)
    assert limits.mr_bar == pytest.approx(1.5)
    assert limits.sigma == pytest.approx(1.32978723, abs=1e-8)
    assert limits.ucl == pytest.approx(15.98936170, abs=1e-8)
    assert limits.lcl == pytest.approx(8.01063830, abs=1e-8)
    assert limits.zone(2) == pytest.approx((9.34042553, 14.65957447), abs=1e-8)
    assert limits.mr_ucl == pytest.approx(4.9005)
    assert limits.as_dict()["mr_lcl"] == 0.0


def test_capability_matches_the_hand_computation():
    cap = capability(VALUES, 8, 17)
    assert cap["cpk"] == pytest.approx(1.00266667, abs=1e-8)
    assert cap["ppk"] == pytest.approx(0.84327404, abs=1e-8)
    one_sided = capability(VALUES, None, 17)
    assert one_sided["cpk"] == pytest.approx(1.25333333, abs=1e-8)
    assert one_sided["ppk"] == pytest.approx(1.05409255, abs=1e-8)
    assert capability(VALUES, 8, None)["cpk"] == pytest.approx(1.00266667, abs=1e-8)


def test_no_limits_or_one_lot_make_capability_not_computable():
    assert capability(VALUES, None, None)["cpk"] is None
    assert "no numeric limit" in capability(VALUES, None, None)["notes"][0]
    single = capability([12.0], 8, 17)
    assert single["cpk"] is None and single["ppk"] is None
    assert "at least 2 lots" in single["notes"][0]


def test_the_hand_data_set_breaks_no_rule():
    limits = imr_limits(VALUES)
    assert trend_violations(VALUES, limits.centre, limits.sigma) == []
    assert moving_range_violations(VALUES, limits.mr_ucl) == []


def test_a_point_on_the_computed_upper_limit_is_in_and_just_beyond_it_is_out():
    limits = imr_limits(VALUES)
    on_limit = trend_violations([12.0, limits.ucl], limits.centre, limits.sigma)
    assert [v.rule for v in on_limit] == []
    beyond = trend_violations([12.0, 15.99], limits.centre, limits.sigma)  # 15.99 > 15.98936
    assert [(v.rule, v.index) for v in beyond] == [(1, 1)]


def test_zero_variation_gives_not_computable_never_a_division_by_zero():
    flat = [5.0, 5.0, 5.0, 5.0]
    stats = summary_statistics(flat)
    assert stats["sd"] == 0 and stats["cv_pct"] == 0
    limits = imr_limits(flat)
    assert limits.sigma is None and limits.ucl is None and limits.lcl is None
    assert limits.centre == 5.0 and limits.mr_bar == 0
    assert "not computable" in limits.notes[0] and "MR-bar = 0" in limits.notes[0]
    cap = capability(flat, 4, 6)
    assert cap["cpk"] is None and cap["ppk"] is None
    assert len(cap["notes"]) == 2 and all("not computable" in n for n in cap["notes"])
    # Rules that need no sigma still run; a flat line breaks none of them.
    assert trend_violations(flat, limits.centre, limits.sigma) == []


def test_a_mean_of_zero_leaves_cv_not_computable():
    stats = summary_statistics([-1.0, 1.0])
    assert stats["cv_pct"] is None and "mean of 0" in stats["notes"][0]


def test_no_values_or_one_value():
    assert summary_statistics([])["mean"] is None
    one = summary_statistics([3.0])
    assert one["mean"] == 3.0 and one["sd"] is None and "at least 2" in one["notes"][0]
    limits = imr_limits([3.0])
    assert limits.centre is None and limits.sigma is None and "at least 2" in limits.notes[0]


# --- each rule at its edge; centre 0 and sigma 1 so the limits are exact ----------------------


def rules(values, centre=0.0, sigma=1.0):
    return [(v.rule, v.index) for v in trend_violations(values, centre, sigma)]


def test_rule_1_exactly_at_3_sigma_is_not_beyond_but_just_past_it_is():
    assert rules([0.0, 3.0, -3.0]) == []
    assert rules([0.0, 3.000001]) == [(1, 1)]
    assert rules([0.0, -3.000001]) == [(1, 1)]


def test_rule_2_needs_9_in_a_row_on_one_side_not_8():
    assert rules([0.5] * 8) == []
    assert rules([0.5] * 9) == [(2, 8)]
    assert rules([-0.5] * 10) == [(2, 8), (2, 9)]
    # A point on the centre line is on neither side and breaks the run.
    assert rules([0.5] * 4 + [0.0] + [0.5] * 4) == []
    assert rules([0.5] * 8 + [-0.5]) == []


def test_rule_3_needs_6_points_steadily_rising_or_falling_not_5():
    rising = [-0.5, -0.3, -0.1, 0.1, 0.3, 0.5]
    assert rules(rising[:5]) == []
    assert rules(rising) == [(3, 5)]
    assert rules(rising[::-1]) == [(3, 5)]
    assert rules([*rising, 0.7]) == [(3, 5), (3, 6)]
    # A tie is not a rise: it breaks the trend.
    assert rules([-0.5, -0.3, -0.1, -0.1, 0.1, 0.3]) == []


def test_rule_4_needs_2_of_3_beyond_2_sigma_on_the_same_side():
    assert rules([2.1, 0.0, 2.1]) == [(4, 2)]
    assert rules([2.1, 2.1, 0.0]) == [(4, 1)]
    assert rules([0.0, -2.1, -2.1]) == [(4, 2)]
    # Exactly at 2 sigma is not beyond; opposite sides do not add up; 2 of 4 is not 2 of 3.
    assert rules([2.0, 2.1, 2.0]) == []
    assert rules([2.1, -2.1, 0.0]) == []
    assert rules([2.1, 0.0, 0.0, 2.1]) == []


def test_rule_4_counts_a_point_beyond_3_sigma_too():
    assert rules([3.5, 0.0, 2.5]) == [(1, 0), (4, 2)]


def test_rules_without_sigma_apply_only_the_run_and_the_trend():
    values = [0.5] * 9 + [10.0]
    found = [(v.rule, v.index) for v in trend_violations(values, 0.0, None)]
    assert found == [(2, 8), (2, 9)]
    assert [(v.rule, v.index) for v in trend_violations([1, 2, 3, 4, 5, 6], None, None)] == [
        (3, 5)]


def test_a_violation_names_every_point_of_its_pattern():
    (violation,) = trend_violations([0.5] * 9, 0.0, 1.0)
    assert violation.indices == tuple(range(9))
    assert "9 points in a row above" in violation.detail
    assert violation.description == "9 points in a row on one side of the centre line"


def test_moving_range_above_its_limit_is_flagged_at_the_later_lot():
    assert [(v.rule, v.index) for v in moving_range_violations([1.0, 6.0, 6.0], 4.9005)] == [(5, 1)]
    assert moving_range_violations([1.0, 5.9005], 4.9005) == []  # exactly on the limit
    assert moving_range_violations([1.0, 9.0], None) == []


@pytest.mark.parametrize(("text", "expected"), [(None, 8), ("all", None), ("ALL", None),
                                                 ("5", 5), (2, 2)])
def test_baseline_option(text, expected):
    assert parse_baseline(text) == expected


@pytest.mark.parametrize("text", ["1", "0", "-3", "many"])
def test_baseline_option_refuses_what_cannot_give_limits(text):
    with pytest.raises(InvalidInput, match="--baseline"):
        parse_baseline(text)


def test_statistics_are_finite_numbers():
    for value in summary_statistics(VALUES).values():
        if isinstance(value, float):
            assert math.isfinite(value)
