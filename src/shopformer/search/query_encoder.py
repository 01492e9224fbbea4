"""One query -> its sentence vector, fast: the sentence-transformers model exported to ONNX
and run by ONNX Runtime (the same numbers, within 1e-6; 2.6x faster than PyTorch for one
short query on this project's 2-CPU machine: 4.1 against 11.0 ms), with PyTorch as the
fallback.

Queries may go through a smaller copy of that export (``quantize``;
SemanticConfig.quantize_queries, "blockwise" by default there); products always get the exact float export, since their
vectors sit beside the catalog's, which the batched PyTorch encoder made:

* ``"blockwise"``: 8-bit weights with a scale per block of 32 and activations quantized per
  block too (ONNX Runtime's MatMulNBits, accuracy level 4). The encoder's time is mostly
  reading its float weights (42 MB for six layers, more than this CPU's cache), so a
  quarter of the bytes is 1.6-1.8x faster (1.8-2.1 against 3.2-3.4 ms a query, one
  thread) while the vectors keep a mean cosine of 0.9996 (least 0.9987) with the exact
  ones over 800 Home Depot queries, and Home Depot's cross-validated NDCG@10 is unchanged
  (re-ranked hybrid 0.4376 against 0.4375).
* ``"dynamic"``: ONNX Runtime's dynamic quantization (per-channel int8 weights, one scale
  for all of a matrix's activations): faster again (1.1 ms), but its vectors stray further
  (mean cosine 0.993, least 0.977), which cost the re-ranked hybrid 0.4360 against 0.4378
  NDCG@10 on Home Depot (results/search_quality_int8_queries.md).

The export (about 2 s, once per process) covers models whose sentence vector is the
mean of the token vectors, optionally normalized (all-MiniLM-L6-v2 and most
sentence-transformers models); it is checked against PyTorch on probe sentences before
use, and any other model, a failed export or a missing ``onnxruntime`` keeps PyTorch.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger("shopformer.search")

PROBES = ("cordless drill 18v", "1/2 in. copper pipe fittings for the bathroom sink", "x")
#: the quantized query models: a quantized model is used only if every probe's vector keeps
#: this cosine with the exact one (Home Depot's queries: least 0.977 dynamic, 0.9987 blockwise)
MIN_COSINE = {"dynamic": 0.97, "blockwise": 0.995}
QUANTIZATIONS = ("none", *MIN_COSINE)


class QueryEncoder:
    """Unit vectors of single queries from a loaded SentenceTransformer ``model``."""

    def __init__(self, model, use_onnx: bool = True, quantize: bool | str = "none") -> None:  # noqa: ANN001 - a SentenceTransformer
        self.model = model
        self.quantize = quantization(quantize)
        self._lock = threading.Lock()  # the fast tokenizer is not safe to call from two threads at once
        self._quantized = None
        self._session = self._onnx(self.quantize) if use_onnx else None

    @property
    def backend(self) -> str:
        """What encodes queries: "onnxruntime-int8" (dynamic), "onnxruntime-int8-blockwise",
        "onnxruntime" or "torch"."""
        if self._quantized is not None:
            return "onnxruntime-int8" + ("-blockwise" if self.quantize == "blockwise" else "")
        return "onnxruntime" if self._session is not None else "torch"

    def _mean_pooled(self) -> bool:
        mods = list(self.model)
        pooling = mods[1] if len(mods) > 1 else None
        cfg = getattr(pooling, "get_config_dict", lambda: {})()
        rest = [type(m).__name__ for m in mods[2:]]
        if "pooling_mode" in cfg:  # sentence-transformers 6: one mode, by name
            mean = cfg["pooling_mode"] == "mean"
        else:  # earlier releases: one flag per mode
            flags = {k: bool(v) for k, v in cfg.items() if k.startswith("pooling_mode")}
            mean = flags.get("pooling_mode_mean_tokens", False) and sum(flags.values()) == 1
        return mean and rest in ([], ["Normalize"])

    def _onnx(self, quantize: str):  # noqa: ANN202 - an onnxruntime.InferenceSession or None
        try:
            import onnxruntime as ort
            import torch
        except ImportError:
            return None
        if not self._mean_pooled():
            log.info("query encoder: not a mean-pooled model, PyTorch it is")
            return None
        try:
            hf = self.model[0].auto_model.eval()

            class Pooled(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.hf = hf

                def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN202
                    out = self.hf(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state  # (B, T, D)
                    mask = attention_mask[..., None].to(out.dtype)
                    return (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)

            names = ["input_ids", "attention_mask", "token_type_ids"]
            probe = self._tokens(PROBES[0], "pt")
            with tempfile.TemporaryDirectory(prefix="shopformer-onnx-") as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on the model's Python branches
                path = Path(tmp) / "query_encoder.onnx"
                with torch.inference_mode():
                    torch.onnx.export(Pooled().eval(), tuple(probe[n] for n in names), str(path), input_names=names,
                                      output_names=["vector"], dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names},
                                      opset_version=17, dynamo=False)
                session = _session(ort, path)
                if quantize != "none":
                    self._quantized = _quantized(ort, path, quantize)
            for text in PROBES:  # the same numbers as PyTorch, or no ONNX
                exact = self._torch(text)
                if np.abs(self._run(session, text) - exact).max() > 1e-4:
                    log.warning("query encoder: ONNX differs from PyTorch, PyTorch it is")
                    self._quantized = None
                    return None
                if self._quantized is not None and float(self._run(self._quantized, text)[0] @ exact[0]) < MIN_COSINE[quantize]:
                    log.warning("query encoder: the %s int8 model strays from PyTorch, float it is", quantize)
                    self._quantized = None
            return session
        except Exception as exc:  # noqa: BLE001 - any export problem: PyTorch serves
            log.warning("query encoder: ONNX export failed (%s: %s), PyTorch it is", type(exc).__name__, exc)
            return None

    def _tokens(self, text: str, kind: str) -> dict:
        with self._lock:
            out = self.model.tokenizer([text], return_tensors=kind, truncation=True,
                                       max_length=self.model.max_seq_length)
        if "token_type_ids" not in out:
            out["token_type_ids"] = np.zeros_like(out["input_ids"]) if kind == "np" else out["input_ids"] * 0
        return out

    def _run(self, session, text: str) -> np.ndarray:  # noqa: ANN001
        feed = {k: np.asarray(v, dtype=np.int64) for k, v in self._tokens(text, "np").items()
                if k in ("input_ids", "attention_mask", "token_type_ids")}
        vec = session.run(None, feed)[0]
        return (vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def _torch(self, text: str) -> np.ndarray:
        import torch

        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize  # preprocess: sentence-transformers 6
        with self._lock:
            features = prepare([text])
        with torch.inference_mode():
            vec = torch.nn.functional.normalize(self.model(features)["sentence_embedding"].float(), dim=-1)
        return vec.numpy().astype(np.float32)

    def encode(self, text: str) -> np.ndarray:
        """(1, D) unit vector of a query (the quantized model when in use)."""
        if self._quantized is not None:
            return self._run(self._quantized, text)
        return self.encode_exact(text)

    def encode_exact(self, text: str) -> np.ndarray:
        """(1, D) unit vector of ``text`` with the model's own numbers (products)."""
        return self._run(self._session, text) if self._session is not None else self._torch(text)


