"""Complements: what completes a cart ("frequently bought together"), not what
resembles it.

Scores come from two sources, blended on a common scale:

* co-purchase statistics (:class:`shopformer.models.copurchase.CoPurchase`), the cart's
  summed association to each item, normalized to sum to 1 over the candidates;
* optionally the sequence model reading the cart as a history (its softmax over the
  catalog), with weight ``sequence_weight``.

Then near-substitutes of what is already in the cart are removed: an item whose cosine
to a cart item, on the item vectors that similar items use, is at least
``substitute_similarity``, or whose title shares at least ``title_overlap`` of its
words (Jaccard) with a cart item's title. The cart itself and padding are never
returned. Remaining ties (items nothing was bought with) are broken by basket
popularity, so a cart with no history still gets the best sellers, not arbitrary items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shopformer.features.sequences import Sequences
from shopformer.models.copurchase import CoPurchase

#: popularity tie-break scale: far below any co-purchase or model share
_TIE = 1e-9


@dataclass(frozen=True)
class ComplementsConfig:
    """How complements are scored and which substitutes are dropped."""

    #: share of the sequence model in the blend (0: co-purchase only, 1: model only)
    sequence_weight: float = 0.0
    #: drop items with cosine >= this to a cart item (item vectors); None: keep them
    substitute_similarity: float | None = None
    #: drop items whose title word-Jaccard to a cart item's is >= this; None: keep them
    title_overlap: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.sequence_weight <= 1:
            raise ValueError(f"sequence_weight must lie in [0, 1], got {self.sequence_weight}")
        if self.substitute_similarity is not None and not -1 <= self.substitute_similarity <= 1:
            raise ValueError(f"substitute_similarity must lie in [-1, 1], got {self.substitute_similarity}")
        if self.title_overlap is not None and not 0 < self.title_overlap <= 1:
            raise ValueError(f"title_overlap must lie in (0, 1], got {self.title_overlap}")


def title_tokens(titles: list[str | None]) -> sp.csr_matrix:
    """(len(titles), vocabulary) binary matrix of each title's lower-cased words."""
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for r, title in enumerate(titles):
        for word in set(re.findall(r"\w+", (title or "").lower())):
            rows.append(r)
            cols.append(vocab.setdefault(word, len(vocab)))
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(titles), max(len(vocab), 1)))


def shares(scores: np.ndarray) -> np.ndarray:
    """Rows of non-negative ``scores`` scaled to sum to 1 (all-zero rows stay 0)."""
    scores = np.maximum(scores, 0)
    total = scores.sum(axis=1, keepdims=True)
    return np.divide(scores, total, out=np.zeros_like(scores), where=total > 0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax, -inf (masked) entries at 0."""
    logits = np.where(np.isfinite(logits), logits, -np.inf)
    top = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - np.where(np.isfinite(top), top, 0))
    return e / np.maximum(e.sum(axis=1, keepdims=True), 1e-30)


class Complements:
    """Blend co-purchase and sequence-model scores for carts; drop near-substitutes."""

    def __init__(self, config: ComplementsConfig, copurchase: CoPurchase,
                 unit_vectors: np.ndarray | None = None, tokens: sp.csr_matrix | None = None) -> None:
        """``unit_vectors``: (n_items + 1, D) L2-normalized item vectors (those of similar
        items); ``tokens``: :func:`title_tokens` of the titles by item index. Without
        them, the matching substitute test is skipped."""
        self.config = config
        self.copurchase = copurchase
        self.unit_vectors = unit_vectors
        self.tokens = tokens
        self._token_counts = np.asarray(tokens.sum(axis=1)).ravel() if tokens is not None else None
        self._popularity = copurchase.popularity()

    def closeness(self, carts: Sequences) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Each item's closeness to its nearest cart item: (max cosine on the item
        vectors, max title word-Jaccard), each (len(carts), n_items + 1), or None where
        the test is off or its data is missing. Empty carts are 0 everywhere."""
        n = self.copurchase.n_items + 1
        cfg = self.config
        use_cos = cfg.substitute_similarity is not None and self.unit_vectors is not None
        use_jac = cfg.title_overlap is not None and self.tokens is not None
        cos = np.zeros((len(carts), n), dtype=np.float32) if use_cos else None
        jac = np.zeros((len(carts), n), dtype=np.float32) if use_jac else None
        for r in range(len(carts)):
            cart = carts.row(r)
            if not len(cart):
                continue
            if cos is not None:
                cos[r] = (self.unit_vectors[cart] @ self.unit_vectors.T).max(axis=0)
            if jac is not None:
                inter = np.asarray((self.tokens[cart] @ self.tokens.T).todense())
                union = self._token_counts[cart][:, None] + self._token_counts[None, :] - inter
                jac[r] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).max(axis=0)
        return cos, jac

    def substitutes(self, carts: Sequences, closeness: tuple | None = None) -> np.ndarray:
        """(len(carts), n_items + 1) bool: items counted as near-substitutes of a cart
        item (the cart's own items included). ``closeness``: :meth:`closeness` of these
        carts when the caller has it (it does not depend on the thresholds)."""
        cos, jac = self.closeness(carts) if closeness is None else closeness
        out = np.zeros((len(carts), self.copurchase.n_items + 1), dtype=bool)
        if cos is not None and self.config.substitute_similarity is not None:
            out |= cos >= self.config.substitute_similarity
        if jac is not None and self.config.title_overlap is not None:
            out |= jac >= self.config.title_overlap
        return out

    def scores(self, carts: Sequences, sequence_logits: np.ndarray | None = None,
               closeness: tuple | None = None) -> np.ndarray:
        """(len(carts), n_items + 1) float32 scores; -inf for padding, the cart's items
        and their substitutes. ``sequence_logits``: the sequence model's scores for the
        same carts read as histories (needed when ``sequence_weight`` > 0);
        ``closeness``: see :meth:`substitutes`."""
        w = self.config.sequence_weight
        blend = shares(self.copurchase.scores(carts).astype(np.float64))
        if w > 0:
            if sequence_logits is None:
                raise ValueError("sequence_weight > 0 needs the sequence model's scores for the carts")
            logits = np.array(sequence_logits, dtype=np.float64, copy=True)
            logits[:, 0] = -np.inf
            blend = (1 - w) * blend + w * softmax(logits)
        out = (blend + _TIE * self._popularity[None, :]).astype(np.float32)
        out[self.substitutes(carts, closeness)] = -np.inf
        out[:, 0] = -np.inf
        rows = np.repeat(np.arange(len(carts)), carts.lengths)
        out[rows, carts.items] = -np.inf
        return out
