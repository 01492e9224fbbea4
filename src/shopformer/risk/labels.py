"""Order-line cancellation labels from UCI Online Retail (I and II).

Online Retail writes a cancellation as its own invoice: the number starts with ``C`` and
every quantity is negative. The log does not say which earlier line a cancellation
undoes, so the rule here is:

    a cancellation line of customer c and stock code s at time t cancels c's most recent
    original line of s at or before t (an original invoice: a number with digits only,
    quantity > 0).

Several cancellations may land on the same original line (partial cancellations in
steps); the line is then ``cancelled`` once, at the first of them. A cancellation with no
such original line (the purchase happened before the log starts, or on another code)
stays unmatched and is counted. Lines without a customer id, non-product codes (postage
``POST``, manual ``M``, discount ``D``, fees ...: anything not starting with five digits),
adjustment invoices (``A``) and lines with a price <= 0 are left out, every one counted by
reason in :class:`RetailLog.rejected`.

A line's label is "cancelled within ``horizon_days`` of its invoice", so lines near the end
of the log are only labelled when their whole horizon is inside it (:func:`labelled`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

#: the two spellings of the columns (Online Retail I, Online Retail II)
_COLUMNS = {
    "InvoiceNo": "invoice", "Invoice": "invoice", "StockCode": "stock_code", "Quantity": "quantity",
    "InvoiceDate": "time", "UnitPrice": "price", "Price": "price", "CustomerID": "customer_id",
    "Customer ID": "customer_id", "Country": "country",
}
PRODUCT_CODE = r"^\d{5}"


@dataclass
class RetailLog:
    """Original lines (``lines``: one row per product line, with ``line_id``, sorted by
    time), cancellation lines (``cancels``), and what was left out and matched."""

    lines: pl.DataFrame
    cancels: pl.DataFrame
    rejected: dict[str, int] = field(default_factory=dict)
    matching: dict[str, int] = field(default_factory=dict)


def find_csvs(paths: list[Path]) -> list[Path]:
    """The CSV files under ``paths`` (files as they are, folders searched for *.csv[.gz])."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.name.endswith((".csv", ".csv.gz")))
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    if not found:
        raise FileNotFoundError(f"no CSV file under {', '.join(map(str, paths))}")
    return found


def read_raw(paths: list[Path]) -> pl.DataFrame:
    """All rows of the given Online Retail CSVs, columns renamed to one spelling. Where
    two files overlap in time (II's first sheet ends 2010-12-09, I starts 2010-12-01), the
    later-starting file wins from its first timestamp on, so no invoice is read twice."""
    frames = []
    for path in find_csvs(paths):
        raw = pl.read_csv(path, infer_schema_length=0)
        missing = {"invoice", "stock_code", "quantity", "time", "price", "customer_id"} - {
            _COLUMNS.get(c, c) for c in raw.columns}
        if missing:
            raise ValueError(f"{path}: not an Online Retail CSV (missing {', '.join(sorted(missing))})")
        raw = raw.rename({c: _COLUMNS[c] for c in raw.columns if c in _COLUMNS})
        if "country" not in raw.columns:
            raw = raw.with_columns(country=pl.lit(None, pl.String))
        frames.append(raw.select(
            pl.col("invoice").str.strip_chars(), pl.col("stock_code").str.strip_chars().str.to_uppercase(),
            pl.col("quantity").cast(pl.Int64, strict=False),
            pl.col("time").str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False),
            pl.col("price").cast(pl.Float64, strict=False),
            pl.col("customer_id").str.replace(r"\.0$", "").str.strip_chars(), pl.col("country")))
    frames.sort(key=lambda f: f["time"].min())
    kept = []
    for i, frame in enumerate(frames):
        if i + 1 < len(frames):
            frame = frame.filter(pl.col("time") < frames[i + 1]["time"].min())
        kept.append(frame)
    return pl.concat(kept)


def build_log(raw: pl.DataFrame) -> RetailLog:
    """Split ``raw`` (:func:`read_raw`) into original and cancellation lines and match
    each cancellation to the line it undoes (the module's rule)."""
    rejected: dict[str, int] = {}

    def drop(frame: pl.DataFrame, bad: pl.Expr, reason: str) -> pl.DataFrame:
        n = frame.filter(bad).height
        if n:
            rejected[reason] = rejected.get(reason, 0) + n
        return frame.filter(~bad)

    df = drop(raw, pl.any_horizontal(pl.col("quantity", "time", "price").is_null()), "unparsable quantity/date/price")
    df = drop(df, pl.col("customer_id").is_null() | (pl.col("customer_id") == ""), "no customer id")
    df = drop(df, ~pl.col("stock_code").str.contains(PRODUCT_CODE), "not a product code (postage, fees, manual)")
    df = drop(df, pl.col("invoice").str.starts_with("A"), "adjustment invoice (A)")
    is_cancel = pl.col("invoice").str.starts_with("C")
    df = drop(df, ~is_cancel & ~pl.col("invoice").str.contains(r"^\d+$"), "unknown invoice prefix")
    df = drop(df, is_cancel & (pl.col("quantity") >= 0), "cancellation with quantity >= 0")
    df = drop(df, ~is_cancel & (pl.col("quantity") <= 0), "original line with quantity <= 0")
    df = drop(df, ~is_cancel & (pl.col("price") <= 0), "original line with price <= 0")
    lines = (df.filter(~is_cancel).sort("time", "invoice", maintain_order=True)
             .with_row_index("line_id").with_columns(pl.col("line_id").cast(pl.Int64)))
    cancels = df.filter(is_cancel).sort("time").with_columns(pl.col("quantity").abs())
    matched = match_cancellations(lines, cancels)
    n_matched = int(matched["line_id"].is_not_null().sum())
    per_line = (matched.drop_nulls("line_id").group_by("line_id")
                .agg(cancel_time=pl.col("time").min(), cancelled_quantity=pl.col("quantity").sum()))
    lines = lines.join(per_line, on="line_id", how="left")
    matching = {"cancellation_lines": cancels.height, "matched": n_matched, "unmatched": cancels.height - n_matched,
                "original_lines": lines.height, "original_lines_cancelled": per_line.height}
    return RetailLog(lines=lines, cancels=cancels, rejected=rejected, matching=matching)


def match_cancellations(lines: pl.DataFrame, cancels: pl.DataFrame) -> pl.DataFrame:
    """``cancels`` with ``line_id``: the customer's most recent original line of the same
    stock code at or before the cancellation (null where there is none)."""
    right = lines.select("customer_id", "stock_code", pl.col("time").alias("line_time"), "line_id").sort("line_time")
    with warnings.catch_warnings():  # both sides are sorted by time, which is what the join needs
        warnings.simplefilter("ignore")
        return cancels.sort("time").join_asof(right, left_on="time", right_on="line_time",
                                              by=["customer_id", "stock_code"], strategy="backward",
                                              allow_exact_matches=True)


def load_log(paths: list[Path]) -> RetailLog:
    return build_log(read_raw(paths))


def labelled(lines: pl.DataFrame, horizon_days: float, end: object | None = None) -> pl.DataFrame:
    """``lines`` with ``cancelled`` (0/1: cancelled within ``horizon_days`` of the line),
    keeping only lines whose horizon ends by ``end`` (default: the last line's time)."""
    end = lines["time"].max() if end is None else end
    horizon = pl.duration(seconds=int(horizon_days * 86400))
    return (lines.filter(pl.col("time") + horizon <= end)
            .with_columns(cancelled=(pl.col("cancel_time").is_not_null()
                                     & (pl.col("cancel_time") <= pl.col("time") + horizon)).cast(pl.Int8)))
