"""Every forecaster captures a known pattern in synthetic weekly series.

Seasonal series: level_i x (1 + 0.5 sin(2 pi t / 52)) with 3% noise, levels from 5 to
5,000 units a week, three years of history: the same week last year predicts the next
weeks within a few percent, and the global models (LightGBM, Transformer) must learn
that from windows of many series at different scales. Level series (no season, no
trend) for the statsforecast models, whose ETS here is non-seasonal."""

from __future__ import annotations

import numpy as np
import pytest

from shopformer.forecast.backtest import rolling_origin
from shopformer.forecast.base import Panel
from shopformer.forecast.baselines import SeasonalNaive, StatsConfig, StatsForecaster
from shopformer.forecast.gbt import LightGBMForecastConfig, LightGBMForecaster
from shopformer.forecast.metrics import wape
from shopformer.forecast.neural import TransformerForecastConfig, TransformerForecaster

WEEKS = np.datetime64("2009-01-05") + np.arange(160) * np.timedelta64(7, "D")
H = 8


def seasonal_panel(n: int = 16, seed: int = 0, noise: float = 0.03) -> Panel:
    rng = np.random.default_rng(seed)
    levels = np.geomspace(5, 5000, n)
    t = np.arange(len(WEEKS))
    shape = 1 + 0.5 * np.sin(2 * np.pi * t / 52)
    values = levels[:, None] * shape[None, :] * (1 + noise * rng.standard_normal((n, len(t))))
    return Panel.of(np.clip(values, 0, None), WEEKS)


def test_seasonal_naive_is_exact_on_a_periodic_series_and_naive_without_a_year():
    panel = seasonal_panel(noise=0.0)
    T = panel.n_weeks
    f = SeasonalNaive().predict(panel.upto(T - 9), H)
    np.testing.assert_allclose(f, panel.values[:, T - 8:], rtol=1e-9)
    short = Panel(panel.values, panel.weeks, np.full(panel.n_series, T - 20))  # first sale 20 weeks ago
    f = SeasonalNaive().predict(short, 3)
    np.testing.assert_allclose(f, np.repeat(panel.values[:, -1:], 3, axis=1))


def _holdout_wape(model, panel: Panel) -> float:
    T = panel.n_weeks
    bt = rolling_origin(model, panel, T - 12, T - 1, H)
    return wape(bt.actual, bt.forecast)


def test_lightgbm_learns_the_season_across_scales():
    panel = seasonal_panel()
    T = panel.n_weeks
    model = LightGBMForecaster(LightGBMForecastConfig(n_estimators=100, min_child_samples=10)).fit(panel.upto(T - 13))
    assert _holdout_wape(model, panel) < 0.08  # seasonal naive's error here is ~0.04 (the noise)


def test_transformer_learns_the_season_across_scales(tmp_path):
    panel = seasonal_panel()
    T = panel.n_weeks
    config = TransformerForecastConfig(context=13, d_model=16, n_heads=2, n_layers=1, epochs=8, batch_size=64,
                                       lr=5e-3, dropout=0.0, stop_after=None)
    model = TransformerForecaster(config).fit(panel.upto(T - 13))
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    assert _holdout_wape(model, panel) < 0.10
    model.save(tmp_path / "m")  # save/load round trip: the same forecasts
    again = TransformerForecaster.load(tmp_path / "m")
    np.testing.assert_allclose(again.predict(panel, H), model.predict(panel, H), rtol=1e-5)
    with pytest.raises(ValueError, match="horizon"):
        model.predict(panel, H + 1)


@pytest.mark.parametrize("kind", ["auto_ets", "auto_arima"])
def test_statsforecast_models_forecast_a_level(kind):
    pytest.importorskip("statsforecast", reason="the forecast extra (statsforecast) is not installed")
    rng = np.random.default_rng(1)
    levels = np.array([20.0, 300.0, 4000.0])
    values = levels[:, None] * (1 + 0.05 * rng.standard_normal((3, 60)))
    panel = Panel.of(values, WEEKS[:60])
    model = StatsForecaster(StatsConfig(model=kind))
    f = model.predict(panel, H)
    np.testing.assert_allclose(f.mean(axis=1), levels, rtol=0.1)
    assert model.fallbacks == 0
    # a series too short to fit gets the naive forecast, counted
    short = Panel(values, WEEKS[:60], np.array([0, 0, 57]))
    f = StatsForecaster(StatsConfig(model=kind)).predict(short, H)
    np.testing.assert_allclose(f[2], values[2, -1])


def test_never_sold_series_forecast_zero():
    panel = seasonal_panel(n=4)
    values = panel.values.copy()
    values[0] = 0.0
    empty = Panel.of(values, WEEKS)
    model = LightGBMForecaster(LightGBMForecastConfig(n_estimators=20, min_child_samples=5)).fit(empty)
    assert (model.predict(empty, H)[0] == 0).all()
