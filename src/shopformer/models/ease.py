"""EASE baseline (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).

Closed form on the binary user x item matrix X::

    P = (XᵀX + λI)⁻¹,   B = I - P · diagMat(1 / diag(P)),   so diag(B) = 0,

i.e. ``B[i, j] = -P[i, j] / P[j, j]`` off the diagonal. A user's scores are ``h @ B``.
B is a dense items x items float32 matrix, so the catalog size is capped
(:data:`MAX_ITEMS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import scipy.linalg

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models import _common

#: Largest catalog EASE accepts: B alone is n² float32 (14.4 GB at 60,000 items) and the
#: fit needs about twice that.
MAX_ITEMS = 60_000


@dataclass(frozen=True)
class EASEConfig:
    #: λ, the L2 penalty added to the diagonal of the Gram matrix
    l2: float = 500.0

    def __post_init__(self) -> None:
        if not self.l2 > 0:
            raise ValueError(f"l2 must be > 0 (it keeps XᵀX + λI invertible), got {self.l2}")


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """B from the dense Gram matrix ``XᵀX`` (n x n float32); ``gram`` is overwritten.

    Inverts ``XᵀX + λI`` through its Cholesky factor (LAPACK potrf + potri, float32), which
    takes half the work of a general inverse and no extra n x n buffer.
    """
    n = gram.shape[0]
    gram[np.diag_indices(n)] += np.float32(l2)
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (gram,))
    # Fortran-order view of a C-order symmetric matrix is the same matrix: no copy.
    a = gram.T
    c, info = potrf(a, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"XᵀX + λI is not positive definite (potrf info={info})")
    p, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverting XᵀX + λI failed (potri info={info})")
    # P is symmetric once both triangles are filled, so its transpose is P again, in
    # C order (the buffer ``gram`` began as).
    p = _symmetrize_upper(p).T
    diag = p.diagonal().copy()
    p /= -diag[None, :]  # B[i, j] = -P[i, j] / P[j, j]
    p[np.diag_indices(n)] = 0.0
    return p


def _symmetrize_upper(p: np.ndarray, block: int = 2048) -> np.ndarray:
    """Copy the upper triangle onto the lower one, in place, a block of rows at a time."""
    n = p.shape[0]
    for start in range(0, n, block):  # over row blocks, not items
        stop = min(start + block, n)
        p[start:stop, :start] = p[:start, start:stop].T
        d = p[start:stop, start:stop]
        d[...] = np.triu(d) + np.triu(d, 1).T
    return p


class EASE:
    """Linear item-item autoencoder with a closed-form solution.

    ``score`` returns ``h @ B`` (can be negative); a row with an empty history (or only
    padding) gets item popularity instead, scaled to [0, 1]. Column 0 is ``-inf``.
    ``similar_items(q)`` ranks row ``q`` of B, i.e. exactly the scores a user whose
    history is ``[q]`` would get.
    """

    name = "ease"

    def __init__(self, config: EASEConfig) -> None:
        self.config = config
        self.n_items: int | None = None
        self.weights: np.ndarray | None = None  # B: (n_items + 1, n_items + 1) float32
        self.item_users: np.ndarray | None = None  # (n_items + 1,) distinct users per item

    def fit(self, train: Sequences, n_items: int, valid: EvalCases | None = None) -> Self:
        """Learn from ``train``; ``valid`` is accepted for the protocol and not used."""
        if n_items > MAX_ITEMS:
            raise ValueError(
                f"EASE needs a dense {n_items} x {n_items} matrix; catalogs above "
                f"MAX_ITEMS={MAX_ITEMS:,} items are not supported (use ItemKNN instead)"
            )
        x = _common.interaction_matrix(train, n_items, "train")
        self.item_users = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
        # Padding row/column of XᵀX is all zero; λ on its diagonal makes it harmless, and
        # keeping it lets B be indexed by item index directly.
        gram = (x.T @ x).astype(np.float32).toarray()
        b = ease_weights(gram, self.config.l2)
        b[0, :] = 0.0
        b[:, 0] = 0.0
        self.weights = b
        self.n_items = n_items
        return self

    def score(self, history: Sequences) -> np.ndarray:
        _common.require_fitted(self)
        h = _common.interaction_matrix(history, self.n_items)
        scores = np.asarray(h @ self.weights, dtype=np.float32)
        empty = np.diff(h.indptr) == 0
        return _common.finish_scores(
            scores, empty, _common.popularity_fallback(self.item_users)
        )

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items ranked by row ``q`` of B (a one-item history); query 0 (unknown) gets
        popular items."""
        _common.require_fitted(self)
        items = _common.check_query(items, self.n_items)
        scores = self.weights[items].copy()
        scores[items == 0] = _common.popularity_fallback(self.item_users)
        return _common.similar_top_k(scores, items, k)

    def save(self, folder: Path) -> None:
        _common.require_fitted(self)
        folder = Path(folder)
        _common.write_config(folder, self.name, self.config, n_items=self.n_items)
        np.savez(folder / "weights.npz", weights=self.weights, item_users=self.item_users)

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        config, _ = _common.read_config(folder, cls.name, EASEConfig)
        model = cls(config)
        with np.load(folder / "weights.npz") as w:
            model.weights = np.ascontiguousarray(w["weights"], dtype=np.float32)
            model.item_users = w["item_users"].astype(np.float32)
        model.n_items = model.weights.shape[0] - 1
        return model
