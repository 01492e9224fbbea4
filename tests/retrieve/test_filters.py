from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary
from shopformer.retrieve import CatalogFilter, ExactIndex, catalog_mask, exclude_mask
from shopformer.types import PRODUCT_SCHEMA, conform

#: item indexes: a=1 b=2 c=3 d=4 e=5 f=6 g=7 (g has no product row)
VOCAB = Vocabulary(list("abcdefg"))


def products(rows: list[tuple] | None = None) -> pl.DataFrame:
    rows = rows if rows is not None else [
        ("a", True, ["Home", "Kitchen"], 10.0),
        ("b", False, ["Home", "Garden"], 25.0),
        ("c", None, ["Toys"], None),  # availability and price unknown
        ("d", True, None, 5.0),  # no categories
        ("e", True, ["Kitchen"], 100.0),
        ("f", True, ["Home", "Kitchen", "Cups"], 50.0),
        ("z", True, ["Kitchen"], 1.0),  # not in the vocabulary: ignored
    ]
    df = pl.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "available": [r[1] for r in rows],
            "categories": [r[2] for r in rows],
            "price": [r[3] for r in rows],
            "created_at": [datetime(2024, 1, 1, tzinfo=timezone.utc)] * len(rows),
        },
        schema_overrides={"categories": pl.List(pl.String), "price": pl.Float64, "available": pl.Boolean},
    )
    return conform(df, PRODUCT_SCHEMA)


def allowed_ids(f: CatalogFilter, frame: pl.DataFrame | None = None) -> str:
    mask = catalog_mask(f, products() if frame is None else frame, VOCAB)
    assert mask.shape == (8,) and mask.dtype == bool and not mask[0]
    return "".join(VOCAB.decode(np.flatnonzero(mask)))


@pytest.mark.parametrize(
    "f, expected",
    [
        (CatalogFilter(), "abcdefg"),
        (CatalogFilter(available_only=True), "acdef"),  # b out of stock, g unknown
        (CatalogFilter(categories=("Kitchen",)), "aef"),
        (CatalogFilter(categories=("Garden", "Toys")), "bc"),
        (CatalogFilter(categories=()), ""),
        (CatalogFilter(min_price=10), "abef"),  # inclusive; c has no price
        (CatalogFilter(max_price=25), "abd"),
        (CatalogFilter(min_price=10, max_price=50), "abf"),
        (CatalogFilter(exclude_items=("b", "g", "nope")), "acdef"),
        (CatalogFilter(available_only=True, categories=("Home",), exclude_items=("a",)), "f"),
        (CatalogFilter(available_only=True, categories=("Kitchen",), max_price=60), "af"),
        (CatalogFilter(categories=("Home",), min_price=20, max_price=30), "b"),
    ],
)
def test_catalog_mask_hand_checked(f, expected):
    assert allowed_ids(f) == expected


def test_lists_become_tuples_and_bad_price_range_raises():
    f = CatalogFilter(categories=["Kitchen"], exclude_items=["a"])
    assert f.categories == ("Kitchen",) and f.exclude_items == ("a",)
    hash(f)
    with pytest.raises(ValueError, match="min_price"):
        CatalogFilter(min_price=5, max_price=1)


def test_last_product_row_wins():
    frame = products([("a", True, ["X"], 1.0), ("a", False, ["X"], 1.0)])
    assert allowed_ids(CatalogFilter(available_only=True), frame) == ""


def test_empty_products_table():
    empty = products([])
    assert allowed_ids(CatalogFilter(), empty) == "abcdefg"
    assert allowed_ids(CatalogFilter(exclude_items=("a",)), empty) == "bcdefg"
    assert allowed_ids(CatalogFilter(available_only=True), empty) == ""


def test_exclude_mask_marks_history_and_padding():
    hist = Sequences.from_lists([[1, 3], [], [2, 2]])
    m = exclude_mask(hist, 4)
    assert m.tolist() == [
        [True, True, False, True, False],
        [True, False, False, False, False],
        [True, False, True, False, False],
    ]
    with pytest.raises(ValueError, match="outside"):
        exclude_mask(Sequences.from_lists([[5]]), 4)


def test_masks_combine_in_a_search():
    rng = np.random.default_rng(0)
    index = ExactIndex().build(rng.normal(size=(8, 4)).astype(np.float32))
    history = Sequences.from_lists([[1], [6, 5]])
    allowed = catalog_mask(CatalogFilter(available_only=True), products(), VOCAB)[None, :] & ~exclude_mask(history, 7)
    idx, _ = index.search(rng.normal(size=(2, 4)).astype(np.float32), 5, allowed)
    assert sorted(idx[0].tolist()) == [0, 3, 4, 5, 6]  # a bought; b, g not available
    assert sorted(idx[1].tolist()) == [0, 0, 1, 3, 4]  # e, f bought
