"""Padded training windows cut from CSR sequences, built with NumPy (no per-row loops)."""

from __future__ import annotations

import numpy as np

from shopformer.features.sequences import Sequences


def windows(
    seqs: Sequences, length: int, rng: np.random.Generator | None = None, values: np.ndarray | None = None
) -> np.ndarray:
    """(U, length) left-padded windows, one per row of ``seqs``.

    Without ``rng`` each window is the row's last ``length`` elements. With ``rng``, rows
    longer than ``length`` get a window ending at a uniformly drawn position (so every
    part of a long history is trained on over the epochs). ``values`` (parallel to
    ``seqs.items``) picks what is gathered; default the items.
    """
    src = seqs.items if values is None else values
    lengths = seqs.lengths
    ends = lengths.copy()
    if rng is not None:
        long_rows = lengths > length
        # end drawn from [length, len]: the window always holds `length` real items
        ends[long_rows] = rng.integers(length, lengths[long_rows] + 1)
    starts = ends - length  # may be negative: those cells are padding
    cols = starts[:, None] + np.arange(length)[None, :]  # (U, length) offsets in the row
    valid = cols >= 0
    flat = seqs.offsets[:-1, None] + np.where(valid, cols, 0)
    out = np.where(valid, src[np.minimum(flat, len(src) - 1)] if len(src) else 0, 0)
    return out.astype(np.int64)


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
