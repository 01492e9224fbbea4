"""Complements: the blend, substitute filters and masks on a tiny known case."""

from __future__ import annotations

import numpy as np
import pytest

from shopformer.features.sequences import Sequences
from shopformer.models.copurchase import CoPurchase, CoPurchaseConfig
from shopformer.rank.complements import Complements, ComplementsConfig, shares, softmax, title_tokens

# items: 1 cup, 2 saucer, 3 cup twin, 4 candle, 5 never co-bought
BASKETS = Sequences.from_lists([[1, 2]] * 5 + [[1, 3]] * 8 + [[4, 2]] * 2 + [[5]] * 9)
TITLES = [None, "TEA CUP RED", "SAUCER WHITE", "TEA CUP RED LARGE", "CANDLE HOLDER", "DOOR MAT"]
# the twin points the same way as the cup; the others are orthogonal-ish
VECTORS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.99, 0.14, 0], [0, 0, 1], [0.6, 0, 0.8]], dtype=np.float32)
UNIT = VECTORS / np.maximum(np.linalg.norm(VECTORS, axis=1, keepdims=True), 1e-9)
COUNTS = CoPurchaseConfig(measure="count", basket_exponent=0.0)


def ranked(scores: np.ndarray) -> list[int]:
    row = scores[0]
    order = np.argsort(-row, kind="stable")
    return [int(i) for i in order if np.isfinite(row[i])]


def test_without_filters_the_twin_wins_and_the_cart_is_masked():
    comp = Complements(ComplementsConfig(), CoPurchase(COUNTS).fit(BASKETS, 5))
    s = comp.scores(Sequences.from_lists([[1]]))
    assert ranked(s)[:2] == [3, 2]
    assert s[0, 0] == -np.inf and s[0, 1] == -np.inf
    # items never bought with the cart come after, by basket popularity (5 sold most)
    assert ranked(s)[2:] == [5, 4]


@pytest.mark.parametrize("cfg", [ComplementsConfig(substitute_similarity=0.9),
                                 ComplementsConfig(title_overlap=0.75)])
def test_each_substitute_filter_drops_the_twin(cfg):
    comp = Complements(cfg, CoPurchase(COUNTS).fit(BASKETS, 5), UNIT, title_tokens(TITLES))
    s = comp.scores(Sequences.from_lists([[1]]))
    assert ranked(s)[0] == 2 and 3 not in ranked(s)
    sub = comp.substitutes(Sequences.from_lists([[1], []]))
    assert sub[0].tolist() == [False, True, False, True, False, False]  # the cup and its twin
    assert not sub[1].any()


def test_closeness_values():
    comp = Complements(ComplementsConfig(substitute_similarity=0.5, title_overlap=0.5),
                       CoPurchase(COUNTS).fit(BASKETS, 5), UNIT, title_tokens(TITLES))
    cos, jac = comp.closeness(Sequences.from_lists([[1, 4]]))
    assert cos[0, 5] == pytest.approx(0.8)  # max(0.6 with the cup, 0.8 with the candle)
    assert jac[0, 3] == pytest.approx(3 / 4) and jac[0, 2] == 0


def test_sequence_blend_moves_the_ranking():
    comp = Complements(ComplementsConfig(sequence_weight=0.9), CoPurchase(COUNTS).fit(BASKETS, 5))
    logits = np.array([[0, 0, 0, 0, 10, 0]], dtype=np.float32)  # the model is sure of the candle
    assert ranked(comp.scores(Sequences.from_lists([[1]]), logits))[0] == 4
    with pytest.raises(ValueError, match="sequence model"):
        comp.scores(Sequences.from_lists([[1]]))


def test_helpers():
    np.testing.assert_allclose(shares(np.array([[1.0, 3.0], [0.0, 0.0]])), [[0.25, 0.75], [0, 0]])
    np.testing.assert_allclose(softmax(np.array([[-np.inf, 0.0, 0.0]])), [[0, 0.5, 0.5]])
    t = title_tokens(["a b", None, "b c c"]).toarray()
    assert t.sum(axis=1).tolist() == [2, 0, 2]
    with pytest.raises(ValueError, match="sequence_weight"):
        ComplementsConfig(sequence_weight=1.5)
