"""Diversity re-ranking: maximal marginal relevance (MMR) on item vectors and a cap on
items of one category, between retrieval and the business rules.

Given the candidates of one answer (best first, more than ``k``: retrieval fetches
:meth:`DiversityConfig.fetch` of them), the answer is built greedily, one slot at a time:

    pick argmax_i  (1 - diversity) * rel_i  -  diversity * max_{j picked} cos(v_i, v_j)

where ``rel`` is the candidates' score min-max normalized to [0, 1] over the
candidates (so ``diversity`` trades on the same scale for every model) and ``v`` are
unit item vectors (the model's output item embeddings: what similar items compare).
``diversity = 0`` keeps the model's order; ``1`` picks the most unlike item each time.

With ``max_per_category = N``, a candidate whose category already has ``N`` items in
the answer is skipped while any other candidate is left; when only such candidates are
left the answer is filled from them (a short answer would help nobody). Items with no
category are never capped. Both may be combined: the cap decides who may be picked,
MMR which of them.

:func:`diversify_batch` does the same for many answers at once (offline evaluation),
so what is benchmarked is what is served."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DiversityConfig:
    """diversity: MMR weight of dissimilarity in [0, 1] (0: off; lambda = 1 - diversity).
    max_per_category: at most this many items of one category in the answer (None: no cap).
    fetch_factor: candidates re-ranked per answer: ``fetch_factor * k`` (the pool MMR
    and the cap choose from; larger moves farther from the model's top-k)."""

    diversity: float = 0.0
    max_per_category: int | None = None
    fetch_factor: int = 5

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], got {self.diversity}")
        if self.max_per_category is not None and self.max_per_category < 1:
            raise ValueError(f"max_per_category must be >= 1, got {self.max_per_category}")
        if self.fetch_factor < 1:
            raise ValueError(f"fetch_factor must be >= 1, got {self.fetch_factor}")

    @property
    def active(self) -> bool:
        return self.diversity > 0 or self.max_per_category is not None

    def fetch(self, k: int, n_max: int | None = None) -> int:
        n = self.fetch_factor * k if self.active else k
        return n if n_max is None else max(k, min(n, n_max))


@dataclass(frozen=True)
class Shift:
    """An item the re-ranking moved: ranks among the candidates (``from_rank``) and in
    the answer (``to_rank``; None: pushed out of it), 1-based. ``step``: which step
    moved it (``diversity``, ``category_cap``, ``new_item_slot``)."""

    item_id: str
    step: str
    from_rank: int | None  # None: not among the candidates (a new item placed in a slot)
    to_rank: int | None

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "step": self.step, "from_rank": self.from_rank, "to_rank": self.to_rank}


def _normalized(scores: np.ndarray) -> np.ndarray:
    s = scores.astype(np.float64)
    s[np.isnan(s)] = -np.inf
    finite = np.isfinite(s)
    lo = np.where(finite, s, np.inf).min(axis=1, keepdims=True)
    hi = np.where(finite, s, -np.inf).max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(finite, (s - np.where(np.isfinite(lo), lo, 0.0)) / span, -np.inf)


