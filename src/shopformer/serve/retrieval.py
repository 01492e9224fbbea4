"""Vector retrieval for the served dot-product models (the Transformers).

A Transformer scores a history as one inner product between the user vector (the
encoder's last position) and the item table, and similar items by the cosine of two
item-table rows. :func:`build_vector_indexes` builds, at load time, one
:class:`~shopformer.retrieve.faiss_index.FaissIndex` (kind ``auto``: exact flat search
below its threshold, HNSW above) over the item table for recommendations and one over
the L2-normalized table for similar items (inner product of unit vectors = cosine, as
``SASRecRecommender.similar_items`` computes it).

Models that are not dot-product models (popular, itemknn, EASE) get no index and keep
dense scoring of the whole catalog.
"""

from __future__ import annotations

import logging
import os
import threading
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shopformer.retrieve.faiss_index import FaissIndex, FaissIndexConfig
from shopformer.retrieve.index import Index

log = logging.getLogger("shopformer.serve")


def is_vector_model(model: object) -> bool:
    """True when ``model`` exposes ``user_vectors(history)`` and ``module.item_table()``."""
    module = getattr(model, "module", None)
    return callable(getattr(model, "user_vectors", None)) and callable(getattr(module, "item_table", None))


@dataclass(frozen=True)
class VectorIndexes:
    """Both indexes of one served run; built once, never updated (safe to share
    between request threads)."""

    users: Index  # over the (N + 1, D) item table: user vector -> items
    similar: Index  # over the row-normalized item table: item vector -> items (cosine)
    kind: str  # the FAISS kind built: "flat", "hnsw" or "ivf"
    #: the (N + 1, D) row-normalized table the similar index searches (the same array
    #: it holds, not a copy): an item's own query vector for similar items
    unit: np.ndarray | None = None
    #: loaded from the run folder's prebuilt indexes (``shopformer index``), not built
    prebuilt: bool = False


#: where ``shopformer index`` writes a run's prebuilt indexes (inside the run folder)
INDEX_DIR = "index"


def _all_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


_query_threads = threading.local()


def limit_faiss_threads() -> None:
    """One OpenMP thread for FAISS (and one intra-op thread for torch) in the serving
    process: requests are already served in parallel by the thread pool, and FAISS's
    own threading makes small searches under load much slower; one thread suits
    encoding one short history per request, too.

    OpenMP's thread count is a per-thread setting: this sets it for the calling thread,
    and :func:`search_one` sets it once in every request thread (torch's is global)."""
    import faiss
    import torch

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    _query_threads.limited = True


def _tables(model: object) -> tuple[np.ndarray, np.ndarray]:
    """The model's (N + 1, D) item table and its row-normalized similarity table."""
    import torch

    with torch.no_grad():
        table = _item_table(model).detach().float().cpu()  # (N + 1, D), the model's own memory
        likeness = getattr(model, "similarity_table", None)  # without a new-item bias column
        unit = torch.nn.functional.normalize(likeness().detach().float().cpu() if callable(likeness) else table,
                                             dim=-1)  # exactly as similar_items
    return table.numpy(), unit.numpy()


def fingerprint(table: np.ndarray, unit: np.ndarray) -> str:
    """What a prebuilt index was built from (shapes and bytes of both tables): an index
    built for other weights is never served."""
    digest = hashlib.sha256()
    for a in (table, unit):
        a = np.ascontiguousarray(a, dtype=np.float32)
        digest.update(str(a.shape).encode())
        digest.update(a.data)
    return digest.hexdigest()


def save_vector_indexes(model: object, run_folder: Path, config: FaissIndexConfig = FaissIndexConfig()) -> VectorIndexes:
    """Build both indexes now (every CPU) and write them into ``run_folder/index`` with the
    fingerprint of the tables they index, so that a server loads them instead of building
    (:func:`build_vector_indexes` with the run folder)."""
    table, unit = _tables(model)
    t0 = time.perf_counter()
    indexes = _build(table, unit, config)
    seconds = time.perf_counter() - t0
    folder = Path(run_folder) / INDEX_DIR
    tmp = folder.with_name(INDEX_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a build that died half-way
    for name, index in (("users", indexes.users), ("similar", indexes.similar)):
        index.save(tmp / name)
    (tmp / "prebuilt.json").write_text(json.dumps({"fingerprint": fingerprint(table, unit), "kind": indexes.kind,
                                                   "items": len(indexes.users), "dim": indexes.users.dim,
                                                   "build_seconds": round(seconds, 2)}, indent=2))
    if folder.exists():  # swap the whole folder: a reader never sees half of each
        old = folder.with_name(INDEX_DIR + ".old")
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old)
    else:
        tmp.rename(folder)
    return indexes


