"""Online metrics as pure functions over frames, against hand-computed cases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from shopformer.feedback.attribution import Attributor, Shown
from shopformer.feedback.online import (
    BUCKETS,
    answer_outcomes,
    attribute,
    by_position,
    daily,
    per_answer,
    position_bucket,
    with_rates,
)
from shopformer.store.impressions import IMPRESSION_SCHEMA

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
EVENT_COLS = {"event_id": pl.String, "event_type": pl.String, "item_id": pl.String,
              "timestamp": pl.Datetime("us", "UTC"), "value": pl.Float64, "request_id": pl.String}


def impressions(*rows: tuple) -> pl.DataFrame:
    """(request_id, day offset, user, model_version, variant, items)"""
    return pl.DataFrame([{
        "request_id": r, "shown_at": T0 + timedelta(days=d), "user_id": u, "session_id": None, "placement": "home",
        "route": "user_recommendations", "model_name": "sasrec", "model_version": v, "experiment": "e" if var else None,
        "variant": var, "strategy": "history", "item_ids": items} for r, d, u, v, var, items in rows],
        schema=IMPRESSION_SCHEMA)


def events(*rows: tuple) -> pl.DataFrame:
    """(event_id, type, item, request_id, value)"""
    return pl.DataFrame([{"event_id": e, "event_type": t, "item_id": i, "timestamp": T0 + timedelta(hours=1),
                          "value": v, "request_id": r} for e, t, i, r, v in rows], schema=EVENT_COLS)


# Three answers: r1 (v1, a), r2 (v1, b), r3 (v2, a; shown a day later)
IMP = impressions(("r1", 0, "u1", "v1", "a", ["i1", "i2", "i3", "i4", "i5", "i6"]),
                  ("r2", 0, "u2", "v1", "b", ["i3", "i1"]),
                  ("r3", 1, "u3", "v2", "a", ["i9"]))
EV = events(("e1", "click", "i2", "r1", None),       # position 2
            ("e2", "click", "i5", "r1", None),       # position 5 (4-5), a second click on r1
            ("e3", "add_to_cart", "i2", "r1", 1.0),  # position 2
            ("e4", "purchase", "i2", "r1", 3.0),     # 3 x 10.0
            ("e5", "click", "i7", "r2", None),       # not shown in r2
            ("e6", "purchase", "i7", "r2", None),    # not shown: revenue counts by position only
            ("e7", "click", "i9", "r3", None),       # position 1
            ("e8", "click", "i1", "nope", None))     # names no stored answer: left out
PRICES = pl.DataFrame({"item_id": ["i2", "i7"], "price": [10.0, 4.0]})


def test_position_buckets():
    got = [position_bucket(p) for p in (None, 1, 2, 3, 4, 5, 6, 10, 11, 500)]
    assert got == ["not_shown", "1", "2", "3", "4-5", "4-5", "6-10", "6-10", "11+", "11+"]
    with pytest.raises(ValueError):
        position_bucket(0)


def test_attribute_positions_buckets_and_revenue():
    a = attribute(IMP, EV, PRICES)
    assert a["event_id"].to_list() == ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]  # e8 names no answer
    assert a["position"].to_list() == [2, 5, 2, 2, None, None, 1]
    assert a["bucket"].to_list() == ["2", "4-5", "2", "2", "not_shown", "not_shown", "1"]
    assert a["revenue"].to_list() == [0.0, 0.0, 0.0, 30.0, 0.0, 4.0, 0.0]  # quantity 1 when value is absent
    assert a["model_version"].to_list() == ["v1"] * 6 + ["v2"]
    assert a["user_id"].to_list() == ["u1"] * 4 + ["u2"] * 2 + ["u3"]
    # without prices a purchase adds no revenue (the catalog has no price for it)
    assert attribute(IMP, EV)["revenue"].sum() == 0.0


def test_per_answer_counts_events_on_shown_items_only():
    answers = per_answer(IMP, attribute(IMP, EV, PRICES)).sort("request_id")
    assert answers.select("request_id", "n_items", "clicks", "add_to_carts", "purchases", "revenue").rows() == [
        ("r1", 6, 2, 1, 1, 30.0), ("r2", 2, 0, 0, 0, 0.0), ("r3", 1, 1, 0, 0, 0.0)]


def test_answer_outcomes_and_rates_per_group():
    answers = per_answer(IMP, attribute(IMP, EV, PRICES))
    by_variant = answer_outcomes(answers, ["variant"])
    assert by_variant.rows() == [("a", 2, 2, 1, 1, 30.0), ("b", 1, 0, 0, 0, 0.0)]
    assert by_variant.columns == ["variant", "answers", "answers_clicked", "answers_carted", "answers_purchased",
                                  "revenue"]
    total = with_rates(answer_outcomes(answers)).row(0, named=True)
    assert (total["answers"], total["answers_clicked"]) == (3, 2)
    assert total["ctr"] == pytest.approx(2 / 3) and total["atc_rate"] == pytest.approx(1 / 3)
    assert total["purchase_rate"] == pytest.approx(1 / 3) and total["revenue_per_answer"] == pytest.approx(10.0)


def test_by_position_rates_per_item_shown():
    got = by_position(IMP, attribute(IMP, EV, PRICES))
    assert got["bucket"].to_list() == list(BUCKETS)
    # slots shown: r1 has 6 items, r2 2, r3 1 -> position 1: 3, 2: 2, 3: 1, 4-5: 2, 6-10: 1, 11+: 0
    assert got["shown"].to_list() == [3, 2, 1, 2, 1, 0, None]
    assert got["clicks"].to_list() == [1, 1, 0, 1, 0, 0, 1]
    assert got["purchases"].to_list() == [0, 1, 0, 0, 0, 0, 1]
    assert got["ctr"].to_list()[:5] == pytest.approx([1 / 3, 1 / 2, 0.0, 1 / 2, 0.0])
    assert got["ctr"][5] is None and got["revenue"].to_list() == [0.0, 30.0, 0.0, 0.0, 0.0, 0.0, 4.0]


def test_daily_per_model_version():
    got = daily(per_answer(IMP, attribute(IMP, EV, PRICES)))
    assert got.select("day", "model_version", "answers", "ctr").rows() == [
        (T0.date(), "v1", 2, 0.5), ((T0 + timedelta(days=1)).date(), "v2", 1, 1.0)]


def test_empty_frames():
    none = IMP.clear()
    a = attribute(none, EV.clear())
    assert a.height == 0 and per_answer(none, a).height == 0
    assert answer_outcomes(per_answer(none, a)).row(0) == (0, 0, 0, 0, 0.0)
    assert by_position(none, a)["shown"].to_list() == [0, 0, 0, 0, 0, 0, None]


def test_attributor_remembers_then_reads_the_store_once():
    stored = {"r9": {"item_ids": ["x", "y"], "placement": "pdp", "route": "similar", "model_version": "v3"}}
    reads = []

    def lookup(rid):
        reads.append(rid)
        return stored.get(rid)

    att = Attributor(2, lookup)
    att.remember("r1", Shown(("a", "b", "c"), "home", "user_recommendations", "v1", "exp", "b"))
    found = att.attribute("r1", "purchase", "c", 2.0, {"c": 5.0}.get)
    assert (found.position, found.bucket, found.revenue, found.shown.variant) == (3, "3", 10.0, "b")
    assert att.attribute("r1", "click", "z").bucket == "not_shown" and reads == []  # remembered: no store read
    assert att.attribute("r9", "click", "y").position == 2 and att.attribute("r9", "click", "x").position == 1
    assert reads == ["r9"]  # read once, then remembered
    assert att.attribute("gone", "click", "a") is None
    att.remember("r10", Shown(("q",), "home", "search"))  # the LRU holds 2: r1, the least recent, goes
    att.attribute("r1", "click", "a")
    assert reads[-1] == "r1"


def test_revenue_uses_the_price_paid_before_the_catalog_price():
    # e4 paid 8.5 a unit (a sale price) while the catalog says 10.0 now; e6 names no price:
    # the catalog's 4.0; a context without a price (or with one that is not a number) counts as none
    paid = EV.with_columns(context=pl.Series(['{"request_id": "r1"}', None, None, '{"request_id": "r1", "price": 8.5}',
                                              None, '{"note": "x"}', None, '{"price": "free"}']))
    a = attribute(IMP, paid, PRICES)
    assert a["revenue"].to_list() == [0.0, 0.0, 0.0, 25.5, 0.0, 4.0, 0.0]
    assert a["revenue"].sum() == pytest.approx(29.5)
    assert "paid" not in a.columns and "price" not in a.columns


def test_attributor_values_a_purchase_at_the_price_paid():
    att = Attributor(2, lambda rid: None)
    att.remember("r1", Shown(("a", "b"), "home", "user_recommendations", "v1"))
    assert att.attribute("r1", "purchase", "b", 2.0, {"b": 5.0}.get, paid=4.0).revenue == 8.0
    assert att.attribute("r1", "purchase", "b", None, None, paid=4.0).revenue == 4.0
    assert att.attribute("r1", "purchase", "b", 2.0, {"b": 5.0}.get).revenue == 10.0  # no price named: catalog
