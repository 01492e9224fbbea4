import numpy as np
import polars as pl
import pytest

from shopformer.features.content import ContentConfig, ItemContent, build_content
from shopformer.features.vocab import Vocabulary


def _catalog():
    return pl.DataFrame({
        "item_id": ["p1", "p2", "p3", "p4", "zz"],
        "brand": ["acme", "acme", "solo", None, "acme"],
        "categories": [["beauty", "lips"], ["beauty", "eyes"], ["beauty", "lips"], [], ["beauty"]],
        "price": [1.0, 2.0, 30.0, 40.0, None],
    })


def test_tokens_follow_vocabulary_rows_and_drop_rare_values():
    vocab = Vocabulary(["p3", "p1", "p2", "p4"])  # "zz" is in the catalog but not the model
    c = build_content(_catalog(), vocab, ContentConfig(fields=("brand", "categories"), price_bands=2))
    names = lambda row: sorted(c.token_names[t] for t in c.tokens[row] if t)  # noqa: E731
    assert names(0) == []  # padding
    # p3 (row 1): "brand=solo" is on one product only, dropped (min_products=2)
    assert names(1) == ["categories=beauty", "categories=lips", "price_band=1"]
    assert names(2) == ["brand=acme", "categories=beauty", "categories=lips", "price_band=0"]
    assert names(4) == ["price_band=1"]  # p4: no brand, no categories
    assert c.price_edges.tolist() == [16.0]  # median of 1, 2, 30, 40


def test_new_products_map_to_known_tokens_only():
    vocab = Vocabulary(["p1", "p2", "p3", "p4"])
    c = build_content(_catalog(), vocab, ContentConfig(fields=("brand",), price_bands=0))
    tokens, vectors = c.rows_for(pl.DataFrame({"item_id": ["new1", "new2"], "brand": ["acme", "unseen"]}))
    assert vectors is None
    assert [c.token_names[t] for t in tokens[0] if t] == ["brand=acme"]
    assert not tokens[1].any()


def test_vectors_are_placed_by_item_and_saved(tmp_path):
    vocab = Vocabulary(["p2", "p1"])
    vecs = np.arange(10, dtype=np.float32).reshape(5, 2)  # one row per catalog product
    c = build_content(_catalog(), vocab, vectors=vecs)
    assert c.vectors.tolist() == [[0, 0], [2, 3], [0, 1]]
    c.save(tmp_path)
    back = ItemContent.load(tmp_path)
    assert back.tokens.tolist() == c.tokens.tolist() and back.vectors.tolist() == c.vectors.tolist()
    assert back.token_names == c.token_names and back.config == c.config
    with pytest.raises(ValueError, match="one row per product"):
        build_content(_catalog(), vocab, vectors=vecs[:3])
