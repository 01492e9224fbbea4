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
from dataclasses import dataclass

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


def build_vector_indexes(model: object, config: FaissIndexConfig = FaissIndexConfig()) -> VectorIndexes:
    """Build the two indexes over the model's item table (``module.item_table()``) with
    every CPU (HNSW construction is parallel), then limit threads for query time.

    Memory: the users index keeps the model's own item table (no copy when it is a
    float32 CPU tensor) and the similar index the normalized table it is built from;
    FAISS holds one copy of each."""
    import faiss
    import torch

    with torch.no_grad():
        table = _item_table(model).detach().float().cpu()  # (N + 1, D), the model's own memory
        likeness = getattr(model, "similarity_table", None)  # without a new-item bias column
        unit = torch.nn.functional.normalize(likeness().detach().float().cpu() if callable(likeness) else table,
                                             dim=-1)  # exactly as similar_items
    faiss.omp_set_num_threads(_all_cpus())
    try:
        users = FaissIndex(config).build(table.numpy(), copy=False)
        similar = FaissIndex(config).build(unit.numpy(), copy=False)
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
