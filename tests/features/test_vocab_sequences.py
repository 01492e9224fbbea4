from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopformer.features.sequences import Sequences, build_sequences, encode_history, kcore
from shopformer.features.vocab import Vocabulary
from shopformer.types import EVENT_SCHEMA, conform


def events(rows):
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "timestamp", "position"], orient="row")
    return conform(df, EVENT_SCHEMA)


def ts(h):
    return datetime(2024, 1, 1, h, tzinfo=timezone.utc)


def test_vocabulary_roundtrip(tmp_path):
    v = Vocabulary(["b", "a", "c"])
    assert v.index("b") == 1 and v.size == 4 and len(v) == 3
    assert v.encode(["c", "zz", "a"]).tolist() == [3, 0, 2]
    assert v.decode([0, 1, 3]) == ["", "b", "c"]
    v.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == v
    with pytest.raises(KeyError, match="zz"):
        v.index("zz")
    with pytest.raises(ValueError):
        Vocabulary(["a", "a"])


def test_build_sequences_orders_by_time_then_position():
    df = events([
        ("u1", "x", "view", ts(3), 0),
        ("u1", "y", "view", ts(1), 1),
        ("u1", "z", "purchase", ts(1), 2),  # same time as y, later position
        ("u2", "x", "view", None, 3),
        ("u2", None, "search", ts(2), 4),  # searches never enter sequences
    ])
    data = build_sequences(df)
    seq = {data.users.ids[u]: data.items.decode(data.sequences.row(u)) for u in range(len(data.users))}
    assert seq == {"u1": ["y", "z", "x"], "u2": ["x"]}
    assert data.items.ids == ["x", "y", "z"]  # first appearance by position


def test_kcore_iterates():
    # item c has 1 event -> removed -> user u3 falls below 2 -> removed -> item b drops to 1.
    df = events([
        ("u1", "a", "view", None, 0), ("u1", "a", "view", None, 1),
        ("u2", "a", "view", None, 2), ("u2", "b", "view", None, 3),
        ("u3", "b", "view", None, 4), ("u3", "c", "view", None, 5),
    ])
    out = kcore(df, min_user=2, min_item=2)
    assert sorted(out["user_id"].unique().to_list()) == ["u1"]


def test_sequences_rows_and_csr():
    s = Sequences.from_lists([[1, 2, 2], [], [3]])
    sub = s.rows(np.array([2, 0]))
    assert sub.row(0).tolist() == [3] and sub.row(1).tolist() == [1, 2, 2]
    m = s.to_csr(4)
    assert m.toarray().tolist() == [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "zz", "", None]),
            st.sampled_from(["view", "purchase", "add_to_cart", "search", "cancel"]),
            st.one_of(st.none(), st.integers(0, 5)),
        ),
        max_size=12,
    ),
    types=st.sampled_from([("view", "purchase"), ("purchase",), ("view", "purchase", "add_to_cart", "search")]),
    dedupe=st.booleans(),
)
def test_one_user_encoding_matches_training(rows, types, dedupe):
    """The serving path's plain-Python encoding of one history equals what training
    builds from the same events (type filter, dedupe, unknown items dropped)."""
    # the store's order: untimed first, then by time, then by arrival
    ordered = sorted(enumerate(rows), key=lambda p: (p[1][2] is not None, p[1][2] or 0, p[0]))
    stored = [(item, etype, None if h is None else datetime(2024, 1, 1, h)) for _, (item, etype, h) in ordered]
    vocab = Vocabulary(["c", "a", "b"])
    got = encode_history(stored, vocab, types, dedupe)

    frame = events([("u", item, etype, None if h is None else ts(h), pos)
                    for pos, (_, (item, etype, h)) in enumerate(ordered)])
    frame = frame.filter(pl.col("event_type").is_in(list(types)))
    if dedupe and frame.height:
        frame = frame.filter(~(pl.col("item_id") == pl.col("item_id").shift(1)).fill_null(False))
    want = build_sequences(frame, items=vocab).sequences
    assert got.items.tolist() == want.items.tolist()
    assert got.event_types.tolist() == (want.event_types.tolist() if len(want) else [])
    np.testing.assert_array_equal(got.timestamps, want.timestamps if len(want) else np.zeros(0))


def test_latest_keeps_each_rows_last_events_with_their_times():
    s = Sequences(np.array([0, 4, 5, 5, 7]), np.array([1, 2, 3, 4, 5, 6, 7]),
                  np.arange(7, dtype=np.float64), np.arange(7, dtype=np.int8))
    last2 = s.latest(2)
    assert [last2.row(u).tolist() for u in range(4)] == [[3, 4], [5], [], [6, 7]]
    assert last2.timestamps.tolist() == [2, 3, 4, 5, 6] and last2.event_types.tolist() == [2, 3, 4, 5, 6]
    assert s.latest(10).items.tolist() == s.items.tolist()
