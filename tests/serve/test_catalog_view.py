"""The serving catalog view: refreshed from the store's change log, it must equal a
full read of the catalog, and read only the products written since."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from shopformer.features.vocab import Vocabulary
from shopformer.serve.catalog_view import CatalogView, read_view, refresh_view

ITEMS = Vocabulary([f"p{i}" for i in range(1, 9)])  # p1..p8 -> idx 1..8


def _catalog(ids, available=True, price=1.0, cats=("shoes",), title="T"):
    return pl.DataFrame({
        "item_id": list(ids),
        "title": [f"{title} {i}" for i in ids],
        "available": [available] * len(ids),
        "price": [price] * len(ids),
        "categories": [list(cats)] * len(ids),
    })


def _same(a: CatalogView, b: CatalogView) -> None:
    np.testing.assert_array_equal(a.available, b.available)
    np.testing.assert_array_equal(a.price, b.price)  # NaN == NaN here
    key = ["idx", "category"]
    assert a.categories.sort(key).to_dicts() == b.categories.sort(key).to_dicts()
    assert a.titles.to_list() == b.titles.to_list()
    assert a.seq == b.seq


@pytest.fixture
def store(backend_store):
    backend_store.upsert_products(_catalog(["p1", "p2", "p3", "p4", "zz"]))  # zz: unknown to the model
    return backend_store


def test_a_full_read_aligns_the_catalog_to_the_model(store):
    view = read_view(store, ITEMS, "v1", 0.0)
    assert view.available.tolist() == [True] * 9
    assert np.isnan(view.price[[0, 5, 6, 7, 8]]).all() and (view.price[1:5] == 1.0).all()
    assert sorted(view.categories["idx"].to_list()) == [1, 2, 3, 4]
    assert view.titles.to_list() == [None, "T p1", "T p2", "T p3", "T p4", None, None, None, None]
    assert view.seq == store.catalog_seq() > 0


def test_a_refresh_equals_a_full_read_after_upserts_and_deletes(store, monkeypatch):
    view = read_view(store, ITEMS, "v1", 0.0)
    store.upsert_products(_catalog(["p2"], available=False, price=5.0, cats=("bags", "sale"), title="New"))
    store.upsert_products(_catalog(["p5", "zz2"], price=2.5))  # a new product the model knows, one it does not
    store.delete_products(["p3"])
    store.upsert_products(pl.DataFrame({"item_id": ["p4"], "title": [None], "available": [True],
                                        "price": [None], "categories": [None]}, schema_overrides={
                                            "title": pl.String, "price": pl.Float64, "categories": pl.List(pl.String)}))

    read = []
    products = store.products
    monkeypatch.setattr(store, "products", lambda ids=None, columns=None: read.append(ids) or products(ids, columns))
    fresh = refresh_view(store, ITEMS, view, 1.0)
    assert read == [["p2", "p5", "p3", "p4"]]  # only what changed (and the model knows)
    monkeypatch.undo()
    _same(fresh, read_view(store, ITEMS, "v1", 1.0))
    assert fresh.available[2] == False and fresh.price[2] == 5.0  # noqa: E712
    assert fresh.titles[3] is None and fresh.price[3] != fresh.price[3]  # deleted: as if never in the catalog
    # the view it was made from is left as it was (requests in flight keep using it)
    assert view.available[2] and view.price[2] == 1.0 and view.titles[3] == "T p3"


def test_a_refresh_with_nothing_written_reads_no_product(store, monkeypatch):
    view = read_view(store, ITEMS, "v1", 0.0)
    monkeypatch.setattr(store, "products", lambda *a, **k: pytest.fail("read the catalog"))
    fresh = refresh_view(store, ITEMS, view, 5.0)
    assert fresh.made == 5.0 and fresh.seq == view.seq and fresh.available is view.available


def test_too_many_changes_ask_for_a_full_read(store):
    view = read_view(store, ITEMS, "v1", 0.0)
    store.upsert_products(_catalog(["p6", "p7", "p8"]))
    assert refresh_view(store, ITEMS, view, 1.0, max_changes=2) is None
    assert refresh_view(store, ITEMS, view, 1.0, max_changes=3) is not None


def test_writes_of_products_the_model_does_not_know_only_move_the_mark(store, monkeypatch):
    view = read_view(store, ITEMS, "v1", 0.0)
    store.upsert_products(_catalog(["new1", "new2"]))
    monkeypatch.setattr(store, "products", lambda *a, **k: pytest.fail("read the catalog"))
    fresh = refresh_view(store, ITEMS, view, 1.0)
    assert fresh.seq == store.catalog_seq() > view.seq
    assert fresh.titles.to_list() == view.titles.to_list()
