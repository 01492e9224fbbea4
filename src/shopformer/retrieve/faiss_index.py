"""FaissIndex: inner-product search with FAISS (``faiss-cpu``), flat, HNSW or IVF.

* ``flat`` (``IndexFlatIP``) is exact; ``auto`` uses it below ``auto_threshold`` items.
* ``hnsw`` (``IndexHNSWFlat``, inner-product metric) is the default above that size.
* ``ivf`` (``IndexIVFFlat``, inner-product metric, ``nlist`` k-means lists, ``nprobe``
  of them searched).
* ``ivfpq`` (``IndexIVFPQ``): the same lists with product-quantized codes (``pq_m``
  sub-vectors of ``pq_bits`` bits: 32 bytes per item at the defaults for 64 dimensions
  instead of 256), for catalogs of tens of millions; it fetches ``refine`` times ``k``
  candidates by their approximate scores and keeps the ``k`` best by exact scores.

Filters never shorten a list:

* The union of what any query may see (a per-catalog mask, or the union of per-query
  masks) goes to FAISS as an ``IDSelectorBitmap``, so FAISS only returns those items.
  When at most ``exact_below`` items are allowed, the search is exact over just them
  (cheaper than a graph walk, and what FAISS advises for very selective filters).
* Per-query masks (e.g. "not bought by this user") over-fetch: a query whose mask
  removes ``d`` items from that union asks for ``k + d`` (rounded up to a power of two);
  a row still short (possible with HNSW/IVF) asks again with twice as many results and
  twice the search effort (``efSearch`` / ``nprobe``), and after ``max_retries`` such
  rounds, or once it has asked for every allowed item, it is answered exactly.

Returned scores are recomputed from the stored vectors and each row is ordered by
(score desc, item index asc), the same order as :class:`ExactIndex`, so ``flat`` returns
exactly what the exact index returns.

Updates: FAISS's graph and IVF indexes cannot change a vector in place, so
``add_or_update`` appends a new FAISS entry for each item and marks the item's old entry
stale (stale entries are filtered out by the selector); once stale entries exceed
``max_stale_fraction`` of the items, the index is rebuilt from the stored vectors (and an
``auto`` index picks its kind again for the new size). The index keeps the float32 item
table for this, for rescoring and for exact fallbacks: memory is about twice the
table's (plus the HNSW graph). ``build(vectors, copy=False)`` keeps the caller's array
itself instead of a copy (when it is already C-contiguous float32), saving one table's
worth: the caller must not change it afterwards (``add_or_update`` copies it first).

faiss is imported only when an index is built or loaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Self

import numpy as np

from shopformer.retrieve.exact_index import exact_search
from shopformer.retrieve.index import (
    ItemTable,
    allowed_counts,
    as_matrix,
    check_allowed,
    check_k,
    check_table,
    check_updates,
    read_meta,
    write_meta,
)

KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("FaissIndex needs FAISS: pip install faiss-cpu") from e
    return faiss


@dataclass(frozen=True)
class FaissIndexConfig:
    #: "flat" (exact), "hnsw", "ivf", or "auto": flat below ``auto_threshold`` items, else HNSW
    kind: Literal["auto", "flat", "hnsw", "ivf", "ivfpq"] = "auto"
    #: HNSW links per node
    hnsw_m: int = 32
    #: HNSW search breadth (raised to k when k is larger)
    ef_search: int = 128
    #: HNSW construction breadth
    ef_construction: int = 200
    #: IVF lists; None = 4 * sqrt(items), at most items / 39
    nlist: int | None = None
    #: IVF lists searched per query
    nprobe: int = 16
    #: items from which "auto" switches from flat to HNSW
    auto_threshold: int = 100_000
    #: filtered searches that allow at most this many items are answered exactly
    exact_below: int = 2048
    #: rounds of "ask for twice as many" before a short filtered row is answered exactly
    max_retries: int = 3
    #: rebuild once stale (updated) entries exceed this fraction of the items
    max_stale_fraction: float = 0.25
    #: most vectors used to train IVF centroids
    ivf_train_max: int = 200_000
    #: ivfpq: sub-vectors per item (None: half the dimensions, rounded down to a divisor;
    #: a quarter lost a third of recall@10 on clustered vectors even with refine 4)
    pq_m: int | None = None
    #: ivfpq: bits per sub-vector code
    pq_bits: int = 8
    #: ivfpq: candidates fetched per wanted result, re-ranked by exact scores
    refine: int = 8

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("hnsw_m", "ef_search", "ef_construction", "nprobe", "ivf_train_max", "pq_bits", "refine"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.nlist is not None and self.nlist < 1:
            raise ValueError("nlist must be >= 1 or None")
        if self.exact_below < 0 or self.max_retries < 0 or self.auto_threshold < 0:
            raise ValueError("exact_below, max_retries and auto_threshold must be >= 0")
        if not 0 <= self.max_stale_fraction:
            raise ValueError("max_stale_fraction must be >= 0")


def _next_pow2(x: np.ndarray) -> np.ndarray:
    return (1 << np.ceil(np.log2(np.maximum(x, 1))).astype(np.int64)).astype(np.int64)


class FaissIndex(ItemTable):
    """Inner-product FAISS index over an (N + 1, D) item table (row 0 = padding)."""

    def __init__(self, config: FaissIndexConfig = FaissIndexConfig()):
        self.config = config
        #: the kind actually built ("flat", "hnsw" or "ivf"); None before build
        self.kind: str | None = None
        self._table: np.ndarray | None = None
        self._index = None
        self._item_of = np.zeros(0, dtype=np.int64)  # FAISS entry -> item index
        self._live = np.zeros(0, dtype=bool)  # FAISS entry is the item's current vector
        self._node_of = np.zeros(1, dtype=np.int64)  # item index -> FAISS entry (-1 = none)
        self._owns_table = True  # False while _table is the caller's array (build(copy=False))

    # -- building ---------------------------------------------------------------------
    @property
    def n_stale(self) -> int:
        """FAISS entries superseded by an update, awaiting the next rebuild."""
        return int((~self._live).sum())

    def build(self, vectors: np.ndarray, copy: bool = True) -> Self:
        """Index ``vectors`` (N + 1, D). With ``copy=False`` the index keeps ``vectors``
        itself when it is C-contiguous float32 (no second table in memory); the caller
        must not modify it afterwards."""
        table = check_table(vectors)
        self._table = table.copy() if copy else table
        self._owns_table = copy
        self._rebuild()
        return self

    def vectors(self) -> np.ndarray:
        """The (N + 1, D) table searched (a read-only view)."""
        view = self._require().view()
        view.flags.writeable = False
        return view

    def _resolve_kind(self, n_items: int) -> str:
        kind = self.config.kind
        if kind == "auto":
            kind = "flat" if n_items < self.config.auto_threshold else "hnsw"
        if n_items == 0:
            kind = "flat"  # nothing to train a graph or lists on
        return kind

    def _nlist(self, n_items: int) -> int:
        # default: 4 sqrt(N), but at least 39 training points per list (k-means needs them)
        nlist = self.config.nlist or min(int(round(4 * math.sqrt(n_items))), n_items // 39)
        return max(1, min(nlist, n_items))

    def _pq_m(self, d: int) -> int:
        want = self.config.pq_m or max(1, d // 2)
        return max(m for m in range(1, min(want, d) + 1) if d % m == 0)  # FAISS needs a divisor of d

    def _rebuild(self) -> None:
        faiss = _faiss()
        c = self.config
        table = self._require()
        items = table[1:]
        n, d = items.shape
        self.kind = self._resolve_kind(n)
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, c.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = c.ef_construction
        else:
            quantizer = faiss.IndexFlatIP(d)
            if self.kind == "ivfpq":
                # each sub-quantizer learns 2**bits centroids: fewer bits for a tiny catalog
                bits = min(c.pq_bits, max(1, int(math.log2(max(n, 2)))))
                index = faiss.IndexIVFPQ(quantizer, d, self._nlist(n), self._pq_m(d), bits, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFFlat(quantizer, d, self._nlist(n), faiss.METRIC_INNER_PRODUCT)
            index.own_fields = True
            quantizer.this.disown()  # the IVF index owns (and frees) its quantizer
            train = items
            if n > c.ivf_train_max:
                rng = np.random.default_rng(0)
                train = items[np.sort(rng.choice(n, c.ivf_train_max, replace=False))]
            index.train(train)
        if n:
            index.add(items)
        self._index = index
        self._item_of = np.arange(1, n + 1, dtype=np.int64)
        self._live = np.ones(n, dtype=bool)
        self._node_of = np.arange(-1, n, dtype=np.int64)

    def add_or_update(self, item_ids: np.ndarray, vectors: np.ndarray) -> None:
        table = self._require()
        ids, vecs = check_updates(item_ids, vectors, len(table), table.shape[1])
        if not len(ids):
            return
        n_new = int((ids >= len(table)).sum())
        if n_new:
            table = np.concatenate([table, np.zeros((n_new, table.shape[1]), np.float32)])
            self._node_of = np.concatenate([self._node_of, np.full(n_new, -1, dtype=np.int64)])
        elif not self._owns_table:
            table = table.copy()  # never write into the caller's array
        table[ids] = vecs
        self._table = table
        self._owns_table = True
        old = self._node_of[ids]
        self._live[old[old >= 0]] = False
        start = self._index.ntotal
        self._index.add(vecs)
        self._item_of = np.concatenate([self._item_of, ids])
        self._live = np.concatenate([self._live, np.ones(len(ids), dtype=bool)])
        self._node_of[ids] = np.arange(start, start + len(ids))
        if self.n_stale > self.config.max_stale_fraction * max(len(self), 1):
            self._rebuild()

    # -- search -----------------------------------------------------------------------
    def _selector(self, union: np.ndarray | None):
        """(selector, bitmap) over FAISS entries, or (None, None) when nothing is excluded.

        The bitmap must stay alive while FAISS uses the selector.
        """
        has_stale = not self._live.all()
        if union is None and not has_stale:
            return None, None
        entries = self._live.copy()
        if union is not None:
            entries &= union[self._item_of]
        bitmap = np.packbits(entries, bitorder="little")
        faiss = _faiss()
        return faiss.IDSelectorBitmap(len(entries), faiss.swig_ptr(bitmap)), bitmap

    def _ann(self, q: np.ndarray, k: int, selector, attempt: int) -> np.ndarray:
        """(b, k) item indexes from FAISS (0 where it found fewer than k)."""
        faiss = _faiss()
        c = self.config
        extra = {} if selector is None else {"sel": selector}
        boost = 1 << attempt
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(c.ef_search * boost, k), **extra)
        elif self.kind in ("ivf", "ivfpq"):
            params = faiss.SearchParametersIVF(nprobe=min(c.nprobe * boost, self._index.nlist), **extra)
        else:
            params = faiss.SearchParameters(**extra) if extra else None
        if self.kind == "ivfpq":  # approximate scores: fetch more, the exact re-rank keeps the best
            k = min(k * c.refine, max(1, self._index.ntotal))
        _, entries = self._index.search(q, k, params=params)
        return np.where(entries >= 0, self._item_of[np.maximum(entries, 0)], 0)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        table = self._require()
        c = self.config
        k = check_k(k)
        q = as_matrix(queries, "queries", table.shape[1])
        n_queries, n_items = len(q), len(table) - 1
        allowed = check_allowed(allowed, len(table), n_queries)
        out_idx = np.zeros((n_queries, k), dtype=np.int64)
        out_scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
        if n_queries == 0 or n_items == 0:
            return out_idx, out_scores

        union = None if allowed is None else (allowed if allowed.ndim == 1 else allowed.any(axis=0))
        n_union = n_items if union is None else int(union.sum())
        n_row = allowed_counts(allowed, n_items, n_queries)
        need = np.minimum(k, n_row)
        if n_union == 0:
            return out_idx, out_scores
        if union is not None and n_union <= c.exact_below:
            return exact_search(table, q, k, allowed, ids=np.flatnonzero(union), max_batch_scores=1 << 24)

        selector, _bitmap = self._selector(union)
        # Ask for k plus as many as this row's mask removes from the union, so an exact
        # search cannot come back short; ANN rows that still do ask again, wider.
        deficit = n_union - n_row
        ask = np.minimum(np.where(deficit > 0, _next_pow2(k + deficit), k), n_union)
        attempt = np.zeros(n_queries, dtype=np.int64)
        pending = np.flatnonzero(need > 0)
        fallback: list[np.ndarray] = []
        while len(pending):
            still: list[np.ndarray] = []
            groups = np.unique(np.stack([ask[pending], attempt[pending]], axis=1), axis=0)
            for kval, att in groups:
                rows = pending[(ask[pending] == kval) & (attempt[pending] == att)]
                found = self._ann(q[rows], int(kval), selector, int(att))
                ok = found > 0
                if allowed is not None:
                    ok &= allowed[found] if allowed.ndim == 1 else allowed[rows[:, None], found]
                done = ok.sum(axis=1) >= need[rows]
                self._place(q, rows[done], found[done], ok[done], need, out_idx, out_scores)
                short = rows[~done]
                exhausted = (ask[short] >= n_union) | (attempt[short] >= c.max_retries)
                fallback.append(short[exhausted])
                retry = short[~exhausted]
                ask[retry] = np.minimum(ask[retry] * 2, n_union)
                attempt[retry] += 1
                still.append(retry)
            pending = np.concatenate(still) if still else np.zeros(0, dtype=np.int64)
        rows = np.concatenate(fallback) if fallback else np.zeros(0, dtype=np.int64)
        if len(rows):
            sub = None if allowed is None else (allowed if allowed.ndim == 1 else allowed[rows])
            ids = None if union is None else np.flatnonzero(union)
            out_idx[rows], out_scores[rows] = exact_search(table, q[rows], k, sub, ids=ids)
        return out_idx, out_scores

    def _place(self, q, rows, found, ok, need, out_idx, out_scores) -> None:
        """Write each row's first ``need`` allowed items, rescored and ordered like exact."""
        if not len(rows):
            return
        k = out_idx.shape[1]
        # every allowed candidate rescored exactly, then the best need[row] of them kept (for
        # flat, HNSW and IVF, whose FAISS order is the exact order, these are the first
        # need[row] allowed in FAISS order; ivfpq's approximate order is corrected here)
        idx = np.where(ok, found, 0)
        scores = np.einsum("bd,bkd->bk", q[rows], self._table[idx]).astype(np.float32)
        scores[~ok] = -np.inf
        # (score desc, index asc); padding (0, -inf) sorts last.
        resort = np.lexsort((np.where(ok, idx, np.iinfo(np.int64).max), -scores), axis=-1)
        idx = np.take_along_axis(idx, resort, axis=1)[:, :k]
        scores = np.take_along_axis(scores, resort, axis=1)[:, :k]
        valid = np.arange(idx.shape[1])[None, :] < need[rows][:, None]
        idx[~valid] = 0
        scores[~valid] = -np.inf
        out_idx[rows, : idx.shape[1]] = idx  # columns past it stay padding (0, -inf)
        out_scores[rows, : idx.shape[1]] = scores

    # -- persistence ------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        faiss = _faiss()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self._require())
        np.savez(folder / "entries.npz", item_of=self._item_of, live=self._live)
        faiss.write_index(self._index, str(folder / "faiss.index"))
        write_meta(folder, "faiss", asdict(self.config), kind=self.kind)

    @classmethod
    def load(cls, folder: Path, mmap: bool = False) -> Self:
        """``mmap``: map the item table from disk instead of reading it into memory (the
        pages the searches touch are read on demand and shared by every process that maps
        the same file); an update then copies it first."""
        faiss = _faiss()
        folder = Path(folder)
        meta = read_meta(folder)
        if meta["type"] != "faiss":
            raise ValueError(f"{folder} holds a {meta['type']!r} index, not a faiss one")
        index = cls(FaissIndexConfig(**meta["config"]))
        index.kind = meta["kind"]
        index._table = np.load(folder / "vectors.npy", mmap_mode="r" if mmap else None)
        index._owns_table = not mmap
        entries = np.load(folder / "entries.npz")
        index._item_of, index._live = entries["item_of"], entries["live"]
        index._node_of = np.full(len(index._table), -1, dtype=np.int64)
        index._node_of[index._item_of[index._live]] = np.flatnonzero(index._live)
        index._index = faiss.read_index(str(folder / "faiss.index"))
        if index._index.ntotal != len(index._item_of):
            raise ValueError(f"{folder}: faiss.index has {index._index.ntotal} entries, expected {len(index._item_of)}")
        return index