def diversify_batch(config: DiversityConfig, scores: np.ndarray, vectors: np.ndarray | None,
                    categories: np.ndarray | None, k: int) -> np.ndarray:
    """(B, k) positions into each row's candidates, the answers in order (-1 where a
    row has fewer than ``k`` candidates). ``scores``: (B, n) candidate scores, best
    first (-inf: no candidate); ``vectors``: (B, n, D) unit item vectors (needed when
    ``diversity > 0``); ``categories``: (B, n) int category codes, -1 for none (needed
    with a cap)."""
    b, n = scores.shape
    k = min(k, n)
    rel = _normalized(scores)
    valid = np.isfinite(rel)
    use_mmr = config.diversity > 0
    if use_mmr:
        if vectors is None:
            raise ValueError("diversity > 0 needs item vectors")
        sims = np.einsum("bnd,bmd->bnm", vectors, vectors, optimize=True)
        closest = np.full((b, n), -np.inf)  # max similarity to the picked items (none yet: no penalty)
    cap = config.max_per_category
    if cap is not None:
        if categories is None:
            raise ValueError("max_per_category needs item categories")
        counts = np.zeros((b, n), dtype=np.int64)  # picked items sharing each candidate's category
    rows = np.arange(b)
    out = np.full((b, k), -1, dtype=np.int64)
    free = valid.copy()
    for slot in range(k):
        gain = rel * (1.0 - config.diversity)
        if use_mmr:
            gain = gain - config.diversity * np.where(np.isfinite(closest), closest, 0.0)
        gain = np.where(free, gain, -np.inf)
        if cap is not None:
            under = free & ((categories < 0) | (counts < cap))
            gain = np.where(under.any(axis=1, keepdims=True), np.where(under, gain, -np.inf), gain)
        pick = np.argmax(gain, axis=1)  # ties: the model's order (the lower position)
        ok = np.isfinite(gain[rows, pick])
        out[ok, slot] = pick[ok]
        free[rows[ok], pick[ok]] = False
        if use_mmr:
            closest = np.where(ok[:, None], np.maximum(closest, sims[rows, pick]), closest)
        if cap is not None:
            same = (categories == categories[rows, pick][:, None]) & (categories >= 0)
            counts += same & ok[:, None]
    return out


@dataclass
class Diversified:
    order: list[int]  # positions into the candidates: all of them, the answer's ``k`` first
    shifts: list[Shift]


def diversify(config: DiversityConfig, item_ids: Sequence[str], scores: Sequence[float], k: int,
              vectors: np.ndarray | None = None, categories: Sequence[str | None] | None = None) -> Diversified:
    """Every candidate of ``item_ids`` (best first, with their ``scores``, unit
    ``vectors`` (n, D) and ``categories``, None: none) in the re-ranked order, so that
    later steps (business rules) that drop some still find the next ones; the answer
    is its first ``k``. The shifts: each item of the answer whose rank changed, and each
    item of the model's top ``k`` pushed out (``category_cap`` when the cap did it)."""
    n = len(item_ids)
    if n == 0 or not config.active:
        return Diversified(list(range(n)), [])
    codes = None
    if config.max_per_category is not None:
        found: dict[str, int] = {}
        cats = categories if categories is not None else [None] * n
        codes = np.array([[-1 if c is None else found.setdefault(c, len(found)) for c in cats]])
    vecs = None if vectors is None else np.asarray(vectors, dtype=np.float64)[None]
    order = [int(p) for p in diversify_batch(config, np.asarray(scores, dtype=np.float64)[None], vecs, codes, n)[0]
             if p >= 0]
    answer = order[:k]
    shown = set(answer)
    capped: set[int] = set()
    if codes is not None:  # who the cap kept out: items whose category is full in the answer
        full: dict[int, int] = {}
        for p in answer:
            full[codes[0, p]] = full.get(codes[0, p], 0) + 1
        capped = {p for p in range(min(k, n)) if p not in shown and codes[0, p] >= 0
                  and full.get(codes[0, p], 0) >= config.max_per_category}
    step = "diversity" if config.diversity > 0 else "category_cap"
    shifts = [Shift(item_ids[p], step, p + 1, r + 1) for r, p in enumerate(answer) if p != r]
    shifts += [Shift(item_ids[p], "category_cap" if p in capped else step, p + 1, None)
               for p in range(min(k, n)) if p not in shown]
    return Diversified(order, shifts)


def intra_list_diversity(vectors: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Mean pairwise ``1 - cos`` of each list's items: (U,) from unit ``vectors``
    (n_items + 1, D) and ``lists`` (U, k) item indexes (0: no item, left out)."""
    v = vectors[lists]  # (U, k, D)
    present = lists > 0
    sims = np.einsum("ukd,umd->ukm", v, v, optimize=True)
    pair = present[:, :, None] & present[:, None, :] & ~np.eye(lists.shape[1], dtype=bool)[None]
    n_pairs = pair.sum(axis=(1, 2))
    with np.errstate(invalid="ignore"):
        return np.where(n_pairs > 0, ((1.0 - sims) * pair).sum(axis=(1, 2)) / np.maximum(n_pairs, 1), np.nan)
