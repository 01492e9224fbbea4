"""The small interface every recommender implements (fit / score / recommend / similar).

Models work on dense item indexes (1..n_items; 0 is padding). The vocabulary that maps
them to the shop's ids lives in the artifact folder beside the model (see
``shopformer.artifact``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.retrieve.exact import mask_items, top_k


@runtime_checkable
class Recommender(Protocol):
    #: short stable name written into artifacts and results ("popular", "ease", ...)
    name: str
    #: the model's typed config (a frozen dataclass); saved with the model
    config: object

    def fit(self, train: Sequences, n_items: int, valid: EvalCases | None = None) -> Self:
        """Learn from training sequences over items 1..n_items; models that tune or stop
        early use ``valid`` (never the test cases)."""
        ...

    def score(self, history: Sequences) -> np.ndarray:
        """(B, n_items + 1) float32 scores for each history row; column 0 is padding."""
        ...

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) most similar item indexes and their scores, the query item excluded."""
        ...

    def save(self, folder: Path) -> None:
        """Write weights and config into ``folder`` (which exists)."""
        ...

    @classmethod
    def load(cls, folder: Path) -> Self:
        ...


def recommend(
    model: Recommender, history: Sequences, k: int, exclude_history: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item indexes and scores per history row: the one ranking path shared by
    evaluation, batch export and serving."""
    scores = model.score(history)
    mask_items(scores, history if exclude_history else None)
    return top_k(scores, k)
