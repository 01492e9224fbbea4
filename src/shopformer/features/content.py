"""Item content as model inputs: categorical tokens (brand, category path, tags, price
band) and dense vectors (text embeddings, image features), one row per item index.

Row ``i`` describes the item with vocabulary index ``i`` (row 0 is padding). A product
added after training gets its row from :meth:`ItemContent.rows_for` with the same token
vocabulary and price bands, so the model can place it from content alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from shopformer.features.vocab import Vocabulary

NONE_TOKEN = "<none>"


@dataclass(frozen=True)
class ContentConfig:
    """fields: product columns whose values become tokens (``field=value``); list columns
    (categories, tags) give one token per element.
    price_bands: quantile bands of price over the catalog (0 = no price token).
    min_products: values carried by fewer products are dropped (they cannot generalise).
    max_tokens: tokens kept per product.
    text_model: the sentence encoder the vectors came from ("" = no vectors, or vectors
        given by the caller, e.g. image features); new products are encoded with it.
    image_dim: width of the trailing block of the vectors that came precomputed from a
        file (image features: see ``features.vectors``); a new product's text vector is
        padded with zeros there."""

    fields: tuple[str, ...] = ("brand", "categories", "tags")
    price_bands: int = 5
    min_products: int = 2
    max_tokens: int = 16
    text_model: str = ""
    image_dim: int = 0


@dataclass
class ItemContent:
    tokens: np.ndarray  # (N + 1, A) int64 token ids, 0 = none; row 0 = padding
    token_names: list[str]  # token id -> "field=value"; [0] = NONE_TOKEN
    vectors: np.ndarray | None  # (N + 1, V) float32, zero row = no vector
    price_edges: np.ndarray  # inner quantile edges of price (empty = no price bands)
    config: ContentConfig = ContentConfig()

    @property
    def n_tokens(self) -> int:
        return len(self.token_names)

    @property
    def vector_dim(self) -> int:
        return 0 if self.vectors is None else int(self.vectors.shape[1])

    def rows_for(self, products: pl.DataFrame, vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Token rows (P, A) and vector rows (P, V) for products, e.g. new ones at serve
        time; values unseen in training map to no token."""
        lookup = {name: i for i, name in enumerate(self.token_names)}
        per_product = _product_tokens(products, self.config, self.price_edges)
        tokens = _pack([[lookup[t] for t in toks if t in lookup] for toks in per_product], self.tokens.shape[1])
        if self.vectors is None:
            return tokens, None
        if vectors is None:
            return tokens, np.zeros((products.height, self.vector_dim), dtype=np.float32)
        if self.config.image_dim and vectors.shape == (products.height, self.vector_dim - self.config.image_dim):
            vectors = np.hstack([vectors, np.zeros((products.height, self.config.image_dim), dtype=np.float32)])
        if vectors.shape != (products.height, self.vector_dim):
            raise ValueError(f"vectors must be ({products.height}, {self.vector_dim}), got {vectors.shape}")
        return tokens, vectors.astype(np.float32)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"tokens": self.tokens, "price_edges": self.price_edges}
        if self.vectors is not None:
            arrays["vectors"] = self.vectors
        np.savez(folder / "content.npz", **arrays)
        meta = {"token_names": self.token_names, "config": asdict(self.config)}
        (folder / "content.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: Path) -> "ItemContent":
        folder = Path(folder)
        meta = json.loads((folder / "content.json").read_text())
        cfg = meta["config"]
        config = ContentConfig(**{**cfg, "fields": tuple(cfg["fields"])})
        with np.load(folder / "content.npz") as f:
            vectors = f["vectors"] if "vectors" in f.files else None
            return cls(f["tokens"], meta["token_names"], vectors, f["price_edges"], config)


def _product_tokens(products: pl.DataFrame, config: ContentConfig, price_edges: np.ndarray) -> list[list[str]]:
    per_product: list[list[str]] = [[] for _ in range(products.height)]
    for field in config.fields:
        if field not in products.columns:
            continue
        for p, value in enumerate(products[field].to_list()):
            values = value if isinstance(value, list) else [value]
            per_product[p].extend(f"{field}={v}" for v in values if v not in (None, ""))
    if len(price_edges) and "price" in products.columns:
        for p, price in enumerate(products["price"].to_list()):
            if price is not None and np.isfinite(price):
                per_product[p].append(f"price_band={int(np.searchsorted(price_edges, price, side='right'))}")
    return per_product


def _pack(rows: list[list[int]], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        row = row[:width]
        out[r, : len(row)] = row
    return out


def build_content(
    products: pl.DataFrame,
    vocab: Vocabulary,
    config: ContentConfig = ContentConfig(),
    vectors: np.ndarray | None = None,
) -> ItemContent:
    """Content rows for every item of ``vocab`` from the catalog ``products``.

    ``vectors`` (optional) run parallel to ``products`` rows (text or image features).
    Items of the vocabulary missing from the catalog get empty rows.
    """
    index = vocab.encode(products["item_id"])  # 0 for products the model never saw
    price_edges = np.zeros(0)
    if config.price_bands > 1 and "price" in products.columns:
        prices = products["price"].drop_nulls().to_numpy()
        prices = prices[np.isfinite(prices)]
        if len(prices):
            qs = np.linspace(0, 1, config.price_bands + 1)[1:-1]
            price_edges = np.unique(np.quantile(prices, qs))
    per_product = _product_tokens(products, config, price_edges)
    counts: dict[str, int] = {}
    for toks in per_product:
        for t in set(toks):
            counts[t] = counts.get(t, 0) + 1
    names = [NONE_TOKEN] + sorted(t for t, c in counts.items() if c >= config.min_products)
    lookup = {name: i for i, name in enumerate(names)}
    rows: list[list[int]] = [[] for _ in range(vocab.size)]
    for p, toks in enumerate(per_product):
        if index[p] > 0:
            rows[index[p]] = list(dict.fromkeys(lookup[t] for t in toks if t in lookup))
    width = max(1, min(config.max_tokens, max((len(r) for r in rows), default=1)))
    item_vectors = None
    if vectors is not None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != products.height:
            raise ValueError(f"vectors must have one row per product ({products.height}), got {vectors.shape}")
        item_vectors = np.zeros((vocab.size, vectors.shape[1]), dtype=np.float32)
        known = index > 0
        item_vectors[index[known]] = vectors[known]
    return ItemContent(_pack(rows, width), names, item_vectors, price_edges, config)
