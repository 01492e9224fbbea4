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
