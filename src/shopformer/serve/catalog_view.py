"""The catalog as arrays aligned to a model's item indexes, for vectorized filters and
titles, kept current by applying the store's catalog change log.

A full read of a large catalog is slow and, in Python, holds the interpreter for its
whole length: measured on a 1M-product store, rebuilding the view every
``cache_ttl_s`` stalled every request of the process for seconds (recommend p99
3.95 s at 500 req/s). So the view is read whole once per served run, and afterwards
refreshed from ``store.catalog_changes``: only the products written since (by this
process or any other) are read again. A deleted product goes back to what a product
absent from the catalog has in a full read (available, no price, no category, no
title). More than ``max_changes`` pending writes (a bulk import) and a full read is
cheaper than patching, so it reads the whole catalog again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from shopformer.store import EventStore

#: catalog columns the view reads
VIEW_COLUMNS = ("item_id", "title", "available", "price", "categories")
#: more pending catalog writes than this and a refresh reads the whole catalog again
MAX_CHANGES = 50_000


@dataclass(frozen=True)
class CatalogView:
    """Catalog columns aligned to a model's item indexes (index 0 = padding), for
    vectorized filters."""

    version: str
    made: float  # time.monotonic() when last made or refreshed
    available: np.ndarray  # (n+1,) bool: False only where the catalog says unavailable
    price: np.ndarray  # (n+1,) float64, NaN when unknown
    categories: pl.DataFrame = field(repr=False)  # columns idx (Int64), category (String)
    titles: pl.Series | None = field(default=None, repr=False)  # (n+1,) String, null when none
    #: the last catalog write (store.catalog_seq) this view accounts for
    seq: int = 0


def _aligned(products: pl.DataFrame, items) -> pl.DataFrame:  # noqa: ANN001 - a Vocabulary
    """The rows of products the model knows, with their item index ``idx``."""
    idx = items.encode(products["item_id"])
    known = idx > 0
    return products.filter(pl.Series(known)).with_columns(idx=pl.Series(idx[known], dtype=pl.Int64))


def _fill(products: pl.DataFrame, available: np.ndarray, price: np.ndarray) -> tuple[pl.DataFrame, np.ndarray]:
    """Write the aligned rows' availability and price into the arrays (in place);
    returns (their idx/category rows, their idx)."""
    rows = products["idx"].to_numpy()
    available[products.filter(pl.col("available") == False)["idx"].to_numpy()] = False  # noqa: E712
    priced = products.filter(pl.col("price").is_not_null())
    price[priced["idx"].to_numpy()] = priced["price"].to_numpy()
    cats = products.select("idx", pl.col("categories").alias("category")).explode("category").drop_nulls()
    return cats, rows


def read_view(store: EventStore, items, version: str, now: float) -> CatalogView:  # noqa: ANN001 - a Vocabulary
    """The whole catalog read into a view for a model with item vocabulary ``items``."""
    seq = store.catalog_seq()  # first: a write during the read is applied again by the next refresh
    products = _aligned(store.products(columns=VIEW_COLUMNS), items)
    n = len(items) + 1
    available, price = np.ones(n, dtype=bool), np.full(n, np.nan)
    cats, rows = _fill(products, available, price)
    titles = pl.repeat(None, n, dtype=pl.String, eager=True)
    if products.height:
        titles = titles.scatter(rows, products["title"])
    return CatalogView(version, now, available, price, cats, titles, seq)


def refresh_view(store: EventStore, items, view: CatalogView, now: float,  # noqa: ANN001 - a Vocabulary
                 max_changes: int = MAX_CHANGES) -> CatalogView | None:
    """``view`` with the catalog writes since it was made applied (a new view; the old
    one is left as it is for the requests using it), or None when there are more than
    ``max_changes`` of them (read the whole catalog instead)."""
    changes = store.catalog_changes(view.seq, limit=max_changes + 1)
    if len(changes) > max_changes:
        return None
    if not changes:
        return replace(view, made=now)
    seq = changes[-1][0]
    ids = list(dict.fromkeys(item for _, item, _ in changes))
    idx = items.encode(ids)
    ids = [i for i, x in zip(ids, idx) if x > 0]  # products the model does not know are in no view
    changed = np.unique(idx[idx > 0]).astype(np.int64)
    if not len(changed):
        return replace(view, made=now, seq=seq)
    present = _aligned(store.products(ids, columns=VIEW_COLUMNS), items)  # deleted ones are absent
    available, price = view.available.copy(), view.price.copy()
    available[changed], price[changed] = True, np.nan  # as a product absent from the catalog
    cats, rows = _fill(present, available, price)
    categories = pl.concat([view.categories.filter(~pl.col("idx").is_in(changed.tolist())), cats])
    titles = view.titles
    if titles is not None:
        titles = titles.clone().scatter(changed, None)  # scatter writes in place
        if present.height:
            titles = titles.scatter(rows, present["title"])
    return CatalogView(view.version, now, available, price, categories, titles, seq)
