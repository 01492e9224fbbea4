"""One query -> its sentence vector, fast: the sentence-transformers model exported to ONNX
and run by ONNX Runtime (the same numbers, within 1e-6; 2.6x faster than PyTorch for one
short query on this project's 2-CPU machine: 4.1 against 11.0 ms), with PyTorch as the
fallback.

Optionally (``quantize=True``; SemanticConfig.quantize_queries) queries go through an int8
copy of that export (ONNX Runtime's dynamic quantization, per-channel weights): 2.3-2.6x
faster again (1.4-1.8 ms against 3.5-4.6 ms a query, Home Depot's queries, one thread).
Its vectors keep a mean cosine of 0.993 (least 0.984) with the exact ones; on Home Depot's
8,812 judged queries NDCG@10 of MiniLM alone is 0.2803 against 0.2810 and hybrid 0.4110
against 0.4112, but the re-ranked hybrid 0.4360 against 0.4378, so it is off by default.
Products (catalog upserts) always get the exact float export: their vectors sit beside the
catalog's, which the batched PyTorch encoder made.

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
#: the int8 query model is used only if every probe's vector keeps this cosine with the
#: exact one (Home Depot's queries: least 0.984)
MIN_INT8_COSINE = 0.97


class QueryEncoder:
    """Unit vectors of single queries from a loaded SentenceTransformer ``model``."""

    def __init__(self, model, use_onnx: bool = True, quantize: bool = False) -> None:  # noqa: ANN001 - a SentenceTransformer
        self.model = model
        self._lock = threading.Lock()  # the fast tokenizer is not safe to call from two threads at once
        self._quantized = None
        self._session = self._onnx(quantize) if use_onnx else None

    @property
    def backend(self) -> str:
        """What encodes queries: "onnxruntime-int8", "onnxruntime" or "torch"."""
        if self._quantized is not None:
            return "onnxruntime-int8"
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

    def _onnx(self, quantize: bool):  # noqa: ANN202 - an onnxruntime.InferenceSession or None
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
                if quantize:
                    self._quantized = _quantized(ort, path)
            for text in PROBES:  # the same numbers as PyTorch, or no ONNX
                exact = self._torch(text)
                if np.abs(self._run(session, text) - exact).max() > 1e-4:
                    log.warning("query encoder: ONNX differs from PyTorch, PyTorch it is")
                    self._quantized = None
                    return None
                if self._quantized is not None and float(self._run(self._quantized, text)[0] @ exact[0]) < MIN_INT8_COSINE:
                    log.warning("query encoder: the int8 model strays from PyTorch, float it is")
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
        """(1, D) unit vector of a query (the int8 model when in use)."""
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


def _quantized(ort, path: Path):  # noqa: ANN001, ANN202 - a session of the int8 copy, or None
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None
    out = path.with_name("query_encoder.int8.onnx")
    quiet = _DropPreprocessAdvice()
    logging.getLogger().addFilter(quiet)  # the quantizer advises pre-processing on the root logger
    try:
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().removeFilter(quiet)
    return _session(ort, out)


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
