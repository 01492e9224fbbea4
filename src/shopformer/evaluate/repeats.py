"""Choosing how repeats come back (:mod:`shopformer.models.repeat`) on validation, and
how many held-out items are repeats at all."""

from __future__ import annotations

from dataclasses import asdict, replace
from itertools import product

import numpy as np

from shopformer.evaluate import metrics
from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models.repeat import PastItems, RepeatAware, RepeatConfig, RepeatStats, others_log_probs, past_items
from shopformer.retrieve.exact import top_k

#: the settings searched (temperature only for models not trained with a softmax)
GRID = {"user_prior": (1.0, 10.0, 50.0), "item_prior": (1.0, 10.0, 100.0), "count_power": (0.0, 0.5, 1.0),
        "recency_decay": (0.0, 0.02, 0.1, 0.3)}
TEMPERATURES = (0.01, 0.03, 0.1, 0.3, 1.0)


def repeat_share(cases: EvalCases) -> float:
    """Share of cases whose held-out items include one already in the history."""
    h, t = cases.history, cases.targets
    rows_h = np.repeat(np.arange(len(h)), h.lengths)
    rows_t = np.repeat(np.arange(len(t)), t.lengths)
    width = int(max(h.items.max(initial=0), t.items.max(initial=0))) + 1
    seen = np.isin(rows_t * width + t.items, rows_h * width + h.items)
    return float(np.bincount(rows_t[seen], minlength=len(t)).astype(bool).mean()) if len(t) else 0.0


def top10_hits(scores: np.ndarray, targets: Sequences) -> np.ndarray:
    """(U, 10) whether each of the top 10 of ``scores`` (U, N + 1), ranked as they are
    (nothing masked but padding), is one of the row's targets."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    scores[:, 0] = -np.inf
    idx, _ = top_k(scores, 10)
    mask = np.zeros(scores.shape, dtype=bool)
    mask[np.repeat(np.arange(len(targets)), targets.lengths), targets.items] = True
    mask[:, 0] = False
    return np.take_along_axis(mask, idx, axis=1)


def ndcg10(scores: np.ndarray, targets: Sequences) -> float:
    """Mean NDCG@10 of ``scores`` (U, N + 1) ranked as they are."""
    return float(metrics.ndcg(top10_hits(scores, targets), targets.lengths, 10).mean())


def merged_ndcg10(top_idx: np.ndarray, top_logp: np.ndarray, p_rep: np.ndarray, past: PastItems,
                  log_rep: np.ndarray, targets: Sequences) -> float:
    """NDCG@10 of :class:`RepeatAware`'s ranking without its full score matrix: its top 10
    is among each row's past items and the model's own top 10 of the other items (whose
    order a row's constant log(1 - P(repeat)) does not change). Same tie order as top_k."""
    n_rows, k = top_idx.shape
    rows = np.concatenate([np.repeat(np.arange(n_rows), k), past.rows])
    items = np.concatenate([top_idx.ravel(), past.items])
    scores = np.concatenate([(np.log1p(-p_rep)[:, None] + top_logp).ravel(), log_rep])
    ok = np.isfinite(scores) & (items > 0)
    rows, items, scores = rows[ok], items[ok], scores[ok]
    order = np.lexsort((items, -scores, rows))
    rows, items = rows[order], items[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    top = rank < 10
    rows, items, rank = rows[top], items[top], rank[top]
    width = int(max(items.max(initial=0), targets.items.max(initial=0))) + 1
    wanted = np.repeat(np.arange(len(targets)), targets.lengths).astype(np.int64) * width + targets.items
    hit = np.isin(rows.astype(np.int64) * width + items, wanted)
    dcg = np.bincount(rows[hit], weights=1.0 / np.log2(rank[hit] + 2), minlength=n_rows)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, 12)))])
    return float((dcg / ideal[np.clip(targets.lengths, 1, 10)]).mean())


def choose_repeat_config(base: object, train: Sequences, valid: EvalCases, n_items: int,
                         softmax_model: bool) -> tuple[RepeatConfig, RepeatStats, float, list[dict]]:
    """The setting with the best validation NDCG@10 (history allowed), the training
    statistics, that score and every point tried (the wrapped model scores validation once)."""
    stats = RepeatStats.of(train, n_items)
    base_scores = np.asarray(base.score(valid.history), dtype=np.float64)
    past = past_items(valid.history, base_scores.shape[1])
    tried: list[dict] = []
    best: tuple[float, RepeatConfig] | None = None
    for temperature in ((1.0,) if softmax_model else TEMPERATURES):
        # the model's part depends on the temperature only: its top 10 once per temperature
        top_idx, top_logp = top_k(others_log_probs(base_scores, past, temperature), 10)
        for values in product(*GRID.values()):
            config = replace(RepeatConfig(**dict(zip(GRID, values))), temperature=temperature)
            p_rep, log_rep = RepeatAware(config, base, stats).repeat_part(valid.history, past)
            value = merged_ndcg10(top_idx, top_logp, p_rep, past, log_rep, valid.targets)
            tried.append({**asdict(config), "valid_ndcg10": round(value, 6)})
            if best is None or value > best[0]:
                best = (value, config)
    assert best is not None
    return best[1], stats, best[0], tried
