"""Audience scoring (rank/audience.py) against hand-computed answers, with a fixed model."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary
from shopformer.rank.audience import DAY_S, PURCHASE, AudienceConfig, AudienceIndex, latest_histories
from shopformer.types import EVENT_TYPES

NOW = 1_000 * DAY_S
#: the log-softmax score alone (the defaults may add terms chosen on validation)
PROBABILITY = AudienceConfig(score="probability", activity_weight=0.0, repeat_weight=0.0)
LOGIT = replace(PROBABILITY, score="logit")


class FixedModel:
    """A dot-product model whose user vectors are given, one per history row."""

    def __init__(self, items: np.ndarray, users: np.ndarray):
        self.items, self.users = np.asarray(items, np.float32), np.asarray(users, np.float32)

    def output_table(self) -> np.ndarray:
        return self.items

    def user_vectors(self, history: Sequences) -> np.ndarray:
        assert len(history) == len(self.users)
        return self.users


def histories(rows: list[list[tuple[int, float]]]) -> Sequences:
    """Rows of (item, days before NOW), all purchases."""
    seq = Sequences.from_lists([[i for i, _ in r] for r in rows])
    seq.timestamps = np.array([NOW - d * DAY_S for r in rows for _, d in r], dtype=np.float64)
    seq.event_types = np.full(len(seq.items), PURCHASE, dtype=np.int8)
    return seq


# items 1..3 in 2-d; padding row 0
ITEMS = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)


def log_softmax_col(users: np.ndarray, item: int) -> np.ndarray:
    logits = users @ ITEMS[1:].T
    return logits[:, item - 1] - np.log(np.exp(logits).sum(axis=1))


def test_probability_ranks_by_log_softmax_not_by_the_raw_dot_product():
    # user a: long vector, likes item 3 most, item 1 second; user b: short, item 1 first
    users = np.array([[4.0, 3.0], [1.0, -1.0]])
    hist = histories([[(2, 5)], [(3, 5)]])
    model = FixedModel(ITEMS, users)
    prob = AudienceIndex(PROBABILITY, model, ["a", "b"], hist, now=NOW).for_item(1, 2)
    logit = AudienceIndex(LOGIT, model, ["a", "b"], hist, now=NOW).for_item(1, 2)
    expected = log_softmax_col(users, 1)
    assert expected[1] > expected[0]  # b is more likely to pick item 1 ...
    assert prob.user_ids == ["b", "a"] and prob.scores == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
    assert logit.user_ids == ["a", "b"] and logit.scores == pytest.approx([4.0, 1.0])  # ... a has the larger logit


def test_activity_term_adds_log_of_recent_events():
    users = np.array([[1.0, 0.0], [1.0, 0.0]])
    hist = histories([[(2, 5)], [(2, 200), (3, 10), (2, 3)]])  # a: 1 recent event, b: 2 in 90 days, 1 older
    aud = AudienceIndex(replace(LOGIT, activity_weight=1.0), FixedModel(ITEMS, users), ["a", "b"], hist,
                   now=NOW)
    assert aud.recent_counts(90).tolist() == [1, 2]
    got = aud.for_item(1, 2)
    assert got.user_ids == ["b", "a"]
    assert got.scores == pytest.approx([1 + np.log(3), 1 + np.log(2)], abs=1e-5)


def test_recent_buyers_are_left_out_by_window():
    users = np.array([[1.0, 0.0], [0.9, 0.0], [0.8, 0.0]])
    hist = histories([[(1, 5)], [(1, 100)], [(2, 1)]])  # a bought item 1 recently, b long ago
    model = FixedModel(ITEMS, users)
    ids = ["a", "b", "c"]
    assert AudienceIndex(LOGIT, model, ids, hist, now=NOW).for_item(1, 3).user_ids == ["a", "b", "c"]
    cfg30 = replace(LOGIT, exclude_buyers_days=30)
    assert AudienceIndex(cfg30, model, ids, hist, now=NOW).for_item(1, 3).user_ids == ["b", "c"]
    cfg_all = replace(LOGIT, exclude_buyers_days=0)
    assert AudienceIndex(cfg_all, model, ids, hist, now=NOW).for_item(1, 3).user_ids == ["c"]


def test_repeat_term_lifts_past_buyers_through_the_index_merge():
    users = np.array([[1.0, 0.0], [0.5, 0.0], [0.2, 0.0]])
    hist = histories([[(2, 1)], [(2, 1)], [(1, 5), (1, 40), (3, 2)]])  # c bought item 1 twice
    aud = AudienceIndex(replace(LOGIT, repeat_weight=1.0), FixedModel(ITEMS, users), ["a", "b", "c"], hist,
                   now=NOW)
    got = aud.for_item(1, 2)
    assert got.user_ids == ["c", "a"]  # 0.2 + log(3) = 1.30 > 1.0
    assert got.scores == pytest.approx([0.2 + np.log(3), 1.0], abs=1e-5)


def test_repeat_half_life_weighs_older_purchases_less():
    users = np.array([[0.2, 0.0], [0.1, 0.0]])
    hist = histories([[(1, 5), (1, 40)], [(1, 400), (1, 500), (1, 600)]])  # a: 2 recent, b: 3 old purchases
    model = FixedModel(ITEMS, users)
    plain = AudienceIndex(replace(LOGIT, repeat_weight=1.0), model, ["a", "b"], hist, now=NOW).for_item(1, 2)
    assert plain.user_ids == ["b", "a"]  # 0.1 + log(4) > 0.2 + log(3)
    cfg = replace(LOGIT, repeat_weight=1.0, repeat_half_life_days=30.0)
    decayed = AudienceIndex(cfg, model, ["a", "b"], hist, now=NOW).for_item(1, 2)
    a = 0.2 + np.log1p(0.5 ** (5 / 30) + 0.5 ** (40 / 30))
    b = 0.1 + np.log1p(sum(0.5 ** (d / 30) for d in (400, 500, 600)))
    assert decayed.user_ids == ["a", "b"] and decayed.scores == pytest.approx([a, b], abs=1e-5)


@pytest.mark.parametrize("score", ["probability", "logit"])
@pytest.mark.parametrize("exclude", [None, 30.0, 0.0])
def test_item_search_equals_dense_scoring_of_one_item(score, exclude):
    rng = np.random.default_rng(1)
    items = rng.normal(size=(21, 4)).astype(np.float32)
    items[0] = 0
    users = rng.normal(size=(50, 4))
    rows = [[(int(rng.integers(1, 21)), float(rng.integers(0, 120))) for _ in range(int(rng.integers(1, 6)))]
            for _ in range(50)]
    ids = [f"u{i:02d}" for i in range(50)]
    cfg = AudienceConfig(score=score, activity_weight=0.5, repeat_weight=1.5, repeat_half_life_days=60.0,
                         exclude_buyers_days=exclude)
    for pooling in ("sum", "max"):
        aud = AudienceIndex(AudienceConfig(**{**cfg.__dict__, "category_pooling": pooling}), FixedModel(items, users), ids,
                       histories(rows), now=NOW)
        for item in (1, 7, 20):
            one, dense = aud.for_item(item, 10), aud.for_items(np.array([item]), 10)
            assert one.user_ids == dense.user_ids
            assert one.scores == pytest.approx(dense.scores, abs=1e-4)


def test_category_sum_is_the_log_of_summed_probabilities():
    users = np.array([[2.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    hist = histories([[(3, 1)], [(3, 1)], [(3, 1)]])
    aud = AudienceIndex(PROBABILITY, FixedModel(ITEMS, users), ["a", "b", "c"], hist, now=NOW)
    got = aud.for_items(np.array([1, 3]), 3)
    logits = users @ ITEMS[1:].T
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.log(probs[:, 0] + probs[:, 2])
    assert got.user_ids == [["a", "b", "c"][i] for i in np.argsort(-expected)]
    assert got.scores == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
    best = AudienceIndex(replace(PROBABILITY, category_pooling="max"), FixedModel(ITEMS, users), ["a", "b", "c"], hist, now=NOW)
    assert best.for_items(np.array([1, 3]), 3).scores[0] == pytest.approx(
        np.max(np.log(probs[:, [0, 2]])), abs=1e-5)


def test_bad_items_and_k_beyond_the_customers():
    aud = AudienceIndex(AudienceConfig(), FixedModel(ITEMS, np.eye(2)), ["a", "b"], histories([[(1, 1)], [(2, 1)]]),
                   now=NOW)
    with pytest.raises(ValueError, match="1..3"):
        aud.for_item(4, 5)
    with pytest.raises(ValueError, match="1..3"):
        aud.for_items(np.array([0]), 5)
    assert len(aud.for_item(1, 1000).user_ids) == 2
    with pytest.raises(ValueError, match="score"):
        AudienceConfig(score="dot")


def test_latest_histories_reads_each_customers_latest_events_as_training_encodes_them():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [  # (user, item, type, minutes)
        ("u1", "a", "view", 0), ("u1", "b", "purchase", 1), ("u1", "b", "purchase", 2), ("u1", "c", "purchase", 3),
        ("u2", "zz", "purchase", 0),  # an item the model does not know: u2 has nothing usable
        ("u3", "a", "purchase", 0), ("u3", "c", "purchase", 1), ("u3", "b", "remove_from_cart", 2),
        ("u4", "c", "purchase", 0),  # fewer events than the limit
    ]
    ev = pl.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                       "event_type": [r[2] for r in rows],
                       "timestamp": [t0 + timedelta(minutes=r[3]) for r in rows],
                       "position": list(range(1, len(rows) + 1))})
    items = Vocabulary(["a", "b", "c"])
    users, seq = latest_histories(ev, items, ("purchase",), dedupe_consecutive=True, limit=3)
    assert users == ["u1", "u3", "u4"]
    # u1's latest 3 events are b, b, c (the view falls outside the limit); repeats collapsed
    assert [items.decode(seq.row(r)) for r in range(3)] == [["b", "c"], ["a", "c"], ["c"]]
    assert seq.event_types[0] == EVENT_TYPES.index("purchase")
