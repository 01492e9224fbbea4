"""Where a sequence model trains: the device named by ``train.device`` and the mixed
precision that device offers (CUDA only: on CPU autocast is slower than float32 for
these small matrices, and the results would differ from the reference runs)."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; a clear
    error names ``train.device`` when the value is unknown or CUDA is missing."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and name != "cuda" and not name.startswith("cuda:"):
        raise ValueError(f"train.device (--device): unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"train.device (--device): bad device {name!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device (--device) is {name!r} but PyTorch sees no CUDA device here; "
                             "use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"train.device (--device) is {name!r} but only {torch.cuda.device_count()} "
                             "CUDA device(s) exist")
    return device


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype on ``device``: bfloat16 where the GPU has it (no loss scaling
    needed), else float16 (with a GradScaler); None (float32) on CPU or when disabled."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    return nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
