import math

import numpy as np
import pytest
import scipy.sparse as sp

from shopformer.features.sequences import Sequences
from shopformer.models import ItemKNN, ItemKNNConfig, recommend
from shopformer.models import itemknn as itemknn_module

from .contract import N_ITEMS, RecommenderContract, shop


class TestItemKNN(RecommenderContract):
    model_cls = ItemKNN
    config = ItemKNNConfig(neighbors=10, shrink=0.0)  # plain cosine: hand-checkable
    expected_for_12 = [3, 4, 5, 6]  # 3 co-bought with 1 and 2; the rest tie at 0, by index

    def test_cosine_matches_hand_computation(self) -> None:
        # item 1: buyers {0,1,2}; item 3: buyers {0,1}; both: 2 -> 2 / sqrt(3 * 2)
        model = self.fitted()
        s = model.score(Sequences.from_lists([[1], [1, 2], [4]]))
        assert s[0, 3] == pytest.approx(2 / math.sqrt(6), rel=1e-6)
        # item 2: buyers {0,1,2,3}; with 3: 2 -> 2 / sqrt(8); the user score is the sum
        assert s[1, 3] == pytest.approx(2 / math.sqrt(6) + 2 / math.sqrt(8), rel=1e-6)
        assert s[1, 4:].tolist() == [0, 0, 0]
        # item 4 (7 buyers) with 5 (5 buyers, all shared) and 6 (1 buyer, shared)
        assert s[2, 5] == pytest.approx(5 / math.sqrt(35), rel=1e-6)
        assert s[2, 6] == pytest.approx(1 / math.sqrt(7), rel=1e-6)

    def test_shrink_damps_the_denominator(self) -> None:
        model = self.fitted(ItemKNNConfig(neighbors=10, shrink=1.5))
        s = model.score(Sequences.from_lists([[1]]))
        assert s[0, 3] == pytest.approx(2 / (math.sqrt(6) + 1.5), rel=1e-6)

    def test_neighbors_prunes_each_item_to_its_top_k(self) -> None:
        model = self.fitted(ItemKNNConfig(neighbors=1, shrink=0.0))
        assert np.all(np.diff(model.similarity.indptr) <= 1)
        idx, scores = model.similar_items(np.array([4]), k=2)
        assert idx[0, 0] == 5 and scores[0, 0] == pytest.approx(5 / math.sqrt(35), rel=1e-6)
        assert scores[0, 1] == 0  # item 6 was pruned from 4's neighbours

    def test_blocked_computation_equals_dense(self, monkeypatch: pytest.MonkeyPatch) -> None:
        rng = np.random.default_rng(0)
        dense = (rng.random((200, 41)) < 0.1).astype(np.float32)
        dense[:, 0] = 0  # padding column
        x = sp.csr_matrix(dense)
        full = itemknn_module.cosine_top_k(x, neighbors=7, shrink=0.5).toarray()
        monkeypatch.setattr(itemknn_module, "_BLOCK_CELLS", 41 * 3)  # 3 rows per block
        blocked = itemknn_module.cosine_top_k(x, neighbors=7, shrink=0.5).toarray()
        np.testing.assert_array_equal(full, blocked)
        # reference: dense cosine, diagonal zero; each kept value equals it
        xd = x.toarray()
        co = xd.T @ xd
        norms = np.sqrt(np.diag(co))
        ref = np.divide(co, np.outer(norms, norms) + 0.5)
        np.fill_diagonal(ref, 0)
        kept = full > 0
        np.testing.assert_allclose(full[kept], ref[kept], rtol=1e-6)
        assert np.all((full > 0).sum(axis=1) <= 7)
        # every kept value is at least as large as every dropped one in its row
        dropped = np.where(kept, -np.inf, ref).max(axis=1)
        smallest_kept = np.where(kept, full, np.inf).min(axis=1)
        has = kept.any(axis=1)
        assert np.all(smallest_kept[has] >= dropped[has] - 1e-7)

    def test_bad_config_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="neighbors"):
            ItemKNNConfig(neighbors=0)
        with pytest.raises(ValueError, match="shrink"):
            ItemKNNConfig(shrink=-1)

    def test_default_config(self) -> None:
        assert ItemKNNConfig() == ItemKNNConfig(neighbors=100, shrink=50.0)
        model = ItemKNN(ItemKNNConfig()).fit(shop(), N_ITEMS)
        idx, scores = recommend(model, Sequences.from_lists([[4]]), 2)
        assert idx[0].tolist() == [5, 6]
        assert scores[0, 0] == pytest.approx(5 / (math.sqrt(35) + 50), rel=1e-6)
