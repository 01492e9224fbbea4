"""The evaluation protocol's candidate sets and metrics.

For a held-out question ``i`` of product ``p``, the candidates are ``i``'s own (true)
answer plus every OTHER answer of ``p`` (from any split: they are distractors, their
labels are never read), with two rules:

* an other answer whose normalized text equals the true answer's ("Yes." vs "yes") is
  dropped: it cannot be told apart from the true one, so neither ranking it first nor
  last would be right;
* other answers with the same normalized text are kept once.

A question whose candidate set is its true answer alone (the product has no other
distinct answer) has nothing to rank and is skipped, and counted.

Ranks are tie-aware: when the true answer ties with others (BM25 gives 0 to every
answer sharing no word with the question), its rank is uniform over the tied positions
and MRR / Recall@K are their expectations, so no method gains from how ties are broken.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def _key(text: str) -> str:
    return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch.isspace()).split())


class CandidateSets:
    """Candidate rows per question of ``frame`` (rows are ``qa_id``s = positions)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.keys = [_key(a) for a in frame["answer"].to_list()]
        self.items = frame["item_id"].to_list()
        self.by_item: dict[str, list[int]] = {}
        for i, item in enumerate(self.items):
            self.by_item.setdefault(item, []).append(i)

    def of(self, i: int) -> np.ndarray:
        """(C,) int64 rows: the true answer ``i`` first, then the distinct other answers."""
        seen, rows = {self.keys[i]}, [i]
        for j in self.by_item[self.items[i]]:
            if j != i and self.keys[j] not in seen:
                seen.add(self.keys[j])
                rows.append(j)
        return np.asarray(rows, np.int64)

    def others(self, i: int) -> np.ndarray:
        """(C,) the product's answers except ``i`` (the evidence a question may read
        about its product without seeing its own answer)."""
        return np.asarray([j for j in self.by_item[self.items[i]] if j != i], np.int64)


def expected_rank_metrics(scores: np.ndarray, true_pos: int, k: int = 5) -> tuple[float, float]:
    """Expected reciprocal rank and Recall@k of candidate ``true_pos`` under ``scores``
    (higher is better), ties broken uniformly at random."""
    s = np.asarray(scores, np.float64)
    t = s[true_pos]
    above = int((s > t).sum())
    tied = int((s == t).sum())  # includes the true answer
    ranks = np.arange(above + 1, above + tied + 1, dtype=np.float64)
    return float((1.0 / ranks).mean()), float((ranks <= k).mean())
