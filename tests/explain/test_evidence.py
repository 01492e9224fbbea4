"""Collaborative counts, content evidence and rule provenance on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from shopformer.explain.evidence import CoCounts, content_evidence
from shopformer.explain.rules import EXCLUDED_HISTORY, history_mask, model_ranks, provenance
from shopformer.features.content import ItemContent
from shopformer.features.sequences import Sequences


def test_cocounts_on_a_hand_made_matrix():
    # users x items (columns 0..4, 0 = padding)
    x = np.array([
        [0, 1, 1, 0, 1],
        [0, 1, 1, 0, 1],
        [0, 1, 0, 1, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ])
    co = CoCounts(sp.csc_matrix(x))
    assert co.together(np.array([1, 3]), np.array([4, 2])).tolist() == [[2, 2], [1, 1]]
    assert co.together(np.array([2]), np.array([2])).tolist() == [[3]]  # with itself: its customers
    assert co.customers(np.array([1, 4, 9])).tolist() == [3, 3, 0]  # 9: not in the matrix
    assert co.together(np.array([0, 9]), np.array([4])).tolist() == [[0], [0]]


def test_cocounts_from_sequences_count_customers_once_and_name_the_verb():
    seqs = Sequences(np.array([0, 3, 5]), np.array([1, 1, 2, 2, 1]), None, np.array([4, 4, 4, 4, 4], dtype=np.int8))
    co = CoCounts.from_sequences(seqs, 3)
    assert co.together(np.array([1]), np.array([2, 3])).tolist() == [[2, 0]]
    assert co.customers(np.array([1])).tolist() == [2]  # user 0 bought it twice: counted once
    assert co.verb == "bought"  # every event a purchase (index 4)
    mixed = Sequences(np.array([0, 2]), np.array([1, 2]), None, np.array([0, 4], dtype=np.int8))
    assert CoCounts.from_sequences(mixed, 2).verb == "chose"


def content() -> ItemContent:
    names = ["<none>", "brand=acme", "brand=zeta", "categories=Makeup", "price_band=2"]
    tokens = np.array([[0, 0, 0], [1, 3, 4], [2, 3, 0], [1, 0, 0], [1, 3, 4], [0, 0, 0]])
    vectors = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [1, 0.1], [0, 0]], dtype=np.float32)
    return ItemContent(tokens, names, vectors, np.array([10.0]))


def test_content_evidence_shared_tokens_and_text_similarity():
    # history: items 2 (zeta, Makeup) and 3 (acme); explain items 4, 5 and 7 (beyond the table)
    out = content_evidence(content(), np.array([2, 3]), np.array([4, 5, 7]))
    four = out[0]
    assert [(s.token, s.positions) for s in four.shared] == [("brand=acme", (1,)), ("categories=Makeup", (0,))]
    assert four.shared[0].field == "brand" and four.shared[0].value == "acme"
    # cosine of (1, 0.1) with (0, 1) = 0.0995 and with (1, 1) = 0.7754: position 1 wins
    assert four.text_position == 1 and four.text_similarity == pytest.approx(1.1 / np.sqrt(1.01) / np.sqrt(2), abs=1e-4)
    assert out[1].shared == () and out[1].text_similarity is None  # item 5 has no content
    assert out[2].shared == () and out[2].text_similarity is None


def test_provenance_counts_what_each_rule_removed_above_the_item():
    scores = np.array([-np.inf, 5.0, 4.0, 3.0, 2.0, 2.0, 1.0])
    assert model_ranks(scores, np.array([1, 4, 5, 6])).tolist() == [1, 4, 5, 6]  # ties: lower index first
    history = history_mask(np.array([1]), 6)
    category = np.array([False, False, True, False, False, True, False])  # removes 2 and 5
    out = provenance(scores, np.array([3, 4, 6]), {EXCLUDED_HISTORY: history, "filtered: category=x": category})
    three, four, six = out
    assert (three.model_rank, three.final_rank) == (3, 1)
    assert [(r.rule, r.removed_above) for r in three.rules] == [(EXCLUDED_HISTORY, 1), ("filtered: category=x", 1)]
    assert (four.model_rank, four.final_rank) == (4, 2)
    assert (six.model_rank, six.final_rank) == (6, 3)
    assert [(r.rule, r.removed_above) for r in six.rules] == [(EXCLUDED_HISTORY, 1), ("filtered: category=x", 2)]
    assert three.applied == (EXCLUDED_HISTORY, "filtered: category=x")
    assert provenance(scores, np.array([1]), {})[0].rules == ()


def test_together_equals_the_sparse_product_of_the_columns():
    rng = np.random.default_rng(0)
    m = sp.random(300, 51, density=0.1, random_state=1, format="csc")
    m.data[:] = 1
    co = CoCounts(m)
    for _ in range(50):  # indexes 0 and > 50 are outside the matrix: they count 0
        xs, ys = rng.integers(0, 55, rng.integers(1, 12)), rng.integers(0, 55, rng.integers(1, 11))
        ok_x, ok_y = (xs > 0) & (xs <= 50), (ys > 0) & (ys <= 50)
        expected = np.zeros((len(xs), len(ys)), dtype=np.int64)
        expected[np.ix_(ok_x, ok_y)] = (m[:, xs[ok_x]].T @ m[:, ys[ok_y]]).toarray()
        np.testing.assert_array_equal(co.together(xs, ys), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_provenance_from_the_removed_items_equals_the_whole_catalogs(seed):
    from shopformer.explain.rules import provenance_from_removed
    from shopformer.retrieve.exact import top_k

    rng = np.random.default_rng(seed)
    n = 60
    scores = rng.normal(size=n + 1).round(1)  # rounding makes ties, broken by index
    scores[0] = -np.inf
    history = history_mask(rng.integers(1, n + 1, 8), n)
    category = rng.random(n + 1) < 0.5
    category[0] = False
    removed = {EXCLUDED_HISTORY: history, "filtered: category=x": category}
    left = scores.copy()
    left[history | category] = -np.inf
    items = top_k(left[None], 10)[0][0]  # the exact answer: the top of what the rules left
    dropped = np.flatnonzero(history | category)
    fast = provenance_from_removed(items, scores[items], dropped, scores[dropped], removed)
    assert fast == provenance(scores, items, removed)
    assert any(p.rules for p in fast)  # the rules did move items up
