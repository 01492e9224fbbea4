"""Content-only kNN: items scored by how close their content is to the user's history.

An item's content vector joins its IDF-weighted attribute tokens (brand, categories,
price band, ...) and its dense vector (text / image embedding), each part unit-length;
a user's profile is the mean of the content vectors of the latest ``history`` items.
It needs no interactions at all, so it is the reference for cold-start products.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import scipy.sparse as sp

from shopformer.features.content import ItemContent
from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models import _common


@dataclass(frozen=True)
class ContentKNNConfig:
    """history: latest events that form the profile; vector_weight: weight of the dense
    vector part against the token part (both unit-length)."""

    history: int = 20
    vector_weight: float = 1.0


def content_matrix(content: ItemContent, vector_weight: float = 1.0) -> sp.csr_matrix:
    """(N + 1, n_tokens + V) unit-length content rows; row 0 and rows with no content are 0."""
    n_rows = len(content.tokens)
    rows = np.repeat(np.arange(n_rows), content.tokens.shape[1])
    cols = content.tokens.ravel()
    keep = cols > 0
    tok = sp.csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])), shape=(n_rows, content.n_tokens))
    parts = [_unit_rows(tok @ sp.diags(token_idf(content.tokens, content.n_tokens)))]
    if content.vectors is not None:
        parts.append(_unit_rows(sp.csr_matrix(content.vectors)) * np.float32(vector_weight))
    return sp.hstack(parts, format="csr")


def token_idf(tokens: np.ndarray, n_tokens: int) -> np.ndarray:
    """(n_tokens,) float32 inverse document frequency of each token over the catalog rows
    (token 0 = none counts nowhere)."""
    rows = np.repeat(np.arange(len(tokens)), tokens.shape[1])
    cols = tokens.ravel()
    pairs = np.unique(rows[cols > 0] * n_tokens + cols[cols > 0])  # a token twice in a row counts once
    df = np.bincount(pairs % n_tokens, minlength=n_tokens)
    return np.log((1 + len(tokens)) / (1 + df)).astype(np.float32)


def _unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)) @ m


class ContentKNN:
    name = "content_knn"

    def __init__(self, config: ContentKNNConfig = ContentKNNConfig(), content: ItemContent | None = None):
        self.config = config
        self.content = content
        self.matrix: sp.csr_matrix | None = None
        self.n_items = 0

    def fit(self, train: Sequences, n_items: int, valid: EvalCases | None = None) -> Self:
        if self.content is None:
            raise ValueError("content_knn needs item content (brand, categories, text vectors ...)")
        if len(self.content.tokens) != n_items + 1:
            raise ValueError(f"content has {len(self.content.tokens)} rows; the catalog needs {n_items + 1}")
        self.n_items = n_items
        self.matrix = content_matrix(self.content, self.config.vector_weight)
        return self

    def _profiles(self, history: Sequences) -> sp.csr_matrix:
        _common.check_items(history, self.n_items, "history")
        h = history.latest(self.config.history)
        rows = np.repeat(np.arange(len(h)), h.lengths)
        cols = h.items
        keep = cols > 0
        sel = sp.csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])), shape=(len(h), self.n_items + 1))
        return sel @ self.matrix  # (U, F) sum of history content rows (same ranking as the mean)

    def score(self, history: Sequences) -> np.ndarray:
        if self.matrix is None:
            raise RuntimeError("content_knn is not fitted")
        scores = (self._profiles(history) @ self.matrix.T).toarray().astype(np.float32)
        scores[:, 0] = -np.inf
        return scores

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        items = _common.check_query(items, self.n_items)
        sims = (self.matrix[items] @ self.matrix.T).toarray().astype(np.float32)
        return _common.similar_top_k(sims, items, k)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _common.write_config(folder, self.name, self.config, n_items=self.n_items)
        self.content.save(folder)

    @classmethod
    def load(cls, folder: Path) -> Self:
        config, extra = _common.read_config(folder, cls.name, ContentKNNConfig)
        model = cls(config, ItemContent.load(folder))
        return model.fit(Sequences.from_lists([]), int(extra["n_items"]))
