import numpy as np
import pytest

from shopformer.features.sequences import Sequences
from shopformer.models import Trending, TrendingConfig, recommend
from shopformer.models.trending import DAY_S, trending_weights

from .contract import RecommenderContract


class TestTrending(RecommenderContract):
    """The contract's shop has no timestamps: trending is then plain popularity."""

    model_cls = Trending
    config = TrendingConfig()
    expected_for_12 = [4, 5, 3, 6]  # history ignored: by count, 1 and 2 excluded


def timed(rows: list[list[tuple[int, float]]]) -> Sequences:
    """Sequences from rows of (item, day) pairs."""
    items = [i for row in rows for i, _ in row]
    days = [d for row in rows for _, d in row]
    offsets = np.cumsum([0] + [len(r) for r in rows])
    return Sequences(offsets, np.array(items), np.array(days, dtype=np.float64) * DAY_S)


def test_weights_halve_every_half_life() -> None:
    # item 1 on the newest day, item 2 one half-life (7 days) before, item 3 two before
    w = trending_weights(np.array([1, 2, 3]), np.array([14.0, 7.0, 0.0]) * DAY_S, 3, half_life_days=7.0)
    np.testing.assert_allclose(w, [0.0, 1.0, 0.5, 0.25])


def test_untimed_events_and_no_decay_count_one() -> None:
    w = trending_weights(np.array([1, 1, 2]), np.array([np.nan, 0.0, 70 * DAY_S]), 2, half_life_days=7.0)
    np.testing.assert_allclose(w, [0.0, 1.0 + 2.0**-10, 1.0])
    flat = trending_weights(np.array([1, 1, 2]), np.array([0.0, 1.0, 2.0]) * DAY_S, 2, half_life_days=0.0)
    np.testing.assert_allclose(flat, [0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="half_life_days"):
        trending_weights(np.array([1]), None, 1, half_life_days=-1.0)


def test_recent_items_outrank_old_bestsellers() -> None:
    # item 1 was bought 5 times two months ago; item 2 twice this week
    old = [[(1, 0.0)] for _ in range(5)]
    new = [[(2, 58.0)], [(2, 60.0)], [(3, 59.0)]]
    train = timed(old + new)
    empty = Sequences.from_lists([[]])
    trending = Trending(TrendingConfig(half_life_days=7.0)).fit(train, 3)
    assert recommend(trending, empty, 3)[0].tolist() == [[2, 3, 1]]
    popular = Trending(TrendingConfig(half_life_days=0.0)).fit(train, 3)
    assert recommend(popular, empty, 3)[0].tolist() == [[1, 2, 3]]
    assert trending.score(empty)[0, 1:].max() == pytest.approx(1.0)