def load_prebuilt(table: np.ndarray, unit: np.ndarray, run_folder: Path) -> VectorIndexes | None:
    """The run folder's prebuilt indexes, memory-mapped, when they were built from these
    tables (:func:`_tables`); None when there are none or they are stale (logged)."""
    folder = Path(run_folder) / INDEX_DIR
    meta_path = folder / "prebuilt.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("fingerprint") != fingerprint(table, unit):
        log.warning("%s was built for other weights (run retrained since?): building the indexes instead; "
                    "run `shopformer index --run %s` again", folder, run_folder)
        return None
    users = FaissIndex.load(folder / "users", mmap=True)
    similar = FaissIndex.load(folder / "similar", mmap=True)
    limit_faiss_threads()
    log.info("loaded prebuilt %s vector indexes over %d items from %s", users.kind, len(users), folder)
    return VectorIndexes(users=users, similar=similar, kind=str(users.kind), unit=similar.vectors(), prebuilt=True)


def build_vector_indexes(model: object, config: FaissIndexConfig = FaissIndexConfig(),
                         run_folder: Path | None = None) -> VectorIndexes:
    """Build the two indexes over the model's item table (``module.item_table()``) with
    every CPU (HNSW construction is parallel), then limit threads for query time. With
    ``run_folder``, its prebuilt indexes are loaded instead when they match the model.

    Memory: the users index keeps the model's own item table (no copy when it is a
    float32 CPU tensor) and the similar index the normalized table it is built from;
    FAISS holds one copy of each."""
    table, unit = _tables(model)  # once: the prebuilt check and a build both read them
    if run_folder is not None:
        found = load_prebuilt(table, unit, run_folder)
        if found is not None:
            return found
    return _build(table, unit, config)


def _build(table: np.ndarray, unit: np.ndarray, config: FaissIndexConfig) -> VectorIndexes:
    import faiss

    faiss.omp_set_num_threads(_all_cpus())
    try:
        users = FaissIndex(config).build(table, copy=False)
        similar = FaissIndex(config).build(unit, copy=False)
    finally:
        limit_faiss_threads()
    log.info("built %s vector indexes over %d items (dim %d)", users.kind, len(users), users.dim)
    return VectorIndexes(users=users, similar=similar, kind=str(users.kind), unit=similar.vectors())


def _item_table(model: object):  # noqa: ANN202 - a torch.Tensor
    """The model's (N + 1, D) item table: its cached ``output_table()`` when it has one
    (a slice of the inference table it already holds, so the index shares that memory),
    else ``module.item_table()``."""
    output = getattr(model, "output_table", None)
    if callable(output):
        return output()
    return model.module.item_table()


def search_one(index: Index, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` for one (D,) or (1, D) query: (ids, scores) with the padding places
    (fewer than ``k`` items allowed) dropped."""
    if not getattr(_query_threads, "limited", False):
        limit_faiss_threads()  # once per request thread (OpenMP settings are per thread)
    idx, scores = index.search(np.asarray(query, dtype=np.float32).reshape(1, -1), k, allowed)
    keep = (idx[0] > 0) & np.isfinite(scores[0])
    return idx[0][keep], scores[0][keep]


def search_excluding(
    index: Index, query: np.ndarray, k: int, allowed: np.ndarray | None, exclude: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`search_one` that never returns the item indexes in ``exclude`` (a user's
    history, the query item itself), without a full-catalog mask: it asks for ``k``
    plus one per excluded item and drops them from the answer. Only if that list comes
    back short after dropping (fewer than ``k`` while more items are allowed: not
    possible for an index keeping its contract) does it search again with ``exclude``
    folded into the mask."""
    if exclude is None or not len(exclude):
        return search_one(index, query, k, allowed)
    drop = np.unique(np.asarray(exclude, dtype=np.int64))
    drop = drop[drop > 0]
    idx, scores = search_one(index, query, k + len(drop), allowed)
    keep = ~np.isin(idx, drop)
    n_kept = int(keep.sum())
    if n_kept < k:  # short: complete only if every allowed item but the dropped is there
        if allowed is None:
            n_left = len(index) - len(drop)
        else:
            n_left = int(allowed[1:].sum()) - int(allowed[drop].sum())
        if n_kept < n_left:
            mask = np.ones(len(index) + 1, dtype=bool) if allowed is None else allowed.copy()
            mask[drop] = False
            return search_one(index, query, k, mask)
    return idx[keep][:k], scores[keep][:k]


def user_vector(model: object, history) -> np.ndarray:  # noqa: ANN001 - a one-row Sequences
    """(1, D) float32 user vector of a one-row history."""
    v = model.user_vectors(history)
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float32).reshape(1, -1)
