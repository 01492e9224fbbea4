"""Contract every vector index must pass, as a mixin: ``class TestX(IndexContract)``.

The mixin's name does not start with ``Test``, so pytest only runs it through the index
test classes that inherit it. Each subclass sets ``make`` (a zero-argument factory of an
unbuilt index) and ``exact_results`` (True when results must equal the exact reference
item for item, as for brute force and FAISS flat).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopformer.retrieve import ExactIndex, Index, load_index

#: row 0 is padding and has the highest inner product with everything: it must never come back
TINY = np.array(
    [[10, 10], [1, 0], [0, 1], [0.7, 0.7], [-1, 0], [0.5, 0.1]],
    dtype=np.float32,
)
#: queries [1, 0] and [0, 1]; ties (items 1 and 4 score 0 for the second) go to the lower index
TINY_QUERIES = np.array([[1, 0], [0, 1]], dtype=np.float32)
TINY_ORDER = [[1, 3, 5, 2, 4], [2, 3, 5, 1, 4]]

N_RANDOM, D_RANDOM = 300, 8


def random_table(n: int = N_RANDOM, d: int = D_RANDOM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n + 1, d)).astype(np.float32)


def check_results(idx, scores, allowed, k, n_items):
    """Invariants of any correct search result (not its exactness)."""
    n_queries = len(idx)
    assert idx.shape == scores.shape == (n_queries, k)
    assert idx.dtype == np.int64
    if allowed is None:
        allowed = np.ones(n_items + 1, dtype=bool)
    allowed = allowed.copy()
    allowed[..., 0] = False
    rows_allowed = np.broadcast_to(allowed, (n_queries, n_items + 1))
    for r in range(n_queries):
        n_ok = int(rows_allowed[r].sum())
        want = min(k, n_ok)
        real = idx[r, :want]
        assert (real > 0).all(), f"row {r}: short list ({idx[r]}) with {n_ok} items allowed"
        assert rows_allowed[r, real].all(), f"row {r}: returned a disallowed item"
        assert len(set(real.tolist())) == want, f"row {r}: duplicate items"
        assert np.isfinite(scores[r, :want]).all()
        assert (np.diff(scores[r, :want]) <= 1e-5).all(), "not best first"
        assert (idx[r, want:] == 0).all() and np.isneginf(scores[r, want:]).all()


class IndexContract:
    exact_results: bool = True
    #: recall@10 against exact that an approximate index must reach on the random table
    min_recall: float = 0.9

    def make(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def built(self, table: np.ndarray):
        return self.make().build(table)

    def random_index(self):
        """One built index over the random table per test class (hypothesis reuses it)."""
        cls = type(self)
        if "_random_index" not in cls.__dict__:
            cls._random_index = self.built(random_table())
        return cls._random_index

    # --- interface -------------------------------------------------------------------
    def test_satisfies_protocol_and_has_typed_config(self):
        index = self.make()
        assert isinstance(index, Index)
        cfg = index.config
        assert type(cfg).__dataclass_params__.frozen
        assert len(self.built(TINY)) == 5

    def test_search_before_build_raises(self):
        with pytest.raises(RuntimeError, match="build"):
            self.make().search(TINY_QUERIES, 3)

    def test_bad_arguments_raise_clear_errors(self):
        index = self.built(TINY)
        with pytest.raises(ValueError, match="dimension"):
            index.search(np.ones((1, 3), np.float32), 3)
        with pytest.raises(ValueError, match="k must be"):
            index.search(TINY_QUERIES, 0)
        with pytest.raises(ValueError, match="shape"):
            index.search(TINY_QUERIES, 3, np.ones(4, dtype=bool))
        with pytest.raises(TypeError, match="boolean"):
            index.search(TINY_QUERIES, 3, np.ones(6, dtype=np.int64))

    # --- known answers ---------------------------------------------------------------
    def test_known_answer_on_tiny_table(self):
        idx, scores = self.built(TINY).search(TINY_QUERIES, 5)
        assert idx.tolist() == TINY_ORDER
        np.testing.assert_allclose(scores, [[1, 0.7, 0.5, 0, -1], [1, 0.7, 0.1, 0, 0]], atol=1e-6)

    def test_k_past_catalog_pads_with_zero_and_neg_inf(self):
        idx, scores = self.built(TINY).search(TINY_QUERIES, 8)
        assert idx[:, :5].tolist() == TINY_ORDER
        assert (idx[:, 5:] == 0).all() and np.isneginf(scores[:, 5:]).all()

    def test_padding_row_is_never_returned(self):
        # Row 0 scores 10-20 against these queries, above every real item.
        idx, _ = self.built(TINY).search(np.array([[1, 1], [3, 2]], np.float32), 5)
        assert (idx > 0).all()

    def test_catalog_and_per_query_filters_on_tiny_table(self):
        index = self.built(TINY)
        allowed = np.array([True, False, False, True, True, False])  # padding flag ignored
        idx, scores = index.search(TINY_QUERIES, 3, allowed)
        assert idx.tolist() == [[3, 4, 0], [3, 4, 0]]
        assert np.isneginf(scores[:, 2]).all()
        per_query = np.array([[0, 1, 1, 0, 0, 1], [0, 0, 0, 0, 1, 0]], dtype=bool)
        idx, _ = index.search(TINY_QUERIES, 2, per_query)
        assert idx.tolist() == [[1, 5], [4, 0]]
        idx, _ = index.search(TINY_QUERIES, 2, np.zeros(6, dtype=bool))
        assert (idx == 0).all()

    def test_mask_is_not_modified(self):
        allowed = np.ones(6, dtype=bool)
        self.built(TINY).search(TINY_QUERIES, 2, allowed)
        assert allowed.all()

    def test_empty_catalog_returns_only_padding(self):
        idx, scores = self.built(TINY[:1]).search(TINY_QUERIES, 3)
        assert (idx == 0).all() and np.isneginf(scores).all()

    # --- filters never shorten lists -------------------------------------------------
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(
        seed=st.integers(0, 2**32 - 1),
        k=st.integers(1, 40),
        density=st.sampled_from([0.0, 0.003, 0.02, 0.1, 0.5, 0.95, 1.0]),
        per_query=st.booleans(),
    )
    def test_filters_never_give_short_lists(self, seed, k, density, per_query):
        index = self.random_index()
        rng = np.random.default_rng(seed)
        queries = rng.normal(size=(6, D_RANDOM)).astype(np.float32)
        shape = (6, N_RANDOM + 1) if per_query else (N_RANDOM + 1,)
        allowed = rng.random(shape) < density
        idx, scores = index.search(queries, k, allowed)
        check_results(idx, scores, allowed, k, N_RANDOM)
        if self.exact_results:
            ref_idx, ref_scores = ExactIndex().build(random_table()).search(queries, k, allowed)
            np.testing.assert_array_equal(idx, ref_idx)
            np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)

    def test_unfiltered_random_search_is_well_formed(self):
        queries = np.random.default_rng(1).normal(size=(20, D_RANDOM)).astype(np.float32)
        idx, scores = self.random_index().search(queries, 25)
        check_results(idx, scores, None, 25, N_RANDOM)

    # --- updates ---------------------------------------------------------------------
    def test_added_item_is_retrievable_immediately(self):
        index = self.built(random_table())
        q = np.random.default_rng(2).normal(size=(3, D_RANDOM)).astype(np.float32)
        new = 10 * q[0] / np.linalg.norm(q[0])
        index.add_or_update(np.array([N_RANDOM + 1]), new[None, :])
        assert len(index) == N_RANDOM + 1
        idx, _ = index.search(q[:1], 5)
        assert idx[0, 0] == N_RANDOM + 1
        # and it obeys filters like any other item
        allowed = np.ones(N_RANDOM + 2, dtype=bool)
        allowed[N_RANDOM + 1] = False
        idx, _ = index.search(q[:1], 5, allowed)
        assert N_RANDOM + 1 not in idx[0]

    def test_updated_item_moves_and_its_old_vector_is_gone(self):
        index = self.built(TINY)
        index.add_or_update(np.array([4]), np.array([[2.0, 0.0]], np.float32))  # was [-1, 0]
        idx, scores = index.search(TINY_QUERIES, 5)
        assert idx[0].tolist() == [4, 1, 3, 5, 2]
        assert idx[1].tolist() == [2, 3, 5, 1, 4]
        assert scores[0, 0] == pytest.approx(2.0)

    def test_many_updates_stay_correct(self):
        table = random_table()
        index = self.built(table)
        rng = np.random.default_rng(3)
        for _ in range(3):  # update 40% of items each time (FAISS rebuilds on the way)
            ids = rng.choice(np.arange(1, N_RANDOM + 1), int(0.4 * N_RANDOM), replace=False)
            table[ids] = rng.normal(size=(len(ids), D_RANDOM)).astype(np.float32)
            index.add_or_update(ids, table[ids])
        queries = rng.normal(size=(10, D_RANDOM)).astype(np.float32)
        idx, scores = index.search(queries, 10)
        check_results(idx, scores, None, 10, N_RANDOM)
        ref, _ = ExactIndex().build(table).search(queries, 10)
        if self.exact_results:
            np.testing.assert_array_equal(idx, ref)
        else:
            assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, ref)]) >= self.min_recall

    def test_add_or_update_rejects_padding_and_gaps(self):
        index = self.built(TINY)
        with pytest.raises(ValueError, match="padding"):
            index.add_or_update(np.array([0]), np.ones((1, 2), np.float32))
        with pytest.raises(ValueError, match="next indexes"):
            index.add_or_update(np.array([7]), np.ones((1, 2), np.float32))  # 6 skipped
        with pytest.raises(ValueError, match="dimension"):
            index.add_or_update(np.array([6]), np.ones((1, 3), np.float32))
        assert len(index) == 5

    # --- persistence -----------------------------------------------------------------
    def test_save_load_round_trip(self, tmp_path):
        index = self.built(random_table())
        rng = np.random.default_rng(4)
        index.add_or_update(np.array([5, N_RANDOM + 1]), rng.normal(size=(2, D_RANDOM)).astype(np.float32))
        queries = rng.normal(size=(8, D_RANDOM)).astype(np.float32)
        allowed = rng.random((8, N_RANDOM + 2)) < 0.5
        before = index.search(queries, 10, allowed)
        index.save(tmp_path / "index")
        for loaded in (type(index).load(tmp_path / "index"), load_index(tmp_path / "index")):
            assert type(loaded) is type(index)
            assert loaded.config == index.config
            assert len(loaded) == len(index)
            after = loaded.search(queries, 10, allowed)
            np.testing.assert_array_equal(after[0], before[0])
            np.testing.assert_array_equal(after[1], before[1])
