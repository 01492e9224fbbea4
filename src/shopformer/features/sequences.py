"""Per-user behaviour sequences, stored as one flat array with offsets (CSR layout).

``Sequences`` is what models train on and what evaluation feeds them: row ``u`` holds
user ``u``'s item indexes in time order (ties broken by arrival ``position``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone

import numpy as np
import polars as pl
import scipy.sparse as sp

from shopformer.features.vocab import Vocabulary
from shopformer.types import EVENT_TYPES


@dataclass
class Sequences:
    """Ordered item-index sequences for ``n_users`` rows.

    ``items[offsets[u]:offsets[u + 1]]`` is row ``u``; ``timestamps`` (epoch seconds,
    NaN when unknown) and ``event_types`` run parallel to ``items`` when present.
    """

    offsets: np.ndarray  # (U + 1,) int64
    items: np.ndarray  # (N,) int64, item indexes >= 1
    timestamps: np.ndarray | None = None  # (N,) float64
    event_types: np.ndarray | None = None  # (N,) int8 index into EVENT_TYPES

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    def row(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    def rows(self, users: np.ndarray) -> "Sequences":
        """A new ``Sequences`` holding the given rows, in the given order; ``self`` when
        that is every row in order (no copy: the arrays may be memory-mapped, larger
        than memory, see ``features/sharded.py``)."""
        users = np.asarray(users, dtype=np.int64)
        if len(users) == len(self) and np.array_equal(users, np.arange(len(self))):
            return self
        lengths = self.lengths[users]
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if len(users) and np.all(np.diff(users) > 0):
            # increasing rows (a filter such as "rows with 2+ events"): one boolean mask
            # over the elements instead of three int64 index arrays of the result's size
            picked = np.zeros(len(self), dtype=bool)
            picked[users] = True
            mask = np.repeat(picked, self.lengths)
            return Sequences(
                offsets,
                self.items[mask],
                None if self.timestamps is None else self.timestamps[mask],
                None if self.event_types is None else self.event_types[mask],
            )
        # Gather positions of every kept element without a Python loop per row.
        starts = np.repeat(self.offsets[users], lengths)
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        take = starts + within
        return Sequences(
            offsets,
            self.items[take],
            None if self.timestamps is None else self.timestamps[take],
            None if self.event_types is None else self.event_types[take],
        )

    def keep(self, mask: np.ndarray) -> "Sequences":
        """The same rows holding only the elements where ``mask`` (parallel to ``items``)
        is True, order kept; rows may become empty."""
        mask = np.asarray(mask, dtype=bool)
        row_of = np.repeat(np.arange(len(self)), self.lengths)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of[mask], minlength=len(self)), out=offsets[1:])
        return Sequences(
            offsets,
            self.items[mask],
            None if self.timestamps is None else self.timestamps[mask],
            None if self.event_types is None else self.event_types[mask],
        )

    def latest(self, n: int) -> "Sequences":
        """The same rows holding only their latest ``n`` elements."""
        lengths = self.lengths
        within = np.arange(len(self.items)) - np.repeat(self.offsets[:-1], lengths)
        return self.keep(within >= np.repeat(lengths - n, lengths))

    def without_padding(self) -> "Sequences":
        """The same rows without padding / unknown entries (index 0); self when none."""
        return self.keep(self.items > 0) if (self.items == 0).any() else self

    def to_csr(self, n_columns: int, binary: bool = True) -> sp.csr_matrix:
        """User x item matrix (``n_columns`` = vocabulary size incl. padding)."""
        data = np.ones(len(self.items), dtype=np.float32)
        m = sp.csr_matrix((data, self.items, self.offsets), shape=(len(self), n_columns))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    @classmethod
    def from_lists(cls, rows: list[list[int]]) -> "Sequences":
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(offsets[-1]))
        return cls(offsets, items)


def without(history: Sequences, row: int, drops: np.ndarray) -> Sequences:
    """One output row per row of ``drops`` ((R, L) bool over row ``row`` of ``history``,
    True = leave that event out); order, timestamps and event types of the kept events
    are kept."""
    start, stop = history.offsets[row], history.offsets[row + 1]
    drops = np.asarray(drops, dtype=bool)
    drops = drops[None, :] if drops.ndim == 1 else drops
    if drops.shape[1] != stop - start:
        raise ValueError(f"drops has {drops.shape[1]} columns; row {row} has {stop - start} events")
    r, pos = np.nonzero(~drops)  # row-major: rows in order, positions ascending
    take = start + pos
    offsets = np.zeros(len(drops) + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=len(drops)), out=offsets[1:])
    return Sequences(
        offsets,
        history.items[take],
        None if history.timestamps is None else history.timestamps[take],
        None if history.event_types is None else history.event_types[take],
    )


def order_events(events: pl.DataFrame) -> pl.DataFrame:
    """Events sorted per user by time, ties (and missing times) broken by ``position``."""
    return events.sort(["user_id", "timestamp", "position"], nulls_last=False, maintain_order=True)


def kcore(events: pl.DataFrame, min_user: int = 5, min_item: int = 5) -> pl.DataFrame:
    """Keep only users with >= ``min_user`` and items with >= ``min_item`` events, repeated
    until both hold (the usual iterative k-core on the interaction log)."""
    out = events
    while True:
        n = out.height
        if min_item > 1:
            out = out.filter(pl.len().over("item_id") >= min_item)
        if min_user > 1:
            out = out.filter(pl.len().over("user_id") >= min_user)
        if out.height == n:
            return out


@dataclass
class SequenceData:
    """A snapshot ready for modelling: vocabularies plus every user's full sequence."""

    users: Vocabulary
    items: Vocabulary
    sequences: Sequences  # row u = user index u + 1

    @property
    def n_items(self) -> int:
        return len(self.items)


