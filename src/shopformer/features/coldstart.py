"""Cold-start protocol: products held out of training entirely.

A random fraction of the catalog is "new": every interaction with those products is
removed from training, and from the histories models read. The leave-one-out targets
then fall in two groups: cases whose target is a held-out product (can a model place a
product it never saw bought?) and cases whose target is a warm product (does whatever
makes cold start work cost accuracy on the rest?). Ranking stays over the full catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases, leave_one_out


@dataclass(frozen=True)
class ColdStartConfig:
    """fraction: share of the catalog held out; seed: which products (fixed for
    comparability between models)."""

    fraction: float = 0.1
    seed: int = 42


@dataclass
class ColdStartSplit:
    train: Sequences  # held-out products removed
    cold_items: np.ndarray  # (C,) item indexes never seen in training
    valid: EvalCases  # every validation case (warm and cold targets): for early stopping
    valid_warm: EvalCases
    valid_cold: EvalCases
    test_warm: EvalCases
    test_cold: EvalCases


def _by_target(cases: EvalCases, is_cold: np.ndarray, cold: bool | None) -> EvalCases:
    """Cases whose (single) target is cold / warm (None: either), with held-out products
    removed from the history; a case left with an empty history is dropped (it is a new
    visitor, measured apart)."""
    first = cases.targets.items[cases.targets.offsets[:-1]]
    history = cases.history.keep(~is_cold[cases.history.items])
    wanted = np.ones(len(first), dtype=bool) if cold is None else is_cold[first] == cold
    pick = np.flatnonzero(wanted & (history.lengths > 0))
    return EvalCases(cases.users[pick], history.rows(pick), cases.targets.rows(pick))


def cold_start_split(seqs: Sequences, n_items: int, config: ColdStartConfig = ColdStartConfig()) -> ColdStartSplit:
    """Leave-one-out over ``seqs`` with ``config.fraction`` of the products that occur
    held out of training; see the module docstring."""
    if not 0.0 < config.fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {config.fraction}")
    present = np.unique(seqs.items)
    rng = np.random.default_rng(config.seed)
    n_cold = max(1, int(round(config.fraction * len(present))))
    cold_items = np.sort(rng.choice(present, size=n_cold, replace=False))
    is_cold = np.zeros(n_items + 1, dtype=bool)
    is_cold[cold_items] = True
    loo = leave_one_out(seqs)
    return ColdStartSplit(
        train=loo.train.keep(~is_cold[loo.train.items]),
        cold_items=cold_items,
        valid=_by_target(loo.valid, is_cold, cold=None),
        valid_warm=_by_target(loo.valid, is_cold, cold=False),
        valid_cold=_by_target(loo.valid, is_cold, cold=True),
        test_warm=_by_target(loo.test, is_cold, cold=False),
        test_cold=_by_target(loo.test, is_cold, cold=True),
    )
