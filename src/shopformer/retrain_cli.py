"""``shopformer retrain``, ``shopformer versions`` and ``shopformer rollback``: continuous
retraining with a safety gate (the work is in :mod:`shopformer.feedback.retrain`)."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from shopformer.access_cli import StoreOpt, cli_actor

console = Console()

#: exit code of a round whose candidate the gate refused (cron / systemd can alert on it)
REFUSED_EXIT = 3


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


def retrain(
    store: StoreOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder of the new run (with --every: NEW-<UTC time> per round).")],
    run: Annotated[Optional[Path], typer.Option(
        "--run", help="The current run (default: the one the store names as served).")] = None,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Where the store snapshot goes (default: retrain-data beside --out); rewritten each round.")] = None,
    tolerance: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Promote when new NDCG@10 >= current x (1 - tolerance) on the holdout.")] = 0.02,
    holdout_days: Annotated[Optional[float], typer.Option(
        min=0.0, help="Hold out the last N days of events (else --holdout-fraction).")] = None,
    holdout_fraction: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="Hold out the newest share of the events the run reads.")] = 0.1,
    epochs: Annotated[Optional[int], typer.Option(
        min=1, help="Planned epochs (default: the current run's; a warm start 30% of them).")] = None,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="Do not warm-start from the current run.")] = False,
    every: Annotated[Optional[str], typer.Option(
        help="Repeat every interval (90s, 30m, 6h, 1d) until Ctrl-C or SIGTERM.")] = None,
    publish: Annotated[bool, typer.Option("--publish/--no-publish", help="Publish a run that passes the gate.")] = True,
    min_cases: Annotated[int, typer.Option(min=1, help="Fewest held-out events the gate decides on.")] = 50,
    max_cases: Annotated[int, typer.Option(min=1, help="Held-out events scored at most (a seeded sample).")] = 20_000,
    json_: Annotated[bool, typer.Option("--json", help="Print each round's outcome as a JSON line.")] = False,
) -> None:
    """Snapshot the store, train a run like --run (warm-started from it) on the events before
    the newest holdout slice, compare both on that slice (NDCG@10, full catalog) and publish
    the new run only if it is not worse beyond --tolerance. Exit code 3 when refused."""
    from shopformer.feedback.gate import GateConfig
    from shopformer.feedback.retrain import RetrainConfig, RetrainError, every as repeat
    from shopformer.feedback.retrain import outcome_json, parse_interval
    from shopformer.feedback.retrain import retrain as retrain_round
    from shopformer.store import EventStore, StoreConfig, StoreError
    from shopformer.store.served import served_run

    config = RetrainConfig(warm=not from_scratch, epochs=epochs, holdout_days=holdout_days,
                           holdout_fraction=holdout_fraction, publish=publish,
                           gate=GateConfig(tolerance=tolerance, min_cases=min_cases, max_cases=max_cases))
    data = data or out.parent / "retrain-data"
    say = (lambda m: console.print(m, soft_wrap=True, highlight=False)) if not json_ else (lambda m: None)

    def round_(s: EventStore, current: Path, folder: Path) -> str:
        # with --json, stdout carries only the outcomes: training's progress lines go to stderr
        with contextlib.redirect_stdout(sys.stderr) if json_ else contextlib.nullcontext():
            o = retrain_round(s, current, folder, data, config, cli_actor(), say)
        if o.status == "promoted":
            _announce(s)
        if json_:
            typer.echo(outcome_json(o))
        else:
            colour = {"promoted": "green", "approved": "green", "refused": "red"}.get(o.status, "yellow")
            console.print(f"[bold {colour}]{o.status}[/]: {o.message}", soft_wrap=True, highlight=False)
        return o.status

    try:
        with EventStore(StoreConfig(url=store)) as s:
            if run is None:
                served = served_run(s)
                if served is None:
                    raise RetrainError("the store serves no run yet: give --run (the run to start from)")
                run = Path(served["folder"])
            if every is None:
                status = round_(s, run, out)
                if status == "refused":
                    raise typer.Exit(REFUSED_EXIT)
                return
            interval = parse_interval(every)
            stop = threading.Event()
            before = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # systemd's stop: finish cleanly

            def scheduled(n: int) -> None:
                served = served_run(s)  # after a promotion or a rollback: the run served now
                current = Path(served["folder"]) if n > 1 and served else run
                folder = out.parent / f"{out.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
                while folder.exists():  # two rounds within a second (a tiny store, a short interval)
                    folder = folder.with_name(folder.name + "b")
                round_(s, current, folder)

            try:
                repeat(interval, scheduled, stop, say)
            except KeyboardInterrupt:
                stop.set()
            finally:
                signal.signal(signal.SIGTERM, before)
            console.print("stopped")
    except (RetrainError, StoreError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


def _announce(store) -> None:
    """The replicas load the run just published at once (SHOPFORMER_REDIS_URL), not
    within their sync interval."""
    from shopformer.serve.shared_state import announce_reload
    from shopformer.store.served import served_run

    served = served_run(store)
    if served is not None:
        announce_reload(served["version"])


def versions(
    store: StoreOpt,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The model versions retraining made, with the gate's numbers; * marks the one served."""
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.served import served_run
    from shopformer.store.versions import list_versions

    with EventStore(StoreConfig(url=store)) as s:
        found, served = list_versions(s), served_run(s)
    now = served["version"] if served else None
    if json_:
        typer.echo(json.dumps([{**v.to_dict(), "served": v.run_version == now} for v in found], indent=2))
        return
    table = Table(title=f"{len(found)} model versions")
    for col in ("id", "", "status", "mode", "parent", "created", "train s", "current", "new", "cases", "folder"):
        table.add_column(col, overflow="fold")
    for v in found:
        m = v.metrics
        table.add_row(str(v.version_id), "*" if v.run_version == now else "", v.status, v.mode,
                      str(v.parent_id or "-"), f"{v.created_at:%Y-%m-%d %H:%M}",
                      f"{v.train_seconds:.1f}" if v.train_seconds is not None else "-",
                      f"{m['current']:.4f}" if "current" in m else "-",
                      f"{m['candidate']:.4f}" if "candidate" in m else "-", str(m.get("cases", "-")), v.folder)
    console.print(table)


def rollback(
    version: Annotated[int, typer.Argument(help="The version id to serve again (`shopformer versions`).")],
    store: StoreOpt,
) -> None:
    """Publish an earlier version's run again (its folder must still hold it); every API
    process serving from the store follows within its sync interval."""
    from shopformer.feedback.retrain import RetrainError
    from shopformer.feedback.retrain import rollback as do_rollback
    from shopformer.store import EventStore, StoreConfig

    try:
        with EventStore(StoreConfig(url=store)) as s:
            v, previous = do_rollback(s, version, cli_actor())
            _announce(s)
    except RetrainError as exc:
        _fail(str(exc))
        return
    console.print(f"serving version {v.version_id} ({v.folder}) again"
                  + (f"; was {previous['version']}" if previous else ""), soft_wrap=True)
