"""``shopformer risk fit --data PATH... --out DIR``: fit the order-risk model (LightGBM on
leakage-free features of each order line; src/shopformer/risk/) on Online Retail-like
CSVs and write the folder ``SHOPFORMER_RISK_DIR`` serves; ``shopformer risk score``
scores a basket with it, as ``POST /v1/risk/orders`` does."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True)
risk_app = typer.Typer(help="Order risk: the probability that an order line is cancelled or returned.",
                       no_args_is_help=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


@risk_app.command("fit")
def fit(
    data: Annotated[list[Path], typer.Option(help="Online Retail (I or II) CSV files or folders holding them; "
                                             "repeat for several (overlapping periods are read once).")],
    out: Annotated[Path, typer.Option(help="Folder to write the model to (SHOPFORMER_RISK_DIR).")],
    horizon_days: Annotated[float, typer.Option(min=1, help="A line is positive when cancelled within this many days.")] = 30.0,
    val_days: Annotated[float, typer.Option(min=1, help="Length of the validation period.")] = 91.0,
    test_days: Annotated[float, typer.Option(min=1, help="Length of the test period (the last labelled days).")] = 100.0,
    warmup_days: Annotated[float, typer.Option(min=0, help="History read before the first training line.")] = 90.0,
    threads: Annotated[int, typer.Option(min=1, help="LightGBM's threads.")] = 2,
) -> None:
    """Label cancelled lines, split by time, choose LightGBM's settings on validation,
    report validation and test AUC beside logistic regression on RFM features, then refit
    on every labelled line and write the model folder."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from shopformer.risk.order_risk import OrderRiskConfig, OrderRiskModel, RiskSplitConfig

    from shopformer.risk.tabular import LightGbmConfig

    config = OrderRiskConfig(split=RiskSplitConfig(horizon_days=horizon_days, warmup_days=warmup_days,
                                                   val_days=val_days, test_days=test_days),
                             lightgbm=LightGbmConfig(threads=threads))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("labelling, features, fitting", total=None)
        try:
            model = OrderRiskModel.fit(data, config, say=lambda m: bar.update(task, description=m))
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
            return
    model.save(out)
    m = model.meta
    console.print(f"cancellations matched: {m['matching']['matched']:,} of {m['matching']['cancellation_lines']:,}; "
                  f"lines left out: {m['rejected']}")
    for name, ev in m["evaluation"].items():
        console.print(f"{name:13s} validation AUC-ROC {ev['val']['auc_roc']:.4f} AUC-PR {ev['val']['auc_pr']:.4f} | "
                      f"test AUC-ROC {ev['test']['auc_roc']:.4f} AUC-PR {ev['test']['auc_pr']:.4f}")
    console.print(f"written to {out} (refit on {m['refit_lines']:,} labelled lines, {m['fit_seconds']} s); "
                  f"serve it with SHOPFORMER_RISK_DIR={out}")


@risk_app.command("score")
def score(
    model: Annotated[Path, typer.Option(help="Folder written by `shopformer risk fit`.")],
    basket: Annotated[Path, typer.Argument(help='JSON file: {"user_id": ..., "lines": [{"item_id", "quantity", '
                                           '"price"}], "time": optional ISO time}.')],
    time: Annotated[Optional[str], typer.Option(help="Order time, ISO (default: the file's, else now).")] = None,
) -> None:
    """Score a basket: the probability that each line is cancelled, with reasons (JSON)."""
    from shopformer.risk.order_risk import OrderRiskModel

    try:
        loaded = OrderRiskModel.load(model)
        body = json.loads(basket.read_text())
        when = time or body.get("time")
        result = loaded.score(str(body["user_id"]), body["lines"], datetime.fromisoformat(when) if when else None,
                              body.get("country"))
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        _fail(f"{type(exc).__name__}: {exc}")
        return
    print(json.dumps(result, indent=2, default=str))
