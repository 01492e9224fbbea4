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
                                       lr=5e-3, dropout=0.0, stop_after=None, ensemble=1)
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


def test_window_stats_are_the_history_means_over_the_scale():
    from shopformer.forecast.windows import N_STATS, make_windows

    values = np.zeros((2, 80))
    values[0, 10:] = np.arange(70) + 1.0  # sells from week 10: 1, 2, ..., 70
    values[1, 70:] = 4.0  # sells 4 a week from week 70 (its history is 10 weeks)
    panel = Panel.of(values, WEEKS[:80])
    w = make_windows(panel, np.array([0, 1]), np.array([79, 79]), context=8, horizon=2)
    assert w.stats.shape == (2, N_STATS)
    scale0 = values[0, 72:80].mean()  # the scale: the mean over the context's observed weeks
    for k, weeks in enumerate((4, 13, 26, 52)):  # means reach past the 8-week context
        np.testing.assert_allclose(w.stats[0, k], values[0, 80 - weeks:].mean() / scale0, rtol=1e-5)
    np.testing.assert_allclose(w.stats[1, :4], 1.0)  # observed weeks only: 4 / 4 for every span
    np.testing.assert_allclose(w.stats[:, 4], [min(70 / 52, 2.0), 10 / 52], rtol=1e-5)


def test_transformer_ensemble_with_stats_averages_its_members_and_loads_old_folders(tmp_path):
    import json

    import torch

    panel = seasonal_panel(n=6)
    T = panel.n_weeks
    config = TransformerForecastConfig(context=13, d_model=8, n_heads=2, n_layers=1, epochs=1, batch_size=128,
                                       dropout=0.0, stop_after=None, static_stats=True, ensemble=2)
    seen = []
    model = TransformerForecaster(config).fit(panel.upto(T - 13), lambda epoch, m: seen.append(epoch) or {})
    assert len(model.nets) == 2 and seen == [1, 2]  # epochs numbered on across members
    assert model.nets[0].static is not None
    members = []
    for net in model.nets:  # each member alone, then the mean: what predict serves
        one = TransformerForecaster(config)
        one.nets = [net]
        members.append(one.predict(panel, H))
    both = (members[0] > 0) & (members[1] > 0)  # forecasts are clipped at 0 after the mean, members alone before
    assert both.sum() >= 8
    np.testing.assert_allclose(model.predict(panel, H)[both], np.mean(members, axis=0)[both], rtol=1e-5)
    assert not np.allclose(members[0], members[1])  # different seeds, different nets
    model.save(tmp_path / "m")
    np.testing.assert_allclose(TransformerForecaster.load(tmp_path / "m").predict(panel, H), model.predict(panel, H),
                               rtol=1e-5)
    # a folder written before ensembles and stats: one state dict, no such config keys
    old = TransformerForecaster(TransformerForecastConfig(context=13, d_model=8, n_heads=2, n_layers=1, epochs=1,
                                                          stop_after=None, static_stats=False, ensemble=1)
                                ).fit(panel.upto(T - 13))
    old.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "forecaster.json").read_text())
    for key in ("static_stats", "ensemble"):
        del meta["config"][key]
    (tmp_path / "old" / "forecaster.json").write_text(json.dumps(meta))
    torch.save(old.nets[0].state_dict(), tmp_path / "old" / "forecaster.pt")
    again = TransformerForecaster.load(tmp_path / "old")
    assert again.config.ensemble == 1 and not again.config.static_stats
    np.testing.assert_allclose(again.predict(panel, H), old.predict(panel, H), rtol=1e-5)
    with pytest.raises(ValueError, match="ensemble"):
        TransformerForecastConfig(ensemble=0)


