"""Row validation: one vectorized pass that gives every row its first failing reason.

Readers and adapters build a *staged* frame (canonical column names, raw text kept next
to parsed values, a ``_line`` column) and hand it to :func:`finalize_events` or
:func:`finalize_products`, which count rejections by reason, keep examples, enforce
strict mode, drop duplicates (within the file and against existing data), assign
``position`` and conform to the shared schemas.

Staged event columns (absent ones are null): ``_line``, ``event_id``, ``user_id``,
``item_id``, ``event_type``, ``session_id``, ``query``, ``context``, ``timestamp``
(parsed, UTC) and ``_ts_raw`` (the text it came from), ``value`` (parsed) and
``_val_raw``. Staged product columns: ``_line``, the PRODUCT_SCHEMA columns, plus
``_price_raw`` and ``_created_raw``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import polars as pl

from ..types import EVENT_SCHEMA, EVENT_TYPES, PRODUCT_SCHEMA, UNADDRESSABLE_ID, conform, unaddressable
from ._io import LINE, REPLACEMENT
from .report import EVENT_REASONS, MAX_EXAMPLES, PRODUCT_REASONS, IngestError, IngestReport

if TYPE_CHECKING:  # a type only: ingest sits below the privacy package
    from shopformer.privacy.pseudonym import Pseudonymizer

#: Spellings of event types found in public logs, mapped to EVENT_TYPES.
EVENT_TYPE_ALIASES: dict[str, str] = {
    "addtocart": "add_to_cart",
    "add": "add_to_cart",
    "cart": "add_to_cart",
    "removefromcart": "remove_from_cart",
    "remove": "remove_from_cart",
    "transaction": "purchase",
    "buy": "purchase",
    "order": "purchase",
    "rating": "rate",
    "pageview": "view",
    "page_view": "view",
    "detail": "view",
}

_EVENT_ID_COLS = ("event_id", "user_id", "item_id", "session_id")
#: ids the HTTP API looks up through URL paths (see :data:`shopformer.types.UNADDRESSABLE_ID`)
_ADDRESSED_EVENT_COLS = ("event_id", "user_id", "item_id")
_EVENT_TEXT_COLS = ("query", "context")
_PRODUCT_TEXT_COLS = ("title", "description", "brand", "currency", "attributes", "image_uri")
_QUANTITY_TYPES = ("purchase", "add_to_cart")
_DEDUP_KEY = (
    "event_id",
    "user_id",
    "item_id",
    "event_type",
    "timestamp",
    "value",
    "session_id",
    "query",
    "context",
)

_EVENT_STAGE: dict[str, pl.DataType] = {
    LINE: pl.Int64(),
    **{c: EVENT_SCHEMA[c] for c in EVENT_SCHEMA if c != "position"},
    "_ts_raw": pl.String(),
    "_val_raw": pl.String(),
}
_PRODUCT_STAGE: dict[str, pl.DataType] = {
    LINE: pl.Int64(),
    **PRODUCT_SCHEMA,
    "_price_raw": pl.String(),
    "_created_raw": pl.String(),
}


def _clean_str(name: str) -> pl.Expr:
    """Strip whitespace; empty -> null."""
    s = pl.col(name).str.strip_chars()
    return pl.when(s.str.len_bytes() > 0).then(s).alias(name)


def _has_fffd(name: str) -> pl.Expr:
    return pl.col(name).str.contains(REPLACEMENT, literal=True).fill_null(False)


def _reason_chain(conds: list[tuple[str, pl.Expr]]) -> pl.Expr:
    expr = None
    for reason, cond in conds:
        expr = (pl.when(cond) if expr is None else expr.when(cond)).then(pl.lit(reason))
    return expr.otherwise(pl.lit(None, dtype=pl.String)).alias("_reason")  # type: ignore[union-attr]


def row_reason_fields() -> dict[str, tuple[str, pl.Expr]]:
    """Reason -> (the field a rejected row's report names, the raw value it shows), for
    the reasons one row decides alone (the eager and the streaming ingest share them)."""
    return {
        "missing_user_id": ("user_id", pl.col("user_id")),
        "unknown_event_type": ("event_type", pl.col("event_type")),
        "missing_query": ("query", pl.col("query")),
        "missing_item_id": ("item_id", pl.col("item_id")),
        "bad_timestamp": ("timestamp", pl.col("_ts_raw")),
        "bad_value": ("value", pl.col("_val_raw")),
        "negative_quantity": ("value", pl.coalesce("_val_raw", pl.col("value").cast(pl.String))),
    }


def _field_value(
    reason_field: Mapping[str, tuple[str, pl.Expr]], fields: Mapping[str, str]
) -> tuple[pl.Expr, pl.Expr]:
    """Expressions giving, for a rejected row, the offending field's name and raw value."""
    f_expr = v_expr = None
    for reason, (canonical, value) in reason_field.items():
        cond = pl.col("_reason") == reason
        shown = fields.get(canonical, canonical)
        f_expr = (pl.when(cond) if f_expr is None else f_expr.when(cond)).then(pl.lit(shown))
        v_expr = (pl.when(cond) if v_expr is None else v_expr.when(cond)).then(
            value.cast(pl.String)
        )
    return f_expr.alias("_field"), v_expr.alias("_value")  # type: ignore[union-attr]


def _summarize(
    df: pl.DataFrame,
    reasons: Iterable[str],
    report: IngestReport,
    strict: bool,
) -> None:
    rej = df.filter(pl.col("_reason").is_not_null())
    if rej.height == 0:
        return
    if strict:
        first = rej.sort(LINE).row(0, named=True)
        raise IngestError(
            f"{report.source}, line {first[LINE]}: field {first['_field']!r} "
            f"value {first['_value']!r} rejected: {first['_reason']} (strict mode)"
        )
    counts = dict(rej.group_by("_reason").len().iter_rows())
    order = list(reasons)
    report.rejected = {
        r: int(counts[r]) for r in sorted(counts, key=lambda r: (order.index(r), r))
    }
    ex = (
        rej.sort(LINE)
        .group_by("_reason", maintain_order=True)
        .head(MAX_EXAMPLES)
        .select("_reason", LINE, "_field", "_value")
    )
    for r in report.rejected:
        part = ex.filter(pl.col("_reason") == r)
        report.examples[r] = [
            (int(ln), str(f), v) for ln, f, v in part.select(LINE, "_field", "_value").iter_rows()
        ]


def _unaddressable_ids(
    good: pl.DataFrame, cols: tuple[str, ...], fields: Mapping[str, str], report: IngestReport, strict: bool
) -> None:
    """Kept rows with an id the HTTP API could never look up (a ``/``, a control
    character, ``.`` or ``..``): counted under ``warnings["unaddressable_id"]`` with
    examples, not dropped (an offline log keeps its history); strict mode stops at the
    first, naming its line. The API itself refuses such ids on write."""
    bad = [pl.col(c).str.contains(UNADDRESSABLE_ID).fill_null(False) for c in cols]
    flagged = good.filter(pl.any_horizontal(*bad))
    if not flagged.height:
        return
    field = pl.coalesce(*[pl.when(b).then(pl.lit(fields.get(c, c))) for c, b in zip(cols, bad)])
    value = pl.coalesce(*[pl.when(b).then(pl.col(c)) for c, b in zip(cols, bad)])
    ex = flagged.sort(LINE).head(MAX_EXAMPLES).select(LINE, field.alias("_f"), value.alias("_v"))
    rows = [(int(ln), str(f), v) for ln, f, v in ex.iter_rows()]
    if strict:
        ln, f, v = rows[0]
        raise IngestError(
            f"{report.source}, line {ln}: field {f!r} value {v!r} rejected: unaddressable_id "
            f"({unaddressable(v)}; the HTTP API could never look it up) (strict mode)"
        )
    report.warnings["unaddressable_id"] = flagged.height
    report.examples["unaddressable_id"] = rows


def _pseudonymize(df: pl.DataFrame, pseudonyms: Pseudonymizer, report: IngestReport,
                  fields: Mapping[str, str]) -> pl.DataFrame:
    """``user_id`` and ``session_id`` by their pseudonyms (rejected rows too: their
    examples are reported). A value shaped like another key's pseudonym stops the ingest,
    naming its line: hashing it again would split that customer."""
    from shopformer.privacy.pseudonym import ForeignPseudonym

    out = {}
    for col, kind in (("user_id", "user"), ("session_id", "session")):
        try:
            out[col] = pseudonyms.column(kind, df[col])
        except ForeignPseudonym as exc:
            line = df.filter(pl.col(col) == exc.value)[LINE][0]
            raise IngestError(f"{report.source}, line {line}: field {fields.get(col, col)!r}: {exc}") from None
    report.pseudonym_key = pseudonyms.fingerprint
    return df.with_columns(**out)


def _stage(df: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    if LINE not in df.columns:
        df = df.with_row_index(LINE, offset=1)
    return conform(df, dict(schema))


def event_cleaning() -> list[pl.Expr]:
    """Expressions run on a staged event frame before the checks: ids, query and raw
    texts stripped (empty -> null), event types lower-cased and their aliases mapped.
    Expressions only, so the streaming ingest (``ingest/streaming.py``) runs them too."""
    etype = pl.col("event_type").str.to_lowercase().str.replace_all(r"[\s\-]+", "_")
    # a when/then chain, not Expr.replace(dict): the latter is not run by the streaming
    # engine (the whole column is materialized: ~0.3 GiB more per 5M rows)
    first, *rest = EVENT_TYPE_ALIASES.items()
    aliased = pl.when(etype == first[0]).then(pl.lit(first[1]))
    for alias, canonical in rest:
        aliased = aliased.when(etype == alias).then(pl.lit(canonical))
    return [
        *[_clean_str(c) for c in (*_EVENT_ID_COLS, "query", "_ts_raw", "_val_raw")],
        aliased.otherwise(etype).alias("event_type"),
    ]


def event_conditions(catalog_ids: pl.Series | None = None) -> list[tuple[str, pl.Expr]]:
    """``(reason, condition)`` in :data:`EVENT_REASONS` order, duplicates excepted (they
    need the whole file); a row is rejected under the first condition it meets."""
    is_search = pl.col("event_type") == "search"
    conds: list[tuple[str, pl.Expr]] = [
        ("invalid_utf8", pl.any_horizontal(*[_has_fffd(c) for c in _EVENT_ID_COLS])),
        ("missing_user_id", pl.col("user_id").is_null()),
        (
            "unknown_event_type",
            pl.col("event_type").is_null() | ~pl.col("event_type").is_in(list(EVENT_TYPES)),
        ),
        ("missing_query", is_search & pl.col("query").is_null()),
        ("missing_item_id", ~is_search & pl.col("item_id").is_null()),
        ("bad_timestamp", pl.col("_ts_raw").is_not_null() & pl.col("timestamp").is_null()),
        ("bad_value", pl.col("_val_raw").is_not_null() & pl.col("value").is_null()),
        (
            "negative_quantity",
            pl.col("event_type").is_in(list(_QUANTITY_TYPES)) & (pl.col("value") < 0),
        ),
    ]
    if catalog_ids is not None:
        ids = catalog_ids.cast(pl.String).unique()
        conds.append(("unknown_item", ~is_search & ~pl.col("item_id").is_in(ids.implode())))
    return conds


def finalize_events(
    staged: pl.DataFrame,
    *,
    source: str,
    fmt: str,
    fields: Mapping[str, str] | None = None,
    position_start: int = 0,
    catalog_ids: pl.Series | None = None,
    existing: pl.DataFrame | None = None,
    strict: bool = False,
    rows_read: int | None = None,
    warnings: dict[str, int] | None = None,
    pseudonyms: Pseudonymizer | None = None,
) -> tuple[pl.DataFrame, IngestReport]:
    """Validate a staged event frame; return (events conformed to EVENT_SCHEMA, report).

    Rows are in file order. Duplicates are only looked for among rows that have an
    ``event_id`` or a timestamp: in a file without timestamps a repeated row is a
    repeated interaction, not a duplicate.

    ``pseudonyms``: ``user_id`` and ``session_id`` are replaced by their pseudonyms right
    after the rows are checked, so duplicates are found against stored (pseudonymous)
    data and the report's examples and strict-mode errors never show a raw id.
    """
    fields = dict(fields or {})
    report = IngestReport(source=source, format=fmt, kind="events", warnings=dict(warnings or {}))
    df = _stage(staged, _EVENT_STAGE)
    report.rows_read = df.height if rows_read is None else rows_read

    df = df.with_columns(*event_cleaning())
    df = df.with_columns(_reason_chain(event_conditions(catalog_ids)))
    # which id column made a row invalid_utf8, noted before pseudonyms replace the ids
    df = df.with_columns(_has_fffd(c).alias(f"_fffd_{c}") for c in _EVENT_ID_COLS)
    if pseudonyms is not None:
        df = _pseudonymize(df, pseudonyms, report, fields)

    # Duplicates among otherwise-good rows: same event_id, or the same full row.
    df = df.with_row_index("_row")
    ok = df.filter(pl.col("_reason").is_null())
    key = [
        pl.col("event_id")
        if c == "event_id"
        else pl.when(pl.col("event_id").is_null()).then(pl.col(c)).alias(c)
        for c in _DEDUP_KEY
    ]
    dedupable = pl.col("event_id").is_not_null() | pl.col("timestamp").is_not_null()
    ok = ok.filter(dedupable)
    if ok.height:
        keys = ok.select(pl.struct(key).alias("k"))
        n_old = 0
        if existing is not None and existing.height:
            old = conform(existing, EVENT_SCHEMA).filter(dedupable)
            n_old = old.height
            keys = pl.concat([old.select(pl.struct(key).alias("k")), keys])
        first = keys.select(pl.col("k").is_first_distinct()).to_series().slice(n_old)
        dup_rows = ok["_row"].filter(~first)
        if len(dup_rows):
            df = df.with_columns(
                pl.when(pl.col("_row").is_in(dup_rows.implode()))
                .then(pl.lit("duplicate"))
                .otherwise(pl.col("_reason"))
                .alias("_reason")
            )

    dup_value = pl.when(pl.col("event_id").is_not_null()).then(
        pl.concat_str(pl.lit("event_id="), pl.col("event_id"))
    ).otherwise(
        pl.concat_str(
            pl.lit("user_id="), pl.col("user_id"), pl.lit(" item_id="),
            pl.col("item_id").fill_null(""), pl.lit(" ts="),
            pl.col("timestamp").dt.to_string("%Y-%m-%dT%H:%M:%SZ").fill_null(""),
        )
    )
    utf8_field = pl.coalesce(
        *[pl.when(pl.col(f"_fffd_{c}")).then(pl.lit(fields.get(c, c))) for c in _EVENT_ID_COLS]
    )
    utf8_value = pl.coalesce(*[pl.when(pl.col(f"_fffd_{c}")).then(pl.col(c)) for c in _EVENT_ID_COLS])
    f_expr, v_expr = _field_value(
        {
            **row_reason_fields(),
            "unknown_item": ("item_id", pl.col("item_id")),
            "duplicate": ("row", dup_value),
        },
        fields,
    )
    is_utf8 = pl.col("_reason") == "invalid_utf8"
    df = df.with_columns(
        pl.when(is_utf8).then(utf8_field).otherwise(f_expr).alias("_field"),
        pl.when(is_utf8).then(utf8_value).otherwise(v_expr).alias("_value"),
    )
    _summarize(df, EVENT_REASONS, report, strict)

    good = df.filter(pl.col("_reason").is_null())
    _unaddressable_ids(good, _ADDRESSED_EVENT_COLS, fields, report, strict)
    repaired = good.select(
        pl.any_horizontal(*[_has_fffd(c) for c in _EVENT_TEXT_COLS]).sum()
    ).item()
    if repaired:
        report.warnings["repaired_utf8"] = int(repaired)
    if "_ts_raw" in staged.columns or "timestamp" in staged.columns:
        missing_ts = good.select(pl.col("timestamp").is_null().sum()).item()
        if missing_ts:
            report.warnings["missing_timestamp"] = int(missing_ts)
    good = good.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + position_start).alias("position")
    )
    report.rows_accepted = good.height
    _check_totals(report)
    return conform(good, EVENT_SCHEMA), report


