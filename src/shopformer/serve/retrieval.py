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


def limit_faiss_threads() -> None:
    """One OpenMP thread for FAISS in the serving process: requests are already served
    in parallel by the thread pool, and FAISS's own threading makes small searches under
    load much slower. FAISS and torch share the OpenMP runtime here, so this also leaves
    torch one intra-op thread, which suits encoding one short history per request."""
    import faiss

    faiss.omp_set_num_threads(1)


def build_vector_indexes(model: object, config: FaissIndexConfig = FaissIndexConfig()) -> VectorIndexes:
    """Build the two indexes over ``model.module.item_table()``."""
    import torch

    with torch.no_grad():
        table = model.module.item_table().detach().float().cpu()  # (N + 1, D)
        unit = torch.nn.functional.normalize(table, dim=-1)  # exactly as similar_items
    limit_faiss_threads()
    users = FaissIndex(config).build(table.numpy())
    similar = FaissIndex(config).build(unit.numpy())
    log.info("built %s vector indexes over %d items (dim %d)", users.kind, len(users), users.dim)
    return VectorIndexes(users=users, similar=similar, kind=str(users.kind))


def search_one(index: Index, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` for one (D,) or (1, D) query: (ids, scores) with the padding places
    (fewer than ``k`` items allowed) dropped."""
    idx, scores = index.search(np.asarray(query, dtype=np.float32).reshape(1, -1), k, allowed)
    keep = (idx[0] > 0) & np.isfinite(scores[0])
    return idx[0][keep], scores[0][keep]


def user_vector(model: object, history) -> np.ndarray:  # noqa: ANN001 - a one-row Sequences
    """(1, D) float32 user vector of a one-row history."""
    v = model.user_vectors(history)
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float32).reshape(1, -1)
