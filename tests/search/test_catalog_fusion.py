"""Catalog rows, filter masks and facets; fusion functions and their choice."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from shopformer.search.catalog import SearchCatalog, SearchFilter
from shopformer.search.fusion import Candidates, FusionConfig, choose_fusion, fused_scores, order, union

from .contract import catalog_frame


def test_rows_are_permanent_and_updates_replace():
    cat = SearchCatalog()
    rows, _ = cat.upsert(catalog_frame())
    assert rows.tolist() == list(range(1, 11)) and len(cat) == 10
    again, _ = cat.upsert(catalog_frame()[2:3].with_columns(pl.lit("Ames").alias("brand")))
    assert again.tolist() == [3] and cat.brands[3] == "Ames"
    assert cat.mask(SearchFilter(brands=("flexzilla",))).sum() == 0
    assert cat.mask(SearchFilter(brands=("ames",))).sum() == 1
    cat.delete(["hose", "unknown"])
    assert len(cat) == 9 and not cat.mask(None)[3]
    back, _ = cat.upsert(catalog_frame()[2:3])
    assert back.tolist() == [3] and cat.mask(None)[3]  # same row again


def test_repeated_id_in_one_batch_last_wins():
    cat = SearchCatalog()
    frame = pl.concat([catalog_frame()[:1], catalog_frame()[:1].with_columns(pl.lit("Last").alias("title"))])
    rows, docs = cat.upsert(frame)
    assert rows.tolist() == [1] and cat.titles[1] == "Last"


def test_mask_filters():
    cat = SearchCatalog()
    cat.upsert(catalog_frame())
    ids = lambda m: {cat.ids[i] for i in np.flatnonzero(m)}  # noqa: E731
    assert ids(cat.mask(SearchFilter(available_only=True))) == set(cat.ids[1:]) - {"bits"}
    assert ids(cat.mask(SearchFilter(categories=("TOOLS",)))) == {"drill", "bits"}
    assert ids(cat.mask(SearchFilter(min_price=100))) == {"quietfan", "fridge"}
    assert ids(cat.mask(SearchFilter(brands=("behr", "samsung"), max_price=100))) == {"paint"}
    assert not cat.mask(None)[0]


@pytest.mark.parametrize("bad", [dict(min_price=5, max_price=1), dict(min_price=float("nan")), dict(max_price=float("inf"))])
def test_bad_filters_are_refused(bad):
    with pytest.raises(ValueError):
        SearchFilter(**bad)


def test_facets_count_the_given_rows():
    cat = SearchCatalog()
    rows, _ = cat.upsert(catalog_frame())
    f = cat.facets(rows)
    cats = {x["value"]: x["count"] for x in f["categories"]}
    assert cats["Tools"] == 2 and cats["Lighting"] == 2 and cats["Power Tools"] == 1
    assert {x["value"]: x["count"] for x in f["brands"]}["Ryobi"] == 1
    assert f["available"] == {"true": 9, "false": 1}
    assert sum(b["count"] for b in f["price"]) == 9  # one product has no price
    assert all(b["min"] < b["max"] for b in f["price"])
    assert cat.facets(np.zeros(0, np.int64))["price"] == []


def cands() -> Candidates:
    # lexical list: rows 5 (score 10), 6 (5); semantic list: rows 7, 5; cosines given
    cos = {5: 0.2, 6: 0.1, 7: 0.9}
    return union(np.array([5, 6]), np.array([10.0, 5.0], np.float32), np.array([7]),
                 lambda rows: np.array([cos[r] for r in rows.tolist()], np.float32),
                 np.array([7]), np.array([1.0], np.float32), np.array([7, 5]))


def test_union_keeps_both_sides_evidence():
    c = cands()
    assert c.rows.tolist() == [5, 6, 7]
    assert c.lexical.tolist() == [10.0, 5.0, 1.0]
    assert c.lexical_rank.tolist() == [1, 2, 0] and c.semantic_rank.tolist() == [2, 0, 1]
    np.testing.assert_allclose(c.cosine, [0.2, 0.1, 0.9])


def test_convex_and_rrf_by_hand():
    c = cands()
    np.testing.assert_allclose(fused_scores(c, FusionConfig("convex", 0.5)),
                               [0.5 * 1 + 0.5 * 0.2, 0.5 * 0.5 + 0.5 * 0.1, 0.5 * 0.1 + 0.5 * 0.9])
    np.testing.assert_allclose(fused_scores(c, FusionConfig("rrf", 0.5, 10)),
                               [0.5 / 11 + 0.5 / 12, 0.5 / 12, 0.5 / 11])
    assert c.rows[order(fused_scores(c, FusionConfig("convex", 1.0)), c.rows)].tolist() == [5, 6, 7]
    assert c.rows[order(fused_scores(c, FusionConfig("convex", 0.0)), c.rows)].tolist() == [7, 5, 6]


def test_ties_go_to_the_lower_row():
    assert order(np.array([1.0, 1.0, 2.0]), np.array([9, 3, 4])).tolist() == [2, 1, 0]


def test_choose_fusion_picks_the_best_on_validation():
    c = cands()
    # a judge who wants row 7 first: only configs leaning to the semantic side put it there
    best, table = choose_fusion([c], lambda i, rows: float(rows[0] == 7))
    assert best.kind == "convex" and best.alpha <= 0.4
    assert len(table) > 5 and max(v for _, v in table) == 1.0


def test_fusion_config_is_checked():
    with pytest.raises(ValueError):
        FusionConfig("mean")
    with pytest.raises(ValueError):
        FusionConfig(alpha=1.5)
