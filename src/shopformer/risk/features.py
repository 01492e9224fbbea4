"""Features of an order line from what was known strictly BEFORE its invoice time.

Every feature of a line at time t is read from *state tables*: for each key (customer,
product, customer x product) the running totals after each timestamp, joined "as of" t
with exact matches excluded (``join_asof(..., allow_exact_matches=False)``). So a
cancellation, or any line, at time >= t can never reach a line at t: the no-leakage test
(tests/risk/test_features.py) adds later events and checks nothing changes.

The same function serves single baskets: :meth:`History.latest` keeps each key's last
state row only (and each customer's last ``seq_len`` events), which gives the same
answer for any time after the history's end.

Feature groups (names in :data:`FEATURES`): RFM (recency, frequency, monetary, tenure),
the customer's past cancellations, the product's past cancellation rate and price, the
customer's past with this product, and the basket (size, total, quantity relative to the
customer's usual, time of day).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

RFM_FEATURES = ["c_recency_days", "c_frequency", "c_monetary_log", "c_new"]
FEATURES = RFM_FEATURES + [
    "c_tenure_days", "c_lines", "c_mean_log_qty", "c_mean_line_value_log",
    "c_cancel_lines", "c_cancel_rate", "c_cancel_value_share", "c_days_since_cancel",
    "p_lines", "p_cancel_rate", "p_price_ratio", "p_customers_log",
    "cp_bought", "cp_cancelled",
    "price_log", "quantity_log", "line_value_log", "qty_vs_usual",
    "basket_lines", "basket_value_log", "basket_share", "hour", "weekday", "is_uk",
]
#: the columns a target line needs (a basket line posted to the API has no invoice yet)
TARGET_COLUMNS = ("customer_id", "stock_code", "time", "quantity", "price", "invoice", "country")
_DAY_S = 86_400.0
_FEW = 10_000


def _asof(targets: pl.DataFrame, state: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``targets`` with the last ``state`` row of the same key strictly before each time."""
    if targets.height < _FEW:  # a basket: only its keys' rows (the same answer, without sorting every key)
        state = state.join(targets.select(by).unique(), on=by, how="semi")
    state = state.rename({"time": "state_time"}).sort("state_time")
    with warnings.catch_warnings():  # sortedness inside each group is ours to keep: state is sorted by time
        warnings.simplefilter("ignore")
        return targets.sort("time").join_asof(state, left_on="time", right_on="state_time", by=by,
                                              strategy="backward", allow_exact_matches=False)


def _running(events: pl.DataFrame, by: list[str], sums: dict[str, pl.Expr]) -> pl.DataFrame:
    """Running totals of ``sums`` per key, one row per (key, timestamp)."""
    per_time = events.group_by([*by, "time"]).agg(**sums).sort([*by, "time"])
    return per_time.with_columns([pl.col(c).cum_sum().over(by) for c in sums])


