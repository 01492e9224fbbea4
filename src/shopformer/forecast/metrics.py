"""Forecast accuracy: WAPE and MASE, pure functions over arrays.

``actual`` and ``forecast`` are ``[N, O, H]`` (series x forecast origins x horizons);
NaN in ``actual`` marks a target past the end of the data (not scored).

- WAPE at horizon h = sum |actual - forecast| / sum |actual| over every series and
  origin with a target at h (so large series weigh more: it is the share of the
  units sold that the forecast misses).
- MASE at horizon h = mean over series of (mean |error| over origins) / scale_i, where
  scale_i is the series' in-sample mean absolute one-step change over its training
  history (the naive forecast's error, Hyndman & Koehler 2006; one step rather than 52
  because many products have less than two years of history). Series whose scale is
  0 (a constant history) are left out and counted.
"""

from __future__ import annotations

import numpy as np


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """sum |a - f| / sum |a| over entries where ``actual`` is not NaN (NaN if sum |a| = 0)."""
    a, f = np.asarray(actual, dtype=float), np.asarray(forecast, dtype=float)
    ok = ~np.isnan(a)
    den = np.abs(a[ok]).sum()
    return float(np.abs(a[ok] - f[ok]).sum() / den) if den > 0 else float("nan")


def mase_scale(history: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """[N] mean |y[t] - y[t-1]| over each series' history from its start (NaN if < 2 weeks)."""
    h = np.atleast_2d(np.asarray(history, dtype=float))
    starts = np.zeros(len(h), dtype=int) if starts is None else np.asarray(starts)
    out = np.full(len(h), np.nan)
    for i, s in enumerate(starts):
        y = h[i, s:]
        if len(y) >= 2:
            out[i] = np.abs(np.diff(y)).mean()
    return out


def wape_per_horizon(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """[H] WAPE of each horizon over series and origins."""
    return np.array([wape(actual[..., h], forecast[..., h]) for h in range(actual.shape[-1])])


def mase_per_horizon(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, int]:
    """([H] MASE of each horizon, series left out for a zero or unknown scale)."""
    a, f = np.asarray(actual, dtype=float), np.asarray(forecast, dtype=float)
    ok_series = np.isfinite(scale) & (scale > 0)
    err = np.abs(a - f)[ok_series]  # [N', O, H]
    with np.errstate(invalid="ignore"):
        per_series = np.nanmean(err, axis=1) / scale[ok_series, None]  # [N', H]
    return np.nanmean(per_series, axis=0), int((~ok_series).sum())
