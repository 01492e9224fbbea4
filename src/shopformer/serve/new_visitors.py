"""What a visitor with no usable history is shown.

``model`` (the default) answers with the served model's own empty-history scores: the
training popularity for the baselines, a learned first-event prior for the
Transformers. ``popular`` and ``trending`` instead count the store's recent events
(the last ``window_days`` before the newest stored event; ``trending`` also halves an
event's weight every ``half_life_days``), so what new visitors see follows the shop's
current sales without retraining. Catalog filters apply as usual, so ``category=X``
gives the most popular products of that category.

Which is better depends on the shop: on Online Retail popularity beat the Transformer's
prior for first interactions (HR@10 0.0376 vs 0.0282), on Amazon Beauty the prior won
(0.0268 vs 0.0170): benchmarks/results/new_visitors.md.

The counts are kept per served run for ``ttl_s`` seconds (one full read of the recent
events, then none until the time is up).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from shopformer.models.trending import trending_weights
from shopformer.store import EventStore

from .settings import NEW_VISITOR_SOURCES


@dataclass(frozen=True)
class NewVisitorConfig:
    """source: "model", "popular" or "trending" (see the module docstring).
    window_days: recent window counted (0 = every stored event).
    half_life_days: ``trending`` only: an event's weight halves this often.
    ttl_s: seconds the counts are reused."""

    source: str = "model"
    window_days: float = 30.0
    half_life_days: float = 7.0
    ttl_s: float = 60.0

    def __post_init__(self) -> None:
        if self.source not in NEW_VISITOR_SOURCES:
            raise ValueError(f"new-visitor source must be one of {', '.join(NEW_VISITOR_SOURCES)}, got {self.source!r}")
        if self.window_days < 0 or self.half_life_days < 0 or self.ttl_s < 0:
            raise ValueError("window_days, half_life_days and ttl_s must be >= 0")

    @property
    def strategy(self) -> str:
        """The ``strategy`` an answer from these scores reports."""
        return "trending" if self.source == "trending" else "popularity"


class RecentPopularity:
    """(N + 1,) scores from the store's recent events, per served run."""

    def __init__(self, config: NewVisitorConfig, store: EventStore) -> None:
        self.config = config
        self.store = store
        # run version -> (when, scores); an experiment serves a few runs side by side
        self._cached: dict[str, tuple[float, np.ndarray | None]] = {}
        self._lock = threading.Lock()

    def scores(self, version: str, items, event_types: tuple[str, ...]) -> np.ndarray | None:  # noqa: ANN001
        """Scores over the model's item indexes (``items``: its Vocabulary), or None
        with ``source="model"`` or when the window holds no event of a known item (the
        caller then falls back to the model)."""
        if self.config.source == "model":
            return None
        cached = self._fresh(version)
        if cached is not None:
            return cached[1]
        with self._lock:  # one read at a time; the others wait for it, then reuse it
            cached = self._fresh(version)
            if cached is None:
                now = time.monotonic()
                cached = (now, self._compute(items, event_types))
                fresh = {v: c for v, c in self._cached.items() if now - c[0] < self.config.ttl_s}
                self._cached = {**fresh, version: cached}  # a new dict: readers never see it change
            return cached[1]

    def _fresh(self, version: str) -> tuple[float, np.ndarray | None] | None:
        cached = self._cached.get(version)
        return cached if cached is not None and time.monotonic() - cached[0] < self.config.ttl_s else None

    def _compute(self, items, event_types: tuple[str, ...]) -> np.ndarray | None:  # noqa: ANN001
        c = self.config
        frame = self.store.recent_item_events(c.window_days, event_types)
        idx = items.encode(frame["item_id"])
        known = idx > 0
        if not known.any():
            return None
        ts = frame["timestamp"].dt.epoch("ms").to_numpy().astype(np.float64) / 1000.0
        half_life = c.half_life_days if c.source == "trending" else 0.0
        weights = trending_weights(idx[known], ts[known], len(items), half_life)  # (N + 1,)
        out = (weights / weights.max()).astype(np.float32)  # the top item scores 1
        out[0] = -np.inf  # padding is never an answer
        return out
