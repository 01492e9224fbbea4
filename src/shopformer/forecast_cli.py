"""``shopformer forecast``: weekly sales forecasts from a data folder's purchases.

    shopformer forecast --data DIR [--item ID] [--horizon 8] [--json]   fit now, print
    shopformer forecast --model DIR [--item ID] ...                      read a fitted one
    shopformer forecast fit --data DIR --out DIR [--method transformer]  fit and save
                                                        (what SHOPFORMER_FORECAST_DIR serves)

Without ``--item`` it prints the shop's total and the ``--show`` largest products. The
work lives in :mod:`shopformer.forecast` (series, forecasters, artifact).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)
forecast_app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                           help="Weekly sales forecasts (units and revenue) per product and in total.")

DataOpt = Annotated[Optional[Path], typer.Option(help="Data folder written by `shopformer ingest`.")]
MethodOpt = Annotated[str, typer.Option(help="transformer | lightgbm | seasonal_naive | auto_ets | auto_arima")]
TopOpt = Annotated[int, typer.Option(min=1, help="Products (by units) the forecaster is trained on (the Transformer: "
                                               "--transformer-top).")]
TransformerTopOpt = Annotated[int, typer.Option(min=1, help="Products (by units) the Transformer is trained on (more "
                                                           "series show it more seasons' ramps).")]
EpochsOpt = Annotated[Optional[int], typer.Option(min=1, help="Transformer epochs (default: 6 of a 10-epoch schedule, "
                                                               "as chosen on Online Retail's validation weeks).")]
EnsembleOpt = Annotated[Optional[int], typer.Option(min=1, help="Transformer nets (seeds) whose forecasts are averaged "
                                                                "(default: the config's, chosen on validation).")]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option("--exclude", help="Item ids that are no products (repeatable).")]


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(1)


def _fit(data: Path, method: str, top: int, horizon: int, epochs: int | None, exclude: list[str] | None, quiet: bool,
         ensemble: int | None = None, transformer_top: int = 1000):
    """(run config, series, forecaster, forecasts, recent) fitted on ``data``."""
    from shopformer.dataset import load_events, load_products
    from shopformer.forecast.artifact import ForecastRunConfig, fit_and_forecast
    from shopformer.forecast.series import WeeklyConfig, weekly_series

    try:
        transformer = ForecastRunConfig().transformer
        if epochs is not None:
            transformer = replace(transformer, epochs=epochs, stop_after=None)  # the whole schedule
        if ensemble is not None:
            transformer = replace(transformer, ensemble=ensemble)
        config = ForecastRunConfig(method=method, top=top, transformer_top=transformer_top, horizon=horizon,
                                   transformer=transformer,
                                   weekly=WeeklyConfig(exclude_items=tuple(exclude or ())))
        series = weekly_series(load_events(data), config.weekly, load_products(data))
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    columns = (TextColumn("training {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} epochs"),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=quiet or method != "transformer") as progress:
        t = config.transformer
        task = progress.add_task(method, total=min(t.epochs, t.stop_after or t.epochs) * t.ensemble, loss=float("nan"))

        def on_epoch(epoch: int, model) -> dict:  # noqa: ANN001
            progress.update(task, completed=epoch, loss=model.history[-1]["loss"] if model.history else float("nan"))
            return {}

        forecaster, forecasts, recent = fit_and_forecast(series, config, on_epoch)
    return config, series, forecaster, forecasts, recent


def _show(store, item: str | None, horizon: int, show: int, as_json: bool) -> None:  # noqa: ANN001
    from shopformer.forecast.artifact import TOTAL_ID

    if item is not None and item not in store:
        _fail(f"item {item!r} has no forecast (unknown, or not sold in the last 52 weeks of the data)")
    try:
        ids = [item] if item is not None else [TOTAL_ID] + store.largest(show)
        found = [store.for_item(i, horizon) for i in ids]
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        out = [{"item_id": f.item_id, "method": f.method, "last_week": str(f.last_week),
                "forecast": [{"week_start": str(w), "horizon": h + 1, "units": u, "revenue": r}
                             for h, (w, u, r) in enumerate(zip(f.weeks, f.units, f.revenue))]} for f in found]
        typer.echo(json.dumps(out[0] if item is not None else out, indent=2))
        return
    table = Table(title=f"weekly units forecast ({found[0].method}, from the week of {found[0].last_week})")
    table.add_column("item")
    for w in found[0].weeks:
        table.add_column(f"{w:%d %b}", justify="right")  # week starting (Monday); the year is in the title
    for f in found:
        table.add_row("total" if f.item_id == TOTAL_ID else f.item_id, *[f"{u:,.0f}" for u in f.units])
    Console().print(table)


@forecast_app.callback()
def forecast(
    ctx: typer.Context,
    data: DataOpt = None,
    model: Annotated[Optional[Path], typer.Option(help="A folder written by `shopformer forecast fit` (no fitting).")] = None,
    item: Annotated[Optional[str], typer.Option(help="One product's forecast (default: total and largest).")] = None,
    horizon: Annotated[Optional[int], typer.Option(min=1, max=52, help="Weeks ahead (default 8; with --model, "
                                                                         "the fitted forecast's).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON on standard output.")] = False,
    method: MethodOpt = "transformer",
    top: TopOpt = 200,
    transformer_top: TransformerTopOpt = 1000,
    epochs: EpochsOpt = None,
    ensemble: EnsembleOpt = None,
    exclude: ExcludeOpt = None,
    show: Annotated[int, typer.Option(min=0, help="Products listed without --item.")] = 10,
) -> None:
    """Forecast weekly units (and revenue) for the next --horizon weeks."""
    if ctx.invoked_subcommand is not None:
        return
    from shopformer.forecast.artifact import ForecastStore

    if (data is None) == (model is None):
        _fail("give --data (fit now) or --model (a folder from `shopformer forecast fit`), one of them")
    if model is not None:
        try:
            store = ForecastStore(model)
        except FileNotFoundError as exc:
            _fail(str(exc))
        horizon = store.horizon if horizon is None else horizon
    else:
        import tempfile

        from shopformer.forecast.artifact import save_forecast

        horizon = 8 if horizon is None else horizon
        config, series, forecaster, forecasts, recent = _fit(data, method, top, horizon, epochs, exclude, json_, ensemble,
                                                             transformer_top)
        with tempfile.TemporaryDirectory() as tmp:
            save_forecast(Path(tmp), config, series, None, forecasts, recent, str(data))
            store = ForecastStore(Path(tmp))
    _show(store, item, horizon, show, json_)


@forecast_app.command("fit")
def fit(
    data: Annotated[Path, typer.Option(help="Data folder written by `shopformer ingest`.")],
    out: Annotated[Path, typer.Option(help="Folder to write (serve it with SHOPFORMER_FORECAST_DIR).")],
    method: MethodOpt = "transformer",
    top: TopOpt = 200,
    transformer_top: TransformerTopOpt = 1000,
    horizon: Annotated[int, typer.Option(min=1, max=52, help="Weeks ahead.")] = 8,
    epochs: EpochsOpt = None,
    ensemble: EnsembleOpt = None,
    exclude: ExcludeOpt = None,
) -> None:
    """Fit a forecaster on the data folder's purchases and save its forecasts for serving."""
    from shopformer.forecast.artifact import save_forecast

    config, series, forecaster, forecasts, recent = _fit(data, method, top, horizon, epochs, exclude, False, ensemble,
                                                         transformer_top)
    save_forecast(out, config, series, forecaster, forecasts, recent, str(data))
    console.print(f"{forecasts['item_id'].n_unique() - 1:,} products forecast {horizon} weeks from the week of "
                  f"{series.weeks[-1]} ({method}); saved to {out}")
