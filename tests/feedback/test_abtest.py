"""The A/B statistics against hand-computed values, and the three verdicts."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from shopformer.feedback.abtest import ABConfig, _compare, _wilson, needed_units, per_unit, report


def units(variant: str, n: int, clicks: int, purchases: int = 0, revenue: float = 0.0) -> pl.DataFrame:
    """``n`` customers of ``variant``: the first ``clicks`` clicked, the first ``purchases``
    bought, each buyer spending ``revenue``."""
    return pl.DataFrame({
        "variant": [variant] * n, "unit": [f"{variant}{i}" for i in range(n)], "answers": [2] * n,
        "click": [int(i < clicks) for i in range(n)], "add_to_cart": [int(i < purchases) for i in range(n)],
        "purchase": [int(i < purchases) for i in range(n)],
        "revenue": [revenue if i < purchases else 0.0 for i in range(n)],
    })


def test_wilson_interval_by_hand():
    # 10 of 100: centre (0.1 + 1.96^2/200) / (1 + 1.96^2/100), half-width 1.96 sqrt(pq/n + z^2/4n^2) / (1 + z^2/n)
    z = 1.959964
    centre = (0.1 + z * z / 200) / (1 + z * z / 100)
    half = z * math.sqrt(0.1 * 0.9 / 100 + z * z / 40000) / (1 + z * z / 100)
    low, high = _wilson(10, 100)
    assert low == pytest.approx(centre - half, abs=1e-6) and high == pytest.approx(centre + half, abs=1e-6)
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)


def test_two_proportion_z_test_by_hand():
    # 100/1000 vs 130/1000: pooled 0.115, se sqrt(0.115 * 0.885 * 2/1000), z = 0.03 / se
    se = math.sqrt(0.115 * 0.885 * 2 / 1000)
    z = 0.03 / se
    p = math.erfc(z / math.sqrt(2))  # two-sided
    diff, low, high, p_value = _compare((100, 1000), (130, 1000))
    assert diff == pytest.approx(0.03)
    assert p_value == pytest.approx(p, rel=1e-6) and p_value == pytest.approx(0.0355, abs=5e-4)
    assert low < 0.03 < high and low > 0  # Newcombe's interval excludes 0 here, as the test says


def test_needed_sample_by_hand():
    # Cohen's h for 0.11 vs 0.10: each arm's 2 asin(sqrt(p)) has variance 1/n, their
    # difference 2/n, so n = 2 ((z_0.975 + z_0.8) / h)^2 per variant
    h = 2 * math.asin(math.sqrt(0.11)) - 2 * math.asin(math.sqrt(0.10))
    n = 2 * ((1.959964 + 0.841621) / h) ** 2
    assert needed_units(0.10, ABConfig()) == math.ceil(n)
    # the textbook unpooled formula agrees within 0.1%: (z_a + z_b)^2 (p1 q1 + p2 q2) / (p2 - p1)^2
    classic = (1.959964 + 0.841621) ** 2 * (0.1 * 0.9 + 0.11 * 0.89) / 0.01 ** 2
    assert needed_units(0.10, ABConfig()) == pytest.approx(classic, rel=1e-3)
    assert needed_units(0.0, ABConfig()) is None


def test_per_unit_counts_customers_not_answers():
    answers = pl.DataFrame({
        "variant": ["a", "a", "a", "b"], "unit": ["u1", "u1", "u2", "u3"],
        "clicks": [0, 2, 0, 1], "add_to_carts": [0, 1, 0, 0], "purchases": [0, 0, 0, 1],
        "revenue": [0.0, 0.0, 0.0, 12.5],
    })
    got = per_unit(answers).sort("unit")
    assert got["answers"].to_list() == [2, 1, 1]
    assert got["click"].to_list() == [1, 0, 1]
    assert got["add_to_cart"].to_list() == [1, 0, 0]
    assert got["purchase"].to_list() == [0, 0, 1]
    assert got["revenue"].to_list() == [0.0, 0.0, 12.5]


def test_a_clear_difference_is_significant():
    frame = pl.concat([units("a", 2000, 200, 40, 10.0), units("b", 2000, 300, 60, 10.0)])
    r = report(frame, ["a", "b"])
    assert r.decision == "significant"
    assert "b beats a on click rate" in r.verdict
    b = r.variants[1]
    assert b.rates["click"].rate == pytest.approx(0.15) and b.rates["click"].diff == pytest.approx(0.05)
    assert b.rates["click"].p_value < 1e-4
    assert b.revenue_per_unit == pytest.approx(0.3) and b.revenue_diff == pytest.approx(0.1)
    assert b.revenue_diff_low < 0.1 < b.revenue_diff_high
    assert r.variants[0].answers == 4000


def test_a_small_sample_is_too_small_to_decide_and_says_how_many():
    frame = pl.concat([units("a", 60, 6), units("b", 60, 8)])
    r = report(frame, ["a", "b"])
    assert r.decision == "too_small"
    assert r.needed_per_variant == needed_units(0.1, ABConfig())
    assert "too small to decide" in r.verdict and str(r.needed_per_variant) in r.verdict


def test_few_events_are_too_small_whatever_the_size():
    frame = pl.concat([units("a", 100_000, 3), units("b", 100_000, 5)])
    r = report(frame, ["a", "b"])
    assert r.decision == "too_small" and "fewer than 10 customers" in r.verdict


def test_equal_rates_on_a_large_sample_are_no_difference():
    frame = pl.concat([units("a", 20_000, 2000), units("b", 20_000, 2000)])
    r = report(frame, ["a", "b"])
    assert r.decision == "no_difference"
    assert r.variants[1].rates["click"].p_value == pytest.approx(1.0)


def test_holm_adjusts_across_variants():
    frame = pl.concat([units("a", 1000, 100), units("b", 1000, 130), units("c", 1000, 100)])
    r = report(frame, ["a", "b", "c"])
    raw_b = _compare((100, 1000), (130, 1000))[3]
    # Holm: the smaller p is multiplied by 2 (two comparisons), the larger is at least that
    assert r.variants[1].rates["click"].p_value == pytest.approx(min(1.0, 2 * raw_b))
    assert r.variants[2].rates["click"].p_value >= r.variants[1].rates["click"].p_value


def test_a_variant_nobody_saw_counts_as_empty():
    r = report(units("a", 50, 5), ["a", "b"])
    assert r.variants[1].units == 0 and math.isnan(r.variants[1].rates["click"].rate)
    assert r.decision == "too_small"


def test_config_is_checked():
    with pytest.raises(ValueError, match="metric"):
        ABConfig(metric="views")
    with pytest.raises(ValueError):
        report(units("a", 5, 1), ["a"])
    assert np.isfinite(needed_units(0.5, ABConfig(mde=0.2)))
