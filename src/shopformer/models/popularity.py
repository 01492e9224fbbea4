"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models import _common


@dataclass(frozen=True)
class PopularityConfig:
    #: count each user at most once per item (distinct buyers) instead of every event
    distinct_users: bool = False


class StaticScores:
    """Base of the models that score every history the same (``counts``): the most
    popular items, the trending ones. Subclasses set ``name``, ``config_type`` and
    ``counts`` in ``fit``."""

    name = ""
    config_type: type = object

    def __init__(self, config) -> None:  # noqa: ANN001 - each subclass types its config
        self.config = config
        self.n_items: int | None = None
        self.counts: np.ndarray | None = None  # (n_items + 1,) float32, counts[0] = 0

    def _row(self) -> np.ndarray:
        _common.require_fitted(self)
        row = self.counts.copy()
        row[0] = -np.inf
        return row

    def score(self, history: Sequences) -> np.ndarray:
        row = self._row()
        _common.check_items(history, self.n_items, "history")
        return np.tile(row, (len(history), 1))

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top-scored items other than the query."""
        row = self._row()
        items = _common.check_query(items, self.n_items)
        return _common.similar_top_k(np.tile(row, (len(items), 1)), items, k)

    def save(self, folder: Path) -> None:
        _common.require_fitted(self)
        folder = Path(folder)
        _common.write_config(folder, self.name, self.config, n_items=self.n_items)
        np.savez(folder / "weights.npz", counts=self.counts)

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        config, extra = _common.read_config(folder, cls.name, cls.config_type)
        model = cls(config)
        with np.load(folder / "weights.npz") as w:
            model.counts = w["counts"].astype(np.float32)
        model.n_items = int(extra.get("n_items", len(model.counts) - 1))
        return model


class MostPopular(StaticScores):
    """Scores every item by its training popularity, the same for every history.

    ``score`` returns the raw counts (as float32) in columns 1..n_items and ``-inf`` in
    the padding column. An empty history gets the same scores as any other.
    """

    name = "popular"
    config_type = PopularityConfig

    def __init__(self, config: PopularityConfig) -> None:
        super().__init__(config)

    def fit(self, train: Sequences, n_items: int, valid: EvalCases | None = None) -> Self:
        """Learn from ``train``; ``valid`` is accepted for the protocol and not used."""
        if self.config.distinct_users:
            counts = np.asarray(
                _common.interaction_matrix(train, n_items, "train").sum(axis=0)
            ).ravel()
        else:
            _common.check_items(train, n_items, "train")
            counts = np.bincount(train.items, minlength=n_items + 1)
            counts[0] = 0
        self.counts = counts.astype(np.float32)
        self.n_items = n_items
        return self
