"""Ranking metrics as pure functions of a hit matrix.

``hits[u, r]`` is True when user ``u``'s item at rank ``r`` (0 = best) is one of the
user's targets; ``n_relevant[u]`` is how many targets the user has. Every metric returns
the per-user values; callers average them. Cutoff ``k`` uses the first ``k`` columns.
"""

from __future__ import annotations

import numpy as np


def _check(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1 or k > hits.shape[1]:
        raise ValueError(f"cutoff k={k} must be in 1..{hits.shape[1]}")
    return hits[:, :k].astype(np.float64)


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    """1 if any target is in the top k, else 0."""
    return (_check(hits, k).sum(axis=1) > 0).astype(np.float64)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Targets found in the top k / number of targets."""
    return _check(hits, k).sum(axis=1) / np.maximum(n_relevant, 1)


def precision(hits: np.ndarray, k: int) -> np.ndarray:
    """Targets found in the top k / k."""
    return _check(hits, k).sum(axis=1) / k


def f1(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Harmonic mean of precision@k and recall@k (0 where both are 0)."""
    p = precision(hits, k)
    r = recall(hits, n_relevant, k)
    denom = p + r
    return np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k: DCG = sum 1/log2(rank + 2) over hits; the ideal DCG puts
    min(n_relevant, k) hits at the top."""
    h = _check(hits, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = h @ discounts
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(np.maximum(n_relevant, 1), k)]
    return dcg / idcg


def graded_ndcg(gains: np.ndarray, ideal: np.ndarray, k: int) -> np.ndarray:
    """Graded NDCG@k: ``gains[u, r]`` is the gain of row ``u``'s result at rank ``r`` (0 for
    unjudged results), ``ideal[u]`` every judged gain of row ``u`` (any order, 0-padded).
    DCG = sum gain / log2(rank + 2); the ideal DCG sorts ``ideal[u]`` best first. Rows
    whose judged gains are all 0 give NaN (nothing to find: leave them out of a mean)."""
    g = _check(np.asarray(gains, dtype=np.float64), k)
    best = -np.sort(-np.asarray(ideal, dtype=np.float64), axis=1)[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = best @ discounts[: best.shape[1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, (g @ discounts) / idcg, np.nan)


def reciprocal_rank(first_rank: np.ndarray) -> np.ndarray:
    """1 / (rank + 1) of the first target in the FULL ranking (0-based ``first_rank``)."""
    return 1.0 / (np.asarray(first_rank, dtype=np.float64) + 1.0)


def coverage(recommended: np.ndarray, n_items: int) -> float:
    """Fraction of the catalog (items 1..n_items) that appears in any list."""
    shown = np.unique(recommended[recommended > 0])
    return len(shown) / n_items if n_items else 0.0
