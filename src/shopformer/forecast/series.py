"""Weekly sales series from the event store: units and revenue per product per week.

Purchases (``event_type == "purchase"``, quantity in ``value``) are summed per product
per week (weeks start on Monday, UTC, as stored). Cancellations: Online Retail writes a
cancelled invoice line as a negative quantity; ingest stores it as a ``cancel`` event
with ``|quantity|`` (and rejects the few negative non-cancel lines, stock adjustments).
With ``net_cancellations`` (default) a week's cancelled units of a product are taken off
that week's purchased units, floored at 0: an order entered and cancelled at once (the
shop's 80,995 and 74,215-unit orders) is no demand, and a cancellation weeks after its
order does not make a week negative. Revenue is units x the line's ``unit_price`` (the
``context`` JSON Online Retail's reader writes), else the catalog price.

The last week is kept only if the data reach its Sunday: Online Retail ends on Friday
2011-12-09, so the week of 2011-12-05 (5 of its days missing) is dropped. The first
week is kept (the data start on its Tuesday, 2009-12-01; only Monday is missing).

Categories: :func:`category_series` sums products per top-level category where the
catalog has categories. UCI Online Retail has none, so there the aggregates are per
product and the shop's total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

WEEK = np.timedelta64(7, "D")


@dataclass(frozen=True)
class WeeklyConfig:
    """How events become weekly series."""

    purchase_type: str = "purchase"
    cancel_type: str = "cancel"
    #: take a week's cancelled units off its purchased units (floored at 0)
    net_cancellations: bool = True
    #: item ids that are no products (e.g. Online Retail's POST, M, DOT, BANK CHARGES)
    exclude_items: tuple[str, ...] = ()
    #: drop the last week unless the data reach its last day
    drop_partial_last_week: bool = True


@dataclass
class WeeklySeries:
    """``units[i, t]`` / ``revenue[i, t]``: product ``item_ids[i]`` in the week starting
    ``weeks[t]`` (a Monday, ``datetime64[D]``); every week between the first and last
    is present, zeros where nothing sold."""

    item_ids: list[str]
    weeks: np.ndarray  # [T] datetime64[D]
    units: np.ndarray  # [N, T] float64
    revenue: np.ndarray  # [N, T] float64

    def __post_init__(self) -> None:
        self._index = {item: i for i, item in enumerate(self.item_ids)}

    def index(self, item_id: str) -> int | None:
        return self._index.get(item_id)

    def week_index(self, day: np.datetime64 | str) -> int:
        """Index of the week holding ``day`` (may be < 0 or >= T)."""
        return int((np.datetime64(day, "D") - self.weeks[0]) // WEEK)

    def first_sale(self) -> np.ndarray:
        """[N] index of each product's first week with units (T if none)."""
        sold = self.units > 0
        return np.where(sold.any(axis=1), sold.argmax(axis=1), self.units.shape[1])

    def top(self, n: int, before: int | None = None) -> np.ndarray:
        """Indexes of the ``n`` products with most units in weeks ``< before``."""
        totals = self.units[:, :before].sum(axis=1)
        order = np.argsort(-totals, kind="stable")
        return order[: min(n, int((totals > 0).sum()))]


def weekly_series(events: pl.DataFrame, config: WeeklyConfig = WeeklyConfig(),
                  products: pl.DataFrame | None = None) -> WeeklySeries:
    """Weekly units and revenue per product from stored events (see module doc)."""
    types = [config.purchase_type] + ([config.cancel_type] if config.net_cancellations else [])
    ev = events.filter(pl.col("event_type").is_in(types) & pl.col("item_id").is_not_null()
                       & pl.col("value").is_not_null() & pl.col("timestamp").is_not_null())
    if config.exclude_items:
        ev = ev.filter(~pl.col("item_id").is_in(list(config.exclude_items)))
    if ev.is_empty():
        raise ValueError(f"no {config.purchase_type!r} events with a quantity: nothing to forecast")
    price = pl.col("context").str.json_path_match("$.unit_price").cast(pl.Float64, strict=False)
    if products is not None and "price" in products.columns:
        ev = ev.join(products.select("item_id", pl.col("price").alias("_catalog_price")), on="item_id", how="left")
        price = pl.coalesce(price, pl.col("_catalog_price"))
    sign = pl.when(pl.col("event_type") == config.cancel_type).then(-1.0).otherwise(1.0)
    lines = ev.select(
        "item_id",
        pl.col("timestamp").dt.truncate("1w").dt.date().alias("week"),
        (sign * pl.col("value")).alias("units"),
        (sign * pl.col("value") * price.fill_null(0.0)).alias("revenue"),
    )
    first, last_ts = ev["timestamp"].min(), ev["timestamp"].max()
    start = np.datetime64(lines["week"].min(), "D")
    end = np.datetime64(lines["week"].max(), "D")
    if config.drop_partial_last_week:
        last_day = np.datetime64(last_ts.date(), "D")
        if last_day < end + np.timedelta64(6, "D"):  # the data stop before the week's Sunday
            end = end - WEEK
    if end < start:
        raise ValueError(f"the events ({first} .. {last_ts}) do not cover one whole week")
    weekly = (lines.group_by("item_id", "week").agg(pl.col("units").sum(), pl.col("revenue").sum())
              .with_columns(pl.col("units").clip(lower_bound=0.0))
              .with_columns(pl.when(pl.col("units") > 0).then(pl.col("revenue").clip(lower_bound=0.0))
                            .otherwise(0.0).alias("revenue")))
    weeks = np.arange(start, end + WEEK, WEEK)
    item_ids = sorted(weekly["item_id"].unique().to_list())
    row = {item: i for i, item in enumerate(item_ids)}
    units = np.zeros((len(item_ids), len(weeks)))
    revenue = np.zeros_like(units)
    w = ((weekly["week"].to_numpy().astype("datetime64[D]") - start) // WEEK).astype(np.int64)
    keep = w < len(weeks)
    r = np.array([row[i] for i in weekly["item_id"].to_list()], dtype=np.int64)
    units[r[keep], w[keep]] = weekly["units"].to_numpy()[keep]
    revenue[r[keep], w[keep]] = weekly["revenue"].to_numpy()[keep]
    return WeeklySeries(item_ids, weeks, units, revenue)


def total_series(series: WeeklySeries, name: str = "__total__") -> WeeklySeries:
    """The shop's total (every product summed) as a one-row series."""
    return WeeklySeries([name], series.weeks, series.units.sum(axis=0, keepdims=True),
                        series.revenue.sum(axis=0, keepdims=True))


def category_series(series: WeeklySeries, products: pl.DataFrame) -> WeeklySeries | None:
    """Products summed per top-level category (``categories[0]``); None when the
    catalog has no categories (UCI Online Retail)."""
    cats = products.select("item_id", pl.col("categories").list.first().alias("category")).drop_nulls()
    if cats.is_empty():
        return None
    of_item = dict(zip(cats["item_id"].to_list(), cats["category"].to_list()))
    names = sorted(set(of_item.values()))
    col = {c: j for j, c in enumerate(names)}
    member = np.zeros((len(names), len(series.item_ids)))
    for i, item in enumerate(series.item_ids):
        if item in of_item:
            member[col[of_item[item]], i] = 1.0
    return WeeklySeries(names, series.weeks, member @ series.units, member @ series.revenue)