def _session(ort, path: Path):  # noqa: ANN001, ANN202
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one per request: requests run side by side
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantization(value: bool | str) -> str:
    """``quantize`` as one of QUANTIZATIONS (True, as the option once was: "dynamic")."""
    if isinstance(value, bool):
        return "dynamic" if value else "none"
    if value not in QUANTIZATIONS:
        raise ValueError(f"quantize_queries must be one of {', '.join(QUANTIZATIONS)} (got {value!r})")
    return value


def _quantized(ort, path: Path, kind: str):  # noqa: ANN001, ANN202 - a session of the quantized copy, or None
    out = path.with_name(f"query_encoder.{kind}.onnx")
    quiet = _DropPreprocessAdvice()
    logging.getLogger().addFilter(quiet)  # the quantizer advises pre-processing on the root logger
    try:
        if kind == "blockwise":
            import onnx

            nbits = _nbits_quantizer()
            settings = dict(block_size=32, is_symmetric=True, accuracy_level=4, bits=8)
            quantizer = nbits.MatMulNBitsQuantizer(onnx.load(str(path)), **settings,
                                                   algo_config=nbits.DefaultWeightOnlyQuantConfig(**settings))
            quantizer.process()
            quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, per_channel=True)
    except Exception as exc:  # noqa: BLE001 - e.g. no onnx-ir (the blockwise quantizer's; the text extra has it)
        log.warning("query encoder: %s int8 failed (%s: %s), float it is", kind, type(exc).__name__, exc)
        return None
    finally:
        logging.getLogger().removeFilter(quiet)
    return _session(ort, out)


def _nbits_quantizer():  # noqa: ANN202 - the onnxruntime.quantization.matmul_nbits_quantizer module
    """ONNX Runtime's blockwise quantizer module, imported without its side effect: on import
    it calls ``logging.basicConfig(level=INFO)``, which (with no root handler yet, as in the
    server) would print every library's INFO records from then on. A handler held on the
    root logger during the import makes that call do nothing; its own log stays at WARNING."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        from onnxruntime.quantization import matmul_nbits_quantizer as nbits
    finally:
        root.removeHandler(guard)
    logging.getLogger(nbits.__name__).setLevel(logging.WARNING)
    return nbits


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
