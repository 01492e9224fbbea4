"""Sequence augmentations for contrastive self-supervision (CL4SRec, Xie et al. 2022):
item crop, item mask, item reorder, plus DuoRec's model-level "dropout" view (Qiu et al.
2022: the sequence unchanged, made different by the network's own dropout).

Each works on left-padded (B, T) windows (0 = padding) with NumPy and no per-row loops,
and returns windows of the same width, still left-padded, with at least one real item in
every row that had one. Every augmentation is drawn from the caller's generator, so a
seeded run repeats exactly.
"""

from __future__ import annotations

import numpy as np

from shopformer.train.batches import Windows

#: the augmentations a view may draw from; "dropout" leaves the sequence as it is
AUGMENTATIONS = ("crop", "mask", "reorder", "dropout")


def _lengths(items: np.ndarray) -> np.ndarray:
    return (items > 0).sum(axis=1)


def crop_positions(items: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """(B, T) source columns of a random contiguous ``rate`` share of each row (at least
    one item), moved to the right edge; -1 marks padding."""
    B, T = items.shape
    n = _lengths(items)
    keep = np.where(n > 0, np.maximum(1, np.floor(rate * n).astype(np.int64)), 0)  # (B,)
    start = (rng.random(B) * (n - keep + 1)).astype(np.int64)  # offset in the row's real part
    shift = n - start - keep  # the kept block moves this many columns right
    col = np.arange(T)[None, :]
    src = col - shift[:, None]
    return np.where(col >= T - keep[:, None], src, -1)


def mask_cells(items: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """(B, T) bool: floor(``rate`` x length) randomly chosen real items of each row."""
    n = _lengths(items)
    k = np.floor(rate * n).astype(np.int64)
    keys = np.where(items > 0, rng.random(items.shape), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    return rank < k[:, None]


def reorder_positions(items: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """(B, T) source columns that shuffle a random contiguous ``rate`` share of each row."""
    B, T = items.shape
    n = _lengths(items)
    span = np.floor(rate * n).astype(np.int64)
    start = T - n + (rng.random(B) * (n - span + 1)).astype(np.int64)  # first shuffled column
    col = np.arange(T)[None, :].astype(np.float64)
    inside = (col >= start[:, None]) & (col < (start + span)[:, None])
    # sort keys: outside the span a column keeps its own index; inside it a random key in
    # [start - 0.5, start + span - 0.5), so the span is permuted and stays in place
    keys = np.where(inside, start[:, None] - 0.5 + rng.random((B, T)) * span[:, None], col)
    return np.argsort(keys, axis=1, kind="stable")


def augment(windows: Windows, methods: tuple[str, ...], rates: dict[str, float], mask_token: int,
            rng: np.random.Generator) -> Windows:
    """One augmented view: each row draws one of ``methods`` uniformly. Side inputs
    (types, gaps, time context) follow their items; a masked item shows no type or gap."""
    unknown = set(methods) - set(AUGMENTATIONS)
    if unknown or not methods:
        raise ValueError(f"augmentations {sorted(unknown) or '()'}: choose from {', '.join(AUGMENTATIONS)}")
    items = windows.items
    B, T = items.shape
    choice = rng.integers(len(methods), size=B)
    pos = np.broadcast_to(np.arange(T), (B, T)).copy()  # identity: "dropout" and "mask"
    masked = np.zeros((B, T), dtype=bool)
    for k, name in enumerate(methods):
        rows = choice == k
        if not rows.any() or name == "dropout":
            continue
        if name == "crop":
            pos[rows] = crop_positions(items[rows], rates["crop"], rng)
        elif name == "reorder":
            pos[rows] = reorder_positions(items[rows], rates["reorder"], rng)
        else:
            masked[rows] = mask_cells(items[rows], rates["mask"], rng)
    pos = np.where(items[np.arange(B)[:, None], np.maximum(pos, 0)] > 0, pos, -1)  # padding stays padding
    rows = np.arange(B)[:, None]

    def take(a: np.ndarray) -> np.ndarray:
        out = a[rows, np.maximum(pos, 0)]
        out[pos < 0] = 0
        return out

    out = Windows(take(items), *(None if a is None else take(a) for a in (windows.types, windows.gaps)),
                  None if windows.context is None else take(windows.context))
    out.items[masked] = mask_token
    for side in (out.types, out.gaps):
        if side is not None:
            side[masked] = 0
    return out
