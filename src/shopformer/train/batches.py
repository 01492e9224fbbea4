"""Padded training windows cut from CSR sequences, built with NumPy (no per-row loops)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.features.time_context import time_context as calendar_context


def window_positions(seqs: Sequences, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """(U, length) indexes into ``seqs.items`` (and its parallel arrays) of one left-padded
    window per row; -1 marks padding.

    Without ``rng`` each window is the row's last ``length`` elements. With ``rng``, rows
    longer than ``length`` get a window ending at a uniformly drawn position (so every
    part of a long history is trained on over the epochs).
    """
    lengths = seqs.lengths
    ends = lengths.copy()
    if rng is not None:
        long_rows = lengths > length
        # end drawn from [length, len]: the window always holds `length` real items
        ends[long_rows] = rng.integers(length, lengths[long_rows] + 1)
    # in place, one (U, length) array: on a log larger than memory U * length is the
    # size of the data itself, so every temporary of that shape counts
    pos = (ends - length)[:, None] + np.arange(length)[None, :]  # offsets in the row
    padding = pos < 0
    pos += seqs.offsets[:-1, None]
    pos[padding] = -1
    return pos


def all_windows(seqs: Sequences, length: int) -> Sequences:
    """Every row cut, from its end, into windows of at most ``length`` events that
    overlap by one: trained causally, each event but a row's first is a target exactly
    once per epoch, however long the history (``crop="all"``; a random crop trains one
    window per user)."""
    if length < 2:
        raise ValueError(f"windows need at least 2 events, got length={length}")
    step = length - 1
    lengths = seqs.lengths
    n_win = np.maximum(1, -(-(lengths - 1) // step))  # ceil((L - 1) / step), at least 1
    row = np.repeat(np.arange(len(seqs)), n_win)
    j = np.arange(int(n_win.sum())) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = the latest window
    end = lengths[row] - j * step
    start = np.maximum(0, end - length)
    sizes = end - start
    offsets = np.zeros(len(row) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    take = np.repeat(seqs.offsets[:-1][row] + start, sizes) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], sizes))
    return Sequences(offsets, seqs.items[take],
                     None if seqs.timestamps is None else seqs.timestamps[take],
                     None if seqs.event_types is None else seqs.event_types[take])


def gather(values: np.ndarray, positions: np.ndarray, fill=0) -> np.ndarray:
    """``values[positions]`` with ``fill`` where ``positions`` is -1."""
    if len(values) == 0:
        return np.full(positions.shape, fill, dtype=values.dtype)
    out = values[np.maximum(positions, 0)]  # reads only the cells asked (values may be memory-mapped)
    out[positions < 0] = fill
    return out


def gap_buckets(times: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket of the time since the previous event, per cell of a (B, T) window of epoch
    seconds (NaN = padding): 0 padding, 1 first event of the window, then 2 + floor(log2(1 +
    gap in minutes)), capped at ``n_buckets``. Log buckets: seconds and months both matter."""
    prev = np.concatenate([np.full((len(times), 1), np.nan), times[:, :-1]], axis=1)
    gap_min = np.maximum(times - prev, 0.0) / 60.0
    with np.errstate(invalid="ignore"):
        bucket = 2 + np.floor(np.log2(1.0 + np.nan_to_num(gap_min, nan=0.0)))
    out = np.where(np.isnan(prev), 1, np.minimum(bucket, n_buckets)).astype(np.int64)
    return np.where(np.isnan(times), 0, out)


