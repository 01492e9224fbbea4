"""The learned re-ranker: training examples, fit, save/load, and use by the Searcher."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

pytest.importorskip("lightgbm", reason="lightgbm is not installed")

from shopformer.search import SearchConfig, Searcher  # noqa: E402
from shopformer.search.features import FEATURES  # noqa: E402
from shopformer.search.rerank import Reranker, RerankerConfig, training_set  # noqa: E402

NOUNS = ["drill", "hose", "lamp", "saw", "rake", "mug", "fan", "sink", "door", "tile", "bulb", "pipe"]


def catalog() -> pl.DataFrame:
    """Per noun: the product itself ("Cordless Drill"), and a decoy that repeats the noun
    in a longer title (BM25 favours it; the judges do not)."""
    rows = []
    for n in NOUNS:
        rows.append((f"{n}-real", f"Cordless {n.title()}"))
        rows.append((f"{n}-decoy", f"{n.title()} {n.title()} Holder Bracket Mount Clip {n.title()} Kit"))
    return pl.DataFrame({"item_id": [r[0] for r in rows], "title": [r[1] for r in rows]})


def judgments() -> dict[str, dict[str, float]]:
    return {n: {f"{n}-real": 2.0, f"{n}-decoy": 0.0} for n in NOUNS}


@pytest.fixture
def searcher():
    s = Searcher.build(catalog(), SearchConfig(use_semantic=False))
    yield s
    s.close()


def test_training_examples(searcher):
    t = training_set(searcher, ["drill", "hose"], judgments())
    assert t.X.shape[1] == len(FEATURES) and t.queries == ["drill", "hose"]
    assert sum(t.groups) == len(t.y) and sorted(t.y[: t.groups[0]].tolist()) == [0.0, 2.0]
    reg = training_set(searcher, ["drill"], {"drill": {"drill-real": 2.0, "hose-real": 1.0}}, "regression")
    assert sorted(reg.y.tolist()) == [1.0, 2.0]  # judged products, wherever retrieval put them


def test_reranker_learns_what_judges_prefer(searcher, tmp_path):
    assert searcher.search("drill").hits[0].item_id == "drill-decoy"  # BM25 alone is wrong here
    config = RerankerConfig(trees=50, min_child_samples=1, leaves=4, early_stopping=10)
    model = Reranker(config).fit(training_set(searcher, NOUNS[:9], judgments()),
                                 training_set(searcher, NOUNS[9:], judgments()))
    searcher.reranker = model
    r = searcher.search("lamp")
    assert r.strategy == "lexical+rerank" and r.hits[0].item_id == "lamp-real"
    assert searcher.search("pipe").hits[0].item_id == "pipe-real"  # a validation query: never trained on
    model.save(tmp_path / "r")
    again = Reranker.load(tmp_path / "r")
    t = training_set(searcher, ["saw"], judgments())
    np.testing.assert_allclose(again.predict(t.X), model.predict(t.X))
    searcher.save(tmp_path / "s")
    loaded = Searcher.load(tmp_path / "s")
    assert loaded.search("lamp").strategy == "lexical+rerank"
    loaded.close()


def test_regression_objective_predicts_grades(searcher):
    config = RerankerConfig("regression", trees=30, min_child_samples=1, leaves=4)
    t = training_set(searcher, NOUNS, judgments(), "regression")
    model = Reranker(config).fit(t)
    pred = model.predict(t.X)
    assert np.sqrt(np.mean((pred - t.y) ** 2)) < np.std(t.y)  # better than predicting the mean


def test_untrained_and_mismatched_models_are_refused(tmp_path, searcher):
    with pytest.raises(RuntimeError, match="not trained"):
        Reranker().predict(np.zeros((1, len(FEATURES))))
    model = Reranker(RerankerConfig(trees=5, min_child_samples=1)).fit(training_set(searcher, NOUNS, judgments()))
    model.save(tmp_path / "r")
    meta = (tmp_path / "r" / "reranker.json")
    meta.write_text(meta.read_text().replace('"lexical"', '"renamed"'))
    with pytest.raises(ValueError, match="other features"):
        Reranker.load(tmp_path / "r")


def test_warm_titles_reads_catalog_titles_into_the_cache():
    from shopformer.search import features

    features._title.cache_clear()
    assert features.warm_titles(["cordless drill 18v", "", "ceiling fan with light"]) == 2
    info = features._title.cache_info()
    assert info.currsize == 2 and info.misses == 2
    features._title("cordless drill 18v")  # a query's candidate: no second reading
    assert features._title.cache_info().hits == 1


def _rich_catalog() -> pl.DataFrame:
    """Titles with numbers, units, dimensions, brands, repeated and shared words."""
    titles = ["DeWalt 20V MAX Cordless Drill Driver Kit", "1/2 in. x 10 ft. Copper Pipe Type L",
              "2 in. x 4 in. x 8 ft. Pine Stud", "Delta Faucet Trim Kit in Chrome with Lever Handle",
              "Ceiling Fan with Light Kit 52 in. White", "LED Light Bulb 60W Equivalent Soft White (4-Pack)",
              "Garden Hose 50 ft. Heavy Duty", "Drill Bit Set (21-Piece) for Wood and Metal",
              "Chrome Towel Bar 24 in.", "Pipe Wrench 14 in. Cast Iron", "Kitchen Sink Faucet Delta Stainless",
              "Light Switch Cover White", "Outdoor Wall Light Black", "1/2 in. PVC Pipe Cap", ""]
    brands = ["DeWalt", "", "", "Delta", "Hampton Bay", "", "", "Bosch", "", "Ridgid", "Delta", "", "", "", ""]
    return pl.DataFrame({"item_id": [f"p{i}" for i in range(len(titles))], "title": titles, "brand": brands})


QUERIES = ["cordless drill dewalt", "1/2 in copper pipe", "2x4x8 stud", "delta faucet chrome",
           "ceiling fan light 52 in", "60w light bulb", "pipe", "delta kitchen sink faucet",
           "white light", "chrome towel bar 24 in", "drill bit set", "hose 50 ft", "zzzz unknownword drill"]


def _features_both_ways(s, queries):
    from shopformer.search.features import candidate_features
    from shopformer.search.fusion import fused_scores, order

    from .reference_features import reference_features

    seen = []
    for q in queries:
        plan = s.plan(q)
        if not plan.has_terms:
            continue
        c = s.candidates(plan)
        fused = fused_scores(c, s.fusion)
        pick = order(fused, c.rows)[: s.config.rerank_depth]
        fast, slow = candidate_features(plan, s, c, pick, fused), reference_features(plan, s, c, pick, fused)
        assert fast.shape == slow.shape == (len(pick), len(FEATURES))
        bad = ~np.isclose(fast, slow, rtol=1e-6, atol=1e-6)
        assert not bad.any(), f"{q!r}: features {sorted({FEATURES[j] for j in np.nonzero(bad)[1]})} differ"
        seen.append(fast)
    return np.concatenate(seen)


def test_vectorized_features_equal_the_per_candidate_definitions():
    s = Searcher.build(_rich_catalog(), SearchConfig(use_semantic=False))
    try:
        X = _features_both_ways(s, QUERIES)
    finally:
        s.close()
    assert len(X) > 30
    # the catalog and queries exercise every branch: brands, numbers, units, bigrams, conflicts
    for name in ("brand_named", "numbers_matched", "units_matched", "bigrams", "unit_conflicts", "all_covered",
                 "head_noun", "leading_word_named", "head_in_type", "missing_idf"):
        assert (X[:, FEATURES.index(name)] > 0).any(), name


def test_vectorized_features_equal_the_definitions_on_home_depot():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / "homedepot-search"
    if not (folder / "products.csv.gz").is_file():
        pytest.skip(f"Home Depot search data not found at {folder}")
    products = pl.read_csv(folder / "products.csv.gz", schema_overrides={"product_uid": pl.String}, n_rows=5000)
    products = products.rename({"product_uid": "item_id", "product_title": "title"})
    judged = pl.read_csv(folder / "judgments.csv.gz", n_rows=3000)
    queries = judged["search_term"].unique(maintain_order=True).to_list()[:150]
    s = Searcher.build(products, SearchConfig(use_semantic=False))
    try:
        assert len(_features_both_ways(s, queries)) > 5000
    finally:
        s.close()
