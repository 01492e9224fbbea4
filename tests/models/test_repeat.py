"""Repeat-aware scoring: the statistics it learns, the mixture it computes (checked by
hand), and that on a shop where customers re-buy their favourites it ranks them."""

from __future__ import annotations

import numpy as np
import pytest

from shopformer.evaluate.repeats import choose_repeat_config, ndcg10, repeat_share
from shopformer.features.sequences import Sequences
from shopformer.features.splits import leave_one_out
from shopformer.models.popularity import MostPopular, PopularityConfig
from shopformer.models.repeat import RepeatAware, RepeatConfig, RepeatStats, repeat_flags


class Flat:
    """A model that scores every item alike (its softmax is uniform)."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def score(self, history: Sequences) -> np.ndarray:
        return np.zeros((len(history), self.n_items + 1), dtype=np.float32)


def test_repeat_flags_and_statistics_by_hand():
    train = Sequences.from_lists([[1, 2, 1, 1], [3, 2], [2, 2, 4]])
    assert repeat_flags(train).tolist() == [False, False, True, True, False, False, False, True, False]
    stats = RepeatStats.of(train, 4)
    assert stats.overall == pytest.approx(3 / 6)  # 3 repeats in 3 + 1 + 2 events after each row's first
    assert stats.item_repeats.tolist() == [0, 2, 1, 0, 0] and stats.item_events.tolist() == [0, 3, 4, 1, 1]
    assert stats.item_rate(0.0)[1] == pytest.approx(2 / 3) and stats.item_rate(1e9)[4] == pytest.approx(0.5)


def test_the_mixture_by_hand():
    stats = RepeatStats(0.5, np.zeros(6), np.zeros(6))  # every item's rate shrinks to 0.5
    config = RepeatConfig(user_prior=0.0, item_prior=1.0, count_power=1.0, recency_decay=0.0)
    scores = RepeatAware(config, Flat(5), stats).score(Sequences.from_lists([[1, 2, 1], [3]]))
    p = np.exp(scores.astype(np.float64))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    # row 0: 1 repeat in 2 chances -> P(repeat) 0.5; item 1 twice, item 2 once -> q = 2/3, 1/3
    np.testing.assert_allclose(p[0, [1, 2]], [0.5 * 2 / 3, 0.5 * 1 / 3], atol=1e-6)
    np.testing.assert_allclose(p[0, [3, 4, 5]], [0.5 / 3] * 3, atol=1e-6)  # the rest: the model's softmax
    # row 1, one event: no chance to repeat yet and no prior -> everyone's share, 0.5
    assert p[1, 3] == pytest.approx(0.5, abs=1e-6) and p[1, [1, 2, 4, 5]] == pytest.approx([0.125] * 4, abs=1e-6)
    assert p[:, 0].max() == 0.0


def favourite_shop(seed: int = 0) -> Sequences:
    """Customers who re-buy one favourite between explorations of popular items."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(300):
        favourite = int(rng.integers(11, 61))
        row = []
        for _ in range(int(rng.integers(6, 12))):
            row.append(favourite if rng.random() < 0.5 else int(rng.integers(1, 11)))
        rows.append(row)
    return Sequences.from_lists(rows)


def test_re_buying_customers_are_ranked_their_favourite():
    split = leave_one_out(favourite_shop())
    base = MostPopular(PopularityConfig()).fit(split.train, 60)
    assert repeat_share(split.test) > 0.5
    config, stats, valid_score, tried = choose_repeat_config(base, split.train, split.valid, 60, softmax_model=False)
    assert len(tried) == 3 * 3 * 3 * 4 * 5 and round(valid_score, 6) == max(t["valid_ndcg10"] for t in tried)
    with_repeats = ndcg10(RepeatAware(config, base, stats).score(split.test.history), split.test.targets)
    excluded = base.score(split.test.history)
    excluded[np.repeat(np.arange(len(split.test.history)), split.test.history.lengths), split.test.history.items] = -np.inf
    assert with_repeats > 2 * ndcg10(excluded, split.test.targets)
    assert with_repeats > ndcg10(base.score(split.test.history), split.test.targets)  # history let in naively


@pytest.mark.parametrize("temperature,count_power,decay", [(1.0, 1.0, 0.0), (0.1, 0.0, 0.3), (0.03, 0.5, 0.02)])
def test_the_grid_metric_equals_ranking_the_full_score_matrix(temperature, count_power, decay):
    from shopformer.evaluate.repeats import merged_ndcg10
    from shopformer.models.repeat import others_log_probs, past_items
    from shopformer.retrieve.exact import top_k

    split = leave_one_out(favourite_shop(seed=3))
    base = MostPopular(PopularityConfig()).fit(split.train, 60)
    config = RepeatConfig(user_prior=10, item_prior=10, count_power=count_power, recency_decay=decay,
                          temperature=temperature)
    model = RepeatAware(config, base, RepeatStats.of(split.train, 60))
    h = split.test.history
    scores = base.score(h).astype(np.float64)
    past = past_items(h, scores.shape[1])
    top_idx, top_logp = top_k(others_log_probs(scores, past, temperature), 10)
    p_rep, log_rep = model.repeat_part(h, past)
    fast = merged_ndcg10(top_idx, top_logp, p_rep, past, log_rep, split.test.targets)
    assert fast == pytest.approx(ndcg10(model.score(h), split.test.targets), abs=1e-6)
