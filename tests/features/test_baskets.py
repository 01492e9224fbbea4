"""Baskets from events: sessions, else a user's day; distinct items in first-seen order."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from shopformer.features.baskets import baskets
from shopformer.features.vocab import Vocabulary


def test_sessions_and_user_days_become_baskets():
    ev = pl.DataFrame({
        "position": [1, 2, 3, 4, 5, 6, 7, 8],
        "user_id": ["u", "u", "u", "v", "v", "v", "w", "w"],
        "item_id": ["a", "b", "a", "c", "a", "x", "b", "c"],
        "event_type": ["purchase"] * 6 + ["view", "purchase"],
        "session_id": ["s1", "s1", "s1", None, None, None, None, None],
        "timestamp": [datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 10),
                      datetime(2024, 1, 1, 9), datetime(2024, 1, 1, 20), datetime(2024, 1, 2, 9),
                      datetime(2024, 1, 3), datetime(2024, 1, 3)],
    })
    items = Vocabulary(["a", "b", "c"])
    got, keys = baskets(ev, items)
    rows = [items.decode(got.row(r)) for r in range(len(got))]
    # s1: a, b (a again ignored); v's 1 Jan: c, a; v's 2 Jan: x unknown -> no basket; w: the view is not a purchase
    assert rows == [["a", "b"], ["c", "a"], ["c"]]
    assert keys["basket"].to_list() == ["s:s1", "u:v@2024-01-01", "u:w@2024-01-03"]