@dataclass
class History:
    """The state tables features are read from (see the module docstring)."""

    customer: pl.DataFrame
    customer_cancels: pl.DataFrame
    product: pl.DataFrame
    product_cancels: pl.DataFrame
    pair: pl.DataFrame
    events: pl.DataFrame  # every line and cancellation, by customer then time: the sequences
    end: object = None

    def latest(self, seq_len: int) -> History:
        """Each key's last state only (and each customer's last ``seq_len`` events): what
        scoring a basket after the history's end needs."""
        def last(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
            return df.sort("time").group_by(by, maintain_order=True).last()
        ev = self.events.sort("customer_id", "time").group_by("customer_id", maintain_order=True).tail(seq_len)
        return History(last(self.customer, ["customer_id"]), last(self.customer_cancels, ["customer_id"]),
                       last(self.product, ["stock_code"]), last(self.product_cancels, ["stock_code"]),
                       last(self.pair, ["customer_id", "stock_code"]), ev, self.end)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("customer", "customer_cancels", "product", "product_cancels", "pair", "events"):
            getattr(self, name).write_parquet(folder / f"{name}.parquet")

    @classmethod
    def load(cls, folder: Path) -> History:
        tables = {n: pl.read_parquet(folder / f"{n}.parquet") for n in
                  ("customer", "customer_cancels", "product", "product_cancels", "pair", "events")}
        return cls(**tables, end=tables["events"]["time"].max())


def build_history(lines: pl.DataFrame, cancels: pl.DataFrame) -> History:
    """State tables from original ``lines`` and ``cancels`` (labels.RetailLog)."""
    value = pl.col("quantity") * pl.col("price")
    customer = _running(lines, ["customer_id"], {
        "c_lines": pl.len(), "c_invoices": pl.col("invoice").n_unique(), "c_spend": value.sum(),
        "c_log_qty": pl.col("quantity").log1p().sum(), "c_log_value": value.log1p().sum()})
    first = lines.group_by("customer_id").agg(c_first=pl.col("time").min())
    customer = customer.join(first, on="customer_id").with_columns(c_last=pl.col("time"))
    customer_cancels = _running(cancels, ["customer_id"], {
        "cc_lines": pl.len(), "cc_value": (pl.col("quantity") * pl.col("price")).sum()}).with_columns(
        cc_last=pl.col("time"))
    product = _running(lines, ["stock_code"], {
        "p_lines": pl.len(), "p_price_sum": pl.col("price").sum(), "p_customers": pl.col("customer_id").n_unique()})
    product_cancels = _running(cancels, ["stock_code"], {"pc_lines": pl.len()})
    bought = lines.select("customer_id", "stock_code", "time", b=pl.lit(1), c=pl.lit(0))
    undone = cancels.select("customer_id", "stock_code", "time", b=pl.lit(0), c=pl.lit(1))
    pair = _running(pl.concat([bought, undone]), ["customer_id", "stock_code"],
                    {"cp_bought": pl.col("b").sum(), "cp_cancelled": pl.col("c").sum()})
    events = pl.concat([
        lines.select("customer_id", "time", "stock_code", "quantity", "price", kind=pl.lit(1, pl.Int8)),
        cancels.select("customer_id", "time", "stock_code", "quantity", "price", kind=pl.lit(2, pl.Int8)),
    ]).sort("customer_id", "time")
    return History(customer, customer_cancels, product, product_cancels, pair, events, lines["time"].max())


def line_features(targets: pl.DataFrame, history: History, prior_rate: float = 0.02,
                  prior_strength: float = 20.0) -> pl.DataFrame:
    """``targets`` (one row per line: :data:`TARGET_COLUMNS`, plus any others, kept) with
    the :data:`FEATURES` columns, in the targets' order. Missing history is null (LightGBM
    reads it as missing). A product's cancel rate is shrunk towards ``prior_rate`` with
    the weight of ``prior_strength`` lines (a fixed number, not read from the data, so a
    later event cannot move it)."""
    t = targets.with_row_index("_row")
    value = pl.col("quantity") * pl.col("price")
    basket_key = pl.coalesce("invoice", pl.col("customer_id") + pl.lit("@") + pl.col("time").cast(pl.String))
    t = t.with_columns(_basket=basket_key).with_columns(
        basket_lines=pl.len().over("_basket"), basket_value=value.sum().over("_basket"))
    t = _asof(t, history.customer, ["customer_id"]).drop("state_time")
    t = _asof(t, history.customer_cancels, ["customer_id"]).drop("state_time")
    t = _asof(t, history.product, ["stock_code"]).drop("state_time")
    t = _asof(t, history.product_cancels, ["stock_code"]).drop("state_time")
    t = _asof(t, history.pair, ["customer_id", "stock_code"]).drop("state_time")
    days = lambda a, b: (pl.col(a) - pl.col(b)).dt.total_seconds() / _DAY_S  # noqa: E731
    known = pl.col("c_lines").is_not_null()
    out = t.with_columns(
        c_recency_days=days("time", "c_last"), c_frequency=pl.col("c_invoices").fill_null(0),
        c_monetary_log=pl.col("c_spend").fill_null(0).log1p(), c_new=(~known).cast(pl.Int8),
        c_tenure_days=days("time", "c_first").clip(lower_bound=0).fill_null(0),
        c_lines=pl.col("c_lines").fill_null(0), c_mean_log_qty=pl.col("c_log_qty") / pl.col("c_lines"),
        c_mean_line_value_log=pl.col("c_log_value") / pl.col("c_lines"),
        c_cancel_lines=pl.col("cc_lines").fill_null(0),
        c_cancel_rate=pl.col("cc_lines").fill_null(0) / (pl.col("c_lines").fill_null(0) + 1),
        c_cancel_value_share=pl.col("cc_value").fill_null(0) / (pl.col("c_spend").fill_null(0) + 1),
        c_days_since_cancel=days("time", "cc_last"),
        p_lines=pl.col("p_lines").fill_null(0),
        p_cancel_rate=(pl.col("pc_lines").fill_null(0) + prior_strength * prior_rate)
        / (pl.col("p_lines").fill_null(0) + prior_strength),
        p_price_ratio=pl.col("price") / (pl.col("p_price_sum") / pl.col("p_lines")),
        p_customers_log=pl.col("p_customers").fill_null(0).log1p(),
        cp_bought=pl.col("cp_bought").fill_null(0), cp_cancelled=pl.col("cp_cancelled").fill_null(0),
        price_log=pl.col("price").log1p(), quantity_log=pl.col("quantity").log1p(), line_value_log=value.log1p(),
        basket_value_log=pl.col("basket_value").log1p(), basket_share=value / pl.col("basket_value"),
        hour=pl.col("time").dt.hour(), weekday=pl.col("time").dt.weekday(),
        is_uk=(pl.col("country") == "United Kingdom").cast(pl.Int8).fill_null(0),
    ).with_columns(qty_vs_usual=pl.col("quantity_log") - pl.col("c_mean_log_qty"))
    return out.sort("_row").drop("_row", "_basket")


def matrix(features: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """The feature columns as float32, missing as NaN (LightGBM's own missing value)."""
    return features.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy().astype(np.float32)