def finalize_products(
    staged: pl.DataFrame,
    *,
    source: str,
    fmt: str,
    fields: Mapping[str, str] | None = None,
    existing: pl.DataFrame | None = None,
    strict: bool = False,
    warnings: dict[str, int] | None = None,
) -> tuple[pl.DataFrame, IngestReport]:
    """Validate a staged product frame; return (products conformed to PRODUCT_SCHEMA,
    report). A repeated ``item_id`` within the file is a duplicate (the first is kept);
    a row identical to an existing product is a duplicate; a changed existing product is
    kept (the caller replaces the old row) and counted under warnings ``updated``."""
    fields = dict(fields or {})
    report = IngestReport(source=source, format=fmt, kind="products", warnings=dict(warnings or {}))
    df = _stage(staged, _PRODUCT_STAGE)
    report.rows_read = df.height
    df = df.with_columns(*[_clean_str(c) for c in ("item_id", "_price_raw", "_created_raw")])
    df = df.with_columns(
        _reason_chain(
            [
                ("invalid_utf8", _has_fffd("item_id")),
                ("missing_item_id", pl.col("item_id").is_null()),
                (
                    "bad_price",
                    (pl.col("_price_raw").is_not_null() & pl.col("price").is_null())
                    | (pl.col("price") < 0)
                    | pl.col("price").is_nan().fill_null(False),
                ),
                (
                    "bad_timestamp",
                    pl.col("_created_raw").is_not_null() & pl.col("created_at").is_null(),
                ),
            ]
        )
    )
    ok = pl.col("_reason").is_null()
    first_in_file = (
        pl.when(ok).then(pl.col("item_id")).is_first_distinct() | pl.col("item_id").is_null()
    )
    df = df.with_columns(
        pl.when(ok & ~first_in_file).then(pl.lit("duplicate")).otherwise(pl.col("_reason")).alias("_reason")
    )
    if existing is not None and existing.height:
        old = conform(existing, PRODUCT_SCHEMA)
        same = conform(df, PRODUCT_SCHEMA).with_row_index("_i").join(
            old, on=list(PRODUCT_SCHEMA), how="semi", nulls_equal=True
        )["_i"]
        is_same = pl.int_range(pl.len()).is_in(same.implode())
        df = df.with_columns(
            pl.when(pl.col("_reason").is_null() & is_same)
            .then(pl.lit("duplicate"))
            .otherwise(pl.col("_reason"))
            .alias("_reason")
        )
        updated = df.filter(
            pl.col("_reason").is_null() & pl.col("item_id").is_in(old["item_id"].implode())
        ).height
        if updated:
            report.warnings["updated"] = updated
    f_expr, v_expr = _field_value(
        {
            "invalid_utf8": ("item_id", pl.col("item_id")),
            "missing_item_id": ("item_id", pl.col("item_id")),
            "bad_price": ("price", pl.coalesce("_price_raw", pl.col("price").cast(pl.String))),
            "bad_timestamp": ("created_at", pl.col("_created_raw")),
            "duplicate": ("item_id", pl.col("item_id")),
        },
        fields,
    )
    df = df.with_columns(f_expr, v_expr)
    _summarize(df, PRODUCT_REASONS, report, strict)
    good = df.filter(pl.col("_reason").is_null())
    _unaddressable_ids(good, ("item_id",), fields, report, strict)
    repaired = good.select(
        pl.any_horizontal(
            *[_has_fffd(c) for c in _PRODUCT_TEXT_COLS],
            pl.col("categories").list.join("\x1f").str.contains(REPLACEMENT, literal=True).fill_null(False),
            pl.col("tags").list.join("\x1f").str.contains(REPLACEMENT, literal=True).fill_null(False),
        ).sum()
    ).item()
    if repaired:
        report.warnings["repaired_utf8"] = int(repaired)
    report.rows_accepted = good.height
    _check_totals(report)
    return conform(good, PRODUCT_SCHEMA), report


def _check_totals(report: IngestReport) -> None:
    # Rows the adapter dropped before staging must have been counted by it already.
    if report.rows_read != report.rows_accepted + report.rows_rejected:
        raise AssertionError(
            f"ingest bookkeeping error for {report.source}: read {report.rows_read}, "
            f"accepted {report.rows_accepted}, rejected {report.rows_rejected}"
        )
