"""``shopformer distil`` and ``shopformer quantize``: a smaller run for serving, from a
trained one (the work is in :mod:`shopformer.compression`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{what}: comma-separated numbers, got {text!r}") from None
    if not values:
        raise typer.BadParameter(f"{what}: at least one value")
    return values


def distil(
    teacher: Annotated[Path, typer.Option("--teacher", help="The trained sasrec run to learn from (an ensemble too).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder of the student.")],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Student setting KEY=VALUE on top of the teacher's (repeatable), e.g. arch.d_model=64.")] = None,
    alpha: Annotated[str, typer.Option(
        help="Weight(s) of the teacher's soft targets, comma-separated: each is tried, the best on validation kept.")] = "0.5,0.9",
    temperature: Annotated[str, typer.Option(help="Softmax temperature(s), comma-separated (a grid with --alpha).")] = "1,2",
    quantize: Annotated[bool, typer.Option(help="Also write OUT-int8, the student quantized (see `quantize`).")] = False,
) -> None:
    """Train a small student on the teacher's data with (1-a) next-item cross-entropy + a T^2
    KL(teacher || student) at temperature T over the full catalog; a and T chosen on validation."""
    from shopformer.cli import _pairs
    from shopformer.compression import distil_run, quantize_run
    from shopformer.train.distill import DistillGrid

    try:
        grid = DistillGrid(_floats(alpha, "--alpha"), _floats(temperature, "--temperature"))
        run = distil_run(teacher, out, _pairs(set_, "--set"), grid.candidates(),
                         say=lambda m: console.print(m, highlight=False, soft_wrap=True))
        q = quantize_run(out, out.with_name(out.name + "-int8")) if quantize else None
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
        return
    from shopformer.models.quantize import parameter_count

    t_params = parameter_count(_teacher_module(teacher))
    s_params = parameter_count(run.model.module)
    console.print(f"student -> {run.folder}: alpha {run.info['alpha']:g}, T {run.info['temperature']:g}, "
                  f"validation NDCG@10 {_chosen_valid(run.info):.4f}; {s_params:,} parameters "
                  f"({t_params / s_params:.1f}x fewer than the teacher's {t_params:,})",
                  highlight=False, soft_wrap=True)
    if q is not None:
        console.print(f"int8 student ({q.info['library']}) -> {q.folder}", highlight=False, soft_wrap=True)


def _chosen_valid(info: dict) -> float:
    """The kept candidate's validation NDCG@10 (run.json's grid; history is not reloaded)."""
    return next(g["valid_NDCG@10"] for g in info["distill_grid"]
                if (g["alpha"], g["temperature"]) == (info["alpha"], info["temperature"]))


def _teacher_module(folder: Path):  # noqa: ANN202 - the teacher's network
    from shopformer.artifact import load_run

    return load_run(folder).model.module


def quantize(
    run: Annotated[Path, typer.Option("--run", help="A trained sasrec / bert4rec run.")],
    out: Annotated[Path, typer.Option("--out", help="The new (quantized) run folder; RUN is left as it is.")],
    library: Annotated[str, typer.Option(
        help="torchao (default) | torch.ao (PyTorch's deprecated quantize_dynamic, faster on CPU today).")] = "torchao",
) -> None:
    """Copy RUN with its Transformer layers quantized to int8 (dynamic: int8 weights, activations
    quantized at each call); the item table stays float32. Serve it like any run."""
    from shopformer.compression import QuantizeConfig, quantize_run
    from shopformer.models.quantize import LIBRARIES

    if library not in LIBRARIES:
        _fail(f"--library must be one of {', '.join(LIBRARIES)}, not {library!r}")
    try:
        q = quantize_run(run, out, QuantizeConfig(library=library))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
        return
    console.print(f"{q.info['quantized']} ({q.info['library']}) -> {q.folder}", highlight=False, soft_wrap=True)
