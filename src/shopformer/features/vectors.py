"""Precomputed per-product vectors (image features, or any other embedding a shop
already has), read from a file and aligned with the catalog.

Accepted files:

- ``.npz`` with two arrays: ``item_id`` (P,) strings and ``vectors`` (P, V) numbers;
- ``.parquet`` with an ``item_id`` column and a ``vector`` column of equal-length lists.

Every row must have a distinct item id and finite values; a bad row is an error that
names it. Catalog products without a vector get a zero row (no image information).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def load_item_vectors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(item ids, (P, V) float32 vectors) from ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such vector file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("item_id", "vectors") if k not in f.files]
            if missing:
                raise ValueError(f"{path}: needs arrays item_id and vectors; missing {', '.join(missing)} "
                                 f"(found: {', '.join(f.files) or 'none'})")
            ids, raw = [str(i) for i in f["item_id"].tolist()], f["vectors"]
        if raw.ndim != 2 or len(raw) != len(ids):
            raise ValueError(f"{path}: vectors must be (len(item_id), V) = ({len(ids)}, V), got {raw.shape}")
        if not np.issubdtype(raw.dtype, np.number):
            raise ValueError(f"{path}: vectors must be numbers, got dtype {raw.dtype}")
        vectors = raw.astype(np.float32)
    elif path.suffix == ".parquet":
        df = pl.read_parquet(path)
        missing = [c for c in ("item_id", "vector") if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: needs columns item_id and vector; missing {', '.join(missing)} "
                             f"(found: {', '.join(df.columns)})")
        ids = df["item_id"].cast(pl.String).to_list()
        rows = df["vector"].to_list()
        widths = {len(r) if r is not None else 0 for r in rows}
        if len(widths) > 1 or 0 in widths:
            bad = next(i for i, r in enumerate(rows) if r is None or len(r) != len(rows[0] or []))
            raise ValueError(f"{path}: row {bad + 1} (item_id {ids[bad]!r}): every vector needs the same "
                             f"length ({len(rows[0] or [])}), got {0 if rows[bad] is None else len(rows[bad])}")
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    else:
        raise ValueError(f"{path}: unknown vector file type {path.suffix!r}; use .npz or .parquet")
    for r, item in enumerate(ids):
        if item in ("", "None"):
            raise ValueError(f"{path}: row {r + 1}: empty item_id")
    seen: dict[str, int] = {}
    for r, item in enumerate(ids):
        if item in seen:
            raise ValueError(f"{path}: row {r + 1}: item_id {item!r} repeats row {seen[item] + 1}")
        seen[item] = r
    bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad_rows):
        r = int(bad_rows[0])
        raise ValueError(f"{path}: row {r + 1} (item_id {ids[r]!r}): vector holds NaN or infinity "
                         f"({len(bad_rows)} such rows)")
    return ids, vectors


def align_vectors(product_ids: list[str], ids: list[str], vectors: np.ndarray) -> tuple[np.ndarray, int]:
    """(len(product_ids), V) rows parallel to the catalog (zeros where a product has no
    vector) and how many products got one."""
    where = {item: r for r, item in enumerate(ids)}
    out = np.zeros((len(product_ids), vectors.shape[1]), dtype=np.float32)
    rows = np.array([where.get(p, -1) for p in product_ids], dtype=np.int64)
    found = rows >= 0
    out[found] = vectors[rows[found]]
    return out, int(found.sum())
