"""Online metrics from what answers showed (impressions) and what customers did next
(events that name the answer's ``request_id``): pure functions over Polars frames, and
:func:`answers_frame`, which reads them from a store.

Attribution
    An event names the answer it came from with ``request_id`` (kept in its ``context``
    JSON, see :mod:`shopformer.store.impressions`). It is joined to that answer's
    impression: its *position* is the 1-based rank of the event's item in the items
    shown (null, bucket ``not_shown``, when the item was not among them); the model
    version, experiment, variant, placement and route are the impression's. Events that
    name an unknown request id are left out.
Answer outcomes
    An answer's clicks, add-to-carts and purchases are its attributed events ON ITEMS IT
    SHOWED (an event naming the answer with another item counts only in the position
    breakdown, as ``not_shown``): the click-through rate is the share of answers with at
    least one click, and so on.
Revenue
    A purchase's revenue is its quantity (the event's ``value``; 1 when absent) times the
    unit price paid, ``context.price`` of the event, or, when the event names none, the
    item's catalog price now (the store keeps no price history; a purchase of an item
    with neither adds 0). Prices are summed as they are: a catalog in several
    currencies needs one report per currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from shopformer.store import EventStore

#: position buckets (labels of the Prometheus counters and of ``--by position``), in order
BUCKETS: tuple[str, ...] = ("1", "2", "3", "4-5", "6-10", "11+", "not_shown")
#: the bounds of each bucket of shown positions (``None``: no upper bound)
_BOUNDS: tuple[tuple[int, int | None], ...] = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, None))
#: the key of an event's ``context`` that holds the unit price paid (see Revenue above)
PAID = "price"
#: event type -> the answer column counting it
OUTCOMES: dict[str, str] = {"click": "clicks", "add_to_cart": "add_to_carts", "purchase": "purchases"}
#: the impression columns an attributed event carries
_CONTEXT = ("user_id", "shown_at", "placement", "route", "model_name", "model_version", "experiment", "variant")
#: what a report may group by (besides ``position``)
GROUPS: tuple[str, ...] = ("model_version", "variant", "experiment", "placement", "route")


def position_bucket(position: int | None) -> str:
    """The bucket of a 1-based position (None: the item was not shown)."""
    if position is None:
        return "not_shown"
    for (lo, hi), name in zip(_BOUNDS, BUCKETS):
        if position >= lo and (hi is None or position <= hi):
            return name
    raise ValueError(f"position must be >= 1, got {position}")


def _bucket(col: str) -> pl.Expr:
    expr = pl.when(pl.col(col).is_null()).then(pl.lit("not_shown"))
    for (lo, hi), name in zip(_BOUNDS, BUCKETS):
        expr = expr.when(pl.col(col) <= hi if hi is not None else pl.lit(True)).then(pl.lit(name))
    return expr.otherwise(pl.lit("not_shown"))


def attribute(impressions: pl.DataFrame, events: pl.DataFrame, prices: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per event (with a ``request_id`` column) whose request id names one of
    ``impressions``: ``event_id, event_type, item_id, timestamp, value, request_id``,
    ``position`` (1-based; null when the item was not shown), ``bucket``, ``revenue``
    (purchases: quantity x the price paid, ``context.price``, else the price from
    ``prices``, columns ``item_id, price``; 0 for the rest) and the impression's ``user_id`` (the customer shown the answer), ``shown_at``,
    ``placement``, ``route``, ``model_name``, ``model_version``, ``experiment``, ``variant``."""
    shown = (impressions.select("request_id", "item_ids")
             .with_columns(position=pl.int_ranges(1, pl.col("item_ids").list.len() + 1))
             .explode("item_ids", "position").rename({"item_ids": "item_id"})
             .drop_nulls("item_id").unique(["request_id", "item_id"], keep="first"))
    paid = (pl.col("context").str.json_path_match(f"$.{PAID}").cast(pl.Float64, strict=False)
            if "context" in events.columns else pl.lit(None, pl.Float64))
    found = (events.select("event_id", "event_type", "item_id", "timestamp", "value", "request_id", paid.alias("paid"))
             .join(impressions.select("request_id", *_CONTEXT), on="request_id", how="inner")
             .join(shown, on=["request_id", "item_id"], how="left")
             .with_columns(pl.col("position").cast(pl.Int64)))
    price = (found.select("item_id").unique().join(prices.select("item_id", "price"), on="item_id", how="left")
             if prices is not None else found.select("item_id").unique().with_columns(price=pl.lit(None, pl.Float64)))
    quantity = pl.col("value").fill_null(1.0)
    return (found.join(price, on="item_id", how="left")
            .with_columns(bucket=_bucket("position"),
                          revenue=pl.when(pl.col("event_type") == "purchase")
                          .then(quantity * pl.coalesce("paid", "price").fill_null(0.0)).otherwise(0.0))
            .drop("price", "paid").sort("timestamp", "event_id", nulls_last=True))


