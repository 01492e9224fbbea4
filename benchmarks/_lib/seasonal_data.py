"""UCI Online Retail II (2009-12 .. 2010-12) + I (2010-12 .. 2011-12) for
benchmarks/seasonal.py: every customer's purchases in time order, and next-purchase
cases (one per purchase in a period, with the customer's whole history before it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from shopformer.features.sequences import Sequences, SequenceData, build_sequences
from shopformer.features.splits import EvalCases
from shopformer.features.vocab import Vocabulary
from shopformer.ingest.adapters import read_online_retail


def utc(y: int, m: int, d: int) -> float:
    return datetime(y, m, d, tzinfo=timezone.utc).timestamp()


@dataclass
class RetailData:
    data: SequenceData  # items: the products sold before the test period
    counts: dict  # rows read, overlap removed, purchases, ...
    test_total: int  # purchases in the test period, products new then included
    test_unknown: int  # of them, products never sold before (no model can name them)


def load(ii_file: Path, i_file: Path, test_start: float, test_end: float) -> RetailData:
    """Purchases with a customer from both files. Online Retail II's sheet ends on
    2010-12-09 and I starts on 2010-12-01: the same transactions, so II's lines of an
    invoice that I also holds are dropped. Repeated consecutive lines of one product
    by one customer collapse into one event (as benchmarks/accuracy.py and replay.py
    do). Item indexes: the products sold before ``test_start``."""
    ii = read_online_retail(ii_file).events
    one = read_online_retail(i_file, position_start=ii.height).events
    in_i = one["session_id"].unique()
    ii_kept = ii.filter(~pl.col("session_id").is_in(in_i.implode()))
    ev = pl.concat([ii_kept, one]).filter(pl.col("event_type") == "purchase")
    ev = ev.sort(["user_id", "timestamp", "position"])
    same = (pl.col("item_id") == pl.col("item_id").shift(1).over("user_id")).fill_null(False)
    deduped = ev.filter(~same)
    secs = pl.col("timestamp").dt.epoch("us") / 1e6
    before = deduped.filter(secs < test_start).sort("timestamp", "position")
    items = Vocabulary.from_series(before["item_id"])
    test = deduped.filter((secs >= test_start) & (secs < test_end))
    unknown = int((items.encode(test["item_id"]) == 0).sum())
    counts = {"rows_ii": ii.height, "rows_i": one.height, "ii_rows_in_both_files": ii.height - ii_kept.height,
              "ii_last_kept": str(ii_kept["timestamp"].max()), "purchases": ev.height,
              "events_after_collapsing_repeats": deduped.height, "customers": deduped["user_id"].n_unique(),
              "products_before_test": len(items)}
    return RetailData(build_sequences(deduped, items), counts, test.height, unknown)


@dataclass
class Cases:
    cases: EvalCases  # history: the latest ``max_len`` events before each purchase
    times: np.ndarray  # (C,) epoch seconds of each purchase
    repeat: np.ndarray  # (C,) bool: the customer had bought this product before


def next_purchase_cases(seqs: Sequences, lo: float, hi: float, max_len: int, sample: int = 0,
                        seed: int = 0) -> Cases:
    """One case per purchase at ``lo <= t < hi`` (``sample`` > 0: that many drawn at
    random): the target is the purchase (with its time, the moment it is asked at) and
    the history every earlier event of that customer, of which the model reads the last
    ``max_len`` (kept that short here to hold tens of thousands of cases)."""
    ts = seqs.timestamps
    row_of = np.repeat(np.arange(len(seqs)), seqs.lengths)
    picked = np.flatnonzero((ts >= lo) & (ts < hi))
    if sample and len(picked) > sample:
        picked = np.sort(np.random.default_rng(seed).choice(picked, sample, replace=False))
    starts = seqs.offsets[row_of[picked]]
    lengths = np.minimum(picked - starts, max_len)
    offsets = np.zeros(len(picked) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    take = np.repeat(picked - lengths, lengths) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths))
    history = Sequences(offsets, seqs.items[take], ts[take], seqs.event_types[take])
    targets = Sequences(np.arange(len(picked) + 1, dtype=np.int64), seqs.items[picked], ts[picked])
    key = row_of * (int(seqs.items.max()) + 1) + seqs.items  # (customer, product)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    repeat = (np.arange(len(key)) != first[inverse])[picked]
    return Cases(EvalCases(row_of[picked], history, targets), ts[picked], repeat)
