"""The safety gate: is a new run at least as good as the served one on events that
neither was trained on?

Protocol. The holdout is every event at or after a ``cutoff`` time (the newest slice of
the store; neither run may have trained on any of it: see ``feedback.retrain``). Each
held-out event is one case, next-item prediction as served: the history is the user's
events before it (the events the run reads, filtered, de-duplicated and capped at
``history_limit`` as the API does, earlier held-out events included: serving reads them
in real time), the target is the event's item. Each run ranks its FULL catalog with its
own vocabulary, history items excluded (the project's protocol,
``evaluate.protocol``), and is scored by NDCG@10. A target a run does not know counts
as a miss for it (it could not have recommended it). Cases are the same for both runs:
held-out events of users with at least one earlier event (a visitor with no past is a
cold-start case, not this comparison); above ``max_cases`` a seeded sample of them.

Decision: promote when ``new >= current * (1 - tolerance)`` (relative: the same
tolerance means the same thing on a catalog where NDCG@10 is 0.02 and one where it is
0.3); else keep the current run and say why, with both numbers. The paired standard
error of the difference is reported beside them, so a reader can tell noise from a
real drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import polars as pl

from shopformer.artifact import Run
from shopformer.dataset import DEFAULT_EVENT_TYPES, DataConfig
from shopformer.evaluate.protocol import EvalConfig, evaluate
from shopformer.features.sequences import Sequences, order_events
from shopformer.features.splits import EvalCases

METRIC = "NDCG@10"


@dataclass(frozen=True)
class GateConfig:
    """tolerance: the new run may be at most this share worse than the current one
        (relative NDCG@10).
    max_cases: held-out events scored at most (a seeded sample above it).
    min_cases: fewer held-out cases than this and there is nothing to decide on.
    history_limit: latest events a history holds (the API's SHOPFORMER_HISTORY_LIMIT).
    seed: of the sample."""

    tolerance: float = 0.02
    max_cases: int = 20_000
    min_cases: int = 50
    history_limit: int = 200
    seed: int = 0


@dataclass(frozen=True)
class GateResult:
    promote: bool
    current: float  # NDCG@10 of the current run on the holdout
    candidate: float
    threshold: float  # current * (1 - tolerance): what the candidate had to reach
    cases: int
    holdout_events: int  # held-out events of the types the runs read, before sampling
    diff_se: float  # paired standard error of candidate - current
    unknown_targets: dict[str, int]  # cases whose item each run does not know
    cutoff: datetime
    tolerance: float

    @property
    def reason(self) -> str:
        verdict = "not worse beyond" if self.promote else "worse than"
        return (f"{METRIC} on {self.cases} held-out events after {self.cutoff:%Y-%m-%d %H:%M} UTC: new "
                f"{self.candidate:.4f}, current {self.current:.4f} (difference {self.candidate - self.current:+.4f} "
                f"± {self.diff_se:.4f}); the new run is {verdict} the {self.tolerance:.0%} tolerance "
                f"(needs >= {self.threshold:.4f})")

    def to_dict(self) -> dict:
        return {"metric": METRIC, "current": round(self.current, 6), "candidate": round(self.candidate, 6),
                "threshold": round(self.threshold, 6), "tolerance": self.tolerance, "rule": "relative",
                "cases": self.cases, "holdout_events": self.holdout_events, "diff_se": round(self.diff_se, 6),
                "unknown_targets": self.unknown_targets, "cutoff": self.cutoff.isoformat(),
                "promoted_by_gate": self.promote}


def read_events(events: pl.DataFrame, config: DataConfig) -> pl.DataFrame:
    """The events a run with ``config`` reads, per user in time order, as the API encodes a
    history (``features.sequences.encode_history``): its types, consecutive repeats
    collapsed when configured. Item ids are not looked up here (each run has its own)."""
    types = list(config.event_types or DEFAULT_EVENT_TYPES)
    ev = events.filter(pl.col("event_type").is_in(types) & pl.col("item_id").is_not_null() & (pl.col("item_id") != ""))
    ev = order_events(ev.select("user_id", "item_id", "timestamp", "position"))
    if config.dedupe_consecutive:
        same = (pl.col("item_id") == pl.col("item_id").shift(1).over("user_id")).fill_null(False)
        ev = ev.filter(~same)
    return ev


def holdout_cases(ev: pl.DataFrame, cutoff: datetime, config: GateConfig) -> tuple[np.ndarray, int]:
    """Rows of ``ev`` (from :func:`read_events`) that are cases: at or after ``cutoff``,
    with an earlier event of the same user; a seeded sample of ``max_cases`` above it.
    Also returns how many held-out rows there were before that."""
    users = ev["user_id"].to_numpy()
    first_of_user = np.ones(len(users), dtype=bool)
    first_of_user[1:] = users[1:] != users[:-1]
    held = (ev["timestamp"] >= cutoff).fill_null(False).to_numpy()
    rows = np.flatnonzero(held & ~first_of_user)
    if len(rows) > config.max_cases:
        rows = np.sort(np.random.default_rng(config.seed).choice(rows, config.max_cases, replace=False))
    return rows, int(held.sum())


def cases_for(run: Run, ev: pl.DataFrame, rows: np.ndarray, history_limit: int) -> EvalCases:
    """Each case's history and target in ``run``'s item indexes (unknown items dropped
    from histories, an unknown target left as 0: a miss)."""
    idx = run.items.encode(ev["item_id"])
    users = ev["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    user_start = starts[np.searchsorted(starts, np.arange(len(users)), side="right") - 1]
    known = idx > 0
    before = np.cumsum(known) - known  # known events in rows before each row
    kept = idx[known]
    lo = np.maximum(before[user_start[rows]], before[rows] - history_limit)
    hi = before[rows]
    lengths = hi - lo
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    take = np.repeat(lo, lengths) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths))
    history = Sequences(offsets, kept[take])
    targets = Sequences(np.arange(len(rows) + 1, dtype=np.int64), idx[rows])
    return EvalCases(np.arange(len(rows)), history, targets)


def ndcg_per_case(run: Run, cases: EvalCases) -> np.ndarray:
    n = len(run.items)
    batch = int(max(1, min(1024, 200_000_000 // (4 * (n + 1)))))  # ~200 MB of scores a batch
    result = evaluate(run.model, cases, n, EvalConfig(cutoffs=(10,), batch_size=batch), progress=False)
    return result.per_user[METRIC]


def compare(current: Run, candidate: Run, events: pl.DataFrame, cutoff: datetime,
            config: GateConfig = GateConfig()) -> GateResult | None:
    """Score both runs on the held-out events (see the module docstring); None when there
    are fewer than ``config.min_cases`` cases."""
    if current.data_config.event_types != candidate.data_config.event_types or \
            current.data_config.dedupe_consecutive != candidate.data_config.dedupe_consecutive:
        raise ValueError("the runs read different events (DataConfig event_types / dedupe): "
                         "the gate compares runs of the same data settings")
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=timezone.utc)
    ev = read_events(events, current.data_config)
    rows, n_held = holdout_cases(ev, cutoff, config)
    if len(rows) < config.min_cases:
        return None
    per_case, unknown = {}, {}
    for name, run in (("current", current), ("candidate", candidate)):
        cases = cases_for(run, ev, rows, config.history_limit)
        per_case[name] = ndcg_per_case(run, cases)
        unknown[name] = int((cases.targets.items == 0).sum())
    cur, new = float(per_case["current"].mean()), float(per_case["candidate"].mean())
    diff = per_case["candidate"] - per_case["current"]
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    threshold = cur * (1.0 - config.tolerance)
    return GateResult(new >= threshold, cur, new, threshold, len(rows), n_held, se, unknown, cutoff,
                      config.tolerance)
