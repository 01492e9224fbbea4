"""`shopformer demo`: the main job on the embedded default.

Ingests the bundled UCI Online Retail sample, fits every available model on the
training split, picks the best by validation NDCG@10, reports all of them on the test
split, saves the best as a run and prints a few customers' top-10 with product titles.
Then it imports the data into a local SQLite store and (unless ``serve=False``) starts
the HTTP API on it, printing the URL and example curl commands with real ids.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import urllib.parse
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.table import Table

from shopformer.artifact import make_model, save_run
from shopformer.dataset import DataConfig, describe, load_events, load_products, prepare
from shopformer.evaluate.protocol import EvalConfig
from shopformer.evaluate.report import rich_table, write_results
from shopformer.experiment import evaluate_model, fit
from shopformer.models.base import recommend

if TYPE_CHECKING:
    from shopformer.serve.settings import ServeSettings

#: Purchases only, one event per product per basket run, temporal split: the last 10%
#: of the year is the test period, the 10% before it validation.
DEMO_DATA = DataConfig(
    event_types=("purchase",),
    min_user_events=3,
    min_item_events=3,
    dedupe_consecutive=True,
    protocol="temporal",
)

#: Models the demo trains and compares (content_knn needs product attributes the
#: Online Retail sample does not carry).
DEMO_MODELS = ("popular", "itemknn", "ease", "sasrec", "bert4rec")

#: The Transformers get a short schedule so the whole demo trains in about a minute;
#: early stopping on validation still picks their best epoch.
DEMO_SETTINGS: dict[str, dict[str, str]] = {
    "sasrec": {"train.epochs": "30", "train.patience": "5"},
    "bert4rec": {"train.epochs": "30", "train.patience": "5"},
}


def sample_path() -> Path:
    return Path(str(resources.files("shopformer") / "sample_data" / "online_retail_sample.csv.gz"))


#: the demo's store, inside its workdir
STORE_FILE = "shopformer.db"


class DemoError(RuntimeError):
    """The demo cannot serve (busy port, malformed SHOPFORMER_* variable)."""


def run_demo(
    workdir: Path, console: Console, users_to_show: int = 3, serve: bool = True, port: int = 8000,
    host: str = "127.0.0.1",
) -> dict:
    """The whole demo; returns what :func:`train_demo` returns plus ``store_url``.
    With ``serve`` it blocks serving the API until interrupted."""
    from shopformer.serve.settings import ServeSettings

    if serve:  # fail now, not after a minute of training
        try:
            settings = ServeSettings.from_env()
        except ValueError as exc:
            raise DemoError(str(exc)) from None
        check_port(host, port)
    result = train_demo(workdir, console, users_to_show)
    console.rule("store")
    result["store_url"] = import_store(Path(workdir), result["data_dir"], console)
    if serve:
        serve_demo(result, settings, console, host, port)
    return result


def train_demo(workdir: Path, console: Console, users_to_show: int = 3) -> dict:
    """Ingest, fit, validate, test, save the best run and show top-10 lists. Returns
    ``best``, ``valid``, ``test``, ``run_dir``, ``data_dir`` and example ids
    (``user``: the customer with most purchases, ``items``: their latest purchases,
    ``next_item``: the model's first recommendation for them)."""
    from shopformer.ingest import ingest

    data_dir = Path(workdir) / "data"
    if (data_dir / "events.parquet").exists():
        console.print(f"using the data already ingested in {data_dir}")
    else:
        console.rule("ingest")
        report = ingest(sample_path(), fmt="online-retail", data_dir=data_dir)
        console.print(report.rich_table())

    console.rule("train and validate")
    data, split = prepare(load_events(data_dir), DEMO_DATA)
    console.print(f"dataset: {describe(data)}; protocol: {split.protocol}")
    eval_cfg = EvalConfig(cutoffs=(5, 10, 20))
    models, valid, test = {}, [], []
    for name in DEMO_MODELS:
        model = make_model(name, DEMO_SETTINGS.get(name))
        seconds = fit(model, data, split)
        ctx = {"dataset": "online-retail sample", "fit_seconds": round(seconds, 3), "seed": 0}
        valid.append(evaluate_model(model, data, split, "valid", eval_cfg, ctx, progress=False))
        models[name] = (model, ctx)
    console.print(rich_table(valid))
    best = max(valid, key=lambda r: r["metrics"]["NDCG@10"])["model"]
    console.print(f"best on validation NDCG@10: [bold]{best}[/]")

    console.rule("test")
    for name, (model, ctx) in models.items():
        test.append(evaluate_model(model, data, split, "test", eval_cfg, ctx, progress=False))
    console.print(rich_table(test))
    results = Path(workdir) / "results" / "demo.json"
    write_results(valid + test, results, "shopformer demo (Online Retail sample)")
    console.print(f"results: {results} and {results.with_suffix('.md')}")

    model = models[best][0]
    run_dir = Path(workdir) / "runs" / best
    save_run(
        run_dir, model, data.items, data.users, DEMO_DATA,
        {"data_dir": str(data_dir.resolve()), "dataset": describe(data), "fit_on": "train",
         "fit_seconds": models[best][1]["fit_seconds"], "model_config": asdict(model.config)},
    )
    console.print(f"saved run: {run_dir}")

    console.rule(f"top-10 next purchases ({best})")
    _show_users(model, data, load_products(data_dir), console, users_to_show)
    top = int(np.argmax(data.sequences.lengths))
    hist = data.sequences.rows(np.array([top]))
    first, _ = recommend(model, hist, 1)
    console.rule("search")
    _show_searches(run_dir, console)
    return {
        "best": best, "valid": valid, "test": test, "run_dir": run_dir, "data_dir": data_dir,
        "user": data.users.ids[top], "items": data.items.decode(hist.items[-3:]),
        "next_item": data.items.decode(first[0])[0],
    }


def import_store(workdir: Path, data_dir: Path, console: Console) -> str:
    """Import ``data_dir`` into ``workdir/shopformer.db`` unless that store already has
    events; returns the store URL."""
    from shopformer.store import EventStore, StoreConfig, import_folder

    url = f"sqlite:///{(Path(workdir) / STORE_FILE).resolve()}"
    with EventStore(StoreConfig(url)) as store:
        n = store.count_events()
        if n:
            console.print(f"store {url} already holds {n} events: not importing again")
        else:
            res = import_folder(store, data_dir)
            console.print(f"store {url}: imported {res.events.inserted} events and {res.products} products")
    return url


def check_port(host: str, port: int) -> None:
    """Raise :class:`DemoError` naming the port when it cannot be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise DemoError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None


def serve_demo(result: dict, settings: ServeSettings, console: Console, host: str, port: int) -> None:
    """Serve the saved run over the demo store (blocks); other settings come from
    ``settings``. The API key is SHOPFORMER_API_KEY, or a random one printed here."""
    from shopformer.serve.app import serve

    key = os.environ.get("SHOPFORMER_API_KEY") or None
    settings = replace(
        settings, store_url=result["store_url"], run=Path(result["run_dir"]), api_key=key or secrets.token_urlsafe(18)
    )
    url = f"http://{host}:{port}"
    console.rule("serve")
    console.print(f"serving [bold]{result['best']}[/] at [bold]{url}[/] (API docs: {url}/docs); Ctrl-C stops")
    if key is None:
        console.print(f"API key for writes (generated; set SHOPFORMER_API_KEY to choose one): [bold]{settings.api_key}[/]")
    console.print("try:")
    key_text = "$SHOPFORMER_API_KEY" if key is not None else settings.api_key
    for comment, command in curl_examples(url, key_text, result["user"], result["items"], result["next_item"]):
        console.print(f"[dim]# {comment}[/]")
        console.print(command, soft_wrap=True, highlight=False, markup=False)
    serve(settings, host, port)


def curl_examples(url: str, key: str, user: str, items: list[str], next_item: str) -> list[tuple[str, str]]:
    """(comment, shell command) pairs for the demo's API at ``url``: a user's and a
    session's recommendations, similar items, posting an event with ``key`` (a literal
    key or a shell variable such as ``$SHOPFORMER_API_KEY``), health."""
    item = items[-1]
    path = urllib.parse.quote
    session = json.dumps({"item_ids": items, "k": 5})
    event = json.dumps({"user_id": user, "item_id": next_item, "type": "purchase"})
    json_header = "-H 'Content-Type: application/json'"
    return [
        (f"top-10 for customer {user} (re-encoded from their latest purchases in the store)",
         f'curl -s -H "X-API-Key: {key}" {shlex.quote(f"{url}/v1/users/{path(user, safe=str())}/recommendations?k=10")}'),
        ("an anonymous session that bought these items, oldest first",
         f"curl -s -X POST {url}/v1/recommendations/session {json_header} -d {shlex.quote(session)}"),
        (f"items similar to {item}",
         f"curl -s {shlex.quote(f'{url}/v1/items/{path(item, safe=str())}/similar?k=5')}"),
        (f"post a purchase of {next_item} (writes need the API key); ask for {user}'s top-10 again: it changed",
         f'curl -s -X POST {url}/v1/events {json_header} -H "X-API-Key: {key}" -d {shlex.quote(event)}'),
        ("search the catalog (typos, units, product text vectors), with facets",
         f"curl -s {shlex.quote(f'{url}/v1/search?q=chrismas+lights&k=5')}"),
        ("autocomplete", f"curl -s {shlex.quote(f'{url}/v1/search/suggest?q=lunch+b')}"),
        ("health: store and served model", f"curl -s {url}/health"),
    ]


#: what the demo searches: plain words, a typo, a unit, a phrase with no shared word
DEMO_QUERIES = ("red heart", "chrismas lights", "lunch bag 3 pack", "something to drink tea from")


def _show_searches(run_dir: Path, console: Console) -> None:
    """A few searches over the sample's catalog, as ``shopformer search`` answers them."""
    from shopformer.search.offline import open_searcher

    searcher = open_searcher(run_dir)
    try:
        for q in DEMO_QUERIES:
            r = searcher.search(q, k=5, record=False)
            fixed = f" (searched as {r.corrected_query!r})" if r.corrected_query else ""
            found = "; ".join(h.title or h.item_id for h in r.hits) or "nothing"
            console.print(f"[bold]{q!r}[/]{fixed} ({r.strategy}): {found}", soft_wrap=True, highlight=False)
    finally:
        searcher.close()


def _show_users(model, data, products, console: Console, n: int) -> None:
    titles = dict(zip(products["item_id"].to_list(), products["title"].to_list()))
    lengths = data.sequences.lengths
    # The customers with the most purchases make the most telling examples.
    for u in np.argsort(-lengths, kind="stable")[:n]:
        hist = data.sequences.rows(np.array([u]))
        idx, scores = recommend(model, hist, 10)
        table = Table(title=f"customer {data.users.ids[u]} ({lengths[u]} purchases)")
        table.add_column("#", justify="right")
        table.add_column("item")
        table.add_column("title")
        table.add_column("score", justify="right")
        recent = data.items.decode(hist.items[-3:])
        console.print("recent purchases: " + "; ".join(titles.get(i) or i for i in recent))
        for rank, (i, s) in enumerate(zip(data.items.decode(idx[0]), scores[0]), 1):
            table.add_row(str(rank), i, titles.get(i) or "", f"{s:.3f}")
        console.print(table)
