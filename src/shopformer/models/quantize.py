"""int8 quantization of a trained Transformer run for serving (``shopformer quantize``).

The Transformer blocks' linear layers (attention projections, feed-forward) get int8
weights, one scale per output channel, and quantize their input per token at each call
("dynamic": no calibration data). What stays float32, on purpose:

* the item table (ID embeddings, content encoder): a user is scored by one dot product
  with it, and the same float table is what the serving vector index was built from, so
  a quantized run still fits an index built for its float parent;
* embeddings of positions / event types, LayerNorms: a few thousand numbers.

The library is torchao (``Int8DynamicActivationInt8WeightConfig``), the maintained
successor of ``torch.ao.quantization``. PyTorch's own ``quantize_dynamic`` (deprecated, but
with fused CPU kernels: torchao's eager CPU path is several times slower at serving
sizes, see benchmarks/results/compression.md) is kept as ``library="torch.ao"``.

A quantized run folder is its parent's copy whose ``model/weights.pt`` holds the int8
state and whose ``model/quantization.json`` says how it was made; ``SASRecRecommender.load``
converts the fresh network the same way before reading the weights, so ``load_run`` and
the server read it like any other run.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import torch
from torch import nn

#: written beside a quantized model's weights; its presence is what load() looks for
QUANTIZATION_FILE = "quantization.json"
LIBRARIES = ("torchao", "torch.ao")


@dataclass(frozen=True)
class QuantizeConfig:
    """method: ``int8-dynamic`` (int8 per-channel weights; activations quantized per token
    at each call). library: ``torchao`` (default) or ``torch.ao`` (PyTorch's deprecated
    eager ``quantize_dynamic``, the fallback)."""

    method: Literal["int8-dynamic"] = "int8-dynamic"
    library: Literal["torchao", "torch.ao"] = "torchao"


def in_blocks(fqn: str) -> bool:
    """True for a module of a Transformer block (``blocks.0.ffn.0``, an ensemble's
    ``members.1.blocks.0.attn.qkv``): the item table and content encoder stay float32."""
    return fqn.startswith("blocks.") or ".blocks." in fqn


def _torchao():  # noqa: ANN202 - the torchao module
    # a CPU build of PyTorch cannot load torchao's CUDA kernels; torchao logs one warning
    # per library at import, which would reach every server's log
    logger = logging.getLogger("torchao")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torchao
        import torchao.quantization  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("int8 quantization with torchao needs it installed: pip install 'shopformer[compress]' "
                           "(or use library torch.ao)") from exc
    finally:
        logger.setLevel(level)
    return torchao


def quantize_network(module: nn.Module, config: QuantizeConfig = QuantizeConfig()) -> dict:
    """Quantize ``module``'s block linear layers in place; returns the record saved with
    it: {"quantized", "library": "<name> <version>", "layers": how many}."""
    if config.method != "int8-dynamic":
        raise ValueError(f"unknown quantization method {config.method!r}: use int8-dynamic")
    layers = [name for name, m in module.named_modules() if isinstance(m, nn.Linear) and in_blocks(name)]
    if not layers:
        raise ValueError("the network has no Transformer linear layers to quantize")
    module.eval()
    if config.library == "torchao":
        torchao = _torchao()
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        # set_inductor_config=False: nothing is compiled here, and the global inductor
        # settings of the serving process are left alone
        quantize_(module, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False),
                  filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and in_blocks(fqn))
        library = f"torchao {torchao.__version__}"
    elif config.library == "torch.ao":
        _swap_torch_ao(module, layers)
        library = f"torch.ao {version('torch')}"
    else:
        raise ValueError(f"unknown quantization library {config.library!r}: use one of {', '.join(LIBRARIES)}")
    return {"quantized": config.method, "library": library, "layers": len(layers)}


def _swap_torch_ao(module: nn.Module, layers: list[str]) -> None:
    """PyTorch's eager dynamic quantization of the named linear layers (its deprecation
    warning is silenced: choosing this library is the caller's decision)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(module, set(layers), dtype=torch.qint8, inplace=True)


def requantize(module: nn.Module, record: dict) -> None:
    """Convert a freshly built float network the way ``record`` (quantization.json) says,
    so that the saved int8 state loads into it."""
    library = str(record.get("library", "")).split(" ")[0]
    if library not in LIBRARIES:
        raise ValueError(f"quantized with {record.get('library')!r}, which this version cannot load")
    quantize_network(module, QuantizeConfig(record.get("quantized", "int8-dynamic"), library))


def read_record(model_folder: Path) -> dict | None:
    """The quantization record of a saved model folder, or None for a float model."""
    path = Path(model_folder) / QUANTIZATION_FILE
    return json.loads(path.read_text()) if path.exists() else None


def is_quantized(module: nn.Module) -> bool:
    """True when some linear layer of ``module`` holds int8 weights (either library)."""
    for m in module.modules():
        if type(m).__module__.startswith("torch.ao.nn.quantized"):
            return True
        weight = getattr(m, "weight", None)
        if isinstance(m, nn.Linear) and weight is not None and type(weight) not in (torch.Tensor, nn.Parameter):
            return True
    return False


def parameter_count(module: nn.Module) -> int:
    """Numbers the network holds (an int8 weight counts as many as its float parent)."""
    total = sum(p.numel() for p in module.parameters())
    for m in module.modules():  # torch.ao's quantized linears keep their weights out of parameters()
        if type(m).__module__.startswith("torch.ao.nn.quantized") and hasattr(m, "weight"):
            w = m.weight()
            total += w.numel() + (m.bias().numel() if m.bias() is not None else 0)
    return total


def quantize_run(source: Path, out: Path, config: QuantizeConfig = QuantizeConfig()):  # noqa: ANN201 - a Run
    """Copy run ``source`` to ``out`` with its Transformer quantized; returns the reloaded
    run. ``run.json`` gains {"quantized", "library", "quantized_from": {"run", "version"}}."""
    from shopformer.artifact import load_run, run_version
    from shopformer.models.sequential import SASRecRecommender

    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise ValueError("--out must be a new folder: the float run is kept beside its quantized copy")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty")
    run = load_run(source)
    model = run.model
    if not isinstance(model, SASRecRecommender):
        raise ValueError(f"{source} holds {model.name}: only the Transformers (sasrec, bert4rec) are quantized")
    if read_record(source / "model") is not None:
        raise ValueError(f"{source} is already quantized")
    record = quantize_network(model.module, config)
    shutil.copytree(source, out, dirs_exist_ok=True)
    torch.save(model.module.state_dict(), out / "model" / "weights.pt")
    (out / "model" / QUANTIZATION_FILE).write_text(json.dumps(record, indent=2))
    meta = json.loads((source / "run.json").read_text())
    meta.update({"quantized": record["quantized"], "library": record["library"],
                 "quantized_from": {"run": str(source.resolve()), "version": run_version(source)}})
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str))
    return load_run(out)
