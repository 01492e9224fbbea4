"""Co-purchase statistics against hand-computed counts and measures."""

from __future__ import annotations

import numpy as np
import pytest

from shopformer.features.sequences import Sequences
from shopformer.models.copurchase import CoPurchase, CoPurchaseConfig

# items 1..4: {1,2} x3, {1,3} x1, {3,4} x2, {1,2,3,4} x1
BASKETS = Sequences.from_lists([[1, 2]] * 3 + [[1, 3]] + [[3, 4]] * 2 + [[1, 2, 3, 4]])


def test_plain_counts_are_baskets_holding_both():
    m = CoPurchase(CoPurchaseConfig(measure="count", basket_exponent=0.0)).fit(BASKETS, 4)
    c = m.association.toarray()
    assert c[1, 2] == 4 and c[2, 1] == 4 and c[1, 3] == 2 and c[3, 4] == 3 and c[2, 4] == 1
    assert np.all(np.diag(c) == 0)
    assert m.basket_counts.tolist() == [0, 5, 4, 4, 3]
    s = m.scores(Sequences.from_lists([[1, 3], []]))
    assert s[0].tolist() == [0, 2, 5, 2, 4]  # row sums of C[1] + C[3]
    assert s[1].tolist() == [0, 0, 0, 0, 0]


def test_basket_weights_shrink_large_baskets():
    m = CoPurchase(CoPurchaseConfig(measure="count", basket_exponent=1.0)).fit(BASKETS, 4)
    # the 4-item basket counts 1 / (4 - 1) for each of its pairs
    assert m.association[1, 2] == pytest.approx(3 + 1 / 3)
    assert m.association[2, 4] == pytest.approx(1 / 3)
    big = CoPurchase(CoPurchaseConfig(measure="count", basket_exponent=0.0, max_basket=3)).fit(BASKETS, 4)
    assert big.association[2, 4] == 0 and big.association[1, 2] == 3


def test_normalized_measure_matches_the_formula():
    cfg = CoPurchaseConfig(measure="normalized", shrink=2.0, popularity_exponent=1.0, basket_exponent=0.0)
    m = CoPurchase(cfg).fit(BASKETS, 4)
    n = [0, 5, 4, 4, 3]
    assert m.association[1, 2] == pytest.approx(4 / ((n[1] + 2) * (n[2] + 2)))
    assert m.association[2, 1] == pytest.approx(4 / ((n[2] + 2) * (n[1] + 2)))
    cond = CoPurchase(CoPurchaseConfig(shrink=0.0, popularity_exponent=0.0, basket_exponent=0.0)).fit(BASKETS, 4)
    assert cond.association[3, 4] == pytest.approx(3 / 4)  # P(4 | 3)


def test_shrinkage_prefers_well_supported_pairs():
    # pair (1, 2) seen 20 times among popular items; pair (3, 4) once between two rare ones
    rows = [[1, 2]] * 20 + [[1, 5]] * 30 + [[2, 5]] * 30 + [[3, 4]]
    seqs = Sequences.from_lists(rows)
    raw = CoPurchase(CoPurchaseConfig(shrink=0.0, popularity_exponent=1.0, basket_exponent=0.0)).fit(seqs, 5)
    shrunk = CoPurchase(CoPurchaseConfig(shrink=20.0, popularity_exponent=1.0, basket_exponent=0.0)).fit(seqs, 5)
    assert raw.association[3, 4] > raw.association[1, 2]  # plain lift loves the one-off pair
    assert shrunk.association[1, 2] > shrunk.association[3, 4]


def test_save_load_round_trip(tmp_path):
    m = CoPurchase(CoPurchaseConfig(shrink=3.0)).fit(BASKETS, 4)
    m.save(tmp_path / "cp")
    back = CoPurchase.load(tmp_path / "cp")
    assert back.config == m.config and back.n_items == 4
    carts = Sequences.from_lists([[2], [1, 4]])
    np.testing.assert_array_equal(back.scores(carts), m.scores(carts))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="shrink"):
        CoPurchaseConfig(shrink=-1)
    with pytest.raises(ValueError, match="popularity_exponent"):
        CoPurchaseConfig(popularity_exponent=2)
    with pytest.raises(ValueError, match="outside"):
        CoPurchase().fit(Sequences.from_lists([[1, 9]]), 4)
