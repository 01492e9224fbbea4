"""ExactIndex: brute-force inner-product search, the reference every other index matches.

Scores are one matrix product per batch of queries; ranking is :func:`top_k` (ties by
the lower item index), so results are deterministic and equal ``recommend``'s ranking
over the same vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

import numpy as np

from shopformer.retrieve.exact import top_k
from shopformer.retrieve.index import (
    ItemTable,
    allowed_counts,
    as_matrix,
    check_allowed,
    check_k,
    check_table,
    check_updates,
    pad_results,
    read_meta,
    write_meta,
)


@dataclass(frozen=True)
class ExactIndexConfig:
    #: most scores held at once (queries per batch x catalog rows); bounds memory
    max_batch_scores: int = 1 << 24

    def __post_init__(self) -> None:
        if self.max_batch_scores < 1:
            raise ValueError("max_batch_scores must be >= 1")


def exact_search(
    table: np.ndarray,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    ids: np.ndarray | None = None,
    max_batch_scores: int = 1 << 24,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by inner product over ``table`` rows (row 0 = padding, never returned).

    ``allowed`` is None, (N + 1,) or (B, N + 1) with padding already False (see
    :func:`check_allowed`). With ``ids`` (ascending item indexes, no 0) only those rows
    are scored, which is what a selective filter needs. Returns (B, k) indexes and
    scores, padded with 0 / -inf where fewer than ``k`` items are allowed.
    """
    n_queries = len(queries)
    n_items = len(table) - 1
    if ids is None:
        cols = None
        sub_allowed = allowed
        n_cols = len(table)
    else:
        cols = np.asarray(ids, dtype=np.int64)
        sub_allowed = None if allowed is None else allowed[..., cols]
        n_cols = len(cols)
    out_idx = np.zeros((n_queries, k), dtype=np.int64)
    out_scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    if n_queries == 0 or n_cols == 0:
        return out_idx, out_scores
    sub_table = table if cols is None else table[cols]
    batch = max(1, max_batch_scores // n_cols)
    for start in range(0, n_queries, batch):
        rows = slice(start, start + batch)
        scores = queries[rows] @ sub_table.T  # (b, n_cols)
        if cols is None:
            scores[:, 0] = -np.inf
        if sub_allowed is not None and sub_allowed.ndim == 1:
            scores[:, ~sub_allowed] = -np.inf
        elif sub_allowed is not None:
            scores[~sub_allowed[rows]] = -np.inf
        idx, sc = top_k(scores, k)
        if cols is not None:
            idx = cols[idx]
        out_idx[rows, : idx.shape[1]] = idx
        out_scores[rows, : sc.shape[1]] = sc
    # Allowed items per row; the places past that count hold -inf scores: pad them.
    n_valid = allowed_counts(sub_allowed, n_items if cols is None else n_cols, n_queries)
    pad_results(out_idx, out_scores, n_valid)
    return out_idx, out_scores


class ExactIndex(ItemTable):
    """Brute-force inner-product index over an (N + 1, D) item table."""

    def __init__(self, config: ExactIndexConfig = ExactIndexConfig()):
        self.config = config
        self._table: np.ndarray | None = None

    def build(self, vectors: np.ndarray) -> Self:
        self._table = check_table(vectors).copy()
        return self

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        table = self._require()
        k = check_k(k)
        q = as_matrix(queries, "queries", table.shape[1])
        allowed = check_allowed(allowed, len(table), len(q))
        return exact_search(table, q, k, allowed, max_batch_scores=self.config.max_batch_scores)

    def add_or_update(self, item_ids: np.ndarray, vectors: np.ndarray) -> None:
        table = self._require()
        ids, vecs = check_updates(item_ids, vectors, len(table), table.shape[1])
        n_new = int((ids >= len(table)).sum())
        if n_new:
            table = np.concatenate([table, np.zeros((n_new, table.shape[1]), np.float32)])
        table[ids] = vecs
        self._table = table

    def vectors(self) -> np.ndarray:
        """The (N + 1, D) table (a read-only view)."""
        view = self._require().view()
        view.flags.writeable = False
        return view

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self._require())
        write_meta(folder, "exact", asdict(self.config))

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        meta = read_meta(folder)
        if meta["type"] != "exact":
            raise ValueError(f"{folder} holds a {meta['type']!r} index, not an exact one")
        index = cls(ExactIndexConfig(**meta["config"]))
        index._table = np.load(folder / "vectors.npy")
        return index
