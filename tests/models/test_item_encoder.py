"""ID + content fusion: a product never seen in training is placed by its content."""

import numpy as np
import polars as pl
import pytest
import torch

from shopformer.features.content import ContentConfig, build_content
from shopformer.features.sequences import Sequences
from shopformer.features.vocab import Vocabulary
from shopformer.models.sasrec import SASRecConfig
from shopformer.models.sequential import SASRecRecommender, TransformerConfig
from shopformer.train.loop import TrainConfig

BRANDS, PER_BRAND = 8, 8  # item index = brand * PER_BRAND + j + 1; j == 0 is never bought
N = BRANDS * PER_BRAND
COLD = np.array([b * PER_BRAND + 1 for b in range(BRANDS)])


@pytest.fixture(scope="module")
def shop():
    """Each customer buys within one brand; every brand's first product has no sales."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    vocab = Vocabulary([str(i) for i in range(1, N + 1)])
    products = pl.DataFrame({"item_id": vocab.ids, "brand": [f"b{(i - 1) // PER_BRAND}" for i in range(1, N + 1)]})
    content = build_content(products, vocab, ContentConfig(fields=("brand",)))
    rows = []
    for _ in range(600):
        b = rng.integers(BRANDS)
        rows.append((b * PER_BRAND + rng.integers(1, PER_BRAND, size=6) + 1).tolist())
    config = TransformerConfig(
        arch=SASRecConfig(d_model=16, max_len=8, n_heads=1, id_dropout=0.3),
        train=TrainConfig(epochs=15, batch_size=64, warmup_steps=5, seed=0),
    )
    history = Sequences.from_lists([[b * PER_BRAND + 2, b * PER_BRAND + 3] for b in range(BRANDS)])
    fused = SASRecRecommender(config, content).fit(Sequences.from_lists(rows), N)
    return fused, history


def test_fused_model_ranks_each_brands_unsold_product_right_after_its_sold_ones(shop):
    fused, history = shop
    scores = fused.score(history)  # (BRANDS, N + 1)
    for b in range(BRANDS):
        above = np.flatnonzero(scores[b] > scores[b, COLD[b]])
        # only the brand's own sold products (incl. the two in the history) outrank it
        assert set(above.tolist()) <= set(range(b * PER_BRAND + 2, (b + 1) * PER_BRAND + 1))
    assert not fused.module.known[COLD].any()  # no ID embedding was used for them


def test_unsold_product_appears_in_similar_items_of_its_brand(shop):
    fused, _ = shop
    ids, _ = fused.similar_items(np.array([2]), k=PER_BRAND - 1)  # a sold product of brand 0
    assert COLD[0] in ids[0].tolist()


def test_fused_model_reloads_from_its_folder_alone(shop, tmp_path):
    fused, history = shop
    fused.save(tmp_path)
    again = SASRecRecommender.load(tmp_path)
    np.testing.assert_allclose(again.score(history), fused.score(history), rtol=1e-5, atol=1e-6)
    assert again.content.token_names == fused.content.token_names


def test_content_rows_must_match_the_catalog():
    vocab = Vocabulary(["a", "b"])
    content = build_content(pl.DataFrame({"item_id": ["a", "b"], "brand": ["x", "x"]}), vocab)
    with pytest.raises(ValueError, match="content has 3 rows"):
        SASRecRecommender(TransformerConfig(), content).fit(Sequences.from_lists([[1, 2, 3]]), 3)


def test_content_knn_places_unsold_products_by_brand(shop, tmp_path):
    from shopformer.models.content_knn import ContentKNN

    fused, history = shop
    knn = ContentKNN(content=fused.content).fit(Sequences.from_lists([]), N)
    scores = knn.score(history)
    for b in range(BRANDS):  # every product of the brand ties at the top, nothing else
        top = set(np.flatnonzero(scores[b] == scores[b].max()).tolist())
        assert top == set(range(b * PER_BRAND + 1, (b + 1) * PER_BRAND + 1))
    knn.save(tmp_path)
    np.testing.assert_allclose(ContentKNN.load(tmp_path).score(history), scores)
    ids, _ = knn.similar_items(np.array([COLD[3]]), k=PER_BRAND - 1)
    assert set(ids[0].tolist()) == set(range(3 * PER_BRAND + 2, 4 * PER_BRAND + 1))


def test_a_product_added_after_training_is_placed_by_its_content(shop):
    fused, history = shop
    new_products = pl.DataFrame({"item_id": ["new-b3", "new-nobrand"], "brand": ["b3", "unheard-of"]})
    tokens, vectors = fused.content.rows_for(new_products)
    grown = fused.with_new_items(tokens, vectors)
    assert grown.config.arch.n_items == N + 2 and fused.config.arch.n_items == N  # the original is untouched
    before, after = fused.score(history), grown.score(history)
    np.testing.assert_allclose(after[:, : N + 1], before, rtol=1e-5, atol=1e-6)  # old items unchanged
    new_b3 = N + 1
    above = np.flatnonzero(after[3] > after[3, new_b3])
    assert set(above.tolist()) <= set(range(3 * PER_BRAND + 2, 4 * PER_BRAND + 1))  # only brand 3's sold items
    ids, _ = grown.similar_items(np.array([3 * PER_BRAND + 4]), k=PER_BRAND)
    assert new_b3 in ids[0].tolist()


def test_only_a_content_model_can_place_new_products():
    plain = SASRecRecommender(TransformerConfig(arch=SASRecConfig(d_model=8, n_heads=1),
                                                train=TrainConfig(epochs=1)))
    plain.fit(Sequences.from_lists([[1, 2, 3]]), 3)
    with pytest.raises(ValueError, match="trained with product content"):
        plain.with_new_items(np.zeros((1, 1), dtype=np.int64))
