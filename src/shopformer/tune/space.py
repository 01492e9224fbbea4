"""The Transformer settings a search varies, and how one trial's choices become the
``--set`` parameters of ``make_model("sasrec", ...)``."""

from __future__ import annotations

from typing import Any

from .priors import EPOCH_GRID, MAX_LEN_GRID, DataStats

D_MODELS = (64, 128, 256)
BATCH_SIZES = (16, 32, 64, 128)
EPOCHS = EPOCH_GRID


def suggest(trial: Any, stats: DataStats, content: bool = False) -> dict[str, object]:
    """One point of the space, drawn by an Optuna ``trial`` (TPE: later draws lean to
    where the good trials were). Wide models are left out for very large catalogs (the
    item table alone would not fit a laptop's memory at d256). With ``content`` (the
    catalog has attribute tokens) whether the item embeddings fuse them is searched too,
    as ``content`` "on" | "off"; without, the space is unchanged (the same draws per seed)."""
    widths = [d for d in D_MODELS if d * stats.items <= 256 * 500_000] or [D_MODELS[0]]
    lengths = [n for n in MAX_LEN_GRID if n <= max(MAX_LEN_GRID[0], 2 * stats.per_user_p90)] or [MAX_LEN_GRID[0]]
    return {
        "d_model": trial.suggest_categorical("d_model", widths),
        "n_layers": trial.suggest_int("n_layers", 1, 3),
        "dropout": round(trial.suggest_float("dropout", 0.1, 0.7, step=0.1), 2),
        "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 0.01, 0.1, 0.3]),
        "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(BATCH_SIZES)),
        "epochs": trial.suggest_categorical("epochs", list(EPOCHS)),
        "max_len": trial.suggest_categorical("max_len", lengths),
        "crop": trial.suggest_categorical("crop", ["random", "all"]),
        # drawn last, and only when there is content, so the draws above stay as they were
        **({"content": trial.suggest_categorical("content", ["on", "off"])} if content else {}),
    }


def model_params(choice: dict[str, object], time_limit_s: float, seed: int, threads: int = 0) -> dict[str, str]:
    """``make_model("sasrec", ...)`` parameters for ``choice`` (:func:`setting_params`)
    with the trial's clock, seed and threads: the learning-rate decay follows the clock."""
    return {
        **setting_params(choice),
        "train.time_limit_s": f"{max(1.0, time_limit_s):.1f}",
        "train.seed": str(seed),
        "train.threads": str(threads),
    }


def setting_params(choice: dict[str, object]) -> dict[str, str]:
    """The model settings of ``choice`` as ``make_model("sasrec", ...)`` parameters:
    attention dropout follows dropout (they were tuned together by hand), weight decay
    covers the item table when on (the sparse-data recipe), and patience is short enough
    that a run which stopped improving ends early. The ``content`` choice is not a
    parameter: the search gives such a model the content. Plain ``train --model sasrec``
    uses these for the data-sized defaults (``tune/defaults.py``)."""
    epochs = int(choice["epochs"])
    return {
        "arch.d_model": str(choice["d_model"]),
        "arch.n_layers": str(choice["n_layers"]),
        "arch.n_heads": "2",
        "arch.dropout": str(choice["dropout"]),
        "arch.attn_dropout": str(choice["dropout"]),
        "arch.max_len": str(choice["max_len"]),
        "train.weight_decay": str(choice["weight_decay"]),
        "train.decay_embeddings": "true" if float(choice["weight_decay"]) > 0 else "false",
        "train.lr": f"{float(choice['lr']):.6g}",
        "train.batch_size": str(choice["batch_size"]),
        "train.epochs": str(epochs),
        "train.crop": str(choice["crop"]),
        "train.patience": str(max(3, min(10, epochs // 4))),
        "train.eval_every": "1" if epochs <= 40 else "2",
    }
