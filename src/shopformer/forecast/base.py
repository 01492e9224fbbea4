"""The one small interface every forecaster has, and the panel of series it reads.

A :class:`Panel` is N weekly series over the same T weeks. ``fit(panel)`` learns from
every week of it (global models train here; local ones have nothing to learn ahead);
``predict(panel, horizon)`` forecasts weeks T+1..T+horizon of each series from the
history it is given, which may run past the weeks it was fitted on (a rolling origin
moves forward without refitting a global model). Forecasts are units, >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Panel:
    values: np.ndarray  # [N, T] float64 weekly units
    weeks: np.ndarray  # [T] datetime64[D] Mondays
    starts: np.ndarray  # [N] int: first week of each series' history (its first sale)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        self.weeks = np.asarray(self.weeks, dtype="datetime64[D]")
        self.starts = np.minimum(np.asarray(self.starts, dtype=np.int64), self.values.shape[1])
        if self.values.ndim != 2 or self.values.shape[1] != len(self.weeks) or len(self.starts) != len(self.values):
            raise ValueError(f"panel shapes disagree: values {self.values.shape}, weeks {self.weeks.shape}, "
                             f"starts {self.starts.shape}")

    @classmethod
    def of(cls, values: np.ndarray, weeks: np.ndarray) -> Panel:
        """Each series' history starts at its first week with units."""
        sold = np.asarray(values) > 0
        starts = np.where(sold.any(axis=1), sold.argmax(axis=1), sold.shape[1])
        return cls(values, weeks, starts)

    @property
    def n_series(self) -> int:
        return self.values.shape[0]

    @property
    def n_weeks(self) -> int:
        return self.values.shape[1]

    def upto(self, t: int) -> Panel:
        """The history through week ``t`` (inclusive): the forecast origin ``t``."""
        return Panel(self.values[:, : t + 1], self.weeks[: t + 1], self.starts)

    def future_weeks(self, horizon: int) -> np.ndarray:
        """[horizon] the Mondays after the last week."""
        return self.weeks[-1] + np.arange(1, horizon + 1) * np.timedelta64(7, "D")


class Forecaster(Protocol):
    name: str

    def fit(self, panel: Panel) -> Forecaster: ...

    def predict(self, panel: Panel, horizon: int) -> np.ndarray:
        """[N, horizon] forecasts of the weeks after ``panel``'s last."""
        ...
