"""Trending baseline: popularity in the recent past, what a new visitor is shown.

Every training event counts with weight ``2 ** (-age / half_life)``, its age measured
back from the newest training event, so last week's bestsellers outrank last year's.
Events without a timestamp (and data without any) count 1: with no time to go by the
model is plain popularity. Like :class:`~shopformer.models.popularity.MostPopular` it
gives every history the same scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models import _common
from shopformer.models.popularity import StaticScores

DAY_S = 86_400.0


@dataclass(frozen=True)
class TrendingConfig:
    #: an event's weight halves every ``half_life_days`` before the newest event
    #: (0 = no decay: every event counts 1)
    half_life_days: float = 7.0


def trending_weights(
    items: np.ndarray, timestamps: np.ndarray | None, n_items: int, half_life_days: float, now: float | None = None
) -> np.ndarray:
    """(n_items + 1,) float64 time-decayed counts of ``items`` (indexes 1..n_items;
    0 is ignored). ``timestamps`` are epoch seconds (NaN = unknown, weight 1); ages are
    measured from ``now`` (default: the newest timestamp); events after ``now`` count 1."""
    items = np.asarray(items, dtype=np.int64)
    weights = np.ones(len(items), dtype=np.float64)
    if half_life_days < 0:
        raise ValueError(f"half_life_days must be >= 0, got {half_life_days}")
    if half_life_days > 0 and timestamps is not None and len(items):
        ts = np.asarray(timestamps, dtype=np.float64)
        timed = np.isfinite(ts)
        if timed.any():
            ref = float(np.max(ts[timed])) if now is None else float(now)
            age = np.clip(ref - ts[timed], 0.0, None)
            weights[timed] = np.exp2(-age / (half_life_days * DAY_S))
    out = np.bincount(items, weights=weights, minlength=n_items + 1)[: n_items + 1]
    out[0] = 0.0
    return out


class Trending(StaticScores):
    """Scores every item by its time-decayed training popularity (see the module)."""

    name = "trending"
    config_type = TrendingConfig

    def __init__(self, config: TrendingConfig) -> None:
        super().__init__(config)

    def fit(self, train: Sequences, n_items: int, valid: EvalCases | None = None) -> Self:
        """Learn from ``train``; ``valid`` is accepted for the protocol and not used."""
        _common.check_items(train, n_items, "train")
        w = trending_weights(train.items, train.timestamps, n_items, self.config.half_life_days)
        # Rescaled so the top item scores 1: decayed weights can be tiny in float32.
        self.counts = (w / max(float(w.max(initial=0.0)), 1e-300)).astype(np.float32)
        self.n_items = n_items
        return self
