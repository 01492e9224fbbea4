"""The searchable catalog: one row per product, the fields the engines index, the columns
filters and facets read, and the filter itself.

Rows are dense and permanent: row ``i`` (from 1; 0 is padding, as in the vector index)
is one product for the life of the index. An upsert of a new product appends a row; an
upsert of a known one replaces its fields in place; a delete marks the row dead (it is
never returned and its number is not reused), so the lexical engine, the vector index
and these columns always agree on what a row is.

Filter semantics (:class:`SearchFilter`, the same for every engine): ``categories`` and
``brands`` match when ANY value of the product is listed (case-insensitive);
``min_price``/``max_price`` are inclusive and a product with no price does not match
them; ``available_only`` drops products whose ``available`` is False (null counts as
available, as in :mod:`shopformer.retrieve.filters`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from .analysis import normalize

#: the text fields every engine indexes, each normalized (see .analysis)
TEXT_FIELDS: tuple[str, ...] = ("title", "brand", "categories", "attributes", "tags", "description")


def _key(value: str) -> str:
    return value.strip().lower()


@dataclass(frozen=True)
class SearchFilter:
    """Which products a search may return (see the module docstring)."""

    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None
    available_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(dict.fromkeys(_key(c) for c in self.categories if c.strip())))
        object.__setattr__(self, "brands", tuple(dict.fromkeys(_key(b) for b in self.brands if b.strip())))
        for name in ("min_price", "max_price"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} is above max_price {self.max_price}")

    @property
    def is_empty(self) -> bool:
        return self == SearchFilter()


def _attribute_text(raw: str | None) -> str:
    """Attribute JSON -> "key value key value ..." (nested values flattened)."""
    if not raw:
        return ""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    parts: list[str] = []

    def walk(x: Any, key: str = "") -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, str(k))
        elif isinstance(x, list):
            for v in x:
                walk(v, key)
        elif x is not None:
            parts.append(f"{key} {x}".strip())

    walk(data)
    return " ".join(parts)


def documents(products: pl.DataFrame) -> list[dict[str, Any]]:
    """One dict per product: ``item_id``, every TEXT_FIELDS entry normalized, and the
    filter columns ``brand_key``, ``category_keys``, ``price``, ``available``."""
    out = []
    cols = set(products.columns)
    for p in products.iter_rows(named=True):
        cats = [c for c in (p.get("categories") or []) if c] if "categories" in cols else []
        tags = [t for t in (p.get("tags") or []) if t] if "tags" in cols else []
        brand = p.get("brand") or ""
        price = p.get("price")
        out.append({
            "item_id": str(p["item_id"]),
            "title": normalize(p.get("title")),
            "brand": normalize(brand),
            "categories": normalize(" ".join(cats)),
            "attributes": normalize(_attribute_text(p.get("attributes"))),
            "tags": normalize(" ".join(tags)),
            "description": normalize(p.get("description")),
            "brand_key": _key(brand),
            "category_keys": [_key(c) for c in cats],
            "price": float(price) if price is not None and math.isfinite(price) else None,
            "available": p.get("available") is not False,
        })
    return out


#: the fields whose words spelling correction and autocomplete know
WORD_FIELDS: tuple[str, ...] = ("title", "brand", "categories")


def words(doc: dict[str, Any]) -> set[str]:
    """The distinct normalized words of a document's WORD_FIELDS."""
    return {w for f in WORD_FIELDS for w in doc[f].split()}


