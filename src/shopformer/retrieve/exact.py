"""Exact top-K retrieval over a dense score matrix: the reference every index matches."""

from __future__ import annotations

import numpy as np

from shopformer.features.sequences import Sequences


def mask_items(scores: np.ndarray, exclude: Sequences | None) -> np.ndarray:
    """Set padding (column 0) and each row's ``exclude`` items to -inf, in place."""
    scores[:, 0] = -np.inf
    if exclude is not None and exclude.n_interactions:
        rows = np.repeat(np.arange(len(exclude)), exclude.lengths)
        scores[rows, exclude.items] = -np.inf
    return scores


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indexes and scores of each row's ``k`` highest scores, best first.

    Ties are broken by the lower item index, so the result is deterministic. Items at
    -inf (masked) come last; callers that must not return them compare with -inf.
    """
    n = scores.shape[1]
    k = min(k, n)
    # Stable order on (-score, index): argpartition a superset, then sort it exactly.
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(scores), 1))
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
    out_idx = np.empty((len(scores), k), dtype=np.int64)
    for r in range(len(scores)):  # per row, only to resolve ties at the k-th score exactly
        cand = np.flatnonzero(scores[r] >= kth[r, 0])
        order = np.lexsort((cand, -scores[r, cand]))[:k]
        out_idx[r] = cand[order]
    return out_idx, np.take_along_axis(scores, out_idx, axis=1)
