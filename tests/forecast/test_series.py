"""Weekly series from stored events: weeks, cancellations, revenue, partial last week,
calendar features."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from shopformer.forecast.calendar import calendar_features
from shopformer.forecast.series import WeeklyConfig, category_series, total_series, weekly_series
from shopformer.types import EVENT_SCHEMA


def _events(rows: list[tuple]) -> pl.DataFrame:
    """rows: (item, type, 'YYYY-MM-DD', quantity, unit price)."""
    out = [{"event_id": None, "user_id": "u", "item_id": item, "event_type": kind,
            "timestamp": datetime.fromisoformat(day).replace(hour=12, tzinfo=timezone.utc), "position": n,
            "session_id": None, "query": None, "value": float(q), "context": f'{{"unit_price": {p}}}'}
           for n, (item, kind, day, q, p) in enumerate(rows)]
    return pl.DataFrame(out, schema=EVENT_SCHEMA)


EVENTS = _events([
    ("A", "purchase", "2011-01-04", 10, 2.0),  # Tuesday of the week of Mon 2011-01-03
    ("A", "purchase", "2011-01-09", 5, 2.0),  # Sunday: the same week
    ("B", "purchase", "2011-01-05", 100, 1.0),
    ("B", "cancel", "2011-01-05", 100, 1.0),  # entered and cancelled at once: no demand
    ("A", "purchase", "2011-01-18", 4, 2.5),  # week of 01-17 (week of 01-10 has nothing)
    ("A", "cancel", "2011-01-19", 9, 2.5),  # more cancelled than bought that week: floored at 0
    ("B", "purchase", "2011-01-24", 7, 1.0),
    ("B", "view", "2011-01-25", 1, 1.0),  # not a sale
    ("A", "purchase", "2011-02-02", 3, 2.0),  # Wednesday: the data end before the week's Sunday
])


def test_weeks_units_revenue_and_cancellations():
    s = weekly_series(EVENTS)
    assert s.item_ids == ["A", "B"]
    np.testing.assert_array_equal(s.weeks, np.array(["2011-01-03", "2011-01-10", "2011-01-17", "2011-01-24"],
                                                    dtype="datetime64[D]"))  # 01-31 is partial: dropped
    np.testing.assert_allclose(s.units, [[15, 0, 0, 0], [0, 0, 0, 7]])
    np.testing.assert_allclose(s.revenue, [[30, 0, 0, 0], [0, 0, 0, 7]])
    np.testing.assert_array_equal(s.first_sale(), [0, 3])
    assert total_series(s).units.tolist() == [[15, 0, 0, 7]]


def test_options_gross_units_and_keeping_the_last_week():
    s = weekly_series(EVENTS, WeeklyConfig(net_cancellations=False, drop_partial_last_week=False))
    assert len(s.weeks) == 5
    np.testing.assert_allclose(s.units, [[15, 0, 4, 0, 3], [100, 0, 0, 7, 0]])
    s = weekly_series(EVENTS, WeeklyConfig(exclude_items=("B",)))
    assert s.item_ids == ["A"]


def test_top_products_before_a_week():
    s = weekly_series(EVENTS)
    assert s.top(1, before=2).tolist() == [0]  # A sold first
    assert s.top(5, before=1).tolist() == [0]  # only products with units count


def test_categories_sum_products_or_none():
    s = weekly_series(EVENTS)
    none = pl.DataFrame({"item_id": ["A", "B"], "categories": [[], []]}, schema={"item_id": pl.String,
                                                                                  "categories": pl.List(pl.String)})
    assert category_series(s, none) is None  # Online Retail's catalog: no categories
    cats = pl.DataFrame({"item_id": ["A", "B"], "categories": [["Home", "Mugs"], ["Home"]]})
    c = category_series(s, cats)
    assert c.item_ids == ["Home"] and c.units.tolist() == [[15, 0, 0, 7]]


def test_no_sales_is_a_clear_error():
    with pytest.raises(ValueError, match="nothing to forecast"):
        weekly_series(EVENTS.filter(pl.col("event_type") == "view"))


def test_calendar_features():
    pytest.importorskip("holidays", reason="the forecast extra (holidays) is not installed")
    weeks = np.array(["2011-12-19", "2011-12-26", "2011-04-25", "2011-06-13"], dtype="datetime64[D]")
    cal = calendar_features(weeks)
    assert cal.shape == (4, 4)
    assert cal[0, 2] == 0.0  # the week holding Christmas Day (Sunday 25th)
    assert cal[1, 2] == 1.0  # just after: next Christmas is far
    assert cal[1, 3] == 1.5  # Boxing Day, Christmas (observed) on Tue 27th, New Year's Day on Sun 1 Jan: 3 / 2
    assert cal[2, 3] == 1.0  # Easter Monday 25 Apr + the royal wedding, Fri 29 Apr 2011
    assert cal[3, 3] == 0.0
    np.testing.assert_allclose(cal[:, 0] ** 2 + cal[:, 1] ** 2, 1.0, rtol=1e-5)
