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
* the width grows with the catalog and the data: 64 for small shops, 128-256 otherwise;
  sparse data gets 256 from 20,000 interactions;
* training runs for about :data:`TARGET_STEPS` optimizer steps (at least the 20 or 100
  epochs above, on the :data:`EPOCH_GRID`), since an epoch of a shop with few customers is
  only a few steps.

The last two rules come from the 45-minute searches (``benchmarks/auto_accuracy.py``,
validation NDCG@10 only; the start's score read off each search's plot in
benchmarks/results, as the per-trial tables were not kept): on LastFM (1,090 users) the
old start, 20 epochs of 34 steps at d128, scored about 0.042, below EASE's 0.0465, and the
winner (0.0634) trained up to 200 epochs at d256; hand-tuning there had found the same
(``results/tuning/lastfm.md``: batch 128 -> 16, i.e. more steps, 0.041 -> 0.054; d64 /
d128 / d256 with tags 0.0602 / 0.0655 / 0.0674). Amazon Scientific's winner (0.0952
against about 0.094 for its d128, 20-epoch start) was d256 and 100 epochs too. Beauty's
and ML-1M's winners were their starts, which these rules leave as they were.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from shopformer.features.sequences import Sequences

MAX_LEN_GRID = (20, 50, 100, 200)
EPOCH_GRID = (10, 20, 40, 100, 200)
#: optimizer steps a start trains for: what Amazon Beauty's 20 epochs of batch 32 take
#: (22,363 users: ~14,000), rounded down so that Beauty stays at 20 epochs
TARGET_STEPS = 12_000


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


def epochs_for(stats: DataStats, batch_size: int, at_least: int) -> int:
    """The smallest grid epochs, from ``at_least``, that train about TARGET_STEPS steps
    (an epoch is at least one window per customer; 200 at most)."""
    per_epoch = max(1, -(-stats.users // batch_size))
    need = max(at_least, -(-TARGET_STEPS // per_epoch))
    return next((e for e in EPOCH_GRID if e >= need), EPOCH_GRID[-1])


def _ids_setting(stats: DataStats) -> dict[str, object]:
    small_catalog = stats.items <= 200_000  # wider item tables would not fit a laptop's memory
    if stats.sparse:
        wide = stats.interactions >= 20_000 and small_catalog
        return {"d_model": 256 if wide else 128, "n_layers": 2, "dropout": 0.5, "weight_decay": 0.1,
                "lr": 1e-3, "batch_size": 32, "epochs": epochs_for(stats, 32, 20), "max_len": max_len_for(stats),
                "crop": "random"}
    wide = stats.interactions >= 100_000 and small_catalog
    return {"d_model": 128 if wide else 64, "n_layers": 2, "dropout": 0.2, "weight_decay": 0.0,
            "lr": 1e-3, "batch_size": 32, "epochs": epochs_for(stats, 32, 100), "max_len": max_len_for(stats),
            "crop": "all" if stats.per_user_median >= 50 else "random"}
