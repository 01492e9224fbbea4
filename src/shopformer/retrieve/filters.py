"""Catalog filters as boolean masks over item indexes, for ``Index.search(allowed=...)``.

:func:`catalog_mask` turns a :class:`CatalogFilter` and the products table into one
(N + 1,) mask for every query; :func:`exclude_mask` marks each user's own history (e.g.
items already bought) for a per-query mask. Combine them as
``catalog_mask(...)[None, :] & ~exclude_mask(...)``.

Rules, all vectorized with Polars/NumPy:

* ``mask[0]`` (padding) is always False.
* ``available_only``: a product whose ``available`` is False is excluded; a null
  ``available`` counts as available (feeds that do not track stock leave it empty).
* ``categories``: a product matches if any element of its category path is in the set
  (exact, case-sensitive strings); a product with no categories does not match.
* ``min_price`` / ``max_price``: inclusive bounds; a product with no price does not match.
* ``exclude_items``: these shop ids are excluded; ids unknown to the vocabulary are ignored.
* Items in the vocabulary but absent from the products table are allowed unless
  ``available_only`` or a category or price condition is set (then they are excluded:
  nothing is known that would satisfy the condition). Products absent from the
  vocabulary are ignored. If an item id appears in several product rows, the last wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary


@dataclass(frozen=True)
class CatalogFilter:
    available_only: bool = False
    #: allowed categories; an item matches if any element of its category path is here
    categories: tuple[str, ...] | None = None
    #: inclusive price bounds (None = unbounded)
    min_price: float | None = None
    max_price: float | None = None
    #: shop item ids never returned
    exclude_items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists from callers (e.g. parsed JSON) but store hashable tuples.
        if self.categories is not None and not isinstance(self.categories, tuple):
            object.__setattr__(self, "categories", tuple(self.categories))
        if not isinstance(self.exclude_items, tuple):
            object.__setattr__(self, "exclude_items", tuple(self.exclude_items))
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} is above max_price {self.max_price}")

    @property
    def needs_product_data(self) -> bool:
        """True when an item must be in the products table to pass."""
        return (
            self.available_only
            or self.categories is not None
            or self.min_price is not None
            or self.max_price is not None
        )


def _product_condition(f: CatalogFilter) -> pl.Expr:
    cond = pl.lit(True)
    if f.available_only:
        cond = cond & pl.col("available").fill_null(True)
    if f.categories is not None:
        in_set = pl.element().is_in(list(f.categories))
        cond = cond & pl.col("categories").list.eval(in_set).list.any().fill_null(False)
    if f.min_price is not None:
        cond = cond & (pl.col("price") >= f.min_price).fill_null(False)
    if f.max_price is not None:
        cond = cond & (pl.col("price") <= f.max_price).fill_null(False)
    return cond


def catalog_mask(f: CatalogFilter, products: pl.DataFrame, vocab: Vocabulary) -> np.ndarray:
    """(len(vocab) + 1,) bool: True where item index ``i`` passes ``f``; index 0 is False.

    ``products`` follows ``shopformer.types.PRODUCT_SCHEMA`` (only the columns the filter
    reads are needed: item_id, available, categories, price).
    """
    mask = np.full(vocab.size, not f.needs_product_data, dtype=bool)
    if f.needs_product_data and len(products):
        rows = (
            products.lazy()
            .unique(subset="item_id", keep="last", maintain_order=True)
            .select(pl.col("item_id").cast(pl.String), _product_condition(f).alias("ok"))
            .collect()
        )
        idx = vocab.encode(rows["item_id"])
        ok = rows["ok"].to_numpy().astype(bool)
        known = idx > 0
        mask[idx[known]] = ok[known]
    if f.exclude_items:
        mask[vocab.encode(list(f.exclude_items))] = False
    mask[0] = False
    return mask


def exclude_mask(histories: Sequences, n_items: int) -> np.ndarray:
    """(B, n_items + 1) bool: True where item ``i`` is in row ``b``'s history, and in
    column 0 (padding is never allowed). Use ``allowed & ~exclude_mask(...)``."""
    items = histories.items
    if len(items) and (items.min() < 0 or items.max() > n_items):
        raise ValueError(f"histories hold item indexes outside 0..{n_items}")
    out = np.zeros((len(histories), n_items + 1), dtype=bool)
    rows = np.repeat(np.arange(len(histories)), histories.lengths)
    out[rows, items] = True
    out[:, 0] = True
    return out
