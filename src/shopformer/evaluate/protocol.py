"""Full-ranking evaluation: score every catalog item for each evaluated user, rank with
the same top-K code that serving uses, and compare with the held-out targets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from shopformer.evaluate import metrics
from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models.base import Recommender
from shopformer.retrieve.exact import mask_items, top_k


@dataclass(frozen=True)
class EvalConfig:
    """How a model is scored.

    cutoffs: the K of every @K metric.
    exclude_history: rank without the items already in the user's history (the usual
        protocol for next-item recommendation); a target that is itself in the history
        then counts as a miss (it is recorded as ``unreachable_targets``).
    batch_size: users scored at once (memory ~ batch_size x catalog x 4 bytes).
    """

    cutoffs: tuple[int, ...] = (5, 10, 20)
    exclude_history: bool = True
    batch_size: int = 1024


@dataclass
class EvalResult:
    metrics: dict[str, float]
    n_users: int
    unreachable_targets: int
    wall_seconds: float
    config: EvalConfig
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def query_times(targets: Sequences) -> np.ndarray:
    """(U,) the time of each row's first target (NaN where unknown): the moment a model
    with time context is asked at."""
    if targets.timestamps is None:
        return np.full(len(targets), np.nan)
    first = targets.offsets[:-1]
    return np.where(targets.lengths > 0, targets.timestamps[np.minimum(first, max(len(targets.items) - 1, 0))], np.nan)


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


def evaluate(
    model: Recommender,
    cases: EvalCases,
    n_items: int,
    config: EvalConfig = EvalConfig(),
    progress: bool = True,
) -> EvalResult:
    """Score ``cases`` with ``model`` over the full catalog (items 1..n_items)."""
    t0 = time.perf_counter()
    kmax = max(config.cutoffs)
    all_topk, all_hits, all_first, n_rel = [], [], [], []
    unreachable = 0
    columns = (
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("users"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("eval", total=len(cases))
        for rows in _batches(len(cases), config.batch_size):
            history = cases.history.rows(rows)
            targets = cases.targets.rows(rows)
            if getattr(model, "reads_time", False):  # asked at the moment of the first target
                scores = model.score(history, at=query_times(targets))
            else:
                scores = model.score(history)
            mask_items(scores, history if config.exclude_history else None)
            idx, top_scores = top_k(scores, kmax)
            idx[np.isneginf(top_scores)] = 0  # masked items are not recommended
            if idx.shape[1] < kmax:  # catalog smaller than the cutoff: pad with "no item"
                idx = np.pad(idx, ((0, 0), (0, kmax - idx.shape[1])))

            target_mask = np.zeros(scores.shape, dtype=bool)
            t_rows = np.repeat(np.arange(len(rows)), targets.lengths)
            target_mask[t_rows, targets.items] = True
            target_mask[:, 0] = False
            all_hits.append(np.take_along_axis(target_mask, idx, axis=1))
            unreachable += int((target_mask & np.isneginf(scores)).sum())

            # Rank of the best-scored target in the full ranking, with the same tie
            # order as top_k (higher score first, then lower item index).
            t_scores = np.where(target_mask, scores, -np.inf)
            best = t_scores.argmax(axis=1)
            best_score = t_scores[np.arange(len(rows)), best][:, None]
            cols = np.arange(scores.shape[1])[None, :]
            first = (scores > best_score).sum(axis=1) + (
                (scores == best_score) & (cols < best[:, None])
            ).sum(axis=1)
            first = np.where(np.isneginf(best_score[:, 0]), np.inf, first)
            all_first.append(first)
            all_topk.append(idx)
            n_rel.append(targets.lengths)
            bar.advance(task, len(rows))

    hits = np.concatenate(all_hits) if all_hits else np.zeros((0, kmax), dtype=bool)
    n_relevant = np.concatenate(n_rel) if n_rel else np.zeros(0, dtype=np.int64)
    first_rank = np.concatenate(all_first) if all_first else np.zeros(0)
    topk = np.concatenate(all_topk) if all_topk else np.zeros((0, kmax), dtype=np.int64)

    per_user: dict[str, np.ndarray] = {}
    for k in config.cutoffs:
        per_user[f"HR@{k}"] = metrics.hit_rate(hits, k)
        per_user[f"Recall@{k}"] = metrics.recall(hits, n_relevant, k)
        per_user[f"NDCG@{k}"] = metrics.ndcg(hits, n_relevant, k)
        per_user[f"Precision@{k}"] = metrics.precision(hits, k)
        per_user[f"F1@{k}"] = metrics.f1(hits, n_relevant, k)
    per_user["MRR"] = metrics.reciprocal_rank(first_rank)
    summary = {name: float(v.mean()) if len(v) else 0.0 for name, v in per_user.items()}
    for k in config.cutoffs:
        summary[f"Coverage@{k}"] = metrics.coverage(topk[:, :k], n_items)
    return EvalResult(
        metrics=summary,
        n_users=len(cases),
        unreachable_targets=unreachable,
        wall_seconds=time.perf_counter() - t0,
        config=config,
        per_user=per_user,
    )
