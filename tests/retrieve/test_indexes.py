import subprocess
import sys

import numpy as np
import pytest

from shopformer.retrieve import ExactIndex, ExactIndexConfig, FaissIndex, FaissIndexConfig

from .contract import IndexContract, random_table

pytest.importorskip("faiss", reason="faiss-cpu is not installed")


class TestExactIndex(IndexContract):
    def make(self):
        return ExactIndex(ExactIndexConfig(max_batch_scores=1000))  # forces several batches


class TestFaissFlat(IndexContract):
    def make(self):
        return FaissIndex(FaissIndexConfig(kind="flat", exact_below=0))  # always through FAISS


class TestFaissHNSW(IndexContract):
    exact_results = False

    def make(self):
        # exact_below=0: even a filter allowing one item goes through the graph (and the
        # retry / exact fallback path when the graph walk comes back short)
        return FaissIndex(FaissIndexConfig(kind="hnsw", hnsw_m=8, ef_search=16, ef_construction=32, exact_below=0))


class TestFaissIVF(IndexContract):
    exact_results = False
    min_recall = 0.4  # one list of four searched, on structureless random vectors

    def make(self):
        return FaissIndex(FaissIndexConfig(kind="ivf", nlist=4, nprobe=1, exact_below=0))


class TestFaissIVFPQ(IndexContract):
    exact_results = False
    min_recall = 0.4  # one list of four searched, 4-bit codes of random vectors

    def make(self):
        return FaissIndex(FaissIndexConfig(kind="ivfpq", nlist=4, nprobe=1, pq_m=4, pq_bits=4, exact_below=0))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)]))


def test_faiss_flat_equals_exact_on_random_data():
    table = random_table(3000, 16, seed=5)
    rng = np.random.default_rng(6)
    queries = rng.normal(size=(64, 16)).astype(np.float32)
    exact, flat = ExactIndex().build(table), FaissIndex(FaissIndexConfig(kind="flat")).build(table)
    for allowed in (None, rng.random(3001) < 0.3, rng.random((64, 3001)) < 0.9):
        ref_idx, ref_scores = exact.search(queries, 20, allowed)
        idx, scores = flat.search(queries, 20, allowed)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_hnsw_recall_at_10_against_exact():
    table = random_table(20_000, 32, seed=7)
    queries = np.random.default_rng(8).normal(size=(200, 32)).astype(np.float32)
    truth, _ = ExactIndex().build(table).search(queries, 10)
    hnsw = FaissIndex(FaissIndexConfig(kind="hnsw", hnsw_m=16, ef_construction=64, ef_search=128)).build(table)
    found, _ = hnsw.search(queries, 10)
    r = recall(found, truth)
    print(f"HNSW recall@10 vs exact (20k x 32, M=16, efC=64, efS=128): {r:.4f}")
    assert r >= 0.95
    # with a per-query exclusion of each query's exact top 5, the next ones come back
    allowed = np.ones((200, 20_001), dtype=bool)
    np.put_along_axis(allowed, truth[:, :5], False, axis=1)
    found, _ = hnsw.search(queries, 5, allowed)
    assert recall(found, truth[:, 5:]) >= 0.95


def test_ivf_searching_every_list_is_exact():
    table = random_table(2000, 8, seed=9)
    queries = np.random.default_rng(10).normal(size=(32, 8)).astype(np.float32)
    ivf = FaissIndex(FaissIndexConfig(kind="ivf", nlist=16, nprobe=16)).build(table)
    ref, _ = ExactIndex().build(table).search(queries, 10)
    np.testing.assert_array_equal(ivf.search(queries, 10)[0], ref)


def test_auto_picks_flat_for_small_catalogs_and_hnsw_for_large():
    small = FaissIndex(FaissIndexConfig(kind="auto", auto_threshold=200)).build(random_table(199))
    large = FaissIndex(FaissIndexConfig(kind="auto", auto_threshold=200, hnsw_m=8)).build(random_table(200))
    assert (small.kind, large.kind) == ("flat", "hnsw")


def test_updates_mark_old_entries_stale_then_rebuild():
    table = random_table(100)
    index = FaissIndex(FaissIndexConfig(kind="hnsw", hnsw_m=8, max_stale_fraction=0.25)).build(table)
    index.add_or_update(np.arange(1, 21), table[1:21] * 2)
    assert index.n_stale == 20
    index.add_or_update(np.arange(21, 31), table[21:31] * 2)
    assert index.n_stale == 0  # 30 stale > 25: rebuilt from the stored vectors


def test_config_is_validated():
    with pytest.raises(ValueError, match="kind"):
        FaissIndexConfig(kind="lsh")
    with pytest.raises(ValueError, match="hnsw_m"):
        FaissIndexConfig(hnsw_m=0)


def test_importing_retrieve_does_not_import_faiss():
    code = "import sys, shopformer.retrieve; assert 'faiss' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_without_copy_shares_the_table_and_copies_before_an_update():
    table = random_table(50)
    index = FaissIndex(FaissIndexConfig(kind="flat")).build(table, copy=False)
    assert np.shares_memory(index.vectors(), table)
    assert not index.vectors().flags.writeable
    before = table.copy()
    index.add_or_update(np.array([3]), np.ones((1, table.shape[1]), np.float32))
    np.testing.assert_array_equal(table, before)  # the caller's array is never written
    assert not np.shares_memory(index.vectors(), table)
    assert (index.vectors()[3] == 1).all()
    copied = FaissIndex(FaissIndexConfig(kind="flat")).build(table)
    assert not np.shares_memory(copied.vectors(), table)


def test_ivfpq_recall_at_10_against_exact_and_the_exact_rerank():
    """Product-quantized codes rank approximately; fetching refine x k and re-ranking them
    by exact scores recovers the exact top 10 for most queries (clustered items, as
    learned item tables are)."""
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(50, 32)).astype(np.float32)
    items = centres[rng.integers(0, 50, 20_000)] + 0.3 * rng.normal(size=(20_000, 32)).astype(np.float32)
    table = np.vstack([np.zeros((1, 32), np.float32), items])
    queries = (centres[rng.integers(0, 50, 200)] + 0.3 * rng.normal(size=(200, 32))).astype(np.float32)
    truth, truth_scores = ExactIndex().build(table).search(queries, 10)
    found = {}
    for refine in (1, 8):
        index = FaissIndex(FaissIndexConfig(kind="ivfpq", nprobe=16, refine=refine)).build(table)
        found[refine], scores = index.search(queries, 10)
        hit = found[refine] == truth
        np.testing.assert_allclose(scores[hit], truth_scores[hit], rtol=1e-5)  # scores are exact
    print(f"IVF-PQ recall@10 vs exact (20k x 32, 16 codes of 8 bits): refine 1 {recall(found[1], truth):.3f}, "
          f"refine 8 {recall(found[8], truth):.3f}")
    assert recall(found[8], truth) >= 0.95 and recall(found[8], truth) > recall(found[1], truth)


def test_ivfpq_round_trips_through_save_and_load(tmp_path):
    table = random_table(3000, 16, seed=12)
    queries = np.random.default_rng(13).normal(size=(20, 16)).astype(np.float32)
    index = FaissIndex(FaissIndexConfig(kind="ivfpq", nlist=8, nprobe=8)).build(table)
    index.save(tmp_path / "ivfpq")
    back = FaissIndex.load(tmp_path / "ivfpq", mmap=True)
    assert back.kind == "ivfpq"
    np.testing.assert_array_equal(back.search(queries, 10)[0], index.search(queries, 10)[0])
