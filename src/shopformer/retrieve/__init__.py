"""Retrieval: exact top-K and vector indexes (exact reference, FAISS) with catalog filters.

Importing this package does not import FAISS; it is loaded when a FaissIndex is built
or loaded.
"""

from shopformer.retrieve.exact_index import ExactIndex, ExactIndexConfig
from shopformer.retrieve.faiss_index import FaissIndex, FaissIndexConfig
from shopformer.retrieve.filters import CatalogFilter, catalog_mask, exclude_mask
from shopformer.retrieve.index import Index, load_index

__all__ = [
    "CatalogFilter",
    "ExactIndex",
    "ExactIndexConfig",
    "FaissIndex",
    "FaissIndexConfig",
    "Index",
    "catalog_mask",
    "exclude_mask",
    "load_index",
]
