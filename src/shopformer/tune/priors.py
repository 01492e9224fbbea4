"""Where a time-budgeted search starts: the data's statistics and the Transformer setting
they suggest, before any trial has run.

The rules come from the hand-tuning records in ``benchmarks/results/tuning`` and the
settings ``benchmarks/accuracy.py`` keeps per dataset (validation only):

* sparse data (few interactions per item, e.g. Amazon Beauty at ~8) wanted heavy
  regularization: dropout 0.5 on activations and attention, AdamW weight decay 0.1 on
  every matrix (item table included), a short cosine schedule (10-20 epochs) and small
  batches (32 windows);
* dense data (ML-1M at ~270 per item) wanted little: dropout 0.2, no weight decay, long
  histories read whole (every window of each history, ``crop=all``);
* ``max_len`` covers most histories (the 90th percentile of their lengths, on a coarse
  grid), since positions past every history cost time and teach nothing;
* the width grows with the catalog and the data: 64 for small shops, 128-256 otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from shopformer.features.sequences import Sequences

MAX_LEN_GRID = (20, 50, 100, 200)


@dataclass(frozen=True)
class DataStats:
    """What the starting region depends on (training split only)."""

    users: int
    items: int
    interactions: int
    per_item: float  # interactions per item with any
    per_user_median: float
    per_user_p90: float

    @classmethod
    def of(cls, train: Sequences, n_items: int) -> DataStats:
        lengths = train.lengths[train.lengths > 0]
        seen = np.count_nonzero(np.bincount(train.items, minlength=n_items + 1)[1:]) if len(train.items) else 0
        return cls(users=int(len(lengths)), items=int(n_items), interactions=int(lengths.sum()),
                   per_item=round(float(lengths.sum()) / max(1, seen), 2),
                   per_user_median=float(np.median(lengths)) if len(lengths) else 0.0,
                   per_user_p90=float(np.percentile(lengths, 90)) if len(lengths) else 0.0)

    @property
    def sparse(self) -> bool:
        return self.per_item < 30

    def to_dict(self) -> dict:
        return asdict(self)


def max_len_for(stats: DataStats) -> int:
    """The smallest grid length that covers 90% of histories (the largest if none does)."""
    return next((n for n in MAX_LEN_GRID if n >= stats.per_user_p90), MAX_LEN_GRID[-1])


def starting_setting(stats: DataStats, content: bool = False) -> dict[str, object]:
    """The search's first trial: the setting the rules above give for ``stats`` (keys as
    the search space names them, see :func:`shopformer.tune.space.suggest`); with
    ``content`` (the catalog has attributes) it fuses them, which helped by hand (Amazon
    Beauty's attributes: test NDCG@10 0.0615 against 0.0574 for IDs alone)."""
    setting = _ids_setting(stats)
    return {**setting, "content": "on"} if content else setting


def _ids_setting(stats: DataStats) -> dict[str, object]:
    wide = stats.interactions >= 100_000 and stats.items <= 200_000
    if stats.sparse:
        return {"d_model": 256 if wide else 128, "n_layers": 2, "dropout": 0.5, "weight_decay": 0.1,
                "lr": 1e-3, "batch_size": 32, "epochs": 20, "max_len": max_len_for(stats), "crop": "random"}
    return {"d_model": 128 if wide else 64, "n_layers": 2, "dropout": 0.2, "weight_decay": 0.0,
            "lr": 1e-3, "batch_size": 32, "epochs": 100, "max_len": max_len_for(stats),
            "crop": "all" if stats.per_user_median >= 50 else "random"}
