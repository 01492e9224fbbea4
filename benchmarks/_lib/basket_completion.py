"""Basket completion on UCI Online Retail for benchmarks/complements.py: invoices as
baskets, a temporal split by invoice time, one held-out item per basket, and
full-catalog ranks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from shopformer.features.baskets import baskets
from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary
from shopformer.ingest.adapters import read_online_retail


@dataclass
class Cases:
    """One held-out item per basket: ``carts`` (the rest, model indexes, in invoice line
    order; items unknown to the training vocabulary dropped) and ``target`` (its index,
    0 when the training period never sold it: a miss for every method)."""

    carts: Sequences
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


@dataclass
class Split:
    items: Vocabulary  # the items sold in the training period: the catalog ranked
    train_events: pl.DataFrame
    train_baskets: Sequences
    valid: Cases
    test: Cases
    cuts: dict  # the invoice times at which validation and test start


def load_purchases(path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(purchase lines with a customer (what the store holds) in arrival order, the
    derived catalog)."""
    got = read_online_retail(path)
    return got.events.filter(pl.col("event_type") == "purchase").sort("position"), got.products


def split(events: pl.DataFrame, valid_fraction: float, test_fraction: float, seed: int,
          max_cases: int | None = None) -> Split:
    """Invoices by first timestamp: the last ``test_fraction`` are test, the
    ``valid_fraction`` before them validation, the rest training."""
    keys = events.group_by("session_id").agg(pl.col("timestamp").min()).sort("timestamp", "session_id")
    n = keys.height
    t_valid = keys["timestamp"][int(n * (1 - valid_fraction - test_fraction))]
    t_test = keys["timestamp"][int(n * (1 - test_fraction))]
    first = events.join(keys.rename({"timestamp": "t0"}), on="session_id")
    train_ev = first.filter(pl.col("t0") < t_valid).drop("t0")
    items = Vocabulary.from_series(train_ev["item_id"])
    train_b, _ = baskets(train_ev, items)
    rng = np.random.default_rng(seed)
    valid = _cases(first.filter((pl.col("t0") >= t_valid) & (pl.col("t0") < t_test)).drop("t0"), items, rng, max_cases)
    test = _cases(first.filter(pl.col("t0") >= t_test).drop("t0"), items, rng, max_cases)
    return Split(items, train_ev, train_b, valid, test, {"valid_from": str(t_valid), "test_from": str(t_test)})


def _cases(events: pl.DataFrame, items: Vocabulary, rng: np.random.Generator, max_cases: int | None) -> Cases:
    """Every basket with >= 2 distinct items (by item id, known or not) -> one case."""
    everything = Vocabulary.from_series(events["item_id"])  # ids of this slice, to hold out unknown items too
    full, _ = baskets(events, everything)
    keep = np.flatnonzero(full.lengths >= 2)
    if max_cases is not None and len(keep) > max_cases:
        keep = np.sort(rng.choice(keep, max_cases, replace=False))
    ids = everything.ids
    offsets, flat, target = [0], [], []
    for b in keep:
        row = full.row(b)
        out = int(rng.integers(len(row)))
        target.append(items.get(ids[row[out] - 1]))
        rest = items.encode([ids[i - 1] for i in np.delete(row, out)])
        rest = rest[rest > 0]
        flat.append(rest)
        offsets.append(offsets[-1] + len(rest))
    items_flat = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    return Cases(Sequences(np.array(offsets), items_flat), np.array(target, dtype=np.int64))


def ranks(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1-based full-catalog rank of each row's target (items scoring strictly higher,
    plus one); inf where the target is unknown (0) or masked (-inf)."""
    rows = np.arange(len(target))
    t = scores[rows, target]
    r = 1 + (scores > t[:, None]).sum(axis=1)
    return np.where((target > 0) & np.isfinite(t), r, np.inf).astype(np.float64)


def metrics(rank: np.ndarray, k: int = 10) -> dict[str, float]:
    hit = rank <= k
    return {
        f"Recall@{k}": float(hit.mean()),
        f"NDCG@{k}": float(np.where(hit, 1.0 / np.log2(rank + 1), 0.0).mean()),
        "MRR": float((1.0 / rank).mean()),
        "cases": int(len(rank)),
    }


def batched(carts: Sequences, size: int = 512):
    """Row slices of ``carts`` as (start, Sequences) of at most ``size`` rows."""
    for start in range(0, len(carts), size):
        yield start, carts.rows(np.arange(start, min(start + size, len(carts))))