def build_sequences(
    events: pl.DataFrame,
    items: Vocabulary | None = None,
    event_types: tuple[str, ...] | None = None,
) -> SequenceData:
    """Turn an event table into per-user sequences.

    ``event_types`` keeps only those types (e.g. ``("purchase",)``); search events and
    events without an item are always left out. Users are indexed in order of their id;
    items by ``items`` if given (unknown items are dropped) else by first appearance.
    """
    ev = events.filter(pl.col("item_id").is_not_null() & (pl.col("item_id") != ""))
    ev = ev.filter(pl.col("event_type") != "search")
    if event_types is not None:
        ev = ev.filter(pl.col("event_type").is_in(list(event_types)))
    ev = order_events(ev)
    if items is None:
        # First appearance in global arrival order keeps item indexes reproducible.
        items = Vocabulary.from_series(ev.sort("position")["item_id"])
    item_idx = items.encode(ev["item_id"])
    keep = item_idx > 0
    ev = ev.filter(pl.Series(keep))
    item_idx = item_idx[keep]
    users = Vocabulary(ev["user_id"].unique(maintain_order=True).to_list())
    counts = ev.group_by("user_id", maintain_order=True).len()["len"].to_numpy()
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    ts = ev["timestamp"].dt.epoch("us").cast(pl.Float64).to_numpy() / 1e6
    et = ev["event_type"].replace_strict(
        {t: i for i, t in enumerate(EVENT_TYPES)}, default=0, return_dtype=pl.Int8
    )
    seqs = Sequences(offsets, item_idx, ts, et.to_numpy())
    return SequenceData(users=users, items=items, sequences=seqs)


_TYPE_INDEX = {t: i for i, t in enumerate(EVENT_TYPES)}


def encode_history(
    rows: list[tuple[str | None, str, object]],
    items: Vocabulary,
    event_types: tuple[str, ...],
    dedupe_consecutive: bool = False,
) -> Sequences:
    """One user's events ``(item_id, event_type, timestamp)``, already in time order, as
    a one-row :class:`Sequences`, exactly as training encodes them (type filter, then
    consecutive repeats collapsed, then events without a known item dropped), in plain
    Python: the serving path encodes one short history per request."""
    wanted = set(event_types)
    kept = [r for r in rows if r[1] in wanted]
    if dedupe_consecutive:
        kept = [r for i, r in enumerate(kept) if i == 0 or r[0] != kept[i - 1][0]]
    idx, ts, et = [], [], []
    for item_id, event_type, when in kept:
        if not item_id or event_type == "search":
            continue
        index = items.get(item_id)
        if index == 0:
            continue
        idx.append(index)
        ts.append(_epoch_seconds(when))
        et.append(_TYPE_INDEX.get(event_type, 0))
    return Sequences(np.array([0, len(idx)], dtype=np.int64), np.array(idx, dtype=np.int64),
                     np.array(ts, dtype=np.float64), np.array(et, dtype=np.int8))


def _epoch_seconds(when: object) -> float:
    """UTC epoch seconds of a stored timestamp (naive = UTC); NaN when there is none."""
    if when is None:
        return float("nan")
    if when.tzinfo is None:  # type: ignore[attr-defined]
        when = when.replace(tzinfo=timezone.utc)  # type: ignore[attr-defined]
    return when.timestamp()  # type: ignore[attr-defined]