def cloze_mask(
    batch: np.ndarray, prob: float, mask_token: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Replace a random ``prob`` share of real items by ``mask_token``; returns (inputs,
    targets) where targets are 0 except at masked cells. The last real item of each row
    is always masked, so every row teaches next-item prediction as well."""
    real = batch > 0
    masked = real & (rng.random(batch.shape) < prob)
    masked[:, -1] |= real[:, -1]
    inputs = np.where(masked, mask_token, batch)
    targets = np.where(masked, batch, 0)
    return inputs, targets


def trim_padding(batch: np.ndarray) -> np.ndarray:
    """Drop leading columns that are padding in every row. Positions are counted from the
    right, so the model's output is unchanged while the work shrinks to the longest row."""
    real = (batch > 0).any(axis=0)
    first = int(np.argmax(real)) if real.any() else batch.shape[1] - 1
    return batch[:, first:]


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 50
) -> list[np.ndarray]:
    """Row indexes in batches of similar length: shuffle, sort each pool of ``pool``
    batches by length, cut, then shuffle the batch order. Cuts padding work on data
    where most histories are short (Amazon: median 6 events) without a fixed order."""
    order = rng.permutation(len(lengths))
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        order[start : start + span] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class LazyBatches:
    """An epoch's batches, each built from its row indexes when it is reached: only one
    batch's windows are in memory at a time. Supports ``len`` and iteration (what the
    Trainer reads), in order."""

    def __init__(self, groups: list[np.ndarray], build) -> None:
        self.groups, self.build = groups, build

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self):
        return (self.build(g) for g in self.groups)


@dataclass
class Windows:
    """Left-padded model inputs, one row per sequence: items plus the optional parallel
    event types (type index + 1), time-gap buckets and time context (``features.
    time_context``: each event's calendar and that of the moment its successor is
    predicted for); 0 is padding in all of them."""

    items: np.ndarray  # (B, T) int64
    types: np.ndarray | None = None  # (B, T) int64
    gaps: np.ndarray | None = None  # (B, T) int64
    context: np.ndarray | None = None  # (B, T, 5) int64

    def _map(self, f) -> "Windows":
        return Windows(f(self.items), *(None if a is None else f(a) for a in (self.types, self.gaps, self.context)))

    def select(self, rows: np.ndarray) -> "Windows":
        return self._map(lambda a: a[rows])

    def columns(self, cols: slice) -> "Windows":
        return self._map(lambda a: a[:, cols])

    def trim(self) -> "Windows":
        """Drop leading columns that are padding in every row (see trim_padding)."""
        width = trim_padding(self.items).shape[1]
        return self.columns(slice(self.items.shape[1] - width, None))


def build_windows(
    seqs: Sequences,
    length: int,
    rng: np.random.Generator | None = None,
    event_types: bool = False,
    time_gap_buckets: int = 0,
    holidays: tuple[str, ...] | None = None,
    at: np.ndarray | None = None,
) -> Windows:
    """Windows of ``length`` events. ``holidays`` not None adds the time context; the
    query time of each cell is the next cell's timestamp, and of a row's last cell
    ``at[row]`` (the moment of the request; NaN or no ``at``: unknown). In training the
    last cell is the target, so its query time is never read."""
    pos = window_positions(seqs, length, rng)
    types = gaps = context = None
    if event_types:
        if seqs.event_types is None:
            raise ValueError("event-type inputs need event types in the sequences")
        types = gather(seqs.event_types.astype(np.int64) + 1, pos)
    if time_gap_buckets:
        if seqs.timestamps is None or np.isnan(seqs.timestamps).any():
            raise ValueError("time-gap inputs need a timestamp on every event; this data has none")
        gaps = gap_buckets(gather(seqs.timestamps, pos, fill=np.nan), time_gap_buckets)
    if holidays is not None:
        stamps = np.zeros(0) if seqs.timestamps is None and seqs.n_interactions == 0 else seqs.timestamps
        if stamps is None or np.isnan(stamps).any():
            raise ValueError("time context needs a timestamp on every event; this data has none")
        times = gather(stamps, pos, fill=np.nan)  # (B, T); empty histories: all padding
        last = np.full((len(times), 1), np.nan) if at is None else np.asarray(at, dtype=np.float64).reshape(-1, 1)
        query = np.concatenate([times[:, 1:], last], axis=1)
        context = calendar_context(times, query, tuple(holidays))
    return Windows(gather(seqs.items, pos).astype(np.int64, copy=False), types, gaps, context)
