"""Training and forecasting windows for the global models (LightGBM, Transformer).

A window is one series at one origin t: its last ``context`` weeks (t-context+1..t)
and the ``horizon`` weeks after. Every week of the window becomes a token of
``N_FEATURES`` numbers:

0  units / scale (0 in the future and before the series' first sale)
1  1 if the week is observed history (after the first sale, not in the future)
2  units 52 weeks earlier / scale (0 where that week is not in the history)
3  1 if that week is in the history
4..7  calendar features of the week (calendar.py)
8  log1p(scale) / 10: how large the series is (scaling hides it otherwise)

Each window also has ``STATS`` series-level numbers (``Windows.stats``, what LightGBM's
lag summaries say; the Transformer may add them to every token): the mean weekly units
over the last 4 / 13 / 26 / 52 observed weeks up to the origin, / scale (read from the
panel, so the 52-week mean exists with a shorter context), and the observed weeks up to
the origin / 52, clipped at 2. ``Windows.medians`` (``N_MEDIANS``): the median weekly
units over the last 13 / 26 / 52 observed weeks, / scale (0 if none): levels one
wholesale order does not move, as the mean does (a week can sell 400x the mean).

``scale`` is the mean weekly units over the context's observed weeks (1 if none, or
0): scaled per series, one global model fits products of 10 and 10,000 units a week.
Targets are the future weeks' units / scale (NaN past the end of the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Panel
from .calendar import N_CALENDAR, CalendarConfig, calendar_features

SEASON = 52
N_FEATURES = 5 + N_CALENDAR
STAT_WEEKS = (4, 13, 26, 52)
N_STATS = len(STAT_WEEKS) + 1
MEDIAN_WEEKS = (13, 26, 52)
N_MEDIANS = len(MEDIAN_WEEKS)


@dataclass
class Windows:
    tokens: np.ndarray  # [B, context + horizon, N_FEATURES] float32
    targets: np.ndarray  # [B, horizon] float32, NaN past the data
    scale: np.ndarray  # [B] float64
    series: np.ndarray  # [B] int series index
    origin: np.ndarray  # [B] int origin week index
    stats: np.ndarray  # [B, N_STATS] float32 series-level summaries (module doc)
    medians: np.ndarray  # [B, N_MEDIANS] float32 robust levels (module doc)


def make_windows(panel: Panel, series: np.ndarray, origins: np.ndarray, context: int, horizon: int,
                 calendar: CalendarConfig = CalendarConfig()) -> Windows:
    """Windows of ``panel`` for the pairs (``series[b]``, ``origins[b]``)."""
    series, origins = np.asarray(series, dtype=np.int64), np.asarray(origins, dtype=np.int64)
    T = panel.n_weeks
    span = np.arange(-context + 1, horizon + 1)  # offsets of the window's weeks from the origin
    week_idx = origins[:, None] + span[None, :]  # [B, L+H]
    all_weeks = panel.weeks[0] + np.arange(-context - SEASON, T + horizon + 1) * np.timedelta64(7, "D")
    cal = calendar_features(all_weeks, calendar)  # indexed by week index + context + SEASON
    start = panel.starts[series][:, None]

    def values_at(idx: np.ndarray, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = (idx >= start) & (idx <= limit) & (idx >= 0) & (idx < T)
        vals = np.where(ok, panel.values[series[:, None], np.clip(idx, 0, T - 1)], 0.0)
        return vals, ok

    past, observed = values_at(week_idx, origins[:, None])  # the future is not observed
    lag, lag_ok = values_at(week_idx - SEASON, origins[:, None])
    n_obs = observed.sum(axis=1)
    scale = np.where(n_obs > 0, past.sum(axis=1) / np.maximum(n_obs, 1), 1.0)
    scale = np.where(scale > 0, scale, 1.0)
    future, future_ok = values_at(week_idx[:, context:], np.full((len(series), 1), T - 1))
    targets = np.where(future_ok, future / scale[:, None], np.nan)
    targets[week_idx[:, context:] >= T] = np.nan
    tokens = np.empty((len(series), context + horizon, N_FEATURES), dtype=np.float32)
    tokens[..., 0] = past / scale[:, None]
    tokens[..., 1] = observed
    tokens[..., 2] = lag / scale[:, None]
    tokens[..., 3] = lag_ok
    tokens[..., 4:4 + N_CALENDAR] = cal[week_idx + context + SEASON]
    tokens[..., 4 + N_CALENDAR] = (np.log1p(scale) / 10)[:, None]
    year, year_ok = values_at(origins[:, None] + np.arange(-SEASON + 1, 1)[None, :], origins[:, None])  # [B, 52]
    stats = np.empty((len(series), N_STATS), dtype=np.float32)
    for k, weeks in enumerate(STAT_WEEKS):
        stats[:, k] = year[:, -weeks:].sum(1) / np.maximum(year_ok[:, -weeks:].sum(1), 1) / scale
    stats[:, -1] = np.minimum(np.maximum(origins - panel.starts[series] + 1, 0) / SEASON, 2.0)
    medians = np.zeros((len(series), N_MEDIANS), dtype=np.float32)
    seen = np.where(year_ok, year, np.nan)
    for k, weeks in enumerate(MEDIAN_WEEKS):
        some = year_ok[:, -weeks:].any(axis=1)  # nanmedian of an all-NaN row warns: skip those
        medians[some, k] = np.nanmedian(seen[some, -weeks:], axis=1) / scale[some]
    return Windows(tokens, targets.astype(np.float32), scale, series, origins, stats, medians)


def training_pairs(panel: Panel, min_history: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Every (series, origin) pair of ``panel`` with >= ``min_history`` observed weeks up to
    the origin and at least one target week in the panel (later targets are NaN: cut
    the panel at the last week the model may learn from)."""
    s_out, o_out = [], []
    for i in range(panel.n_series):
        origins = np.arange(panel.starts[i] + min_history - 1, panel.n_weeks - 1)
        s_out.append(np.full(len(origins), i))
        o_out.append(origins)
    return np.concatenate(s_out).astype(np.int64), np.concatenate(o_out).astype(np.int64)
