import numpy as np

from shopformer.features.sequences import Sequences
from shopformer.retrieve.exact import mask_items, top_k


def test_top_k_breaks_ties_by_lower_index():
    scores = np.array([[0.0, 1.0, 3.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    idx, sc = top_k(scores, 4)
    assert idx.tolist() == [[2, 3, 5, 4]]
    assert sc.tolist() == [[3.0, 3.0, 3.0, 2.0]]


def test_top_k_matches_full_sort_on_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(50, 40)).astype(np.float32)  # many ties
    idx, _ = top_k(scores, 7)
    for r in range(len(scores)):
        expected = sorted(range(40), key=lambda i: (-scores[r, i], i))[:7]
        assert idx[r].tolist() == expected


def test_mask_items_masks_padding_and_history():
    scores = np.ones((2, 5), dtype=np.float32)
    mask_items(scores, Sequences.from_lists([[1, 3], []]))
    assert np.isneginf(scores[:, 0]).all()
    assert np.isneginf(scores[0, [1, 3]]).all() and np.isfinite(scores[0, [2, 4]]).all()
    assert np.isfinite(scores[1, 1:]).all()
