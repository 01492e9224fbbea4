"""New-product exposure (rank/exposure.py): reserved slots and Thompson sampling."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from shopformer.rank.exposure import ClickThrough, ExposureConfig, choose, is_new, reserve

RANKED = ["a", "b", "c", "d"]
SCORES = [4.0, 3.0, 2.0, 1.0]


def test_best_new_item_takes_the_last_slot():
    out = reserve(ExposureConfig(slots=1), RANKED, SCORES, 3, ["n1", "n2"], [0.5, 0.7])
    assert out.item_ids == ["a", "b", "n2"] and out.scores == [4.0, 3.0, 0.7]
    assert {(s.item_id, s.from_rank, s.to_rank) for s in out.shifts} == {("n2", None, 3), ("c", 3, None)}


def test_a_new_item_already_shown_counts():
    out = reserve(ExposureConfig(slots=1), RANKED, SCORES, 3, ["b", "n1"], [3.0, 0.5])
    assert out.item_ids == ["a", "b", "c"] and out.shifts == []


def test_two_slots_at_a_position_keep_the_new_item_already_shown():
    # "b" is new and shown: one more slot is needed, placed at position 1
    out = reserve(ExposureConfig(slots=2, position=1), RANKED, SCORES, 3, ["b", "n1", "n2"], [3.0, 0.2, 0.9])
    assert out.item_ids == ["n2", "a", "b"]


def test_off_or_no_new_items_changes_nothing():
    assert reserve(ExposureConfig(), RANKED, SCORES, 3, ["n1"], [1.0]).item_ids == ["a", "b", "c"]
    assert reserve(ExposureConfig(slots=1), RANKED, SCORES, 3, [], []).item_ids == ["a", "b", "c"]
    # a new item the request may not show comes with -inf
    assert reserve(ExposureConfig(slots=1), RANKED, SCORES, 3, ["n1"], [-np.inf]).item_ids == ["a", "b", "c"]


def test_thompson_prefers_the_item_that_is_clicked():
    cfg = ExposureConfig(slots=1, policy="thompson")
    ctr = {"good": ClickThrough(1000, 300), "bad": ClickThrough(1000, 5)}
    rng = np.random.default_rng(0)
    picks = [choose(cfg, ["bad", "good"], [0.9, 0.1], 1, ctr, rng)[0] for _ in range(200)]
    assert picks.count(1) == 200  # Beta(301, 701) vs Beta(6, 996): never reversed


def test_thompson_explores_unseen_items():
    cfg = ExposureConfig(slots=1, policy="thompson")
    ctr = {"shown": ClickThrough(50, 5)}  # CTR ~0.1; "fresh" is drawn from Beta(1, 1)
    rng = np.random.default_rng(1)
    picks = [choose(cfg, ["shown", "fresh"], [1.0, 0.0], 1, ctr, rng)[0] for _ in range(2000)]
    share = picks.count(1) / 2000
    # P(U > X) with X ~ Beta(6, 46): 1 - E[X] = 1 - 6/52
    assert share == pytest.approx(1 - 6 / 52, abs=0.03)


def test_thompson_pool_limits_exploration_to_the_best_scored():
    cfg = ExposureConfig(slots=1, policy="thompson", pool=1)
    assert {choose(cfg, ["x", "y"], [0.1, 0.9], 1, {}, np.random.default_rng(s))[0] for s in range(20)} == {1}


def test_is_new_by_date_or_tag():
    now = datetime(2026, 1, 31, tzinfo=timezone.utc)
    cfg = ExposureConfig(new_days=30)
    assert is_new(cfg, now - timedelta(days=29), None, now)
    assert not is_new(cfg, now - timedelta(days=31), [], now)
    assert is_new(cfg, None, ["sale", "NEW"], now)
    assert not is_new(ExposureConfig(new_tag=None), None, ["new"], now)


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="policy"):
        ExposureConfig(policy="random")
    with pytest.raises(ValueError, match="slots"):
        ExposureConfig(slots=-1)
