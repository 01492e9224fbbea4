"""Which products each method trains on (ForecastRunConfig.transformer_top), and the
validation windows of benchmarks/forecast_season.py (no test week inside them)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from shopformer.forecast.artifact import ForecastRunConfig, fit_and_forecast, trained_top, training_rows
from shopformer.forecast.neural import TransformerForecastConfig
from shopformer.forecast.series import WeeklySeries

WEEKS = np.datetime64("2010-01-04") + np.arange(60) * np.timedelta64(7, "D")
# products' weekly units: P3 sells most, then P0, P4, P1, P2 (never sold)
LEVELS = {"P0": 40.0, "P1": 10.0, "P2": 0.0, "P3": 90.0, "P4": 20.0}


def shop() -> WeeklySeries:
    units = np.array([np.full(len(WEEKS), v) for v in LEVELS.values()])
    return WeeklySeries(list(LEVELS), WEEKS, units, units * 2.0)


def test_the_transformer_trains_on_transformer_top_products_and_the_others_on_top():
    series = shop()
    ids = lambda rows: [series.item_ids[i] for i in rows]  # noqa: E731
    assert ids(training_rows(series, ForecastRunConfig(method="transformer", top=2, transformer_top=3))) == ["P3", "P0", "P4"]
    assert ids(training_rows(series, ForecastRunConfig(method="lightgbm", top=2, transformer_top=3))) == ["P3", "P0"]
    assert ids(training_rows(series, ForecastRunConfig(method="transformer", top=2, transformer_top=None))) == ["P3", "P0"]
    # more than there are: every product that sold (P2 never did)
    assert ids(training_rows(series, ForecastRunConfig(method="transformer", top=2, transformer_top=50))) == [
        "P3", "P0", "P4", "P1"]
    assert trained_top(ForecastRunConfig(method="transformer", top=2, transformer_top=3)) == 3
    assert trained_top(ForecastRunConfig(method="lightgbm", top=2, transformer_top=3)) == 2
    assert ForecastRunConfig().transformer_top == 1000 and ForecastRunConfig().top == 200
    with pytest.raises(ValueError, match="transformer_top"):
        ForecastRunConfig(transformer_top=0)


def test_fit_and_forecast_fits_the_transformer_on_transformer_top_series(monkeypatch):
    seen = []
    from shopformer.forecast import neural

    real_fit = neural.TransformerForecaster.fit

    def fit(self, panel, on_epoch=None, stop_after=None):  # noqa: ANN001
        seen.append(panel.values.copy())
        return real_fit(self, panel, on_epoch, stop_after)

    monkeypatch.setattr(neural.TransformerForecaster, "fit", fit)
    tiny = TransformerForecastConfig(d_model=8, n_heads=2, n_layers=1, epochs=1, stop_after=None, ensemble=1,
                                     context=8, horizon=2)
    config = ForecastRunConfig(method="transformer", top=1, transformer_top=3, horizon=2, transformer=tiny)
    _, forecasts, _ = fit_and_forecast(shop(), config)
    assert [row[0] for row in seen[0]] == [90.0, 40.0, 20.0]  # P3, P0, P4: the top 3, not the top 1
    assert forecasts["item_id"].n_unique() == 5  # every product sold in the last 52 weeks + the total


def test_season_windows_are_12_weeks_before_the_test_window():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        season = importlib.import_module("forecast_season")
    finally:
        sys.path.pop(0)
    # Online Retail: 105 whole weeks 2009-11-30 .. 2011-11-28, the test targets the last 12 (93..104)
    assert season.window_of(105, "valid2011") == (81, 92)  # 2011-06-20 .. 2011-09-05
    assert season.window_of(105, "peak2010") == (41, 52)  # the test's weeks a year earlier
    weeks = np.datetime64("2009-11-30") + np.arange(105) * np.timedelta64(7, "D")
    assert [str(weeks[w]) for w in season.window_of(105, "peak2010")] == ["2010-09-13", "2010-11-29"]
    assert str(weeks[93]) == "2011-09-12" and str(weeks[93 - 52]) == "2010-09-13"
