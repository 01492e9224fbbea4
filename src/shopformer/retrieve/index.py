"""The vector index interface every retrieval backend implements, and its shared checks.

An index holds one row per catalog item, addressed by the dense item index of the
vocabulary: row ``i`` is item ``i`` and row 0 is padding, which is never returned.
``search`` returns, for each query, the ``k`` items of highest inner product, best
first, among the items a filter allows. A filter is a boolean mask over the rows:
``(N + 1,)`` for the whole batch (e.g. "in stock, in this category", see
:mod:`shopformer.retrieve.filters`) or ``(B, N + 1)`` with one row per query (e.g. "not
already bought by this user"). A result is shorter than ``k`` only when fewer than
``k`` items are allowed; the missing places hold item 0 with score ``-inf``.

Two backends: :class:`~shopformer.retrieve.exact_index.ExactIndex` (brute force, the
reference) and :class:`~shopformer.retrieve.faiss_index.FaissIndex` (FAISS flat, HNSW or
IVF). :func:`load_index` reopens either from its folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np

#: file in an index folder naming its type and config
META_FILE = "index.json"


class ItemTable:
    """What both indexes share: the (N + 1, D) float32 item table they search."""

    _table: np.ndarray | None = None

    def _require(self) -> np.ndarray:
        if self._table is None:
            raise RuntimeError("index is empty: call build() first")
        return self._table

    @property
    def dim(self) -> int:
        return self._require().shape[1]

    def __len__(self) -> int:
        return 0 if self._table is None else len(self._table) - 1


@runtime_checkable
class Index(Protocol):
    #: the index's typed config (a frozen dataclass); saved with the index
    config: object

    def build(self, vectors: np.ndarray) -> Self:
        """Index ``vectors`` (N + 1, D) float32; row ``i`` is item ``i``, row 0 is padding."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) int64 item indexes and (B, k) float32 inner products, best first.

        ``allowed`` is None (every item), a (N + 1,) mask for all queries or a (B, N + 1)
        mask per query. Padding and disallowed items are never returned; a row is shorter
        than ``k`` only when fewer than ``k`` items are allowed, and is then padded with
        item 0 and score -inf.
        """
        ...

    def add_or_update(self, item_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of existing items and append new ones.

        New items must be the next indexes (N + 1, N + 2, ...), as a vocabulary that
        grows assigns them. They are searchable as soon as this returns.
        """
        ...

    def save(self, folder: Path) -> None:
        """Write the index (config, vectors, backend structures) into ``folder``."""
        ...

    @classmethod
    def load(cls, folder: Path) -> Self:
        ...

    def __len__(self) -> int:
        """Number of items (padding not counted)."""
        ...


def load_index(folder: str | Path) -> Index:
    """Reopen whichever index was saved in ``folder``."""
    folder = Path(folder)
    kind = read_meta(folder)["type"]
    if kind == "exact":
        from shopformer.retrieve.exact_index import ExactIndex

        return ExactIndex.load(folder)
    if kind == "faiss":
        from shopformer.retrieve.faiss_index import FaissIndex

        return FaissIndex.load(folder)
    raise ValueError(f"{folder / META_FILE}: unknown index type {kind!r}")


# -- helpers shared by the implementations ---------------------------------------------


def write_meta(folder: Path, index_type: str, config: dict, **extra) -> None:
    (folder / META_FILE).write_text(json.dumps({"type": index_type, "config": config, **extra}, indent=2))


def read_meta(folder: Path) -> dict:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no saved index in {folder} ({META_FILE} missing)")
    return json.loads(path.read_text())


def as_matrix(x, name: str, dim: int | None = None) -> np.ndarray:
    """C-contiguous float32 2-D array from a NumPy array or a (CPU) torch tensor."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{name} have dimension {a.shape[1]}, the index has {dim}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return a


def check_table(vectors) -> np.ndarray:
    table = as_matrix(vectors, "vectors")
    if len(table) < 1:
        raise ValueError("vectors need at least the padding row (row 0)")
    return table


def check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_allowed(allowed, n_rows: int, n_queries: int) -> np.ndarray | None:
    """Validate a filter mask; return it as bool with padding (column 0) disallowed.

    The caller's array is never modified.
    """
    if allowed is None:
        return None
    a = np.asarray(allowed)
    if a.dtype != np.bool_:
        raise TypeError(f"allowed must be a boolean mask, got dtype {a.dtype}")
    if a.shape not in ((n_rows,), (n_queries, n_rows)):
        raise ValueError(f"allowed must have shape ({n_rows},) or ({n_queries}, {n_rows}), got {a.shape}")
    if a[..., 0].any():
        a = a.copy()
        a[..., 0] = False
    return a


def check_updates(item_ids, vectors, n_rows: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``add_or_update`` arguments against a table of ``n_rows`` rows.

    Returns (ids, vectors). Ids must be unique and >= 1; ids past the table must be
    exactly the next ones (n_rows, n_rows + 1, ...), in any order.
    """
    ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    vecs = as_matrix(vectors, "vectors", dim) if len(ids) else np.zeros((0, dim), np.float32)
    if len(vecs) != len(ids):
        raise ValueError(f"{len(ids)} item ids but {len(vecs)} vectors")
    if len(ids) == 0:
        return ids, vecs
    if ids.min() < 1:
        raise ValueError("item index 0 is padding and cannot be added or updated")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("item ids must be unique within one add_or_update call")
    new = np.sort(ids[ids >= n_rows])
    if len(new) and not np.array_equal(new, np.arange(n_rows, n_rows + len(new))):
        raise ValueError(
            f"new items must take the next indexes {n_rows}..{n_rows + len(new) - 1}, got {new.tolist()[:10]}"
        )
    return ids, vecs


def pad_results(idx: np.ndarray, scores: np.ndarray, n_valid: np.ndarray) -> None:
    """In place: positions at or past ``n_valid[row]`` become item 0 with score -inf."""
    tail = np.arange(idx.shape[1])[None, :] >= np.asarray(n_valid)[:, None]
    idx[tail] = 0
    scores[tail] = -np.inf


def allowed_counts(allowed: np.ndarray | None, n_items: int, n_queries: int) -> np.ndarray:
    """Number of allowed items per query (padding excluded)."""
    if allowed is None:
        return np.full(n_queries, n_items, dtype=np.int64)
    if allowed.ndim == 1:
        return np.full(n_queries, int(allowed.sum()), dtype=np.int64)
    return allowed.sum(axis=1).astype(np.int64)