def per_answer(impressions: pl.DataFrame, attributed: pl.DataFrame) -> pl.DataFrame:
    """One row per answer: the impression's columns without ``item_ids``, ``n_items``,
    and its ``clicks``, ``add_to_carts``, ``purchases``, ``revenue`` (attributed events on
    the items it showed)."""
    on_shown = attributed.filter(pl.col("position").is_not_null())
    counts = on_shown.group_by("request_id").agg(
        *(((pl.col("event_type") == t).sum().cast(pl.Int64)).alias(name) for t, name in OUTCOMES.items()),
        pl.col("revenue").sum().alias("revenue"))
    return (impressions.with_columns(n_items=pl.col("item_ids").list.len().cast(pl.Int64)).drop("item_ids")
            .join(counts, on="request_id", how="left")
            .with_columns(pl.col(*OUTCOMES.values()).fill_null(0), pl.col("revenue").fill_null(0.0)))


def answer_outcomes(answers: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """Per group of ``by`` (all answers as one group when empty): ``answers``,
    ``answers_clicked``, ``answers_carted``, ``answers_purchased`` (answers with at least
    one such event) and ``revenue``, from :func:`per_answer`'s frame; what an experiment
    report compares per variant. Groups sorted by their keys."""
    aggs = [pl.len().cast(pl.Int64).alias("answers"),
            (pl.col("clicks") > 0).sum().cast(pl.Int64).alias("answers_clicked"),
            (pl.col("add_to_carts") > 0).sum().cast(pl.Int64).alias("answers_carted"),
            (pl.col("purchases") > 0).sum().cast(pl.Int64).alias("answers_purchased"),
            pl.col("revenue").sum().cast(pl.Float64).alias("revenue")]
    if not by:
        return answers.select(aggs)
    return answers.group_by(list(by)).agg(aggs).sort(list(by), nulls_last=True)


def with_rates(outcomes: pl.DataFrame) -> pl.DataFrame:
    """:func:`answer_outcomes` plus ``ctr``, ``atc_rate``, ``purchase_rate`` (shares of
    answers) and ``revenue_per_answer`` (null for a group with no answers)."""
    n = pl.when(pl.col("answers") > 0).then(pl.col("answers").cast(pl.Float64))
    return outcomes.with_columns(ctr=pl.col("answers_clicked") / n, atc_rate=pl.col("answers_carted") / n,
                                 purchase_rate=pl.col("answers_purchased") / n,
                                 revenue_per_answer=pl.col("revenue") / n)


def by_position(impressions: pl.DataFrame, attributed: pl.DataFrame) -> pl.DataFrame:
    """Per position bucket (:data:`BUCKETS`, in order): ``shown`` (item slots shown in
    that bucket over all answers; null for ``not_shown``), attributed ``clicks``,
    ``add_to_carts``, ``purchases``, ``revenue`` there, and ``ctr``, ``atc_rate``,
    ``purchase_rate``, ``revenue_per_shown`` (per slot shown)."""
    n = impressions["item_ids"].list.len().cast(pl.Int64)
    shown = [int((n - lo + 1).clip(0, None if hi is None else hi - lo + 1).sum()) for lo, hi in _BOUNDS] + [None]
    base = pl.DataFrame({"bucket": list(BUCKETS), "shown": shown}, schema={"bucket": pl.String, "shown": pl.Int64})
    counts = attributed.group_by("bucket").agg(
        *(((pl.col("event_type") == t).sum().cast(pl.Int64)).alias(name) for t, name in OUTCOMES.items()),
        pl.col("revenue").sum().alias("revenue"))
    per = pl.when(pl.col("shown") > 0).then(pl.col("shown").cast(pl.Float64))
    return (base.join(counts, on="bucket", how="left", maintain_order="left")
            .with_columns(pl.col(*OUTCOMES.values()).fill_null(0), pl.col("revenue").fill_null(0.0))
            .with_columns(ctr=pl.col("clicks") / per, atc_rate=pl.col("add_to_carts") / per,
                          purchase_rate=pl.col("purchases") / per, revenue_per_shown=pl.col("revenue") / per))


def daily(answers: pl.DataFrame, by: str = "model_version") -> pl.DataFrame:
    """Per UTC day and ``by`` group: :func:`answer_outcomes` with rates (what the report plots)."""
    return with_rates(answer_outcomes(answers.with_columns(day=pl.col("shown_at").dt.date()), ["day", by]))


def answers_frame(store: EventStore, *, since: datetime | None = None, experiment: str | None = None) -> pl.DataFrame:
    """:func:`per_answer` over the store's impressions shown since ``since`` (of one
    ``experiment`` when given) and the events that name them."""
    impressions, attributed = load(store, since=since, experiment=experiment)
    return per_answer(impressions, attributed)


def load(store: EventStore, *, since: datetime | None = None,
         experiment: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(impressions shown since ``since``, :func:`attribute`'s frame of the events that
    name them) from the store, with catalog prices for the purchases."""
    impressions = store.impressions(since=since, experiment=experiment)
    events = store.attributable_events(since)
    bought = events.filter(pl.col("event_type") == "purchase")["item_id"].drop_nulls().unique().to_list()
    prices = store.products(bought, columns=["price"]) if bought else None
    return impressions, attribute(impressions, events, prices)


__all__ = ["BUCKETS", "GROUPS", "OUTCOMES", "answer_outcomes", "answers_frame", "attribute", "by_position", "daily",
           "load", "per_answer", "position_bucket", "with_rates"]
