"""Helpers of benchmarks/audience.py: a temporal cut of purchase sequences, who bought
what in the window after it, the baseline audiences and precision / recall at k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases

DAY_S = 86_400.0


@dataclass
class Cut:
    """Everything one cut date needs: the candidates' histories before ``t`` and, per
    evaluated item, the candidates who bought it in ``[t, t + days)``."""

    t: float
    history: Sequences  # one row per candidate (customers with a purchase before t)
    rows: np.ndarray  # candidate -> row of the full data
    items: np.ndarray  # evaluated item indexes
    buyers: list[np.ndarray]  # per evaluated item: candidate positions (0-based) who bought it
    window_buyers_all: int  # buyers of the evaluated items in the window, new customers included


def make_cut(seqs: Sequences, t: float, days: float = 30.0, min_buyers: int = 5) -> Cut:
    """Candidates: customers with a purchase before ``t``. Items evaluated: those with
    at least ``min_buyers`` candidate buyers in the window and a purchase before ``t``."""
    ts = seqs.timestamps
    row_of = np.repeat(np.arange(len(seqs)), seqs.lengths)
    before = np.bincount(row_of[ts < t], minlength=len(seqs))
    cand = np.flatnonzero(before > 0)
    within = np.arange(len(seqs.items)) - np.repeat(seqs.offsets[:-1], seqs.lengths)
    history = seqs.keep(within < np.repeat(before, seqs.lengths)).rows(cand)
    pos_of = np.full(len(seqs), -1)
    pos_of[cand] = np.arange(len(cand))
    window = (ts >= t) & (ts < t + days * DAY_S)
    pairs = np.unique(np.stack([seqs.items[window], row_of[window]], axis=1), axis=0)  # (item, row) distinct
    known = pos_of[pairs[:, 1]] >= 0
    sold_before = np.bincount(history.items, minlength=seqs.items.max() + 1) > 0
    counts = np.bincount(pairs[known, 0], minlength=len(sold_before))
    items = np.flatnonzero((counts >= min_buyers) & sold_before)
    buyers = [pos_of[pairs[known & (pairs[:, 0] == i), 1]] for i in items]
    all_buyers = int(np.isin(pairs[:, 0], items).sum())
    return Cut(t, history, cand, items, buyers, all_buyers)


def fit_split(history: Sequences) -> tuple[Sequences, EvalCases]:
    """SASRec's training data at a cut: every customer's history but its last purchase,
    and that last purchase as the early-stopping target (customers with two or more)."""
    lengths = history.lengths
    users = np.flatnonzero(lengths >= 2)
    keep_len = np.where(lengths >= 2, lengths - 1, lengths)
    within = np.arange(len(history.items)) - np.repeat(history.offsets[:-1], lengths)
    train = history.keep(within < np.repeat(keep_len, lengths))
    last = history.items[history.offsets[users + 1] - 1]
    targets = Sequences(np.arange(len(users) + 1), last)
    return train, EvalCases(users, train.rows(users), targets)


def past_buyers(history: Sequences, items: np.ndarray, n_items: int) -> list[np.ndarray]:
    """Per item: the candidates who bought it before the cut."""
    row_of = np.repeat(np.arange(len(history)), history.lengths)
    hit = np.isin(history.items, items)
    out = {int(i): [] for i in items}
    pairs = np.unique(np.stack([history.items[hit], row_of[hit]], axis=1), axis=0)
    for i, r in pairs:
        out[int(i)].append(int(r))
    return [np.array(out[int(i)], dtype=np.int64) for i in items]


def rank_column(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Top ``k`` candidate positions of a (U,) score column, best first (ties: lower position)."""
    s = np.asarray(scores, dtype=np.float64).copy()
    if exclude is not None and len(exclude):
        s[exclude] = -np.inf
    k = min(k, len(s))
    part = np.argpartition(-s, k - 1)[:k]
    order = np.lexsort((part, -s[part]))
    top = part[order]
    return top[np.isfinite(s[top])]


def precision_recall(ranked: list[np.ndarray], buyers: list[np.ndarray], ks: tuple[int, ...]) -> dict[str, float]:
    """Mean over items of precision@k (hits / k) and recall@k (hits / buyers)."""
    out: dict[str, float] = {}
    for k in ks:
        p, r = [], []
        for top, truth in zip(ranked, buyers):
            hits = int(np.isin(top[:k], truth).sum())
            p.append(hits / k)
            r.append(hits / len(truth))
        out[f"P@{k}"] = float(np.mean(p))
        out[f"R@{k}"] = float(np.mean(r))
    return out
