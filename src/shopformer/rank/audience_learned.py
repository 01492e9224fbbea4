"""The learned audience ranker (:mod:`shopformer.rank.audience_ranker`) on a store's
events: fitted on the shop's own last ``days`` (features before the cut, labels the
purchases after it), saved beside a run (``<run>/audience_ranker/``), and answering
item audiences for the API and ``shopformer audience`` when present.

The ranker fitted here reads no sequence-model features: the served model was trained
on the events after the cut too, so its scores at the cut would know the labels
(benchmarks/audience.py measures the ranker the same way, results/audience.md).
Category audiences stay with :class:`~shopformer.rank.audience.AudienceIndex`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from shopformer.features.vocab import Vocabulary
from shopformer.rank.audience import AudienceList, latest_histories
from shopformer.rank.audience_ranker import DAY_S, AudienceRanker, AudienceRankerConfig, ShopState, shop_state

RANKER_DIR = "audience_ranker"
#: purchases read per customer (the features count a customer's whole purchase history)
HISTORY_LIMIT = 100_000


@dataclass(frozen=True)
class FitReport:
    cut: float
    items: int
    rows: int
    buyers: int


def purchase_histories(events: pl.DataFrame, items: Vocabulary) -> tuple[list[str], object]:
    """Every customer's purchases of known items, timed: (user ids, Sequences)."""
    return latest_histories(events, items, ("purchase",), dedupe_consecutive=False, limit=HISTORY_LIMIT)


def fit_from_events(config: AudienceRankerConfig, events: pl.DataFrame, items: Vocabulary, days: float = 30.0,
                    min_buyers: int = 5) -> tuple[AudienceRanker, FitReport]:
    """A ranker fitted at ``cut = newest purchase - days``: features from the purchases
    before it, labels the customers who bought each item in the ``days`` after (items
    with at least ``min_buyers`` such buyers)."""
    users, seqs = purchase_histories(events, items)
    if not len(seqs) or seqs.timestamps is None or not np.isfinite(seqs.timestamps).any():
        raise ValueError("no timed purchase of a known item: nothing to fit the audience ranker on")
    cut = float(np.nanmax(seqs.timestamps)) - days * DAY_S
    state = shop_state(config, seqs, cut, len(items))
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    after = (seqs.timestamps >= cut) & (seqs.timestamps < cut + days * DAY_S)
    pairs = np.unique(np.stack([seqs.items[after], row[after]], axis=1), axis=0)
    known = state.counts.sum(axis=0).A1 > 0  # sold before the cut
    counts = np.bincount(pairs[:, 0], minlength=len(items) + 1) if len(pairs) else np.zeros(len(items) + 1)
    chosen = np.flatnonzero((counts >= min_buyers) & known[: len(counts)])
    if not len(chosen):
        raise ValueError(f"no item has {min_buyers} buyers in the last {days:g} days: too little to fit on")
    buyers = [pairs[pairs[:, 0] == i, 1] for i in chosen]
    ranker = AudienceRanker(config).fit([(state, chosen, buyers)])
    return ranker, FitReport(cut, len(chosen), ranker.n_train_rows, ranker.n_train_positives)


def save_ranker(ranker: AudienceRanker, run_folder: Path, report: FitReport) -> Path:
    folder = Path(run_folder) / RANKER_DIR
    ranker.save(folder)
    (folder / "fit.json").write_text(json.dumps(report.__dict__))
    return folder


def load_ranker(run_folder: Path) -> AudienceRanker | None:
    """The ranker saved beside the run, or None when there is none."""
    folder = Path(run_folder) / RANKER_DIR
    return AudienceRanker.load(folder) if (folder / "audience_ranker.json").exists() else None


class LearnedAudience:
    """Every customer's features now and the fitted ranker. Immutable once built."""

    def __init__(self, ranker: AudienceRanker, events: pl.DataFrame, items: Vocabulary, now: float | None = None):
        self.ranker = ranker
        self.user_ids, seqs = purchase_histories(events, items)
        ts = seqs.timestamps if seqs.timestamps is not None else np.zeros(0)
        finite = ts[np.isfinite(ts)]
        # events at "now" count: the cut is just after the newest purchase
        self.now = float(now) if now is not None else (float(finite.max()) + 1.0 if len(finite) else 0.0)
        self.state: ShopState = shop_state(ranker.config, seqs, self.now, len(items))

    def __len__(self) -> int:
        return len(self.user_ids)

    def for_item(self, item_index: int, k: int) -> AudienceList:
        """The ``k`` customers most likely to buy ``item_index`` (customers with no
        purchase are not ranked), best first; past the ranker's candidates, by activity
        (their score is the lowest candidate's minus their rank)."""
        if not 1 <= item_index <= self.state.n_items:
            raise ValueError(f"item indexes must be in 1..{self.state.n_items}")
        if not len(self):
            return AudienceList([], [], np.zeros(0, dtype=np.int64))
        rows, scores = self.ranker.rank(self.state, int(item_index), k)
        fill = ~np.isfinite(scores)
        if fill.any():  # JSON has no NaN: below every candidate, in activity order
            floor = float(np.nanmin(scores)) if (~fill).any() else 0.0
            scores = scores.copy()
            scores[fill] = floor - 1.0 - np.arange(int(fill.sum()))
        return AudienceList([self.user_ids[r] for r in rows.tolist()], [float(s) for s in scores], rows)
