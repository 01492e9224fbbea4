"""Co-purchase statistics: which items are bought in the same basket, with shrinkage.

From baskets (one row of distinct item indexes per basket, :mod:`shopformer.features.baskets`)
the weighted co-occurrence ``C[i, j] = sum over baskets holding i and j of w(b)``, with
``w(b) = 1 / (|b| - 1) ** basket_exponent`` (a 300-line wholesale order says less about
each pair than a 3-item basket), and each item's basket count ``n[i]``. The association
of candidate ``j`` to cart item ``i`` is

    measure="count":      C[i, j]                                   (plain co-occurrence)
    measure="normalized": C[i, j] / ((n[i] + shrink) * (n[j] + shrink) ** popularity_exponent)

``normalized`` spans the usual measures: exponent 0 is P(j | i) shrunk towards 0 for
rare cart items, 0.5 a shrunk cosine, 1 a shrunk lift (PMI before the log); ``shrink``
is a prior count that keeps a pair seen once between two rare items from outranking a
pair seen a hundred times. A cart's score for ``j`` is the sum over its items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import numpy as np
import scipy.sparse as sp

from shopformer.features.sequences import Sequences
from shopformer.models import _common


@dataclass(frozen=True)
class CoPurchaseConfig:
    """How co-purchases become association scores (see the module docstring). Defaults:
    the best of 60 settings on validation invoices of UCI Online Retail
    (benchmarks/complements.py): shrink 20, a cosine-like exponent, 1 / (|b| - 1) weights."""

    measure: Literal["count", "normalized"] = "normalized"
    #: prior count added to the items' basket counts (>= 0)
    shrink: float = 20.0
    #: 0: P(j | i); 0.5: cosine; 1: lift
    popularity_exponent: float = 0.5
    #: basket weight 1 / (|b| - 1) ** basket_exponent; 0 counts every basket alike
    basket_exponent: float = 1.0
    #: baskets with more distinct items are skipped (bulk orders pair everything)
    max_basket: int = 500

    def __post_init__(self) -> None:
        if self.measure not in ("count", "normalized"):
            raise ValueError(f"measure must be 'count' or 'normalized', got {self.measure!r}")
        if self.shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")
        if not 0 <= self.popularity_exponent <= 1:
            raise ValueError(f"popularity_exponent must lie in [0, 1], got {self.popularity_exponent}")
        if self.basket_exponent < 0:
            raise ValueError(f"basket_exponent must be >= 0, got {self.basket_exponent}")
        if self.max_basket < 2:
            raise ValueError(f"max_basket must be >= 2, got {self.max_basket}")


class CoPurchase:
    """Item-to-item co-purchase associations; ``scores(cart)`` sums them over a cart."""

    name = "copurchase"

    def __init__(self, config: CoPurchaseConfig = CoPurchaseConfig()) -> None:
        self.config = config
        self.n_items: int | None = None
        self.association: sp.csr_matrix | None = None  # (n+1, n+1), zero diagonal
        self.basket_counts: np.ndarray | None = None  # (n+1,) baskets holding each item

    def fit(self, baskets: Sequences, n_items: int) -> Self:
        cfg = self.config
        _common.check_items(baskets, n_items, "baskets")
        sizes = baskets.lengths
        kept = np.flatnonzero((sizes >= 1) & (sizes <= cfg.max_basket))
        b = _common.interaction_matrix(baskets.rows(kept), n_items, "baskets")  # binary, deduplicated
        self.basket_counts = np.asarray(b.sum(axis=0), dtype=np.float64).ravel()
        distinct = np.asarray(b.sum(axis=1), dtype=np.float64).ravel()
        weight = 1.0 / np.maximum(distinct - 1.0, 1.0) ** cfg.basket_exponent
        co = (b.T @ sp.diags(weight.astype(np.float32)) @ b).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        if cfg.measure == "normalized":
            n = self.basket_counts
            left = 1.0 / (n + cfg.shrink + 1e-12)
            right = 1.0 / (n + cfg.shrink + 1e-12) ** cfg.popularity_exponent
            co = (sp.diags(left) @ co @ sp.diags(right)).tocsr()
        self.association = sp.csr_matrix(co, dtype=np.float32)
        self.n_items = n_items
        return self

    def scores(self, carts: Sequences) -> np.ndarray:
        """(len(carts), n_items + 1) float32: each cart's summed association to every
        item (0 where nothing was bought with the cart); padding column 0 is 0."""
        _common.require_fitted(self)
        x = _common.interaction_matrix(carts, self.n_items, "carts")
        return np.asarray((x @ self.association).todense(), dtype=np.float32)

    def popularity(self) -> np.ndarray:
        """(n_items + 1,) basket counts over the largest, in [0, 1] (0 for padding)."""
        _common.require_fitted(self)
        out = self.basket_counts / max(float(self.basket_counts.max(initial=0)), 1.0)
        out[0] = 0.0
        return out.astype(np.float32)

    def save(self, folder: Path) -> None:
        _common.require_fitted(self)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _common.write_config(folder, self.name, self.config, n_items=self.n_items)
        sp.save_npz(folder / "association.npz", self.association)
        np.savez(folder / "counts.npz", basket_counts=self.basket_counts)

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        config, extra = _common.read_config(folder, cls.name, CoPurchaseConfig)
        model = cls(config)
        model.association = sp.csr_matrix(sp.load_npz(folder / "association.npz"), dtype=np.float32)
        with np.load(folder / "counts.npz") as w:
            model.basket_counts = w["basket_counts"]
        model.n_items = int(extra["n_items"])
        return model
