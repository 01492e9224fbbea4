"""Metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from shopformer.evaluate import metrics

# Two users, top-4 lists. User 0: targets at ranks 1 and 3 (0-based), 2 targets.
# User 1: no hit, 1 target.
HITS = np.array([[False, True, False, True], [False, False, False, False]])
N_REL = np.array([2, 1])


def test_hit_rate():
    assert metrics.hit_rate(HITS, 1).tolist() == [0.0, 0.0]
    assert metrics.hit_rate(HITS, 2).tolist() == [1.0, 0.0]


def test_recall_precision_f1():
    assert metrics.recall(HITS, N_REL, 4).tolist() == [1.0, 0.0]
    assert metrics.recall(HITS, N_REL, 2).tolist() == [0.5, 0.0]
    assert metrics.precision(HITS, 4).tolist() == [0.5, 0.0]
    # P@2 = 0.5, R@2 = 0.5 -> F1 = 0.5
    assert metrics.f1(HITS, N_REL, 2).tolist() == [0.5, 0.0]
    # P@4 = 0.5, R@4 = 1 -> F1 = 2*0.5/1.5
    assert metrics.f1(HITS, N_REL, 4)[0] == pytest.approx(2 / 3)


def test_ndcg_by_hand():
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert metrics.ndcg(HITS, N_REL, 4)[0] == pytest.approx(dcg / idcg)
    assert metrics.ndcg(HITS, N_REL, 4)[1] == 0.0
    # Single target at rank 0 -> 1; at rank 2 -> 1/log2(4) = 0.5.
    one = np.array([[True, False, False], [False, False, True]])
    assert metrics.ndcg(one, np.array([1, 1]), 3).tolist() == pytest.approx([1.0, 0.5])


def test_ndcg_ideal_capped_at_k():
    # 5 targets, k=2, both hits -> perfect.
    h = np.array([[True, True]])
    assert metrics.ndcg(h, np.array([5]), 2)[0] == pytest.approx(1.0)


def test_reciprocal_rank_and_coverage():
    assert metrics.reciprocal_rank(np.array([0, 3, np.inf])).tolist() == [1.0, 0.25, 0.0]
    recs = np.array([[1, 2], [2, 3]])
    assert metrics.coverage(recs, 10) == pytest.approx(0.3)


def test_bad_cutoff():
    with pytest.raises(ValueError, match="cutoff"):
        metrics.hit_rate(HITS, 5)


def test_graded_ndcg_by_hand():
    gains = np.array([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ideal = np.array([[1.0, 2.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    dcg = 2 / np.log2(2) + 1 / np.log2(4)
    idcg = 2 / np.log2(2) + 1 / np.log2(3) + 0.5 / np.log2(4)
    out = metrics.graded_ndcg(gains, ideal, 3)
    assert out[0] == pytest.approx(dcg / idcg)
    assert out[1] == 0.0 and np.isnan(out[2])
    assert metrics.graded_ndcg(np.array([[2.0, 1.0]]), np.array([[1.0, 2.0]]), 2)[0] == pytest.approx(1.0)
