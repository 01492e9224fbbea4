"""Local baselines: seasonal naive, and statsforecast's AutoETS and AutoARIMA.

Each series is forecast from its own history (from its first sale); nothing is
learned across series, so ``fit`` does nothing and each ``predict`` refits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Panel


@dataclass(frozen=True)
class SeasonalNaiveConfig:
    season: int = 52


class SeasonalNaive:
    """The same week last year. Where the series has no history 52 weeks before the
    target week (a product first sold less than a year before), the last observed
    week repeats (plain naive)."""

    name = "seasonal_naive"

    def __init__(self, config: SeasonalNaiveConfig = SeasonalNaiveConfig()) -> None:
        self.config = config

    def fit(self, panel: Panel) -> SeasonalNaive:
        return self

    def predict(self, panel: Panel, horizon: int) -> np.ndarray:
        m, T = self.config.season, panel.n_weeks
        out = np.repeat(panel.values[:, -1:], horizon, axis=1)
        for h in range(1, horizon + 1):
            back = T - 1 + h - m  # the same week one season earlier
            if back < 0:
                continue
            has = panel.starts <= back
            out[has, h - 1] = panel.values[has, back]
        return out


@dataclass(frozen=True)
class StatsConfig:
    """statsforecast model and its season; ``min_history`` weeks below which a series
    gets the plain naive forecast instead (too short to fit)."""

    model: str = "auto_ets"  # auto_ets | auto_arima
    season: int = 52
    min_history: int = 8


class StatsForecaster:
    """statsforecast's AutoETS or AutoARIMA fitted on each series at every origin
    (model selection by AICc, their defaults). statsforecast's ETS computes seasonal
    states only for seasons <= 24 (statsforecast/ets.py), so with weekly data's 52 its
    seasonal candidates do not fit and AutoETS is in effect non-seasonal here; AutoARIMA
    may choose a seasonal model where the history allows it."""

    def __init__(self, config: StatsConfig = StatsConfig()) -> None:
        if config.model not in ("auto_ets", "auto_arima"):
            raise ValueError(f"model must be auto_ets or auto_arima, got {config.model!r}")
        self.config = config
        self.name = config.model
        self.fallbacks = 0  # series given the naive forecast (too short, or the fit failed)

    def fit(self, panel: Panel) -> StatsForecaster:
        return self

    def _model(self):  # noqa: ANN202 - a statsforecast model
        from statsforecast.models import AutoARIMA, AutoETS

        cls = AutoETS if self.config.model == "auto_ets" else AutoARIMA
        return cls(season_length=self.config.season)

    def predict(self, panel: Panel, horizon: int) -> np.ndarray:
        out = np.repeat(panel.values[:, -1:], horizon, axis=1)
        for i in range(panel.n_series):
            y = panel.values[i, panel.starts[i]:]
            if len(y) < self.config.min_history:
                self.fallbacks += 1
                continue
            try:
                mean = self._model().forecast(y=y.astype(np.float64), h=horizon)["mean"]
            except Exception:  # noqa: BLE001 - a failed fit gets the naive forecast, counted
                self.fallbacks += 1
                continue
            if np.all(np.isfinite(mean)):
                out[i] = mean
            else:
                self.fallbacks += 1
        return np.clip(out, 0.0, None)
