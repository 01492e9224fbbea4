"""Occlusion attribution against hand-computed numbers, and the fast item-column
scorers against the models' own score()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shopformer.explain.attribution import (
    OcclusionConfig,
    attribute,
    attribute_many,
    item_scorer,
    occlusion_batch,
    sliced_scores,
    without,
)
from shopformer.features.sequences import Sequences
from shopformer.models.ease import EASE, EASEConfig
from shopformer.models.itemknn import ItemKNN, ItemKNNConfig

torch.set_num_threads(1)

# Every item bought by 3 customers; co-buyers: (1,4) 2, (2,4) 2, (3,4) 1, (1,2) 2,
# (1,3) 1, (2,3) 1. With shrink 0, cosine = co-buyers / 3.
TRAIN = Sequences.from_lists([[1, 2, 4], [1, 2, 4], [1, 3], [2, 3], [3, 4]])


@pytest.fixture(scope="module")
def knn() -> ItemKNN:
    return ItemKNN(ItemKNNConfig(shrink=0.0)).fit(TRAIN, 4)


@pytest.fixture(scope="module")
def ease() -> EASE:
    return EASE(EASEConfig(l2=1.0)).fit(TRAIN, 4)


def test_itemknn_attribution_is_the_hand_computed_score_difference(knn):
    # history [1, 3], item 4: score = sim(1,4) + sim(3,4) = 2/3 + 1/3
    a = attribute(knn, Sequences.from_lists([[1, 3]]), np.array([4]))
    assert a.full == pytest.approx([1.0])
    # without item 1 the score is 1/3 (drop 2/3); without item 3 it is 2/3 (drop 1/3)
    assert a.values[:, 0] == pytest.approx([2 / 3, 1 / 3])
    assert a.shares()[:, 0] == pytest.approx([2 / 3, 1 / 3])
    # the item that co-occurs most with 4 carries the largest attribution
    assert a.history[a.positions[a.ranked(0)[0]]] == 1


def test_ease_occlusion_of_one_event_is_its_weight(ease):
    # EASE scores h @ B, so removing a (non-repeated) item i lowers item j by B[i, j]
    hist = [1, 2, 3]
    a = attribute(ease, Sequences.from_lists([hist]), np.array([4, 1]))
    b = ease.weights
    assert a.values[:, 0] == pytest.approx(b[hist, 4], abs=1e-6)
    assert a.values[:, 1] == pytest.approx(b[hist, 1], abs=1e-6)
    assert a.full[0] == pytest.approx(b[hist, 4].sum(), abs=1e-6)
    # and each value equals re-scoring the history without that event by hand
    for e, _ in enumerate(hist):
        rest = [x for p, x in enumerate(hist) if p != e]
        by_hand = ease.score(Sequences.from_lists([hist]))[0, 4] - ease.score(Sequences.from_lists([rest]))[0, 4]
        assert a.values[e, 0] == pytest.approx(by_hand, abs=1e-6)


def test_repeated_item_and_last_event_edge_cases(knn):
    # a set-based model ignores a repeat: removing one of two 1s changes nothing
    a = attribute(knn, Sequences.from_lists([[1, 1, 3]]), np.array([4]))
    assert a.values[:, 0] == pytest.approx([0.0, 0.0, 1 / 3])
    # a one-event history: without it the model falls back to popularity (all 3 users
    # per item -> 1.0), so the attribution is sim(1, 4) - 1
    one = attribute(knn, Sequences.from_lists([[1]]), np.array([4]))
    assert one.values[0, 0] == pytest.approx(2 / 3 - 1.0)
    assert one.shares()[0, 0] == 0.0  # nothing raised the item


def test_max_events_occludes_only_the_latest(knn):
    a = attribute(knn, Sequences.from_lists([[1, 2, 3, 1]]), np.array([4]), OcclusionConfig(max_events=2))
    assert a.positions.tolist() == [2, 3] and a.values.shape == (2, 1)


def test_occlusion_batch_keeps_order_types_and_times():
    h = Sequences(np.array([0, 3]), np.array([5, 6, 7]), np.array([1.0, 2.0, 3.0]), np.array([0, 4, 4], dtype=np.int8))
    batch, pos = occlusion_batch(h, 0, OcclusionConfig())
    assert pos.tolist() == [0, 1, 2]
    assert [batch.row(r).tolist() for r in range(4)] == [[5, 6, 7], [6, 7], [5, 7], [5, 6]]
    assert batch.timestamps.tolist() == [1, 2, 3, 2, 3, 1, 3, 1, 2]
    assert batch.event_types.tolist() == [0, 4, 4, 4, 4, 0, 4, 0, 4]
    two = without(h, 0, np.array([[True, False, True]]))
    assert two.row(0).tolist() == [6] and two.timestamps.tolist() == [2.0]


def _random_histories(rng, n_items: int, rows: int) -> Sequences:
    lists = [rng.integers(1, n_items + 1, size=rng.integers(0, 7)).tolist() for _ in range(rows)]
    lists[0] = [3, 3]  # a repeat
    lists[1] = [2]  # removing it leaves nothing
    return Sequences.from_lists(lists)


def _tiny_sasrec():
    from shopformer.models.sequential import SASRecRecommender, TransformerConfig
    from shopformer.models.sasrec import SASRecConfig
    from shopformer.train.loop import TrainConfig

    cfg = TransformerConfig(arch=SASRecConfig(d_model=8, n_heads=1, n_layers=1, max_len=5),
                            train=TrainConfig(epochs=1, batch_size=8))
    rng = np.random.default_rng(1)
    train = Sequences.from_lists([rng.integers(1, 13, size=6).tolist() for _ in range(20)])
    return SASRecRecommender(cfg).fit(train, 12)


@pytest.mark.parametrize("which", ["ease", "itemknn", "sasrec"])
def test_fast_scorers_match_score(which):
    rng = np.random.default_rng(0)
    if which == "sasrec":
        model, n = _tiny_sasrec(), 12
    else:
        train = Sequences.from_lists([rng.integers(1, 13, size=5).tolist() for _ in range(30)])
        model = (EASE(EASEConfig(l2=2.0)) if which == "ease" else ItemKNN(ItemKNNConfig(neighbors=3))).fit(train, 12)
        n = 12
    hist = _random_histories(rng, n, 12)
    items = rng.integers(1, n + 1, size=(12, 4))
    fast, row = item_scorer(model)(hist, items, True)
    slow, slow_row = sliced_scores(model, hist, items, True)
    assert fast == pytest.approx(slow, abs=1e-5)
    finite = np.isfinite(slow_row)
    assert (np.isfinite(row) == finite).all() and row[finite] == pytest.approx(slow_row[finite], abs=1e-5)
    assert row[finite] == pytest.approx(model.score(hist.rows(np.array([0])))[0][finite], abs=1e-5)


@pytest.mark.parametrize("catalog", [False, True])
def test_batched_attribution_equals_one_user_at_a_time(ease, catalog):
    hist = Sequences.from_lists([[1, 2], [3], [2, 4, 1], [4, 4, 3]])
    items = np.array([[4, 3], [1, 2], [3, 3], [1, 2]])
    many = attribute_many(ease, hist, items, OcclusionConfig(batch_rows=3), catalog=catalog)
    for u, a in enumerate(many):
        if catalog:
            assert a.catalog[1:] == pytest.approx(ease.score(hist.rows(np.array([u])))[0, 1:], abs=1e-6)
        else:
            assert a.catalog is None
        one = attribute(ease, hist.rows(np.array([u])), items[u])
        assert a.history.tolist() == hist.row(u).tolist()
        assert a.values == pytest.approx(one.values, abs=1e-6) and a.full == pytest.approx(one.full, abs=1e-6)


def test_empty_history_has_no_events_to_occlude(knn):
    a = attribute(knn, Sequences.from_lists([[]]), np.array([4, 1]))
    assert a.values.shape == (0, 2) and a.full == pytest.approx([1.0, 1.0])  # popularity
    assert a.shares().shape == (0, 2)


@pytest.mark.parametrize("catalog", [False, True])
def test_sasrec_prefix_reuse_equals_scoring_every_occluded_history(catalog):
    model = _tiny_sasrec()  # max_len 5: the longer histories slide their window
    with torch.no_grad():  # weights large enough that every event matters
        for p in model.module.parameters():
            p.mul_(15.0)
    model._table = None
    rng = np.random.default_rng(3)
    hist = Sequences.from_lists([rng.integers(1, 13, size=n).tolist() for n in (0, 1, 2, 4, 5, 6, 9)])
    items = rng.integers(1, 13, size=(len(hist), 3))
    for max_events in (None, 2):
        fast = attribute_many(model, hist, items, OcclusionConfig(max_events=max_events),
                              catalog=catalog)
        slow = attribute_many(model, hist, items, OcclusionConfig(max_events=max_events, reuse_prefix=False),
                              catalog=catalog)
        for a, b in zip(fast, slow):
            assert a.positions.tolist() == b.positions.tolist()
            assert a.values == pytest.approx(b.values, abs=1e-4) and a.full == pytest.approx(b.full, abs=1e-4)
            if catalog:
                assert a.catalog[1:] == pytest.approx(b.catalog[1:], abs=1e-4)
        assert any(np.abs(a.values).max() > 1e-2 for a in slow if a.values.size)  # events do move the scores


@pytest.mark.parametrize("max_removed", [2048, 0])  # from the removed items' scores / from the whole catalog
def test_explainer_provenance_and_a_given_user_vector_change_no_number(max_removed):
    from shopformer.explain import ExplainConfig, Explainer
    from shopformer.explain.rules import EXCLUDED_HISTORY, history_mask
    from shopformer.features.vocab import Vocabulary
    from shopformer.retrieve.exact import mask_items, top_k

    model = _tiny_sasrec()
    with torch.no_grad():  # weights large enough that every event matters
        for p in model.module.parameters():
            p.mul_(15.0)
    model._table = None
    explainer = Explainer(ExplainConfig(max_removed_scored=max_removed), model, Vocabulary([str(i) for i in range(1, 13)]))
    for hist in ([4, 7, 2, 9], [5, 5, 1, 11, 3, 8, 6]):
        h = Sequences.from_lists([hist])
        scores = model.score(h)
        mask_items(scores, h)
        items = top_k(scores, 5)[0][0]
        removed = {EXCLUDED_HISTORY: history_mask(h.items, 12)}
        reference = explainer.explain(h, items, model.score(h)[0], removed)
        for vector in (None, model.user_vectors(h)[0].numpy()):
            got = explainer.explain(h, items, None, removed, user_vector=vector)
            assert [x.rules for x in got.items] == [x.rules for x in reference.items]
            np.testing.assert_allclose(got.attribution.values, reference.attribution.values, atol=1e-4)
            assert got.attribution.items.tolist() == items.tolist()
        assert any(x.rules.model_rank > x.rules.final_rank for x in reference.items)  # exclusion moved some up
