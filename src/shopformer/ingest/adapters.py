"""Adapters for public data formats (see ``../shared/data/*/README.md``).

- :func:`read_sequences`: ``user item item ...`` per line (S3-Rec ``Beauty.txt``,
  ``LastFM.txt``, ``Scientific.txt``; SASRec ``ml-1m.txt`` with one ``user item`` pair
  per line is the same rule). No timestamps: order is the file order (``position``).
- :func:`read_online_retail`: UCI Online Retail (I and II) -> purchase / cancel events
  and a derived GBP catalog.
- :func:`read_recbole`: RecBole atomic files (``.inter`` -> events, ``.item`` ->
  products), typed headers like ``user_id:token``.
- :func:`read_item2attributes`: S3-Rec ``*_item2attributes.json`` -> products with tags.
- :func:`read_items_tsv`: UniSRec-style ``item_id<TAB>asin<TAB>text`` -> products.
- :func:`read_movielens_movies`: MovieLens ``movies.dat`` (``MovieID::Title::Genres``,
  ISO-8859-1) -> products.
- :func:`read_movielens_plots`: MeLU's ``movies_extrainfos.dat`` (title, year, rating,
  genres, director, writers, actors, plot, poster) -> products with a description.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ..types import EVENT_SCHEMA, PRODUCT_SCHEMA
from ._io import LINE, decode, read_bytes, read_lines, read_table
from .readers import (
    _EVENT_ALIASES,
    _PRODUCT_ALIASES,
    Ingested,
    resolve_mapping,
    stage_events,
    stage_products,
)
from .report import IngestError
from .timestamps import parse_timestamps
from .validate import finalize_events, finalize_products

if TYPE_CHECKING:  # a type only: ingest sits below the privacy package
    from shopformer.privacy.pseudonym import Pseudonymizer


def _no_products() -> pl.DataFrame:
    return pl.DataFrame(schema=PRODUCT_SCHEMA)


def _no_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


# --------------------------------------------------------------------------- sequences


def read_sequences(
    path: str | Path,
    *,
    event_type: str = "purchase",
    position_start: int = 0,
    catalog_ids: pl.Series | None = None,
    strict: bool = False,
    encoding: str = "utf8",
    pseudonyms: Pseudonymizer | None = None,
) -> Ingested:
    """Read a whitespace-separated sequence file: each line is a user id followed by
    item ids, in order. Lines are appended in file order, so a user may span several
    lines (``ml-1m.txt`` has one ``user item`` pair per line). Ids stay strings exactly
    as written; timestamps are null and ``position`` carries the order. Repeated
    interactions are kept (without timestamps a repeat is not a duplicate). Blank lines
    and lines holding only a user id are counted under warnings."""
    path = Path(path)
    lines = read_lines(path, encoding)
    tok = lines.select(pl.col(LINE), pl.col("text").str.extract_all(r"\S+").alias("tok"))
    n_tok = tok["tok"].list.len()
    warnings = {}
    blank = int((n_tok == 0).sum())
    lonely = int((n_tok == 1).sum())
    if blank:
        warnings["blank_lines"] = blank
    if lonely:
        warnings["lines_without_items"] = lonely
    staged = (
        tok.filter(n_tok >= 2)
        .select(
            pl.col(LINE),
            pl.col("tok").list.first().alias("user_id"),
            pl.col("tok").list.slice(1).alias("item_id"),
        )
        .explode("item_id")
        .with_columns(pl.lit(event_type, dtype=pl.String).alias("event_type"))
    )
    events, report = finalize_events(
        staged, source=str(path), fmt="sequence", position_start=position_start,
        catalog_ids=catalog_ids, strict=strict, warnings=warnings, pseudonyms=pseudonyms,
    )
    return Ingested(events, _no_products(), report)


# ----------------------------------------------------------------------- online retail

_RETAIL_COLUMNS = {
    # canonical role: accepted spellings (Online Retail I, Online Retail II)
    "invoice": ("InvoiceNo", "Invoice"),
    "stock_code": ("StockCode",),
    "description": ("Description",),
    "quantity": ("Quantity",),
    "invoice_date": ("InvoiceDate",),
    "unit_price": ("UnitPrice", "Price"),
    "customer": ("CustomerID", "Customer ID"),
    "country": ("Country",),
}


def read_online_retail(
    path: str | Path,
    *,
    timezone: str = "Europe/London",
    timestamp_format: str = "auto",
    position_start: int = 0,
    existing: pl.DataFrame | None = None,
    existing_products: pl.DataFrame | None = None,
    strict: bool = False,
    currency: str = "GBP",
    pseudonyms: Pseudonymizer | None = None,
) -> Ingested:
    """UCI Online Retail (I or II) CSV -> events + derived catalog.

    Each invoice line is a ``purchase`` event (value = Quantity); an invoice starting
    with ``C`` is a ``cancel`` event (value = |Quantity|). ``session_id`` = invoice,
    ``timestamp`` = InvoiceDate as Europe/London local time converted to UTC, ``context``
    = ``{"country", "unit_price"}``. CustomerID ``17850.0`` -> ``"17850"``; rows without
    one are rejected as ``missing_user_id``, non-cancel rows with negative quantity as
    ``negative_quantity``.

    The catalog has one product per StockCode (from every row, with or without a
    customer): title = the most frequent non-empty description (ties: alphabetical),
    price = the most frequent unit price among purchase lines with positive quantity
    and price (ties: the lower price), currency GBP.
    """
    path = Path(path)
    raw = read_table(path, "csv")
    found = [c for c in raw.columns if c != LINE]
    col: dict[str, str] = {}
    for role, names in _RETAIL_COLUMNS.items():
        hit = next((n for n in names if n in found), None)
        if hit is None:
            raise IngestError(
                f"{path}: not an Online Retail file: column {' or '.join(map(repr, names))} "
                f"not found; columns found: {', '.join(map(repr, found))}"
            )
        col[role] = hit

    inv = pl.col(col["invoice"]).str.strip_chars()
    is_cancel = inv.str.starts_with("C").fill_null(False)
    qty_raw = pl.col(col["quantity"]).str.strip_chars()
    qty = qty_raw.cast(pl.Float64, strict=False)
    price = pl.col(col["unit_price"]).str.strip_chars().cast(pl.Float64, strict=False)
    staged = raw.select(
        pl.col(LINE),
        pl.col(col["customer"]).str.strip_chars().str.replace(r"\.0+$", "").alias("user_id"),
        pl.col(col["stock_code"]).alias("item_id"),
        pl.when(is_cancel).then(pl.lit("cancel")).otherwise(pl.lit("purchase")).alias("event_type"),
        inv.alias("session_id"),
        qty_raw.alias("_val_raw"),
        pl.when(is_cancel).then(qty.abs()).otherwise(qty).alias("value"),
        pl.struct(
            pl.col(col["country"]).alias("country"), price.alias("unit_price")
        ).struct.json_encode().alias("context"),
    ).with_columns(
        raw[col["invoice_date"]].alias("_ts_raw"),
        parse_timestamps(raw[col["invoice_date"]], timestamp_format, timezone).alias("timestamp"),
    )
    fields = {
        "user_id": col["customer"], "item_id": col["stock_code"], "session_id": col["invoice"],
        "value": col["quantity"], "timestamp": col["invoice_date"],
    }
    events, report = finalize_events(
        staged, source=str(path), fmt="online-retail", fields=fields,
        position_start=position_start, existing=existing, strict=strict, pseudonyms=pseudonyms,
    )

    # Derived catalog.
    base = raw.select(
        pl.col(col["stock_code"]).str.strip_chars().alias("item_id"),
        pl.col(col["description"]).str.strip_chars().alias("desc"),
        price.alias("price"),
        qty.alias("qty"),
        is_cancel.alias("cancel"),
    ).filter(pl.col("item_id").is_not_null() & (pl.col("item_id").str.len_bytes() > 0))
    first_line = raw.select(
        pl.col(col["stock_code"]).str.strip_chars().alias("item_id"), pl.col(LINE)
    ).filter(pl.col("item_id").str.len_bytes() > 0).group_by("item_id").agg(pl.col(LINE).min())
    title = (
        base.filter(pl.col("desc").is_not_null() & (pl.col("desc").str.len_bytes() > 0))
        .group_by("item_id", "desc")
        .len()
        .sort(["item_id", "len", "desc"], descending=[False, True, False])
        .unique("item_id", keep="first", maintain_order=True)
        .select("item_id", pl.col("desc").alias("title"))
    )
    mode_price = (
        base.filter(~pl.col("cancel") & (pl.col("qty") > 0) & (pl.col("price") > 0))
        .group_by("item_id", "price")
        .len()
        .sort(["item_id", "len", "price"], descending=[False, True, False])
        .unique("item_id", keep="first", maintain_order=True)
        .select("item_id", "price")
    )
    prod_staged = (
        first_line.join(title, on="item_id", how="left")
        .join(mode_price, on="item_id", how="left")
        .sort(LINE)
        .with_columns(pl.lit(currency).alias("currency"))
    )
    products, preport = finalize_products(
        prod_staged, source=str(path), fmt="online-retail (derived catalog)",
        fields={"item_id": col["stock_code"]}, existing=existing_products, strict=strict,
    )
    report.catalog = preport
    return Ingested(events, products, report)


# ----------------------------------------------------------------------------- RecBole


def _recbole_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.rsplit(".", 1)[-1]


def read_recbole(
    path: str | Path,
    mapping: Mapping[str, str | None] | None = None,
    *,
    event_type: str | None = None,
    timestamp_format: str = "auto",
    timezone: str = "UTC",
    position_start: int = 0,
    catalog_ids: pl.Series | None = None,
    existing: pl.DataFrame | None = None,
    existing_products: pl.DataFrame | None = None,
    strict: bool = False,
    pseudonyms: Pseudonymizer | None = None,
) -> Ingested:
    """RecBole atomic file: ``.inter`` -> events, ``.item`` -> products (kind from the
    file name). Header ``name:type`` loses its ``:type``. In ``.inter``, ``rating`` is the
    value and the default event type is ``rate`` when there is a rating column (else
    ``view``); timestamps are Unix seconds. In ``.item``, ``movie_title`` (or ``title``)
    is the title, ``class`` / ``genre`` (token_seq, space-separated) the categories, and
    other columns go to ``attributes``."""
    path = Path(path)
    kind = _recbole_kind(path)
    if kind not in ("inter", "item"):
        raise IngestError(
            f"{path}: RecBole atomic file kind {kind!r} is not supported; "
            "use a .inter (events) or .item (products) file"
        )
    raw = read_table(path, "tsv")
    raw = raw.rename({c: c.split(":", 1)[0] for c in raw.columns if ":" in c})
    mapping = dict(mapping or {})
    if kind == "inter":
        if "rating" in raw.columns:
            mapping.setdefault("value", "rating")
        et = event_type or ("rate" if "rating" in raw.columns else "view")
        cols = resolve_mapping(raw.columns, mapping, _EVENT_ALIASES, str(path))
        staged = stage_events(
            raw, cols, event_type=et, timestamp_format=timestamp_format,
            timezone=timezone, source=str(path),
        )
        events, report = finalize_events(
            staged, source=str(path), fmt="recbole", fields=cols,
            position_start=position_start, catalog_ids=catalog_ids, existing=existing,
            strict=strict, pseudonyms=pseudonyms,
        )
        return Ingested(events, _no_products(), report)
    if kind == "item":
        for name in ("movie_title", "item_name", "title"):
            if name in raw.columns:
                mapping.setdefault("title", name)
                break
        for name in ("class", "genre", "categories"):
            if name in raw.columns:
                mapping.setdefault("categories", name)
                break
        cols = resolve_mapping(raw.columns, mapping, _PRODUCT_ALIASES, str(path))
        staged = stage_products(raw, cols, list_separator=" ", source=str(path))
        products, report = finalize_products(
            staged, source=str(path), fmt="recbole", fields=cols,
            existing=existing_products, strict=strict,
        )
        return Ingested(_no_events(), products, report)
    raise AssertionError(kind)  # pragma: no cover


# ---------------------------------------------------------------------------- products


def read_item2attributes(
    path: str | Path,
    *,
    existing_products: pl.DataFrame | None = None,
    strict: bool = False,
) -> Ingested:
    """S3-Rec ``{"item_id": [attribute_id, ...]}`` -> one product per item with
    ``tags`` = the distinct attribute ids as strings (first-seen order) and
    ``attributes`` = ``{"attribute_ids": [...]}`` (the full list, repeats kept). The
    file is a single JSON object, so every example line is 1."""
    path = Path(path)
    try:
        obj = json.loads(decode(read_bytes(path)))
    except json.JSONDecodeError as e:
        raise IngestError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise IngestError(f"{path}: expected a JSON object item_id -> [attribute ids]")
    attrs = pl.Series("attr", list(obj.values()), strict=False)
    if attrs.dtype == pl.Null:
        attrs = attrs.cast(pl.List(pl.Int64))
    staged = pl.DataFrame(
        {LINE: pl.repeat(1, len(obj), dtype=pl.Int64, eager=True),
         "item_id": pl.Series(list(obj.keys()), dtype=pl.String),
         "attr": attrs}
    ).select(
        LINE,
        "item_id",
        pl.col("attr").cast(pl.List(pl.String)).list.unique(maintain_order=True).alias("tags"),
        pl.struct(pl.col("attr").alias("attribute_ids")).struct.json_encode().alias("attributes"),
    )
    products, report = finalize_products(
        staged, source=str(path), fmt="item2attributes", existing=existing_products, strict=strict
    )
    return Ingested(_no_events(), products, report)


def read_items_tsv(
    path: str | Path,
    mapping: Mapping[str, str | None] | None = None,
    *,
    existing_products: pl.DataFrame | None = None,
    strict: bool = False,
) -> Ingested:
    """UniSRec-style ``item_id<TAB>asin<TAB>text`` (with header) -> products with
    title = text (whitespace-stripped) and attributes = the other columns
    (``{"asin": ...}``)."""
    path = Path(path)
    raw = read_table(path, "tsv")
    mapping = dict(mapping or {})
    if "text" in raw.columns:
        mapping.setdefault("title", "text")
    cols = resolve_mapping(raw.columns, mapping, _PRODUCT_ALIASES, str(path))
    staged = stage_products(raw, cols, source=str(path))
    if "title" in staged.columns:
        staged = staged.with_columns(pl.col("title").str.strip_chars())
    products, report = finalize_products(
        staged, source=str(path), fmt="items-tsv", fields=cols,
        existing=existing_products, strict=strict,
    )
    return Ingested(_no_events(), products, report)


def read_movielens_movies(
    path: str | Path,
    *,
    encoding: str = "iso-8859-1",
    existing_products: pl.DataFrame | None = None,
    strict: bool = False,
) -> Ingested:
    """MovieLens ``movies.dat``: ``MovieID::Title::Genres`` (ISO-8859-1) -> products with
    categories = genres split on ``|`` and attributes ``{"year": ...}`` taken from the
    ``(1995)`` at the end of the title (the title is kept as written)."""
    path = Path(path)
    lines = read_lines(path, encoding).filter(pl.col("text").str.strip_chars().str.len_bytes() > 0)
    parts = pl.col("text").str.splitn("::", 3)
    staged = lines.select(
        pl.col(LINE),
        parts.struct.field("field_0").alias("item_id"),
        parts.struct.field("field_1").str.strip_chars().alias("title"),
        parts.struct.field("field_2")
        .str.strip_chars()
        .str.split("|")
        .list.filter(pl.element().str.len_bytes() > 0)
        .alias("categories"),
    ).with_columns(
        pl.struct(
            pl.col("title").str.extract(r"\((\d{4})\)\s*$").cast(pl.Int64, strict=False).alias("year")
        ).struct.json_encode().alias("attributes")
    )
    products, report = finalize_products(
        staged, source=str(path), fmt="movielens-movies",
        fields={"item_id": "MovieID", "title": "Title"},
        existing=existing_products, strict=strict,
    )
    return Ingested(_no_events(), products, report)


#: Fields of MeLU's ``movies_extrainfos.dat``, in order.
_MELU_FIELDS = ("item_id", "title", "year", "rated", "released", "genres", "director", "writers", "actors",
                "plot", "poster")


def read_movielens_plots(
    path: str | Path,
    *,
    existing_products: pl.DataFrame | None = None,
    strict: bool = False,
) -> Ingested:
    """MeLU's MovieLens ``movies_extrainfos.dat`` (UTF-8, ``::``-separated
    ``MovieID::title::year::rated::released::genres::director::writers::actors::plot::poster``)
    -> products with title ``"Title (year)"`` (as in ``movies.dat``), categories = genres,
    brand = director, tags = actors, description = plot, image_uri = poster and attributes
    ``{"year", "rated", "writers"}``. ``N/A`` (MeLU's missing value) becomes null."""
    path = Path(path)
    lines = read_lines(path).filter(pl.col("text").str.strip_chars().str.len_bytes() > 0)
    parts = pl.col("text").str.splitn("::", len(_MELU_FIELDS))
    raw = lines.select(pl.col(LINE), *(
        parts.struct.field(f"field_{i}").str.strip_chars().alias(name) for i, name in enumerate(_MELU_FIELDS)
    )).with_columns(pl.col(c).replace("N/A", None) for c in _MELU_FIELDS[1:])

    def names(col: str) -> pl.Expr:  # "A, B (story), C" -> ["A", "B", "C"]
        return (pl.col(col).str.split(",").list.eval(pl.element().str.replace(r"\s*\(.*\)$", "").str.strip_chars())
                .list.filter(pl.element().str.len_bytes() > 0).list.unique(maintain_order=True))

    staged = raw.select(
        pl.col(LINE),
        "item_id",
        pl.when(pl.col("year").is_not_null()).then(pl.format("{} ({})", "title", "year"))
        .otherwise(pl.col("title")).alias("title"),
        pl.col("plot").alias("description"),
        names("director").list.first().alias("brand"),
        names("genres").alias("categories"),
        names("actors").alias("tags"),
        pl.col("poster").alias("image_uri"),
        pl.struct(pl.col("year").cast(pl.Int64, strict=False), "rated",
                  names("writers").alias("writers")).struct.json_encode().alias("attributes"),
    )
    products, report = finalize_products(
        staged, source=str(path), fmt="movielens-plots",
        fields={"item_id": "MovieID", "title": "title", "description": "plot", "brand": "director"},
        existing=existing_products, strict=strict,
    )
    return Ingested(_no_events(), products, report)
