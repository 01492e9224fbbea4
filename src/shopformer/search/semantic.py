"""Semantic ranking: product text vectors in the engine's vector index, queries encoded
by the same sentence encoder.

The product vectors are the ones recommendations fuse (all-MiniLM-L6-v2 over
:func:`shopformer.features.text.product_text`, unit length, cached by text hash), held
in a :class:`~shopformer.retrieve.faiss_index.FaissIndex` (flat below 20k products,
HNSW from there) whose rows are the search catalog's rows, so a filter is the catalog's row
mask. A query's score is the cosine between its vector and the product's. Query vectors
are kept in a small LRU cache: shops' query streams repeat.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shopformer.features.text import TextEncoder, TextEncoderConfig
from shopformer.retrieve.faiss_index import FaissIndex, FaissIndexConfig

from .query_encoder import QueryEncoder, quantization


def track(items: list, progress: bool):  # noqa: ANN201 - an iterable over items
    if not progress:
        return items
    from rich.progress import track as rich_track

    return rich_track(items, "query vectors")


@dataclass(frozen=True)
class SemanticConfig:
    """encoder: the sentence encoder (model, text-vector cache folder).
    index: the vector index (kind "auto": exact below 20k products, HNSW from there).
    query_cache: query vectors kept (LRU; 0 = none).
    onnx: single queries (and a few products) through ONNX Runtime when it reproduces the
        model (see .query_encoder); PyTorch otherwise."""

    encoder: TextEncoderConfig = TextEncoderConfig()
    #: HNSW from 20k products: on Home Depot's 54,667 a query takes 0.6 ms against 5 ms for
    #: exact search, with 99.4% of the exact top 100 (benchmarks/search_quality.py measures
    #: quality through it)
    index: FaissIndexConfig = FaissIndexConfig(auto_threshold=20_000)
    query_cache: int = 4096
    #: encode single queries with ONNX Runtime (checked to give the model's numbers; see
    #: .query_encoder), else PyTorch
    onnx: bool = True
    #: queries through a quantized copy of the ONNX model (see .query_encoder):
    #: "blockwise" (the default: 8-bit weights and activations with a scale per block of 32;
    #: 1.8 against 3.3 ms a query, mean cosine 0.9996 with the exact vectors, and on Home
    #: Depot's cross-validated benchmark the same quality: re-ranked hybrid 0.4376 against
    #: 0.4375 NDCG@10, MiniLM alone 0.2813 against 0.2810, results/search_quality.md and
    #: search_quality_float_queries.md), "none" (the float export: the model's own numbers)
    #: or "dynamic" (int8 with one activation scale per matrix: 1.1 ms, but it cost the
    #: re-ranked hybrid 0.4360, results/search_quality_int8_queries.md); True means
    #: "dynamic", False "none". Products always get the exact numbers.
    quantize_queries: str = "blockwise"

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantize_queries", quantization(self.quantize_queries))


class SemanticIndex:
    """Product vectors by catalog row, and the query encoder."""

    def __init__(self, config: SemanticConfig = SemanticConfig(), encoder: TextEncoder | None = None) -> None:
        self.config = config
        self.encoder = encoder or TextEncoder(config.encoder)
        self.index = FaissIndex(config.index)
        self._built = False
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._query_encoder: QueryEncoder | None = None

    @property
    def dim(self) -> int:
        return self.index.dim if self._built else self.encoder.dim

    def encode_products(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(len(texts), D) product vectors: through the encoder's cache for catalogs, by
        the model directly for a few products (a catalog upsert: no cache file read)."""
        if len(texts) <= 64:
            if not texts:
                return np.zeros((0, self.dim), np.float32)
            return np.concatenate([self.query_encoder.encode_exact(t) for t in texts])
        return self.encoder.encode(texts, progress=progress)

    def set_rows(self, rows: np.ndarray, vectors: np.ndarray, n_rows: int) -> None:
        """Place ``vectors`` at ``rows`` (new rows must be the next ones, as the catalog
        appends them); ``n_rows`` is the catalog's row count including padding."""
        rows = np.asarray(rows, dtype=np.int64)
        with self._lock:
            if not self._built:
                table = np.zeros((n_rows, vectors.shape[1]), dtype=np.float32)
                table[rows] = vectors
                self.index.build(table)
                self._built = True
                return
            have = len(self.index) + 1
            if n_rows > have:  # rows the catalog added without text (none so far): zero vectors
                gap = np.setdiff1d(np.arange(have, n_rows), rows)
                if len(gap):
                    rows = np.concatenate([rows, gap])
                    vectors = np.concatenate([vectors, np.zeros((len(gap), vectors.shape[1]), np.float32)])
            self.index.add_or_update(rows, vectors)

    def query_vector(self, text: str) -> np.ndarray:
        """(1, D) unit vector of a query (cached)."""
        with self._lock:
            hit = self._queries.get(text)
            if hit is not None:
                self._queries.move_to_end(text)
                return hit
        vec = self._encode_one(text)
        if self.config.query_cache:
            self._remember([text], vec)
        return vec

    def _remember(self, texts: list[str], vectors: np.ndarray) -> None:
        """Put query vectors in the LRU cache, the oldest leaving beyond ``query_cache``."""
        with self._lock:
            for t, v in zip(texts, vectors):
                self._queries[t] = v[None, :]
            while len(self._queries) > self.config.query_cache:
                self._queries.popitem(last=False)

    @property
    def query_encoder(self) -> QueryEncoder:
        """The single-query encoder (ONNX Runtime when it reproduces the model, else
        PyTorch), made on first use."""
        if self._query_encoder is None:
            with self._lock:
                if self._query_encoder is None:
                    self._query_encoder = QueryEncoder(self.encoder.model, self.config.onnx,
                                                       self.config.quantize_queries)
        return self._query_encoder

    def _encode_one(self, text: str) -> np.ndarray:
        return self.query_encoder.encode(text)

    def query_vectors(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(len(texts), D) query vectors, kept in the cache (for offline evaluation over
        many queries; raise ``query_cache`` to keep them all): encoded as served (the
        quantized model, one by one) when queries are quantized, else in batches."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._queries]
        if missing and self.query_encoder.backend.startswith("onnxruntime-int8"):
            self._remember(missing, np.concatenate([self._encode_one(t) for t in track(missing, progress)]))
        elif missing:
            vecs = self.encoder.model.encode(missing, batch_size=self.config.encoder.batch_size,
                                             normalize_embeddings=True, convert_to_numpy=True,
                                             show_progress_bar=progress).astype(np.float32)
            self._remember(missing, vecs)
        return np.concatenate([self.query_vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosines) of the ``k`` nearest allowed rows (None: every row), best first."""
        if not self._built or (allowed is not None and not allowed.any()):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        idx, scores = self.index.search(query, k, allowed=allowed)
        keep = np.isfinite(scores[0])
        return idx[0][keep], scores[0][keep]

    def scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Cosines of ``query`` with the given rows (for candidates the other engine found)."""
        if not self._built or len(rows) == 0:
            return np.zeros(len(rows), np.float32)
        return (self.index.vectors()[np.asarray(rows, dtype=np.int64)] @ query[0]).astype(np.float32)

    def save(self, folder: Path) -> None:
        self.index.save(Path(folder))

    @classmethod
    def load(cls, folder: Path, config: SemanticConfig = SemanticConfig()) -> "SemanticIndex":
        out = cls(config)
        out.index = FaissIndex.load(Path(folder))
        out._built = True
        return out
