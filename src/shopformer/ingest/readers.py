"""Generic readers: events and products from CSV / TSV / JSONL / Parquet with a column
mapping ``{canonical_name: source_column}``.

Canonical names not in the mapping are taken from a source column of the same name
(or a common alias such as ``userId`` / ``product_id`` / ``ts``) when there is one.
A mapped column that the file lacks is an :class:`IngestError` naming it and listing the
columns found.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import polars as pl

from ..types import EVENT_SCHEMA, EVENT_TYPES, PRODUCT_SCHEMA
from ._io import LINE, detect_format, read_table
from .report import IngestError, IngestReport
from .timestamps import parse_timestamps
from .validate import finalize_events, finalize_products

if TYPE_CHECKING:  # a type only: ingest sits below the privacy package
    from shopformer.privacy.pseudonym import Pseudonymizer


class Ingested(NamedTuple):
    """What a reader returns: events (EVENT_SCHEMA), products (PRODUCT_SCHEMA) and the
    report. A reader of one kind returns an empty frame for the other; the products'
    own report, when there is one, is ``report.catalog``."""

    events: pl.DataFrame
    products: pl.DataFrame
    report: IngestReport


_EVENT_ALIASES: dict[str, tuple[str, ...]] = {
    "event_id": ("event_id", "eventid", "id"),
    "user_id": ("user_id", "userid", "user", "customer_id", "customerid", "visitorid", "visitor_id"),
    "item_id": ("item_id", "itemid", "item", "product_id", "productid", "sku"),
    "event_type": ("event_type", "eventtype", "event", "type", "action"),
    "timestamp": ("timestamp", "ts", "time", "datetime", "event_time"),
    "session_id": ("session_id", "sessionid", "session"),
    "query": ("query", "search_query", "search"),
    "value": ("value", "rating", "quantity", "qty"),
    "context": ("context",),
}
_PRODUCT_ALIASES: dict[str, tuple[str, ...]] = {
    "item_id": ("item_id", "itemid", "item", "product_id", "productid", "sku", "id"),
    "title": ("title", "name", "product_name"),
    "description": ("description",),
    "brand": ("brand",),
    "categories": ("categories", "category"),
    "price": ("price",),
    "currency": ("currency",),
    "attributes": ("attributes",),
    "image_uri": ("image_uri", "image", "image_url"),
    "created_at": ("created_at",),
    "available": ("available", "availability", "in_stock"),
    "tags": ("tags",),
}


def resolve_mapping(
    columns: list[str],
    mapping: Mapping[str, str | None] | None,
    aliases: Mapping[str, tuple[str, ...]],
    source: str,
) -> dict[str, str]:
    """Return ``{canonical: source_column}`` for the columns to use.

    Explicit entries must exist in ``columns``; a ``None`` value means "do not use".
    """
    cols = [c for c in columns if c != LINE]
    mapping = dict(mapping or {})
    unknown = [k for k in mapping if k not in aliases]
    if unknown:
        raise IngestError(
            f"{source}: mapping has unknown canonical name(s) {unknown}; "
            f"known: {', '.join(aliases)}"
        )
    out: dict[str, str] = {}
    for canonical, src in mapping.items():
        if src is None:
            continue
        if src not in cols:
            raise IngestError(
                f"{source}: column {src!r} (mapped to {canonical!r}) not found; "
                f"columns found: {', '.join(repr(c) for c in cols)}"
            )
        out[canonical] = src
    lower = {c.lower(): c for c in cols}
    used = set(out.values())
    for canonical, names in aliases.items():
        if canonical in mapping:
            continue
        for n in names:
            if n in lower and lower[n] not in used:
                out[canonical] = lower[n]
                used.add(lower[n])
                break
    return out


def _as_str(col: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Struct):
        return pl.col(col).struct.json_encode()
    if isinstance(dtype, pl.List | pl.Array):  # JSON array: encode {"v": [...]}, unwrap
        wrapped = pl.struct(pl.col(col).alias("v")).struct.json_encode()
        return pl.when(pl.col(col).is_not_null()).then(wrapped.str.slice(5).str.head(-1))
    if dtype.is_float():
        # ids written as floats by spreadsheets/pandas: 17850.0 -> "17850"
        return pl.col(col).cast(pl.String).str.replace(r"\.0$", "")
    return pl.col(col).cast(pl.String)


def _as_list(col: str, dtype: pl.DataType, sep: str) -> pl.Expr:
    if isinstance(dtype, pl.List | pl.Array):
        return pl.col(col).cast(pl.List(pl.String))
    s = pl.col(col).cast(pl.String).str.strip_chars()
    return (
        pl.when(s.str.len_bytes() > 0)
        .then(s.str.split(sep).list.eval(pl.element().str.strip_chars()).list.filter(pl.element().str.len_bytes() > 0))
        .cast(pl.List(pl.String))
    )


def _extras_json(df: pl.DataFrame, used: set[str]) -> pl.Expr | None:
    extra = [c for c in df.columns if c not in used and c != LINE]
    if not extra:
        return None
    return pl.struct([pl.col(c) for c in extra]).struct.json_encode()


def _table(path: Path, fmt: str | None, **kw) -> tuple[pl.DataFrame, str]:
    fmt = fmt or detect_format(path)
    return read_table(path, fmt, **kw), fmt


def stage_events(
    df: pl.DataFrame,
    cols: Mapping[str, str],
    *,
    event_type: str | None,
    timestamp_format: str,
    timezone: str,
    source: str,
) -> pl.DataFrame:
    """Turn a raw table (+ resolved mapping) into a staged event frame."""
    if "user_id" not in cols:
        raise IngestError(
            f"{source}: no user id column; map one with mapping={{'user_id': ...}}; "
            f"columns found: {', '.join(repr(c) for c in df.columns if c != LINE)}"
        )
    if "item_id" not in cols and "query" not in cols:
        raise IngestError(
            f"{source}: no item id column; map one with mapping={{'item_id': ...}}; "
            f"columns found: {', '.join(repr(c) for c in df.columns if c != LINE)}"
        )
    if "event_type" not in cols and not event_type:
        raise IngestError(
            f"{source}: no event type column; map one or pass a default event_type "
            f"(one of {', '.join(EVENT_TYPES)})"
        )
    sch = df.schema
    exprs: list[pl.Expr] = [pl.col(LINE)]
    for c in ("event_id", "user_id", "item_id", "session_id", "query", "context"):
        if c in cols:
            exprs.append(_as_str(cols[c], sch[cols[c]]).alias(c))
    if "event_type" in cols:
        # an empty type cell is not filled with the default: it is an unknown type
        exprs.append(pl.col(cols["event_type"]).cast(pl.String).alias("event_type"))
    else:
        exprs.append(pl.lit(event_type, dtype=pl.String).alias("event_type"))
    if "value" in cols:
        v = cols["value"]
        exprs += [
            pl.col(v).cast(pl.String).alias("_val_raw"),
            pl.col(v).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias("value")
            if sch[v] == pl.String
            else pl.col(v).cast(pl.Float64, strict=False).alias("value"),
        ]
    out = df.select(exprs)
    if "timestamp" in cols:
        raw = df[cols["timestamp"]]
        out = out.with_columns(
            raw.cast(pl.String).alias("_ts_raw"),
            parse_timestamps(raw, timestamp_format, timezone).alias("timestamp"),
        )
    return out


def read_events(
    path: str | Path,
    fmt: str | None = None,
    mapping: Mapping[str, str | None] | None = None,
    *,
    event_type: str | None = "view",
    timestamp_format: str = "auto",
    timezone: str = "UTC",
    position_start: int = 0,
    catalog_ids: pl.Series | None = None,
    existing: pl.DataFrame | None = None,
    strict: bool = False,
    separator: str | None = None,
    encoding: str = "utf8",
    pseudonyms: Pseudonymizer | None = None,
) -> Ingested:
    """Read an event log (csv / tsv / jsonl / parquet; ``fmt`` from the extension when
    None). ``event_type`` is the type of every row when the file has no type column
    (an empty cell in a type column is rejected as ``unknown_event_type``).
    ``existing`` events are used to reject duplicates; ``catalog_ids`` (when given)
    rejects events whose item is not in the catalog."""
    path = Path(path)
    raw, fmt = _table(path, fmt, separator=separator, encoding=encoding)
    cols = resolve_mapping(raw.columns, mapping, _EVENT_ALIASES, str(path))
    staged = stage_events(
        raw, cols, event_type=event_type, timestamp_format=timestamp_format,
        timezone=timezone, source=str(path),
    )
    events, report = finalize_events(
        staged, source=str(path), fmt=fmt, fields=cols, position_start=position_start,
        catalog_ids=catalog_ids, existing=existing, strict=strict, pseudonyms=pseudonyms,
    )
    return Ingested(events, pl.DataFrame(schema=PRODUCT_SCHEMA), report)


def stage_products(
    df: pl.DataFrame,
    cols: Mapping[str, str],
    *,
    list_separator: str = "|",
    timestamp_format: str = "auto",
    timezone: str = "UTC",
    extras_to_attributes: bool = True,
    currency: str | None = None,
    source: str,
) -> pl.DataFrame:
    """Turn a raw table (+ resolved mapping) into a staged product frame. Columns not
    mapped go into ``attributes`` (JSON) when no attributes column is mapped."""
    if "item_id" not in cols:
        raise IngestError(
            f"{source}: no item id column; map one with mapping={{'item_id': ...}}; "
            f"columns found: {', '.join(repr(c) for c in df.columns if c != LINE)}"
        )
    sch = df.schema
    exprs: list[pl.Expr] = [pl.col(LINE)]
    for c in ("item_id", "title", "description", "brand", "currency", "image_uri"):
        if c in cols:
            exprs.append(_as_str(cols[c], sch[cols[c]]).alias(c))
    if "currency" not in cols and currency:
        exprs.append(pl.lit(currency).alias("currency"))
    for c in ("categories", "tags"):
        if c in cols:
            exprs.append(_as_list(cols[c], sch[cols[c]], list_separator).alias(c))
    if "attributes" in cols:
        exprs.append(_as_str(cols["attributes"], sch[cols["attributes"]]).alias("attributes"))
    elif extras_to_attributes:
        ex = _extras_json(df, set(cols.values()))
        if ex is not None:
            exprs.append(ex.alias("attributes"))
    if "price" in cols:
        p = cols["price"]
        exprs += [
            pl.col(p).cast(pl.String).alias("_price_raw"),
            pl.col(p).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias("price"),
        ]
    if "available" in cols:
        a = pl.col(cols["available"]).cast(pl.String).str.strip_chars().str.to_lowercase()
        exprs.append(
            pl.when(a.is_in(["1", "true", "yes", "y", "t", "in stock", "in_stock"]))
            .then(True)
            .when(a.is_in(["0", "false", "no", "n", "f", "out of stock", "out_of_stock"]))
            .then(False)
            .alias("available")
        )
    out = df.select(exprs)
    if "created_at" in cols:
        raw = df[cols["created_at"]]
        out = out.with_columns(
            raw.cast(pl.String).alias("_created_raw"),
            parse_timestamps(raw, timestamp_format, timezone).alias("created_at"),
        )
    return out


def read_products(
    path: str | Path,
    fmt: str | None = None,
    mapping: Mapping[str, str | None] | None = None,
    *,
    list_separator: str = "|",
    timestamp_format: str = "auto",
    timezone: str = "UTC",
    currency: str | None = None,
    existing: pl.DataFrame | None = None,
    strict: bool = False,
    separator: str | None = None,
    encoding: str = "utf8",
) -> Ingested:
    """Read a product catalog (csv / tsv / jsonl / parquet). ``categories`` and ``tags``
    given as text are split on ``list_separator``. Unmapped columns are kept in
    ``attributes`` as JSON."""
    path = Path(path)
    raw, fmt = _table(path, fmt, separator=separator, encoding=encoding)
    cols = resolve_mapping(raw.columns, mapping, _PRODUCT_ALIASES, str(path))
    staged = stage_products(
        raw, cols, list_separator=list_separator, timestamp_format=timestamp_format,
        timezone=timezone, currency=currency, source=str(path),
    )
    products, report = finalize_products(
        staged, source=str(path), fmt=fmt, fields=cols, existing=existing, strict=strict
    )
    empty = pl.DataFrame(schema=EVENT_SCHEMA)
    report.kind = "products"
    return Ingested(empty, products, report)
