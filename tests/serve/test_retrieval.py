"""search_excluding: leaving items out (a history, the query item) by over-fetching
gives the answers of the full-catalog mask, and falls back to the mask when a list
comes back short."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("faiss")

from shopformer.retrieve import ExactIndex, FaissIndex, FaissIndexConfig  # noqa: E402
from shopformer.serve.retrieval import search_excluding, search_one  # noqa: E402

N, D = 200, 8
TABLE = np.random.default_rng(0).normal(size=(N + 1, D)).astype(np.float32)
INDEXES = {
    "exact": ExactIndex().build(TABLE),
    "flat": FaissIndex(FaissIndexConfig(kind="flat", exact_below=0)).build(TABLE),
    "hnsw": FaissIndex(FaissIndexConfig(kind="hnsw", hnsw_m=8, ef_construction=64, exact_below=0)).build(TABLE),
}


pytestmark = pytest.mark.usefixtures("restore_threads")


def masked(index, q, k, allowed, exclude):
    mask = np.ones(N + 1, dtype=bool) if allowed is None else allowed.copy()
    mask[np.asarray(exclude, dtype=np.int64)] = False
    return search_one(index, q, k, mask)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 30),
    n_excluded=st.integers(0, 60),
    density=st.sampled_from([None, 0.05, 0.5, 1.0]),
    kind=st.sampled_from(sorted(INDEXES)),
)
def test_over_fetching_equals_the_mask(seed, k, n_excluded, density, kind):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=D).astype(np.float32)
    exclude = rng.integers(0, N + 1, size=n_excluded)  # repeats and padding (0) included
    allowed = None if density is None else rng.random(N + 1) < density
    index = INDEXES[kind]
    idx, scores = search_excluding(index, q, k, allowed, exclude)
    ref_idx, ref_scores = masked(index, q, k, allowed, exclude)
    n_ok = int((np.ones(N + 1, bool) if allowed is None else allowed)[1:].sum()
               - np.isin(np.unique(exclude[exclude > 0]), np.flatnonzero(allowed) if allowed is not None
                         else np.arange(1, N + 1)).sum())
    assert len(idx) == min(k, n_ok)  # never short
    assert not np.isin(idx, exclude).any() and (idx > 0).all()
    if allowed is not None:
        assert allowed[idx].all()
    if kind != "hnsw":  # exact indexes: the very same answer
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


class ShortIndex:
    """An index that breaks the contract: returns half of what is asked for."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[int, object]] = []

    def __len__(self):
        return len(self.inner)

    def search(self, queries, k, allowed=None):
        self.calls.append((k, allowed))
        idx, scores = self.inner.search(queries, k, allowed)
        if allowed is None:
            idx, scores = idx.copy(), scores.copy()
            idx[:, max(1, k // 2):] = 0
            scores[:, max(1, k // 2):] = -np.inf
        return idx, scores


def test_short_over_fetched_list_falls_back_to_the_mask():
    index = ShortIndex(INDEXES["exact"])
    q = np.random.default_rng(1).normal(size=D).astype(np.float32)
    exclude = np.array([1, 2, 3])
    idx, _ = search_excluding(index, q, 10, None, exclude)
    ref, _ = masked(INDEXES["exact"], q, 10, None, exclude)
    np.testing.assert_array_equal(idx, ref)
    assert [k for k, _ in index.calls] == [13, 10]
    assert index.calls[0][1] is None and index.calls[1][1].shape == (N + 1,)


def test_nothing_excluded_is_a_plain_search():
    index = ShortIndex(INDEXES["exact"])
    q = np.ones(D, np.float32)
    search_excluding(index, q, 5, None, np.zeros(0, np.int64))
    assert index.calls == [(5, None)]


def test_every_request_thread_searches_with_one_faiss_thread():
    import faiss

    seen = []

    def request():
        search_one(INDEXES["flat"], np.ones(D, np.float32), 3, None)
        seen.append(faiss.omp_get_max_threads())

    t = threading.Thread(target=request)
    t.start()
    t.join()
    assert seen == [1]
