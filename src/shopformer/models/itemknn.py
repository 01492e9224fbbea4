"""Item-kNN baseline: cosine similarity between items' buyer sets, pruned to top neighbours.

``sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) * sqrt(|U_j|) + shrink)`` on the binary
user x item matrix, with ``sim(i, i) = 0``. Each item keeps its ``neighbors`` most similar
items (row-wise pruning), and a user's score is ``h @ S`` for the binary history ``h``:
the summed similarity of each candidate to the items the user has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import scipy.sparse as sp

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models import _common

#: dense float32 cells per similarity block (rows x items); bounds peak memory of fit
_BLOCK_CELLS = 1 << 23


@dataclass(frozen=True)
class ItemKNNConfig:
    #: similar items kept per item
    neighbors: int = 100
    #: added to the cosine denominator; damps similarities backed by few users. Its pull
    #: fades as counts grow, so a moderate value is safe in general: on Amazon Beauty
    #: (leave-one-out, validation NDCG@10) 0 -> 0.039, 10 -> 0.047, 50 -> 0.0485,
    #: 200 -> 0.047 at 100 neighbours
    shrink: float = 50.0

    def __post_init__(self) -> None:
        if self.neighbors < 1:
            raise ValueError(f"neighbors must be >= 1, got {self.neighbors}")
        if self.shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")


def cosine_top_k(x: sp.csr_matrix, neighbors: int, shrink: float = 0.0) -> sp.csr_matrix:
    """Item x item cosine similarity of the columns of binary ``x`` (users x items), each
    row pruned to its ``neighbors`` largest positive entries, diagonal zero.

    Computed in row blocks of ``_BLOCK_CELLS`` dense cells, each pruned before the next,
    so memory stays O(block + items * neighbors) whatever the catalog size.
    """
    x = sp.csr_matrix(x, dtype=np.float32)
    n = x.shape[1]
    xt = x.T.tocsr()  # items x users
    norms = np.sqrt(np.asarray(x.sum(axis=0), dtype=np.float32).ravel())
    k = min(neighbors, max(n - 1, 1))
    block = max(1, _BLOCK_CELLS // max(n, 1))
    rows, cols, vals = [], [], []
    for start in range(0, n, block):  # over blocks of items, not items
        stop = min(start + block, n)
        co = (xt[start:stop] @ x).toarray()  # (b, n) co-occurrence counts
        denom = norms[start:stop, None] * norms[None, :] + np.float32(shrink)
        sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)
        sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < n else np.broadcast_to(
            np.arange(n), sim.shape
        )
        v = np.take_along_axis(sim, top, axis=1)
        keep = v > 0
        rows.append(np.repeat(np.arange(start, stop), keep.sum(axis=1)))
        cols.append(top[keep])
        vals.append(v[keep])
    s = sp.csr_matrix(
        (np.concatenate(vals) if vals else np.zeros(0, np.float32),
         (np.concatenate(rows) if rows else np.zeros(0, np.int64),
          np.concatenate(cols) if cols else np.zeros(0, np.int64))),
        shape=(n, n),
        dtype=np.float32,
    )
    s.sort_indices()
    return s


class ItemKNN:
    """Item-item collaborative filtering with pruned cosine similarity.

    ``score`` returns ``h @ S`` (0 for items sharing no buyer with the history); a row
    whose history is empty (or only padding) gets item popularity instead, scaled to
    [0, 1] (distinct users per item over the largest count). Column 0 is ``-inf``.
    """

    name = "itemknn"

    def __init__(self, config: ItemKNNConfig) -> None:
        self.config = config
        self.n_items: int | None = None
        self.similarity: sp.csr_matrix | None = None  # (n_items + 1, n_items + 1) float32
        self.item_users: np.ndarray | None = None  # (n_items + 1,) distinct users per item

    def fit(self, train: Sequences, n_items: int, valid: EvalCases | None = None) -> Self:
        """Learn from ``train``; ``valid`` is accepted for the protocol and not used."""
        x = _common.interaction_matrix(train, n_items, "train")
        self.item_users = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
        self.similarity = cosine_top_k(x, self.config.neighbors, self.config.shrink)
        self.n_items = n_items
        return self

    def score(self, history: Sequences) -> np.ndarray:
        _common.require_fitted(self)
        h = _common.interaction_matrix(history, self.n_items)
        scores = (h @ self.similarity).toarray()
        empty = np.diff(h.indptr) == 0
        return _common.finish_scores(
            scores, empty, _common.popularity_fallback(self.item_users)
        )

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items by cosine similarity to the query; fewer than ``k`` neighbours are
        padded with 0-scored items (lowest index first). Query 0 (unknown) gets popular
        items."""
        _common.require_fitted(self)
        items = _common.check_query(items, self.n_items)
        scores = self.similarity[items].toarray()
        scores[items == 0] = _common.popularity_fallback(self.item_users)
        return _common.similar_top_k(scores, items, k)

    def save(self, folder: Path) -> None:
        _common.require_fitted(self)
        folder = Path(folder)
        _common.write_config(folder, self.name, self.config, n_items=self.n_items)
        sp.save_npz(folder / "similarity.npz", self.similarity)
        np.savez(folder / "weights.npz", item_users=self.item_users)

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        config, _ = _common.read_config(folder, cls.name, ItemKNNConfig)
        model = cls(config)
        model.similarity = sp.csr_matrix(sp.load_npz(folder / "similarity.npz"), dtype=np.float32)
        with np.load(folder / "weights.npz") as w:
            model.item_users = w["item_users"].astype(np.float32)
        model.n_items = model.similarity.shape[0] - 1
        return model
