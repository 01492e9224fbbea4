"""Rolling-origin evaluation: forecast from each of several consecutive origins, score
every horizon against what was then sold.

Origins are week indexes o (the last week of history); the forecast at horizon h is
for week o+h. With test weeks a..b and horizon H, the origins are a-1..b-1 and only
targets <= b are scored, so horizon 1 has (b-a+1) origins per series and horizon H
has H-1 fewer. A global model is fitted once, on history through the first origin,
and then reads each later origin's history without refitting (its weights never see a
test week); local models (seasonal naive, ETS, ARIMA) refit at every origin by nature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Forecaster, Panel
from .metrics import mase_per_horizon, mase_scale, wape_per_horizon


@dataclass
class Backtest:
    method: str
    origins: np.ndarray  # [O] week indexes
    actual: np.ndarray  # [N, O, H], NaN past the last scored week
    forecast: np.ndarray  # [N, O, H]

    def scores(self, scale: np.ndarray) -> dict:
        wape = wape_per_horizon(self.actual, self.forecast)
        mase, left_out = mase_per_horizon(self.actual, self.forecast, scale)
        overall_wape = float(np.nansum(np.abs(self.actual - self.forecast)) / np.nansum(np.abs(self.actual)))
        return {"method": self.method, "wape": [round(float(v), 4) for v in wape],
                "mase": [round(float(v), 4) for v in mase], "wape_all": round(overall_wape, 4),
                "wape_mean_h": round(float(np.mean(wape)), 4), "mase_mean_h": round(float(np.mean(mase)), 4),
                "mase_series_left_out": left_out}


def rolling_origin(forecaster: Forecaster, panel: Panel, first_target: int, last_target: int,
                   horizon: int) -> Backtest:
    """Forecasts of ``panel`` from origins first_target-1 .. last_target-1 (see module doc).
    The forecaster must already be fitted (on history through ``first_target - 1`` at most)."""
    origins = np.arange(first_target - 1, last_target)
    actual = np.full((panel.n_series, len(origins), horizon), np.nan)
    forecast = np.full_like(actual, np.nan)
    for j, o in enumerate(origins):
        forecast[:, j] = forecaster.predict(panel.upto(int(o)), horizon)
        for h in range(1, horizon + 1):
            if o + h <= last_target:
                actual[:, j, h - 1] = panel.values[:, o + h]
    return Backtest(forecaster.name, origins, actual, forecast)


def scale_for(panel: Panel, first_target: int) -> np.ndarray:
    """MASE scale per series from history before ``first_target`` (forecast/metrics.py)."""
    return mase_scale(panel.values[:, :first_target], panel.starts)
