"""Types shared by every stage: the event and product table schemas.

Events and products travel between stages as Polars DataFrames with the schemas below
(one row per event / product).
"""

from __future__ import annotations

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
