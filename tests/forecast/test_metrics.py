"""WAPE and MASE against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from shopformer.forecast.metrics import mase_per_horizon, mase_scale, wape, wape_per_horizon


def test_wape_hand_computed():
    # |10-8| + |0-1| + |5-5| = 3 over 10 + 0 + 5 = 15
    assert wape([10, 0, 5], [8, 1, 5]) == pytest.approx(3 / 15)
    assert wape([1, 2], [1, 2]) == 0.0
    assert np.isnan(wape([0, 0], [1, 1]))  # nothing sold: undefined


def test_wape_skips_nan_targets():
    assert wape([10, np.nan], [5, 1000]) == pytest.approx(0.5)


def test_mase_scale_is_naive_error_from_series_start():
    hist = np.array([[0, 0, 2, 4, 1], [3, 3, 3, 3, 3]], dtype=float)
    # series 0 starts at week 2: |4-2| + |1-4| = 5 over 2 steps; series 1 is constant
    np.testing.assert_allclose(mase_scale(hist, np.array([2, 0])), [2.5, 0.0])
    assert np.isnan(mase_scale(np.array([[1.0, 2.0]]), np.array([1]))[0])


def test_per_horizon_hand_computed():
    # 2 series x 2 origins x 2 horizons; the second origin's h=2 target is past the data
    actual = np.array([[[4, 6], [2, np.nan]], [[10, 10], [10, np.nan]]])
    forecast = np.array([[[3, 6], [4, 0]], [[10, 5], [12, 0]]])
    # h=1: (1 + 2 + 0 + 2) / (4 + 2 + 10 + 10); h=2: (0 + 5) / (6 + 10)
    np.testing.assert_allclose(wape_per_horizon(actual, forecast), [5 / 26, 5 / 16])
    scale = np.array([2.0, 0.0])  # series 1 has a zero scale: left out
    mase, left_out = mase_per_horizon(actual, forecast, scale)
    # series 0: h=1 mean(|1|, |2|) / 2 = 0.75; h=2 |0| / 2 = 0
    np.testing.assert_allclose(mase, [0.75, 0.0])
    assert left_out == 1
