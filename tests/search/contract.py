"""Contract every lexical index must pass, as a mixin: ``class TestX(LexicalContract)``.

Subclasses set ``make(tmp_path)`` (a fresh, empty index) and ``reopen(index, folder)``
(the same index after save + load). The catalog below has known answers: stems, units,
field weights, filters, updates and deletes are checked by exact result sets.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from shopformer.search.analysis import normalize
from shopformer.search.catalog import SearchCatalog, SearchFilter
from shopformer.search.lexical import LexicalIndex, LexicalQuery

PRODUCTS = [
    ("drill", "Cordless Drill 18-Volt", "Ryobi", ["Tools", "Power Tools"], 99.0, True, None, None),
    ("bits", "Hammer Drill Bits Set", "DeWalt", ["Tools", "Accessories"], 15.0, False, None, None),
    ("hose", "Garden Hose 50 ft.", "Flexzilla", ["Garden"], 35.0, True, None, None),
    ("pipe", "Copper Pipe 1/2 in. x 10 ft.", "Mueller", ["Plumbing"], 20.0, True, None, None),
    ("paint", "White Semi-Gloss Interior Paint 1 gal.", "Behr", ["Paint"], 30.0, None, "low odor", None),
    ("bulb", "LED Light Bulb 60-Watt", "Philips", ["Lighting"], 5.0, True, None, {"color": "soft white"}),
    ("stud", "2 in. x 4 in. x 8 ft. Stud Lumber", None, ["Lumber"], 4.0, True, None, None),
    ("exhaust", "Bathroom Exhaust Fan", None, ["Bath"], None, True, "quiet ventilation for bathrooms", None),
    ("quietfan", "Quiet Ceiling Fan", None, ["Lighting"], 120.0, True, None, None),
    ("fridge", "French Door Refrigerator in Stainless", "Samsung", ["Appliances"], 1999.0, True, None, None),
]


def catalog_frame(rows=PRODUCTS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "title": [r[1] for r in rows],
            "brand": [r[2] for r in rows],
            "categories": [r[3] for r in rows],
            "price": [r[4] for r in rows],
            "available": [r[5] for r in rows],
            "description": [r[6] for r in rows],
            "attributes": [json.dumps(r[7]) if r[7] else None for r in rows],
        },
        schema_overrides={"price": pl.Float64, "available": pl.Boolean, "description": pl.String,
                          "brand": pl.String, "attributes": pl.String},
    )


def q(text: str) -> LexicalQuery:
    return LexicalQuery.of(normalize(text).split())


class LexicalContract:
    def make(self, tmp_path) -> LexicalIndex:  # pragma: no cover - overridden
        raise NotImplementedError

    def reopen(self, index: LexicalIndex, folder) -> LexicalIndex:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def built(self, tmp_path):
        cat = SearchCatalog()
        rows, docs = cat.upsert(catalog_frame())
        index = self.make(tmp_path)
        index.add_or_update(rows, docs)
        yield index, cat
        index.close()

    def ids(self, cat, rows) -> list[str]:
        return [cat.ids[r] for r in np.asarray(rows).tolist()]

    def search(self, built, text, k=10, flt=None) -> list[str]:
        index, cat = built
        rows, scores = index.search(q(text), k, flt)
        assert rows.dtype == np.int64 and scores.dtype == np.float32 and len(rows) == len(scores)
        assert (np.diff(scores) <= 1e-6).all(), "not best first"
        return self.ids(cat, rows)

    def test_protocol_and_size(self, built):
        index, _ = built
        assert isinstance(index, LexicalIndex)
        assert len(index) == len(PRODUCTS)

    def test_exact_word(self, built):
        assert self.search(built, "hose") == ["hose"]

    def test_stems_match(self, built):
        assert set(self.search(built, "drills")) == {"drill", "bits"}
        assert "exhaust" in self.search(built, "bathrooms")
        assert self.search(built, "refrigerators")[0] == "fridge"

    def test_units_and_dimensions(self, built):
        assert self.search(built, "1/2 inch copper pipe")[0] == "pipe"
        assert self.search(built, '1/2" pipe')[0] == "pipe"
        assert self.search(built, "2x4 stud")[0] == "stud"
        assert self.search(built, "2x4")[0] == "stud"  # the dimension alone
        assert self.search(built, "1 gallon white paint")[0] == "paint"
        assert self.search(built, "60 watt bulb")[0] == "bulb"

    def test_hyphenated_words_match_joined(self, built):
        assert self.search(built, "semigloss")[0] == "paint"

    def test_title_outweighs_description(self, built):
        found = self.search(built, "quiet")
        assert found[:2] == ["quietfan", "exhaust"]  # title match above description match

    def test_description_and_attributes_are_searched(self, built):
        assert self.search(built, "ventilation") == ["exhaust"]
        assert self.search(built, "odor") == ["paint"]
        assert "bulb" in self.search(built, "soft white")

    def test_k_limits(self, built):
        assert len(self.search(built, "drill fan hose pipe paint", k=2)) == 2

    def test_filters(self, built):
        assert self.search(built, "drill", flt=SearchFilter(available_only=True)) == ["drill"]
        assert self.search(built, "drill", flt=SearchFilter(brands=("dewalt",))) == ["bits"]
        assert self.search(built, "drill", flt=SearchFilter(brands=("DeWalt ",))) == ["bits"]  # case, spaces
        assert set(self.search(built, "fan", flt=SearchFilter(categories=("lighting", "bath")))) == {"quietfan", "exhaust"}
        assert self.search(built, "fan", flt=SearchFilter(categories=("Lighting",))) == ["quietfan"]
        assert self.search(built, "drill", flt=SearchFilter(min_price=20)) == ["drill"]
        assert self.search(built, "drill", flt=SearchFilter(max_price=20)) == ["bits"]
        assert self.search(built, "drill", flt=SearchFilter(min_price=15, max_price=15)) == ["bits"]  # inclusive
        # no price: never inside a price range
        assert self.search(built, "fan", flt=SearchFilter(max_price=10_000)) == ["quietfan"]
        assert self.search(built, "drill", flt=SearchFilter(brands=("nobody",))) == []
        # null availability counts as available
        assert self.search(built, "paint", flt=SearchFilter(available_only=True)) == ["paint"]

    def test_filters_agree_with_the_catalog_mask(self, built):
        index, cat = built
        for flt in (SearchFilter(available_only=True), SearchFilter(categories=("tools",)), SearchFilter(max_price=30),
                    SearchFilter(brands=("ryobi", "behr"), min_price=1)):
            rows, _ = index.search(q("drill fan hose pipe paint bulb stud refrigerator bits lumber"), 50, flt)
            mask = cat.mask(flt)
            assert mask[rows].all()
            assert set(rows.tolist()) == set(np.flatnonzero(mask).tolist())

    def test_rows_restriction(self, built):
        index, cat = built
        only = cat.rows(["bits"])
        rows, scores = index.search(q("drill"), 10, rows=only)
        assert self.ids(cat, rows) == ["bits"] and scores[0] > 0
        assert len(index.search(q("drill"), 10, rows=np.zeros(0, np.int64))[0]) == 0

    def test_update_replaces_text_and_filters(self, built):
        index, cat = built
        changed = catalog_frame([("hose", "Steel Garden Rake", "Ames", ["Garden"], 25.0, False, None, None)])
        rows, docs = cat.upsert(changed)
        index.add_or_update(rows, docs)
        assert self.search(built, "hose") == []
        assert self.search(built, "rake") == ["hose"]
        assert self.search(built, "rake", flt=SearchFilter(available_only=True)) == []
        assert len(index) == len(PRODUCTS)

    def test_new_product_searchable_on_return(self, built):
        index, cat = built
        rows, docs = cat.upsert(catalog_frame([("saw", "Circular Saw 7-1/4 in.", "Makita", ["Tools"], 129.0, True, None, None)]))
        index.add_or_update(rows, docs)
        assert self.search(built, "7.25 in saw") == ["saw"]

    def test_delete(self, built):
        index, cat = built
        index.delete(cat.delete(["drill"]))
        assert self.search(built, "drill") == ["bits"]
        assert len(index) == len(PRODUCTS) - 1

    def test_query_syntax_is_text(self, built):
        for text in ['" ( ) : * ~ ^ AND', "drill AND (bits OR hose)", "title:drill^5", "dri*", "NOT drill", "\\"]:
            found = self.search(built, text)
            assert isinstance(found, list)
        assert set(self.search(built, "drill AND (bits")) >= {"drill", "bits"}

    def test_empty_and_stopword_queries(self, built):
        assert self.search(built, "") == []
        assert self.search(built, "the and of") == []

    def test_long_query_is_bounded(self, built):
        found = self.search(built, "drill " * 2000 + " ".join(f"w{i}" for i in range(2000)))
        assert set(found) == {"drill", "bits"}

    def test_save_and_reopen(self, built, tmp_path):
        index, cat = built
        before = index.search(q("drill fan"), 10)
        index.save(tmp_path / "saved")
        again = self.reopen(index, tmp_path / "saved")
        after = again.search(q("drill fan"), 10)
        assert after[0].tolist() == before[0].tolist()
        np.testing.assert_allclose(after[1], before[1], rtol=1e-5)