def test_window_medians_ignore_a_spike_and_unobserved_weeks():
    from shopformer.forecast.windows import N_MEDIANS, make_windows

    values = np.zeros((3, 80))
    values[0, 10:] = np.arange(70) + 1.0  # sells from week 10: 1, 2, ..., 70
    values[1, 70:] = 4.0  # 10 weeks of history: medians over observed weeks only
    values[2, :] = 2.0
    values[2, 75] = 1000.0  # one wholesale order in the last 13 weeks
    panel = Panel.of(values, WEEKS[:80])
    w = make_windows(panel, np.array([0, 1, 2]), np.array([79, 79, 79]), context=8, horizon=2)
    assert w.medians.shape == (3, N_MEDIANS)
    scale0 = values[0, 72:80].mean()
    np.testing.assert_allclose(w.medians[0] * scale0, [64.0, 57.5, 44.5], rtol=1e-5)  # medians of 58..70, 45..70, 19..70
    np.testing.assert_allclose(w.medians[1], 1.0)
    scale2 = values[2, 72:80].mean()  # (7 x 2 + 1000) / 8: the mean the spike inflates
    np.testing.assert_allclose(w.medians[2] * scale2, 2.0, rtol=1e-5)
    assert w.stats[2, 1] * scale2 > 70  # the 13-week mean moves with it


def test_transformer_inputs_log1p_and_medians():
    from shopformer.forecast.windows import N_MEDIANS, N_STATS, make_windows

    panel = seasonal_panel(n=3)
    w = make_windows(panel, np.arange(3), np.full(3, 100), context=13, horizon=H)
    plain = TransformerForecastConfig(context=13, static_stats=True)
    tokens, static = plain.inputs(w)
    assert tokens is w.tokens and static.shape == (3, N_STATS)
    both = TransformerForecastConfig(context=13, static_stats=True, median_stats=True, input_transform="log1p")
    tokens, static = both.inputs(w)
    assert static.shape == (3, N_STATS + N_MEDIANS) and both.net().n_static == N_STATS + N_MEDIANS
    np.testing.assert_allclose(tokens[..., 0], np.log1p(w.tokens[..., 0]), rtol=1e-6)  # units / scale
    np.testing.assert_allclose(tokens[..., 2], np.log1p(w.tokens[..., 2]), rtol=1e-6)  # a year earlier
    np.testing.assert_array_equal(tokens[..., 1], w.tokens[..., 1])  # flags and calendar as they were
    np.testing.assert_array_equal(tokens[..., 4:], w.tokens[..., 4:])
    np.testing.assert_allclose(static[:, :N_STATS - 1], np.log1p(w.stats[:, :N_STATS - 1]), rtol=1e-6)
    np.testing.assert_array_equal(static[:, N_STATS - 1], w.stats[:, N_STATS - 1])  # weeks of history
    np.testing.assert_allclose(static[:, N_STATS:], np.log1p(w.medians), rtol=1e-6)
    assert w.tokens[..., 0].max() > 1.2  # the windows themselves are left untouched
    medians_only = TransformerForecastConfig(context=13, static_stats=False, median_stats=True)
    np.testing.assert_array_equal(medians_only.inputs(w)[1], w.medians)
    with pytest.raises(ValueError, match="input_transform"):
        TransformerForecastConfig(input_transform="log")
    old = TransformerForecastConfig.from_dict({"context": 13})  # saved before the options: off
    assert old.input_transform == "none" and not old.median_stats


def test_transformer_with_log1p_and_medians_learns_the_season(tmp_path):
    panel = seasonal_panel()
    T = panel.n_weeks
    config = TransformerForecastConfig(context=13, d_model=16, n_heads=2, n_layers=1, epochs=8, batch_size=64,
                                       lr=5e-3, dropout=0.0, stop_after=None, ensemble=1, static_stats=True,
                                       median_stats=True, input_transform="log1p")
    model = TransformerForecaster(config).fit(panel.upto(T - 13))
    assert _holdout_wape(model, panel) < 0.10
    model.save(tmp_path / "m")
    again = TransformerForecaster.load(tmp_path / "m")
    assert again.config.input_transform == "log1p" and again.config.median_stats
    np.testing.assert_allclose(again.predict(panel, H), model.predict(panel, H), rtol=1e-5)
