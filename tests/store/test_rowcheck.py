"""The plain-Python small-batch validation gives exactly what the vectorized (Polars)
ingest rules give: the same accepted rows, event ids, rejection reasons, examples and
warnings; inputs it cannot reproduce exactly go to the vectorized path."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopformer.store.frames import check_events, validate_events, validate_events_vectorized
from shopformer.store.rowcheck import check_event_rows

T0 = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)
PLUS2 = timezone(timedelta(hours=2))

IDS = [None, "", " ", "u1", " u1 ", "u2", "u\ufffd", "\x1fu1", "u1\x1f", "\u2003u1\u2003", "\xa0", 5, 17850.0, 2.5, "ü", "a\x00b"]
TYPES = [None, "", "view", "View", " view", "add-to-cart", "add to cart", "ADD_TO_CART", "addtocart", "page view",
         "search", "purchase", "teleport", "rate", "cancel", "Transaction", "add\t-cart", "\u212aview", "vıew", 7,
         "remove-from  cart"]
TIMES = [None, T0, T0.replace(tzinfo=None), T0.astimezone(PLUS2), T0.replace(microsecond=0), date(2024, 5, 1),
         datetime(1969, 12, 31, 23, 59, 59, 999999), datetime(999, 1, 1), "2024-05-01T10:00:00Z", "", "yesterday"]
VALUES = [None, 0, 3, -1, 2.5, -2.5, 1e-5, 1e20, 123456789.125, 0.1, "3", " 4 ", "", " ", "abc", "-7", "1e3", ".5",
          True, float("nan"), float("inf"), -0.0, "-0", 10**30, 1e15, 9.99e14]
TEXTS = [None, "", " ", "red cup", " red ", "x\ufffd", {"page": "home", "ü": 1}, '{"a": 1}', ["a"], "\x1e"]
EVENT_IDS = [None, "", " ", "e1", "e2", " e1", "e\ufffd", 7]


#: the subsets the plain-Python path always takes
SIMPLE_TIMES = [t for t in TIMES if not isinstance(t, str) and getattr(t, "year", 2000) >= 1000]
SIMPLE_VALUES = [None, 0, 3, -1, 2.5, -2.5, 123456789.125, 0.1, "3", " 4 ", "", " ", "-7", "1e3", ".5", 1e14]
SIMPLE_TEXTS = [t for t in TEXTS if not isinstance(t, list)]
SIMPLE_TYPES = [t for t in TYPES if not isinstance(t, str) or t.isascii()]


def row_strategy(simple: bool = False):
    return st.fixed_dictionaries(
        {
            "event_id": st.sampled_from(EVENT_IDS),
            "user_id": st.sampled_from(IDS),
            "item_id": st.sampled_from(IDS),
            "event_type": st.sampled_from(SIMPLE_TYPES if simple else TYPES),
            "timestamp": st.sampled_from(SIMPLE_TIMES if simple else TIMES),
        },
        optional={
            "session_id": st.sampled_from(IDS),
            "query": st.sampled_from(SIMPLE_TEXTS if simple else TEXTS),
            "value": st.sampled_from(SIMPLE_VALUES if simple else VALUES),
            "context": st.sampled_from(SIMPLE_TEXTS if simple else TEXTS),
            "extra": st.just("ignored"),
            **({} if simple else {"position": st.sampled_from([None, 3])}),
        },
    )


def _normalize_random_ids(rows: list[dict]) -> list[dict]:
    # rows with neither an id nor a time get a random "u-" id on both paths
    return [{**r, "event_id": "u-*" if r["event_id"].startswith("u-") else r["event_id"]} for r in rows]


def assert_same(rows: list[dict]) -> bool:
    """Compare both paths on ``rows``; returns whether the plain-Python path took them."""
    try:
        fast = check_event_rows(rows)
    except Exception as exc:  # noqa: BLE001 - then the vectorized path must fail alike
        with pytest.raises(type(exc)):
            validate_events_vectorized(rows)
        return True
    if fast is None:
        return False
    ref, ref_report = validate_events_vectorized(rows)
    good, report = fast
    want = [{k: v for k, v in r.items() if k != "position"} for r in ref.to_dicts()]
    assert _normalize_random_ids(good) == _normalize_random_ids(want)
    for a, b in zip(good, want):
        assert (a["timestamp"] is None) == (b["timestamp"] is None)
    assert report.rejected == ref_report.rejected
    assert list(report.rejected) == list(ref_report.rejected)
    assert report.examples == ref_report.examples
    assert report.warnings == ref_report.warnings
    assert (report.rows_read, report.rows_accepted) == (ref_report.rows_read, ref_report.rows_accepted)
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row_strategy(), min_size=1, max_size=6))
def test_plain_python_rules_equal_the_vectorized_ones(rows):
    assert_same(rows)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row_strategy(simple=True), min_size=1, max_size=6))
def test_simple_rows_always_take_the_plain_python_path(rows):
    assert assert_same(rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([
    {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0},
    {"event_id": None, "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0},
    {"event_id": None, "user_id": "u1", "item_id": "i1", "event_type": "View", "timestamp": T0.astimezone(PLUS2)},
    {"event_id": None, "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0, "value": 2},
    {"event_id": None, "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0, "value": 2.0},
    {"event_id": None, "user_id": "u1", "item_id": None, "event_type": "view", "timestamp": None},
    {"event_id": "e1", "user_id": "u2", "item_id": "i2", "event_type": "purchase", "timestamp": None, "value": -1},
]), min_size=1, max_size=8))
def test_duplicates_and_derived_ids_agree(rows):
    assert assert_same(rows)


def api_row(**kw) -> dict:
    """What the HTTP API hands the store (EventIn.to_row)."""
    row = {"event_id": None, "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0,
           "session_id": None, "query": None, "value": None, "context": None}
    return {**row, **kw}


@pytest.mark.parametrize("row", [
    api_row(),
    api_row(event_id="ev-1", value=2.0, context={"page": "home"}),
    api_row(event_type="search", item_id=None, query="red cup", session_id="s1"),
    api_row(event_type="purchase", value=-3.0),
    api_row(user_id=None),
])
def test_api_rows_take_the_plain_python_path(row):
    assert assert_same([row])
    assert assert_same([row, dict(row)])


def test_what_falls_back_to_the_vectorized_path():
    assert check_event_rows([api_row(timestamp="2024-05-01T10:00:00Z")]) is None  # text time
    assert check_event_rows([api_row(position=4)]) is None
    assert check_event_rows([api_row(value="abc")]) is None
    assert check_event_rows([api_row(context=["x"])]) is None
    assert check_event_rows([api_row(user_id="\ud800")]) is None  # lone surrogate
    assert check_event_rows([api_row()] * 65) is None  # large batches
    assert check_event_rows([]) is None


def test_check_events_uses_either_path_with_the_same_results():
    rows = [api_row(event_id=None), api_row(event_id="x", user_id=" ")]
    good, report = check_events(rows)
    assert good._rows is not None  # plain Python
    ref, ref_report = validate_events_vectorized(rows)
    assert good.frame().drop("position").equals(ref.drop("position"))
    assert report.rejected == ref_report.rejected == {"missing_user_id": 1}
    frame, _ = validate_events(iter(rows))  # an iterator is read once
    assert frame.drop("position").equals(ref.drop("position"))
    many = [api_row(event_id=f"e{i}") for i in range(100)]
    good, _ = check_events(many)
    assert good._frame is not None and len(good) == 100
