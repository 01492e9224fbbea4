"""``shopformer experiment start|stop|list|report``: A/B experiments from the command
line (the same functions the admin API calls, see serve/routes/experiments.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .access_cli import StoreOpt, cli_actor

console = Console()
experiment_app = typer.Typer(help="A/B experiments: two or more runs served side by side to stable shares of "
                                  "customers, compared on what customers did with their answers.",
                             no_args_is_help=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


def _variants(values: list[str]) -> list[tuple[str, Path]]:
    out = []
    for value in values:
        name, sep, run = value.partition("=")
        if not sep or not name.strip() or not run.strip():
            _fail(f"--variant {value!r}: expected NAME=RUN_FOLDER, e.g. a=runs/sasrec")
        out.append((name.strip(), Path(run.strip())))
    return out


@experiment_app.command("start")
def start(
    name: Annotated[str, typer.Argument(help="The experiment's name (letters, digits, _ . -).")],
    store: StoreOpt,
    variant: Annotated[list[str], typer.Option("--variant", help="NAME=RUN_FOLDER, repeatable; the first is the "
                                                                 "control.")],
    split: Annotated[Optional[str], typer.Option(help="Shares of customers, e.g. 50/50 or 90/10 (default: "
                                                      "equal).")] = None,
) -> None:
    """Start an experiment: every API process on the store serves each customer the run
    of their variant within SHOPFORMER_SYNC_S seconds."""
    from shopformer.feedback.experiments import ExperimentError, start_experiment
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import record_audit

    with EventStore(StoreConfig(url=store)) as s:
        try:
            experiment = start_experiment(s, name, _variants(variant), split, cli_actor())
        except ExperimentError as exc:
            record_audit(s, cli_actor(), "experiment_start", name, "failed", {"error": str(exc)})
            _fail(str(exc))
            return
        record_audit(s, cli_actor(), "experiment_start", name, "ok", {"variants": experiment.to_rows()})
    console.print(f"experiment [bold]{name}[/] running: " + ", ".join(
        f"{v.name}={v.run} ({v.share:.0%}, {v.version})" for v in experiment.variants))


@experiment_app.command("stop")
def stop(
    name: Annotated[str, typer.Argument(help="The running experiment.")],
    store: StoreOpt,
) -> None:
    """Stop an experiment: every customer gets the served run again (its data is kept
    for the report)."""
    from shopformer.feedback.experiments import ExperimentError, stop_experiment
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import record_audit

    with EventStore(StoreConfig(url=store)) as s:
        try:
            stop_experiment(s, name)
        except ExperimentError as exc:
            _fail(str(exc))
            return
        record_audit(s, cli_actor(), "experiment_stop", name, "ok")
    console.print(f"experiment [bold]{name}[/] stopped")


@experiment_app.command("list")
def list_(store: StoreOpt, json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every experiment, newest first."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.experiments import all_experiments

    with EventStore(StoreConfig(url=store)) as s:
        found = all_experiments(s)
    if json_:
        typer.echo(json.dumps([e.to_dict() for e in found], indent=2))
        return
    table = Table(title=f"{len(found)} experiments")
    for col in ("name", "status", "variants", "started", "stopped"):
        table.add_column(col)
    for e in found:
        table.add_row(e.name, e.status, ", ".join(f"{v['name']}={Path(v['run']).name} ({v['share']:.0%})"
                                                   for v in e.variants),
                      e.started_at.strftime("%Y-%m-%d %H:%M"), e.stopped_at.strftime("%Y-%m-%d %H:%M")
                      if e.stopped_at else "")
    console.print(table)


@experiment_app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="The experiment.")],
    store: StoreOpt,
    metric: Annotated[str, typer.Option(help="The rate the decision is about: click, add_to_cart or purchase.")]
    = "click",
    mde: Annotated[float, typer.Option(help="Smallest relative change worth detecting (0.1 = 10%).")] = 0.10,
    alpha: Annotated[float, typer.Option(help="Significance level (two-sided, Holm-adjusted).")] = 0.05,
    plot: Annotated[Optional[Path], typer.Option(help="Write the rates with their intervals as a PNG.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each variant's customers, answers, click / add-to-cart / purchase rates (customers
    with at least one such attributed event, with 95% intervals), revenue per customer,
    the difference to the control with its interval and p-value, and the verdict:
    significant, no difference, or too small to decide (with the sample it would take)."""
    from shopformer.feedback.abtest import ABConfig
    from shopformer.feedback.experiment_report import experiment_report, plot_report, rich_report
    from shopformer.feedback.experiments import ExperimentError
    from shopformer.store import EventStore, StoreConfig

    try:
        config = ABConfig(metric=metric, mde=mde, alpha=alpha)
        with EventStore(StoreConfig(url=store)) as s:
            result = experiment_report(s, name, config)
    except (ExperimentError, ValueError) as exc:
        _fail(str(exc))
        return
    if plot is not None:
        plot_report(result, plot)
    if json_:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    console.print(rich_report(result, name))
    console.print(f"[bold]{result.verdict}[/]")
    if plot is not None:
        console.print(f"plot saved to {plot}")
