"""``shopformer audience ITEM --run RUN --store URL``: the customers most likely to buy an
item (or, with ``--category``, any item of a category) next, as CSV (user_id, score, rank)
for a campaign or an ad tool. The same scoring as ``GET /v1/items/{id}/audience``
(:mod:`shopformer.rank.audience`), from the store's events as they are now; written to
the store's audit log like the API's answers."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import polars as pl
import typer
from rich.console import Console

from .access_cli import StoreOpt, cli_actor

console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


def audience(
    run: Annotated[Path, typer.Option(help="Trained run folder (a sequence model: sasrec or bert4rec).")],
    store: StoreOpt,
    item: Annotated[Optional[str], typer.Argument(help="The item id (leave out with --category).")] = None,
    k: Annotated[int, typer.Option(min=1, help="Customers to name.")] = 1000,
    category: Annotated[Optional[str], typer.Option(help="Score any item of this category instead of one item.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="CSV file to write (default: standard output).")] = None,
    history_limit: Annotated[int, typer.Option(min=1, help="Latest events read per customer.")] = 200,
    ranker: Annotated[bool, typer.Option(help="Rank an item's audience by the run's fitted audience ranker, when it "
                                              "holds one (shopformer audience-fit).")] = True,
) -> None:
    """The k customers most likely to buy ITEM (or any item of --category) next, as CSV
    (user_id, score, rank): each customer's user vector from their latest stored events
    scored against the item's (see README, Audience targeting)."""
    from shopformer.artifact import load_run
    from shopformer.dataset import DEFAULT_EVENT_TYPES
    from shopformer.rank.audience import AudienceConfig, audience_from_events
    from shopformer.rank.audience_learned import LearnedAudience, load_ranker
    from shopformer.serve.retrieval import is_vector_model
    from shopformer.store import EventStore, StoreConfig
    from shopformer.store.access import record_audit

    if (item is None) == (category is None):
        _fail("name an ITEM or a --category (one of them)")
    try:
        loaded = load_run(run)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if not is_vector_model(loaded.model):
        _fail(f"{run} holds {loaded.model.name}, which has no user vectors: audiences need sasrec or bert4rec")
    with EventStore(StoreConfig(url=store)) as s:
        if item is not None:
            if item not in loaded.items:
                _fail(f"item {item!r} is unknown to the model in {run}")
            idx = np.array([loaded.items.index(item)])
        else:
            ids = s.products(columns=("item_id", "categories")).filter(pl.col("categories").list.contains(category))
            idx = loaded.items.encode(ids["item_id"]) if ids.height else np.zeros(0, dtype=np.int64)
            idx = np.unique(idx[idx > 0])
            if not len(idx):
                _fail(f"category {category!r} has no product the model in {run} knows")
        types = tuple(loaded.data_config.event_types or DEFAULT_EVENT_TYPES)
        events = s.events()
        fitted = load_ranker(run) if ranker and item is not None else None
        if fitted is not None:  # the learned ranker (item audiences only)
            aud = LearnedAudience(fitted, events, loaded.items)
            found = aud.for_item(int(idx[0]), k)
        else:
            aud = audience_from_events(AudienceConfig(history_limit=history_limit), loaded.model, loaded.items, types,
                                       events, loaded.data_config.dedupe_consecutive)
            found = aud.for_item(int(idx[0]), k) if item is not None else aud.for_items(idx, k)
        record_audit(s, cli_actor(), "audience", f"item:{item}" if item is not None else f"category:{category}",
                     "ok", {"customers": len(found.user_ids), "out": str(out) if out else "stdout"})
    handle = open(out, "w", newline="") if out is not None else sys.stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "score", "rank"])
        for rank, (user, score) in enumerate(zip(found.user_ids, found.scores), start=1):
            writer.writerow([user, f"{score:.6f}", rank])
    finally:
        if out is not None:
            handle.close()
    console.print(f"{len(found.user_ids)} of {len(aud)} customers named" + (" (learned ranker)" if fitted else "")
                  + (f" ({len(idx)} items of {category!r})" if category else "") + (f"; written to {out}" if out else ""))


def audience_fit(
    run: Annotated[Path, typer.Option(help="Trained run folder: the ranker is saved in it (audience_ranker/).")],
    store: StoreOpt,
    days: Annotated[float, typer.Option(min=1, help="The horizon: buyers in the next DAYS days.")] = 30.0,
    min_buyers: Annotated[int, typer.Option(min=1, help="Items fitted on: those with this many buyers.")] = 5,
    threads: Annotated[int, typer.Option(min=1, help="LightGBM threads.")] = 2,
    min_child_samples: Annotated[int, typer.Option(min=1, help="LightGBM's least rows per leaf (lower for a small "
                                                               "shop).")] = 100,
) -> None:
    """Fit the learned audience ranker on the store's purchases (features before the
    last DAYS days, labels: who bought each item in them) and save it in the run folder;
    ``shopformer audience`` and ``GET /v1/items/{id}/audience`` then rank item audiences
    by it (rank/audience_learned.py; benchmark: results/audience.md)."""
    from shopformer.artifact import load_run
    from shopformer.rank.audience_learned import fit_from_events, save_ranker
    from shopformer.rank.audience_ranker import AudienceRankerConfig
    from shopformer.store import EventStore, StoreConfig

    try:
        loaded = load_run(run)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    with EventStore(StoreConfig(url=store)) as s:
        events = s.events()
    try:
        fitted, report = fit_from_events(AudienceRankerConfig(threads=threads, min_child_samples=min_child_samples), events, loaded.items, days, min_buyers)
    except ValueError as exc:
        _fail(str(exc))
    folder = save_ranker(fitted, run, report)
    console.print(f"audience ranker fitted on {report.items} items ({report.rows} candidate rows, {report.buyers} "
                  f"buyers in the last {days:g} days); saved in {folder}")
