import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.models import MostPopular, PopularityConfig, recommend

from .contract import N_ITEMS, POPULARITY_ORDER, RecommenderContract, shop


class TestMostPopular(RecommenderContract):
    model_cls = MostPopular
    config = PopularityConfig()
    expected_for_12 = [4, 5, 3, 6]  # history ignored: by count, 1 and 2 excluded

    def test_scores_are_training_counts(self) -> None:
        scores = self.fitted().score(Sequences.from_lists([[1], []]))
        expected = np.array([-np.inf, 3, 4, 2, 7, 5, 1], dtype=np.float32)
        np.testing.assert_array_equal(scores, np.stack([expected, expected]))

    def test_similar_items_are_most_popular_others(self) -> None:
        idx, scores = self.fitted().similar_items(np.array([4, 1]), k=3)
        assert idx.tolist() == [[5, 2, 1], [4, 5, 2]]
        assert scores.tolist() == [[5, 4, 3], [7, 5, 4]]

    def test_distinct_users_counts_each_buyer_once(self) -> None:
        repeats = Sequences.from_lists([[1, 1, 1, 1], [2], [2], [2, 3]])
        by_event = MostPopular(PopularityConfig()).fit(repeats, 3)
        by_user = MostPopular(PopularityConfig(distinct_users=True)).fit(repeats, 3)
        assert recommend(by_event, Sequences.from_lists([[]]), 1)[0].tolist() == [[1]]
        assert recommend(by_user, Sequences.from_lists([[]]), 1)[0].tolist() == [[2]]
        np.testing.assert_array_equal(by_user.score(Sequences.from_lists([[]]))[0, 1:], [1, 3, 1])

    def test_popularity_order_of_shop(self) -> None:
        idx, _ = recommend(MostPopular(PopularityConfig()).fit(shop(), N_ITEMS), Sequences.from_lists([[]]), 6)
        assert idx[0].tolist() == POPULARITY_ORDER
