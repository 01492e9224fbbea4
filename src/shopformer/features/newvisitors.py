"""New-visitor protocol: how well are people served who arrive with no history?

Visitors the models never saw are scored at each of their first ``steps`` events: at
step 0 from nothing (only popularity / trending can answer), at step 1 from their first
event (the landing product), and so on. Who is a new visitor depends on the data:

- with timestamps ("temporal"): events before a cutoff (a quantile of event time) are
  the training data; users whose first event falls in ``[cutoff, cutoff + horizon)``
  are the new visitors, as they would be for a model deployed at the cutoff;
- without ("random_users"): a random ``fraction`` of the users is held out entirely.

The visitors are split in two halves, validation (to choose settings such as the
trending half-life) and test (read once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models.trending import DAY_S


@dataclass(frozen=True)
class NewVisitorConfig:
    """steps: scored events per visitor (step k reads the first k events).
    cutoff_quantile, horizon_days: the temporal protocol (horizon 0 = to the end).
    fraction: share of users held out when the data has no timestamps.
    seed: which visitors go to validation and which to test (and, untimed, who is held out)."""

    steps: int = 2
    cutoff_quantile: float = 0.8
    horizon_days: float = 30.0
    fraction: float = 0.1
    seed: int = 42


@dataclass
class NewVisitorSplit:
    protocol: str  # "temporal" | "random_users"
    train: Sequences  # one row per user of the data; visitors' rows are empty
    cutoff: float | None  # epoch seconds (temporal protocol)
    valid: list[EvalCases]  # valid[k]: history = a visitor's first k events, target = event k + 1
    test: list[EvalCases]


def _cases(seqs: Sequences, users: np.ndarray, step: int) -> EvalCases:
    """For visitors with more than ``step`` events: the first ``step`` as history, the
    next one as the target."""
    users = users[seqs.lengths[users] > step]
    starts = seqs.offsets[users]
    take = (starts[:, None] + np.arange(step)[None, :]).reshape(-1)
    history = Sequences(np.arange(len(users) + 1, dtype=np.int64) * step, seqs.items[take])
    targets = Sequences(np.arange(len(users) + 1, dtype=np.int64), seqs.items[starts + step])
    return EvalCases(users, history, targets)


def new_visitor_split(seqs: Sequences, config: NewVisitorConfig = NewVisitorConfig()) -> NewVisitorSplit:
    """Split ``seqs`` (time-ordered rows, one per user) as the module docstring says."""
    if config.steps < 1:
        raise ValueError(f"steps must be >= 1, got {config.steps}")
    rng = np.random.default_rng(config.seed)
    has_events = seqs.lengths > 0
    ts = seqs.timestamps
    if ts is not None and len(ts) and np.isfinite(ts).all():
        if not 0.0 < config.cutoff_quantile < 1.0:
            raise ValueError(f"cutoff_quantile must be in (0, 1), got {config.cutoff_quantile}")
        cutoff = float(np.quantile(ts, config.cutoff_quantile))
        first = np.full(len(seqs), np.inf)
        first[has_events] = ts[seqs.offsets[:-1][has_events]]
        end = cutoff + config.horizon_days * DAY_S if config.horizon_days > 0 else np.inf
        visitors = np.flatnonzero((first >= cutoff) & (first < end))
        train = seqs.keep(ts < cutoff)
        protocol = "temporal"
    else:
        if not 0.0 < config.fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {config.fraction}")
        users = np.flatnonzero(has_events)
        visitors = np.sort(rng.choice(users, size=max(1, int(round(config.fraction * len(users)))), replace=False))
        held = np.zeros(len(seqs), dtype=bool)
        held[visitors] = True
        train = seqs.keep(~np.repeat(held, seqs.lengths))
        cutoff, protocol = None, "random_users"
    order = rng.permutation(visitors)
    halves = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    valid, test = ([_cases(seqs, half, k) for k in range(config.steps)] for half in halves)
    return NewVisitorSplit(protocol, train, cutoff, valid, test)
