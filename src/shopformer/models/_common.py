"""Helpers shared by the baseline models: config files, input checks, interaction matrices.

Conventions every baseline follows (see :mod:`shopformer.models.base`):

- item indexes run 1..n_items; column 0 of every score matrix is padding and holds
  ``-inf``, so it can never be recommended even by a caller that forgets to mask;
- history items equal to 0 (padding, or an id the vocabulary did not know) are ignored;
  an index above ``n_items`` is an error, not something to drop silently.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from shopformer.features.sequences import Sequences
from shopformer.retrieve.exact import top_k

CONFIG_FILE = "config.json"

C = TypeVar("C")


def write_config(folder: Path, name: str, config: Any, **extra: Any) -> None:
    """``config.json`` = ``{"model": name, <config fields>, <extra>}``."""
    payload = {"model": name, **dataclasses.asdict(config), **extra}
    (Path(folder) / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_config(folder: Path, name: str, config_cls: type[C]) -> tuple[C, dict[str, Any]]:
    """The config saved by :func:`write_config` and the extra (non-config) entries.

    Fails loudly when the folder holds another model; entries that are not config fields
    (e.g. ``n_items``) come back in the second value.
    """
    path = Path(folder) / CONFIG_FILE
    payload = json.loads(path.read_text())
    saved = payload.pop("model", None)
    if saved != name:
        raise ValueError(f"{path} holds a {saved!r} model, not {name!r}")
    fields = {f.name for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    config = config_cls(**{k: v for k, v in payload.items() if k in fields})
    return config, {k: v for k, v in payload.items() if k not in fields}


def check_items(seqs: Sequences, n_items: int, what: str) -> None:
    """Raise if ``seqs`` holds an item index outside 0..n_items."""
    if seqs.n_interactions:
        lo, hi = int(seqs.items.min()), int(seqs.items.max())
        if lo < 0 or hi > n_items:
            raise ValueError(
                f"{what} holds item index {hi if hi > n_items else lo}, outside 1..{n_items} "
                f"(n_items={n_items}; 0 is padding)"
            )


def interaction_matrix(seqs: Sequences, n_items: int, what: str = "history") -> sp.csr_matrix:
    """Binary (rows x n_items + 1) float32 matrix of ``seqs``; column 0 stays empty."""
    check_items(seqs, n_items, what)
    rows = np.repeat(np.arange(len(seqs), dtype=np.int64), seqs.lengths)
    keep = seqs.items > 0
    rows, cols = rows[keep], seqs.items[keep]
    m = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (rows, cols)),
        shape=(len(seqs), n_items + 1),
        dtype=np.float32,
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def popularity_fallback(item_users: np.ndarray) -> np.ndarray:
    """(n_items + 1,) float32 scores in [0, 1]: each item's user count over the largest."""
    top = max(float(item_users.max(initial=0)), 1.0)
    out = (item_users / top).astype(np.float32)
    out[0] = -np.inf
    return out


def finish_scores(scores: np.ndarray, empty: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Padding column to -inf and rows with no usable history to ``fallback``, in place."""
    scores[empty] = fallback
    scores[:, 0] = -np.inf
    return scores


def check_query(items: np.ndarray, n_items: int) -> np.ndarray:
    items = np.asarray(items, dtype=np.int64).reshape(-1)
    if items.size and (items.min() < 0 or items.max() > n_items):
        raise ValueError(f"query items must lie in 1..{n_items} (0 = unknown); got {items}")
    return items


def similar_top_k(scores: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of each row of ``scores`` (B, n_items + 1) without padding or the row's
    own query item. ``k`` is capped at the n_items - 1 real candidates."""
    scores[:, 0] = -np.inf
    scores[np.arange(len(items)), items] = -np.inf
    n_items = scores.shape[1] - 1
    k = max(0, min(k, n_items - 1))
    if k == 0 or len(items) == 0:
        return np.zeros((len(items), k), dtype=np.int64), np.zeros((len(items), k), np.float32)
    return top_k(scores, k)


def require_fitted(model: Any) -> None:
    if getattr(model, "n_items", None) is None:
        raise RuntimeError(f"{type(model).__name__} is not fitted: call fit() or load() first")
