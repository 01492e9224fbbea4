"""Types shared by every stage: the event and product table schemas.

Events and products travel between stages as Polars DataFrames with the schemas below
(one row per event / product).
"""

from __future__ import annotations

import re

import polars as pl

#: Event types the engine understands. ``cancel`` is an order cancellation (e.g. an
#: Online Retail invoice starting with "C"); it is kept apart from ``purchase``.
EVENT_TYPES: tuple[str, ...] = (
    "view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "cancel",
    "search",
    "rate",
)

#: Canonical event table. ``position`` is the row's order of arrival in its source
#: (global, increasing); it breaks timestamp ties stably and orders sequence files that
#: carry no timestamps at all.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "user_id": pl.String(),
    "item_id": pl.String(),
    "event_type": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "position": pl.Int64(),
    "session_id": pl.String(),
    "query": pl.String(),
    "value": pl.Float64(),
    "context": pl.String(),  # JSON text
}

#: Canonical product (catalog) table.
PRODUCT_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "description": pl.String(),
    "brand": pl.String(),
    "categories": pl.List(pl.String()),  # a path, most general first
    "price": pl.Float64(),
    "currency": pl.String(),
    "attributes": pl.String(),  # JSON text
    "image_uri": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "available": pl.Boolean(),
    "tags": pl.List(pl.String()),
}


#: Ids travel in URL paths (``/v1/users/{user_id}``, ``/v1/items/{item_id}``): one holding
#: ``/`` (``%2F`` is decoded before routing), a control character, or that is ``.`` or ``..``
#: (path segments clients rewrite) could be stored but never looked up. The same pattern
#: is used by Python's ``re`` and by Polars (Rust regex).
UNADDRESSABLE_ID = r"[/\x00-\x1f\x7f-\x9f]|^\.\.?$"
_UNADDRESSABLE = re.compile(UNADDRESSABLE_ID)


def unaddressable(value: str) -> str | None:
    """Why ``value`` cannot be an id looked up through a URL path, or None when it can."""
    if _UNADDRESSABLE.search(value) is None:
        return None
    if "/" in value:
        return "must not contain '/' (ids are looked up in URL paths such as /v1/items/{item_id})"
    if value in (".", ".."):
        return "must not be '.' or '..' (URL path segments that clients rewrite)"
    return "must not contain control characters"


def empty_products() -> pl.DataFrame:
    return pl.DataFrame(schema=PRODUCT_SCHEMA)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Return ``df`` with exactly the columns of ``schema``, in order, cast to its types.

    Missing columns are added as nulls; extra columns are dropped.
    """
    cols = []
    for name, dtype in schema.items():
        if name in df.columns:
            cols.append(pl.col(name).cast(dtype))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    return df.select(cols)
