"""Hybrid fusion of the lexical and the semantic candidate lists.

Two fusion functions, both over the union of the two lists:

* ``convex``: ``alpha * lexical / max(lexical) + (1 - alpha) * cosine``. The lexical
  score is divided by the query's best lexical score (BM25 has no fixed scale; the best
  match gets 1); the cosine is exact for every candidate (a lexical candidate outside the
  semantic list gets its real cosine, not a guess), and a semantic candidate outside the
  lexical list its real lexical score (0 when no word matched).
* ``rrf``: reciprocal rank fusion, ``alpha / (k + lexical rank) + (1 - alpha) / (k +
  semantic rank)``, a candidate missing from a list getting no term from it.

Which one, and ``alpha`` / ``rrf_k``, are chosen on validation queries
(:func:`choose_fusion`; benchmarks/search_quality.py chooses them by cross-validation on
Home Depot's judged queries). Measured there: RRF stays below BM25 alone, a convex
combination of max-normalized BM25 and the cosine is above it (the semantic list's
ranks are noisy; its scores carry how close a product is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class FusionConfig:
    """kind: "convex" or "rrf"; alpha: the lexical side's weight (0..1); rrf_k: RRF's
    rank offset; depth: candidates taken from each list."""

    kind: Literal["convex", "rrf"] = "convex"
    alpha: float = 0.5
    rrf_k: float = 10.0
    depth: int = 100

    def __post_init__(self) -> None:
        if self.kind not in ("convex", "rrf"):
            raise ValueError(f"fusion kind must be 'convex' or 'rrf', got {self.kind!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.depth < 1 or self.rrf_k < 0:
            raise ValueError("depth must be >= 1 and rrf_k >= 0")


@dataclass(frozen=True)
class Candidates:
    """The union of the two lists, one entry per row, with both sides' evidence."""

    rows: np.ndarray  # (C,) int64
    lexical: np.ndarray  # (C,) float32 raw lexical score, 0 when not matched
    lexical_rank: np.ndarray  # (C,) int64 rank in the lexical list from 1, 0 when absent
    cosine: np.ndarray  # (C,) float32 exact cosine (0 when there are no vectors)
    semantic_rank: np.ndarray  # (C,) int64 rank in the semantic list from 1, 0 when absent

    def __len__(self) -> int:
        return len(self.rows)


def union(lex_rows: np.ndarray, lex_scores: np.ndarray, others: np.ndarray,
          cosine_of: Callable[[np.ndarray], np.ndarray] | None, other_rows: np.ndarray | None = None,
          other_scores: np.ndarray | None = None, sem_rows: np.ndarray | None = None) -> Candidates:
    """The lexical list, then ``others`` (rows the lexical list lacks: the semantic
    list's and any added), with ``other_scores`` their lexical scores where
    ``other_rows`` has them (0 elsewhere). ``sem_rows``: the semantic list, in order
    (its ranks); ``cosine_of(rows)`` gives exact cosines (None: no semantic side)."""
    rows = np.concatenate([lex_rows, others]).astype(np.int64)
    where = {r: i for i, r in enumerate(rows.tolist())}
    lexical = np.zeros(len(rows), np.float32)
    lexical[: len(lex_rows)] = lex_scores
    if other_rows is not None and len(other_rows):
        lexical[[where[r] for r in other_rows.tolist()]] = other_scores
    lex_rank = np.zeros(len(rows), np.int64)
    lex_rank[: len(lex_rows)] = np.arange(1, len(lex_rows) + 1)
    sem_rank = np.zeros(len(rows), np.int64)
    if sem_rows is not None:
        sem_rank[[where[r] for r in sem_rows.tolist()]] = np.arange(1, len(sem_rows) + 1)
    cosine = cosine_of(rows) if cosine_of is not None else np.zeros(len(rows), np.float32)
    return Candidates(rows, lexical, lex_rank, np.asarray(cosine, np.float32), sem_rank)


def fused_scores(c: Candidates, config: FusionConfig) -> np.ndarray:
    """(C,) float64 fused score of every candidate (higher is better)."""
    if config.kind == "rrf":
        lex = np.where(c.lexical_rank > 0, 1.0 / (config.rrf_k + c.lexical_rank), 0.0)
        sem = np.where(c.semantic_rank > 0, 1.0 / (config.rrf_k + c.semantic_rank), 0.0)
        return config.alpha * lex + (1 - config.alpha) * sem
    top = float(c.lexical.max()) if len(c) else 0.0
    lex = c.lexical / top if top > 0 else np.zeros(len(c))
    return config.alpha * lex + (1 - config.alpha) * c.cosine.astype(np.float64)


def order(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions sorting by score descending, ties by the lower row (deterministic)."""
    return np.lexsort((rows, -scores))


def fusion_grid() -> list[FusionConfig]:
    """The candidates :func:`choose_fusion` searches."""
    convex = [FusionConfig("convex", a) for a in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]
    rrf = [FusionConfig("rrf", a, k) for a in (0.3, 0.5, 0.7) for k in (1.0, 10.0, 60.0)]
    return convex + rrf


def choose_fusion(candidates: Sequence[Candidates], score: Callable[[int, np.ndarray], float],
                  grid: Sequence[FusionConfig] | None = None) -> tuple[FusionConfig, list[tuple[FusionConfig, float]]]:
    """The config of the best mean ``score(i, ranked rows of candidates[i])`` over
    validation queries (e.g. NDCG@10 against their judgments), and every config's mean."""
    table = []
    for cfg in grid or fusion_grid():
        vals = [score(i, c.rows[order(fused_scores(c, cfg), c.rows)]) for i, c in enumerate(candidates)]
        table.append((cfg, float(np.mean(vals)) if vals else 0.0))
    best = max(table, key=lambda t: t[1])[0]
    return best, table
