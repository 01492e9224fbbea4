"""LightGBM global forecaster: one gradient-boosted tree model over every series and
horizon, on lags of the scaled series (forecast/windows.py).

One row per (series, origin, horizon h): the last 13 weeks (scaled), means of the last
4 / 13 / 26 / 52 observed weeks, the target week's value a year earlier and whether it
exists, the target week's calendar, h, the series' size (log scale) and weeks of
history. Target: the target week's units / scale, objective L1 weighted by scale (the
units' absolute error, as WAPE counts it). Direct: h is a feature, nothing is fed back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .base import Panel
from .calendar import N_CALENDAR, CalendarConfig
from .windows import Windows, make_windows, training_pairs

CONTEXT = 52
LAGS = 13


@dataclass(frozen=True)
class LightGBMForecastConfig:
    horizon: int = 8
    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 500
    min_child_samples: int = 50
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_history: int = 4
    seed: int = 0
    threads: int = 1
    calendar: CalendarConfig = field(default_factory=CalendarConfig)

    @classmethod
    def from_dict(cls, d: dict) -> LightGBMForecastConfig:
        d = dict(d)
        d["calendar"] = CalendarConfig(**d.get("calendar", {}))
        return cls(**d)


def features(w: Windows, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """([B * horizon, n_features] rows, [B * horizon] scaled targets), h-major per window."""
    past, seen = w.tokens[:, :CONTEXT, 0], w.tokens[:, :CONTEXT, 1]
    means = [(past[:, -k:].sum(1) / np.maximum(seen[:, -k:].sum(1), 1)) for k in (4, 13, 26, 52)]
    shared = np.column_stack([past[:, -LAGS:], *means, seen.sum(1), w.tokens[:, 0, 4 + N_CALENDAR]])
    rows = []
    for h in range(horizon):
        target_week = w.tokens[:, CONTEXT + h]
        rows.append(np.column_stack([shared, target_week[:, 2:4], target_week[:, 4:4 + N_CALENDAR],
                                     np.full(len(shared), h + 1)]))
    x = np.stack(rows, axis=1).reshape(len(shared) * horizon, -1)  # [B, H, F] -> [B*H, F]
    return x.astype(np.float32), w.targets[:, :horizon].reshape(-1)


class LightGBMForecaster:
    name = "lightgbm"

    def __init__(self, config: LightGBMForecastConfig = LightGBMForecastConfig()) -> None:
        self.config = config
        self.model = None

    def _windows(self, panel: Panel, series: np.ndarray, origins: np.ndarray) -> Windows:
        return make_windows(panel, series, origins, CONTEXT, self.config.horizon, self.config.calendar)

    def fit(self, panel: Panel, valid: tuple[Panel, np.ndarray] | None = None) -> LightGBMForecaster:
        """Train on every window of ``panel``. ``valid`` = (a longer panel, origins): stop
        adding trees when their forecasts' L1 stops improving (the benchmark's choice of
        ``n_estimators``, on validation weeks only)."""
        import lightgbm as lgb

        c = self.config
        x, y, wt = self._rows(panel, *training_pairs(panel, c.min_history))
        self.model = lgb.LGBMRegressor(
            objective="l1", num_leaves=c.num_leaves, learning_rate=c.learning_rate, n_estimators=c.n_estimators,
            min_child_samples=c.min_child_samples, subsample=c.subsample, subsample_freq=1,
            colsample_bytree=c.colsample_bytree, random_state=c.seed, n_jobs=c.threads, verbose=-1)
        kwargs = {}
        if valid is not None:
            vpanel, vorigins = valid
            series = np.repeat(np.arange(vpanel.n_series), len(vorigins))
            vx, vy, vw = self._rows(vpanel, series, np.tile(vorigins, vpanel.n_series))
            kwargs = {"eval_set": [(vx, vy)], "eval_sample_weight": [vw],
                      "callbacks": [lgb.early_stopping(50, verbose=False)]}
        self.model.fit(x, y, sample_weight=wt, **kwargs)
        return self

    def _rows(self, panel: Panel, series: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, ...]:
        w = self._windows(panel, series, origins)
        x, y = features(w, self.config.horizon)
        weight = np.repeat(w.scale / w.scale.mean(), self.config.horizon)
        keep = ~np.isnan(y)
        return x[keep], y[keep], weight[keep]

    @property
    def best_iteration(self) -> int | None:
        return getattr(self.model, "best_iteration_", None) or None

    def predict(self, panel: Panel, horizon: int) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the forecaster first")
        if horizon > self.config.horizon:
            raise ValueError(f"horizon {horizon} > the model's {self.config.horizon}")
        w = self._windows(panel, np.arange(panel.n_series), np.full(panel.n_series, panel.n_weeks - 1))
        x, _ = features(w, self.config.horizon)
        scaled = self.model.predict(x).reshape(panel.n_series, self.config.horizon)
        out = np.clip(scaled * w.scale[:, None], 0.0, None)
        out[panel.starts >= panel.n_weeks] = 0.0
        return out[:, :horizon]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "forecaster.json").write_text(json.dumps({"kind": self.name, "config": asdict(self.config)}, indent=2))
        self.model.booster_.save_model(str(folder / "forecaster.lgb"))
