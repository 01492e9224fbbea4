"""The learned audience ranker (rank/audience_ranker.py): features read only the events
before the cut, and on a tiny synthetic shop it learns that a regular buyer of an item
buys it again."""

from __future__ import annotations

import numpy as np
import pytest

from shopformer.features.sequences import Sequences
from shopformer.rank.audience_ranker import (
    FEATURES,
    AudienceRanker,
    AudienceRankerConfig,
    shop_state,
)

DAY_S = 86_400.0
SMALL = AudienceRankerConfig(candidates_per_source=50, cooc_neighbors=10, min_child_samples=5, n_rounds=40,
                             num_leaves=7, threads=1)


class MeanOfItems:
    """A dot-product model whose user vector is the mean of its history's item vectors
    (so it changes when the history does)."""

    def __init__(self, n_items: int, dim: int = 4, seed: int = 0):
        self.table = np.random.default_rng(seed).normal(size=(n_items + 1, dim)).astype(np.float32)

    def output_table(self) -> np.ndarray:
        return self.table

    def user_vectors(self, history: Sequences) -> np.ndarray:
        return np.stack([self.table[history.row(u)].mean(axis=0) if history.lengths[u] else
                         np.zeros(self.table.shape[1], np.float32) for u in range(len(history))])


def sequences(rows: list[list[tuple[int, float]]]) -> Sequences:
    """Rows of (item, day), sorted by day."""
    rows = [sorted(r, key=lambda e: e[1]) for r in rows]
    seq = Sequences.from_lists([[i for i, _ in r] for r in rows])
    seq.timestamps = np.array([d * DAY_S for r in rows for _, d in r], dtype=np.float64)
    return seq


def shop(seed: int = 0, n_items: int = 30, n_noise: int = 60, days: int = 240) -> tuple[Sequences, int]:
    """Customer ``i - 1`` (for items 1..n_items) buys item ``i`` every 10 days and
    nothing else; the other customers buy random items often (more purchases, each item
    rarely)."""
    rng = np.random.default_rng(seed)
    rows = [[(i, float(d) + rng.uniform(0, 1)) for d in range(i % 10, days, 10)] for i in range(1, n_items + 1)]
    for _ in range(n_noise):
        times = np.sort(rng.uniform(0, days, size=rng.integers(40, 60)))
        rows.append([(int(rng.integers(1, n_items + 1)), float(t)) for t in times])
    return sequences(rows), n_items


def buyers_after(seqs: Sequences, t_day: float, days: float, items: np.ndarray) -> list[np.ndarray]:
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    window = (seqs.timestamps >= t_day * DAY_S) & (seqs.timestamps < (t_day + days) * DAY_S)
    return [np.unique(row[window & (seqs.items == i)]) for i in items]


def test_features_are_computed_strictly_before_the_cut():
    seqs, n_items = shop()
    t = 150 * DAY_S
    before = seqs.keep(seqs.timestamps < t)
    model = MeanOfItems(n_items)
    full, cut = shop_state(SMALL, seqs, t, n_items, model), shop_state(SMALL, before, t, n_items, model)
    assert len(seqs.items) > len(before.items)  # there are later events to leave out
    for item in (1, 7, 30):
        rows = full.candidates(item)
        np.testing.assert_array_equal(rows, cut.candidates(item))
        x = full.features(item, rows)
        assert x.shape == (len(rows), len(FEATURES))
        np.testing.assert_array_equal(x, cut.features(item, rows))
        # the regular buyer's item purchases: only those before the cut count
        regular = item - 1
        assert x[rows == regular, FEATURES.index("p_purchases")][0] == (before.row(regular) == item).sum()
    # a later cut does see them
    later = shop_state(SMALL, seqs, t + 30 * DAY_S, n_items, model)
    assert not np.array_equal(later.features(1, np.array([0])), full.features(1, np.array([0])))


def test_ranker_names_the_regular_buyer_first():
    seqs, n_items = shop()
    items = np.arange(1, n_items + 1)
    train_t, test_t = 150.0, 200.0
    state = shop_state(SMALL, seqs, train_t * DAY_S, n_items)
    ranker = AudienceRanker(SMALL).fit([(state, items, buyers_after(seqs, train_t, 30, items))])
    test_state = shop_state(SMALL, seqs, test_t * DAY_S, n_items)
    # the noise customers are the most active: by activity the regular buyer is not first
    assert np.argmax(test_state.activity) >= n_items
    firsts = [int(ranker.rank(test_state, int(i), 5)[0][0]) for i in items]
    assert firsts == [int(i) - 1 for i in items]
    many = ranker.rank_many(test_state, items, 5)  # one scoring call for every item: the same lists
    assert [m.tolist() for m in many] == [ranker.rank(test_state, int(i), 5)[0].tolist() for i in items]
    top, scores = ranker.rank(test_state, 1, len(seqs))
    assert sorted(top.tolist()) == list(range(len(seqs)))  # everyone named once, candidates first
    assert np.isfinite(scores[: len(test_state.candidates(1))]).all()


def test_save_and_load_give_the_same_scores(tmp_path):
    seqs, n_items = shop(n_items=10, n_noise=20)
    items = np.arange(1, n_items + 1)
    state = shop_state(SMALL, seqs, 150 * DAY_S, n_items)
    ranker = AudienceRanker(SMALL).fit([(state, items, buyers_after(seqs, 150, 30, items))])
    ranker.save(tmp_path)
    again = AudienceRanker.load(tmp_path)
    rows = state.candidates(3)
    np.testing.assert_allclose(again.score(state, 3, rows), ranker.score(state, 3, rows))
    assert again.config == SMALL


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="objective"):
        AudienceRankerConfig(objective="regression")
    with pytest.raises(ValueError, match="learning_rate"):
        AudienceRankerConfig(learning_rate=0)


def test_the_season_a_year_before_gives_features_and_candidates():
    # cut on day 400: the season a year before is days 35..65 (cut - 365 days, 30 days on)
    seqs = sequences([
        [(1, 40.0), (1, 41.0)],  # bought item 1 twice in last year's season, nothing else
        [(1, 100.0), (1, 110.0), (1, 120.0), (2, 390.0)],  # bought item 1 most, after the season
        [(3, 50.0), (2, 60.0)],  # ordered in the season, other items
        *[[(2, float(d)) for d in range(5, 395, 7)] for _ in range(3)],  # busy customers, item 2 only
    ])
    config = AudienceRankerConfig(candidates_per_source=1, cooc_neighbors=5, threads=1)
    state = shop_state(config, seqs, 400 * DAY_S, 3)
    x = state.features(1, np.arange(len(seqs)))
    col = {name: x[:, FEATURES.index(name)] for name in ("p_purchases_year_ago", "u_orders_year_ago",
                                                          "i_buyers_year_ago")}
    np.testing.assert_array_equal(col["p_purchases_year_ago"], [2, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(col["u_orders_year_ago"], [2, 0, 2, 4, 4, 4])  # days 40, 41; 50, 60; 40, 47, 54, 61
    assert (col["i_buyers_year_ago"] == 1).all()
    # one per source: customer 0 is a candidate as last season's buyer only
    off = shop_state(AudienceRankerConfig(candidates_per_source=1, cooc_neighbors=5, threads=1,
                                          season_window_days=0), seqs, 400 * DAY_S, 3)
    assert 0 in state.candidates(1) and 0 not in off.candidates(1)
    assert np.isnan(off.features(1, np.arange(len(seqs)))[:, FEATURES.index("p_purchases_year_ago")]).all()
    with pytest.raises(ValueError, match="season_window_days"):
        AudienceRankerConfig(season_window_days=400)
