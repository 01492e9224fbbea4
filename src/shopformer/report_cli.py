"""``shopformer report online``: answers shown and what came of them, from the store (so
every API process and replica is counted); the work is in
:mod:`shopformer.feedback.online_report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .access_cli import StoreOpt

console = Console()
report_app = typer.Typer(help="Reports over what the store recorded.", no_args_is_help=True)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


@report_app.command("online")
def online(
    store: StoreOpt,
    since: Annotated[str, typer.Option("--since", help="Answers shown since: an age (7d, 24h, 30m, 2w) or a date "
                                       "(2024-05-01).")] = "7d",
    by: Annotated[str, typer.Option("--by", help="Group by model_version, variant, experiment, placement, route "
                                    "or position.")] = "model_version",
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also write a PNG: daily click-through rate per "
                                                 "group and the rates by position.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON instead of a table.")] = False,
) -> None:
    """Online metrics: answers (impressions), click-through, add-to-cart and purchase
    rates (shares of answers with such an event on an item they showed) and revenue per
    answer (purchased quantity x the price paid, else the catalog price), per group; by position: the same per
    item shown at that position."""
    from shopformer.feedback.online_report import online_report, parse_since
    from shopformer.feedback.online_report import plot as plot_report
    from shopformer.feedback.online_report import rich_table
    from shopformer.store import EventStore, StoreConfig, StoreError

    try:
        start = parse_since(since)
        with EventStore(StoreConfig(url=store)) as s:
            found = online_report(s, start, by)
    except (StoreError, ValueError) as exc:
        _fail(str(exc))
        return
    if plot is not None:
        plot_report(found, plot)
    if json_:
        typer.echo(json.dumps(found.to_dict(), indent=2, default=str))
        return
    console.print(rich_table(found))
    if plot is not None:
        console.print(f"plot written to {plot}")
