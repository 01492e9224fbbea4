import numpy as np
import pytest

from shopformer.features.sequences import Sequences
from shopformer.models import EASE, EASEConfig, recommend
from shopformer.models import ease as ease_module

from .contract import N_ITEMS, RecommenderContract, shop


def closed_form(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck's B = I - P diagMat(1/diag(P)), diag(B) = 0, straight from the paper."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p @ np.diag(1 / np.diag(p))
    np.fill_diagonal(b, 0)
    return b


class TestEASE(RecommenderContract):
    model_cls = EASE
    config = EASEConfig(l2=1.0)
    expected_for_12 = [3, 4, 5, 6]  # 3 co-bought with 1 and 2; the rest exactly 0

    def test_matches_closed_form_on_4x3(self) -> None:
        rows = [[1, 2], [2, 3], [1, 3], [1, 2, 3]]
        x = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float64)
        for l2 in (0.5, 2.0, 500.0):
            model = EASE(EASEConfig(l2=l2)).fit(Sequences.from_lists(rows), 3)
            b = closed_form(x, l2)
            # a one-item history [i] scores exactly row i of B
            s = model.score(Sequences.from_lists([[1], [2], [3]]))
            np.testing.assert_allclose(s[:, 1:], b, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(model.weights[1:, 1:], b, rtol=1e-5, atol=1e-7)
            # and a history is the sum of its rows
            s12 = model.score(Sequences.from_lists([[1, 2]]))
            np.testing.assert_allclose(s12[0, 1:], b[0] + b[1], rtol=1e-5, atol=1e-7)

    def test_diagonal_is_zero_and_groups_do_not_mix(self) -> None:
        model = self.fitted()
        assert np.all(np.diag(model.weights) == 0)
        assert np.all(model.weights[1:4, 4:] == 0) and np.all(model.weights[4:, 1:4] == 0)

    def test_default_l2_is_500(self) -> None:
        assert EASEConfig().l2 == 500.0

    def test_similar_items_are_rows_of_b(self) -> None:
        model = self.fitted()
        idx, scores = model.similar_items(np.array([4]), k=2)
        one, _ = recommend(model, Sequences.from_lists([[4]]), k=2)
        assert idx.tolist() == one.tolist() == [[5, 6]]
        np.testing.assert_array_equal(scores[0], model.weights[4, [5, 6]])

    def test_too_many_items_is_refused_with_the_limit(self) -> None:
        with pytest.raises(ValueError, match="60,000"):
            EASE(EASEConfig()).fit(Sequences.from_lists([[1]]), ease_module.MAX_ITEMS + 1)

    def test_bad_l2_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="l2"):
            EASEConfig(l2=0.0)

    def test_full_shop_known_scores(self) -> None:
        x = np.zeros((len(shop()), N_ITEMS))
        for u in range(len(shop())):
            x[u, shop().row(u) - 1] = 1
        b = closed_form(x, 1.0)
        np.testing.assert_allclose(self.fitted().weights[1:, 1:], b, rtol=1e-4, atol=1e-6)
