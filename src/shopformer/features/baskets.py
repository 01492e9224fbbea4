"""Baskets: the sets of items bought together, from the event log.

A basket is one ``session_id`` (an invoice for UCI Online Retail, a checkout session in
a web shop) or, for events without a session, one user's events of one UTC day. Each
basket holds its distinct items in the order they were first added. Baskets are kept
as a :class:`Sequences` (one row per basket), the CSR layout models already read.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary

#: the event types that say "bought" (the store's log; add_to_cart is a weaker signal)
BASKET_EVENT_TYPES = ("purchase",)


def basket_keys(events: pl.DataFrame) -> pl.Expr:
    """The basket an event belongs to: its session, else its user's UTC day."""
    day = pl.col("timestamp").dt.strftime("%Y-%m-%d").fill_null("")
    by_user = pl.lit("u:") + pl.col("user_id").fill_null("") + pl.lit("@") + day
    session = pl.col("session_id") if "session_id" in events.columns else pl.lit(None, dtype=pl.String)
    return pl.when(session.is_not_null() & (session != "")).then(pl.lit("s:") + session).otherwise(by_user)


def baskets(events: pl.DataFrame, items: Vocabulary,
            event_types: tuple[str, ...] = BASKET_EVENT_TYPES) -> tuple[Sequences, pl.DataFrame]:
    """``(baskets, keys)``: one row per basket of ``events`` of ``event_types`` whose item
    ``items`` knows, its distinct item indexes in first-seen order; ``keys`` has one row
    per basket, aligned: ``basket`` (the key) and ``timestamp`` (its first event).
    Events are taken in ``position`` order when there is one (arrival order)."""
    ev = events.filter(pl.col("event_type").is_in(list(event_types)) & pl.col("item_id").is_not_null())
    if "position" in ev.columns:
        ev = ev.sort("position")
    ev = ev.with_columns(basket=basket_keys(ev), idx=pl.Series(items.encode(ev["item_id"]), dtype=pl.Int64))
    ev = ev.filter(pl.col("idx") > 0).unique(["basket", "idx"], keep="first", maintain_order=True)
    grouped = ev.group_by("basket", maintain_order=True).agg(pl.col("idx"), pl.col("timestamp").min())
    lengths = grouped["idx"].list.len().to_numpy()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = grouped["idx"].explode().to_numpy() if grouped.height else np.zeros(0, dtype=np.int64)
    return Sequences(offsets, flat.astype(np.int64)), grouped.select("basket", "timestamp")