@dataclass
class SearchCatalog:
    """Rows of the index and the columns filters and facets read (see module docstring)."""

    ids: list[str] = field(default_factory=lambda: [""])  # row -> item_id; row 0 padding
    row_of: dict[str, int] = field(default_factory=dict)
    alive: np.ndarray = field(default_factory=lambda: np.zeros(1, bool))
    available: np.ndarray = field(default_factory=lambda: np.zeros(1, bool))
    price: np.ndarray = field(default_factory=lambda: np.full(1, np.nan))
    titles: list[str | None] = field(default_factory=lambda: [None])
    #: row -> normalized title (what the re-ranker's text features compare)
    norm_titles: list[str] = field(default_factory=lambda: [""])
    brands: list[str] = field(default_factory=lambda: [""])  # row -> brand as the catalog spells it
    categories: list[tuple[str, ...]] = field(default_factory=lambda: [()])
    _brand_rows: dict[str, set[int]] = field(default_factory=dict, repr=False)
    _category_rows: dict[str, set[int]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.alive.sum())

    @property
    def all_alive(self) -> bool:
        """True when every row but padding holds a live product (nothing deleted)."""
        return bool(self.alive[1:].all())

    @property
    def n_rows(self) -> int:
        """Rows including padding and dead rows (the vector index's table height)."""
        return len(self.ids)

    def rows(self, item_ids: Iterable[str]) -> np.ndarray:
        """Rows of live products (0 for unknown or deleted ones)."""
        out = np.array([self.row_of.get(str(i), 0) for i in item_ids], dtype=np.int64)
        out[~self.alive[out]] = 0
        return out

    def row_words(self, row: int) -> set[str]:
        """:func:`words` of the document a live row holds (empty for dead rows)."""
        if not row or not self.alive[row]:
            return set()
        text = f"{self.norm_titles[row]} {normalize(self.brands[row])} {normalize(' '.join(self.categories[row]))}"
        return set(text.split())

    def upsert(self, products: pl.DataFrame) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Add or replace products; returns their rows and their documents (for the
        engines), in the frame's order. An item_id repeated in the frame: the last wins."""
        products = products.unique(subset="item_id", keep="last", maintain_order=True)
        docs = documents(products)
        new = [d["item_id"] for d in docs if d["item_id"] not in self.row_of]
        if new:
            start = len(self.ids)
            self.ids.extend(new)
            self.row_of.update({i: start + n for n, i in enumerate(new)})
            grow = len(new)
            self.alive = np.concatenate([self.alive, np.zeros(grow, bool)])
            self.available = np.concatenate([self.available, np.zeros(grow, bool)])
            self.price = np.concatenate([self.price, np.full(grow, np.nan)])
            self.titles.extend([None] * grow)
            self.norm_titles.extend([""] * grow)
            self.brands.extend([""] * grow)
            self.categories.extend([()] * grow)
        rows = np.array([self.row_of[d["item_id"]] for d in docs], dtype=np.int64)
        raw_titles = products["title"].to_list() if "title" in products.columns else [None] * len(docs)
        raw_brands = products["brand"].to_list() if "brand" in products.columns else [None] * len(docs)
        raw_cats = products["categories"].to_list() if "categories" in products.columns else [None] * len(docs)
        for row, d, title, brand, cats in zip(rows.tolist(), docs, raw_titles, raw_brands, raw_cats):
            self._unindex(row)
            self.alive[row] = True
            self.available[row] = d["available"]
            self.price[row] = np.nan if d["price"] is None else d["price"]
            self.titles[row] = title
            self.norm_titles[row] = d["title"]
            self.brands[row] = (brand or "").strip()
            self.categories[row] = tuple(c.strip() for c in (cats or []) if c and c.strip())
            self._index(row)
        return rows, docs

    def delete(self, item_ids: Iterable[str]) -> np.ndarray:
        """Mark products dead; returns the rows that were live."""
        rows = self.rows(item_ids)
        rows = rows[rows > 0]
        for row in rows.tolist():
            self._unindex(row)
            self.alive[row] = False
        return rows

    def _index(self, row: int) -> None:
        """Add a live row to the brand and category lookups (the mirror of _unindex)."""
        if self.brands[row]:
            self._brand_rows.setdefault(_key(self.brands[row]), set()).add(row)
        for c in set(self.categories[row]):
            self._category_rows.setdefault(_key(c), set()).add(row)

    def _unindex(self, row: int) -> None:
        if not self.alive[row]:
            return
        key = _key(self.brands[row])
        self._brand_rows.get(key, set()).discard(row)
        for c in self.categories[row]:
            self._category_rows.get(_key(c), set()).discard(row)

    def to_frame(self) -> pl.DataFrame:
        """Every row (padding and dead rows too) as a frame: what :meth:`from_frame` reads."""
        return pl.DataFrame({
            "item_id": self.ids, "alive": self.alive, "available": self.available, "price": self.price,
            "title": self.titles, "norm_title": self.norm_titles, "brand": self.brands,
            "categories": [list(c) for c in self.categories],
        }, schema_overrides={"title": pl.String, "categories": pl.List(pl.String)})

    @classmethod
    def from_frame(cls, df: pl.DataFrame) -> "SearchCatalog":
        cat = cls(ids=df["item_id"].to_list(), alive=df["alive"].to_numpy().copy(),
                  available=df["available"].to_numpy().copy(), price=df["price"].to_numpy().astype(np.float64),
                  titles=df["title"].to_list(), norm_titles=df["norm_title"].to_list(), brands=df["brand"].to_list(),
                  categories=[tuple(c or ()) for c in df["categories"].to_list()])
        cat.row_of = {i: r for r, i in enumerate(cat.ids) if r}
        for r in np.flatnonzero(cat.alive).tolist():
            cat._index(r)
        return cat

    def mask(self, f: SearchFilter | None) -> np.ndarray:
        """(n_rows,) bool: live rows that pass ``f``; row 0 is False."""
        m = self.alive.copy()
        if f is None or f.is_empty:
            return m
        if f.available_only:
            m &= self.available
        if f.min_price is not None:
            with np.errstate(invalid="ignore"):
                m &= self.price >= f.min_price
        if f.max_price is not None:
            with np.errstate(invalid="ignore"):
                m &= self.price <= f.max_price
        for wanted, index in ((f.brands, self._brand_rows), (f.categories, self._category_rows)):
            if wanted:
                rows = set().union(*(index.get(v, set()) for v in wanted))
                sel = np.zeros_like(m)
                sel[np.fromiter(rows, dtype=np.int64, count=len(rows))] = True
                m &= sel
        return m

    def facets(self, rows: np.ndarray, top: int = 20) -> dict[str, Any]:
        """Counts over ``rows`` (the results): categories and brands (the ``top`` most
        frequent values), price bands, availability."""
        rows = np.asarray(rows, dtype=np.int64)
        cats: dict[str, int] = {}
        brands: dict[str, int] = {}
        for r in rows.tolist():
            for c in set(self.categories[r]):
                cats[c] = cats.get(c, 0) + 1
            if self.brands[r]:
                brands[self.brands[r]] = brands.get(self.brands[r], 0) + 1
        price = self.price[rows]
        price = price[np.isfinite(price)]
        return {
            "categories": _top(cats, top),
            "brands": _top(brands, top),
            "price": _price_bands(price),
            "available": {"true": int(self.available[rows].sum()), "false": int((~self.available[rows]).sum())},
        }


def _top(counts: dict[str, int], top: int) -> list[dict[str, Any]]:
    return [{"value": v, "count": n} for v, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:top]]


def _price_bands(price: np.ndarray, bands: int = 5) -> list[dict[str, Any]]:
    """Up to ``bands`` ranges at "nice" round edges spanning the prices, with counts."""
    if len(price) == 0:
        return []
    lo, hi = float(price.min()), float(price.max())
    if lo == hi:
        return [{"min": lo, "max": hi, "count": len(price)}]
    step = (hi - lo) / bands
    magnitude = 10 ** math.floor(math.log10(step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= step)
    start = math.floor(lo / step) * step
    edges = [start + i * step for i in range(bands + 2) if start + i * step <= hi + step]
    out = []
    for a, b in zip(edges, edges[1:]):
        n = int(((price >= a) & (price < b)).sum())
        if n:
            out.append({"min": round(a, 2), "max": round(b, 2), "count": n})
    return out
