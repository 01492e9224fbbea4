"""Diversity re-ranking (rank/diversity.py): MMR and the category cap on known answers."""

import numpy as np
import pytest

from shopformer.rank.diversity import DiversityConfig, diversify, diversify_batch, intra_list_diversity


def unit(*rows):
    v = np.array(rows, dtype=np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# three near-identical items (a, a2, a3) score highest; b and c differ
IDS = ["a", "a2", "a3", "b", "c"]
SCORES = [1.0, 0.99, 0.98, 0.9, 0.8]
VECS = unit([1, 0, 0], [1, 0.01, 0], [1, 0, 0.01], [0, 1, 0], [0, 0, 1])


def test_off_keeps_the_model_order():
    out = diversify(DiversityConfig(), IDS, SCORES, 3, VECS)
    assert out.order == [0, 1, 2, 3, 4] and out.shifts == []


def test_mmr_keeps_one_of_three_near_duplicates_in_the_top_2():
    # relevance is min-max normalized (a 1, a2 0.95, a3 0.9, b 0.5, c 0): at 0.5, a2 gains
    # 0.475 - 0.5 * 0.99995 < 0 and b 0.25; then c 0 beats a3 0.45 - 0.5
    out = diversify(DiversityConfig(diversity=0.5), IDS, SCORES, 3, VECS)
    assert [IDS[p] for p in out.order[:3]] == ["a", "b", "c"]
    assert [IDS[p] for p in out.order[3:]] == ["a2", "a3"]  # the rest, for steps that drop items
    moved = {(s.item_id, s.from_rank, s.to_rank) for s in out.shifts}
    assert moved == {("b", 4, 2), ("c", 5, 3), ("a2", 2, None), ("a3", 3, None)}
    assert all(s.step == "diversity" for s in out.shifts)


def test_small_diversity_keeps_relevance_first():
    # a2: 0.95 * 0.95 - 0.05 * 0.99995 = 0.85 > b: 0.95 * 0.5 -> a2 stays second
    out = diversify(DiversityConfig(diversity=0.05), IDS, SCORES, 2, VECS)
    assert [IDS[p] for p in out.order[:2]] == ["a", "a2"]


def test_category_cap_of_one_gives_distinct_categories():
    cats = ["shoes", "shoes", "shoes", "bags", None]
    out = diversify(DiversityConfig(max_per_category=1), IDS, SCORES, 3, categories=cats)
    assert [IDS[p] for p in out.order[:3]] == ["a", "b", "c"]
    assert {(s.item_id, s.step, s.to_rank) for s in out.shifts if s.to_rank is None} == {
        ("a2", "category_cap", None), ("a3", "category_cap", None)}


def test_cap_fills_from_capped_items_when_nothing_else_is_left():
    out = diversify(DiversityConfig(max_per_category=1), ["x", "y", "z"], [3, 2, 1], 3, categories=["s", "s", "t"])
    assert out.order == [0, 2, 1]  # x, z, then y although its category is full


def test_batch_matches_rows_and_pads_short_rows():
    scores = np.array([SCORES, [1.0, 0.5, -np.inf, -np.inf, -np.inf]])
    vecs = np.stack([VECS, VECS])
    out = diversify_batch(DiversityConfig(diversity=0.5), scores, vecs, None, 3)
    assert out[0].tolist() == [0, 3, 4]
    assert out[1].tolist() == [0, 1, -1]


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="diversity"):
        DiversityConfig(diversity=1.5)
    with pytest.raises(ValueError, match="max_per_category"):
        DiversityConfig(max_per_category=0)
    assert DiversityConfig(diversity=0.2).fetch(10, 30) == 30 and DiversityConfig().fetch(10) == 10


def test_intra_list_diversity_by_hand():
    table = np.vstack([np.zeros(3), unit([1, 0, 0], [0, 1, 0], [1, 0, 0])])
    ild = intra_list_diversity(table, np.array([[1, 2, 0], [1, 3, 0], [1, 2, 3]]))
    # [1,2]: orthogonal -> 1; [1,3]: identical -> 0; [1,2,3]: pairs 1,0,1 -> 2/3
    assert ild == pytest.approx([1.0, 0.0, 2 / 3])
