"""Serving latency: the real HTTP server on loopback under N concurrent clients.

Starts ``shopformer serve --no-access-log`` (or uvicorn directly, ``--launcher uvicorn``;
``--access-log`` keeps uvicorn's line per request) in a subprocess
over a fresh SQLite store in a temporary folder, with ``SHOPFORMER_API_KEY`` set, and
drives it with ``--clients`` keep-alive connections: by default from wrk (``--driver
wrk``, the Debian package; see wrk_driver.py and serve_load.lua), each connection pausing
between an answer and its next request so that together they offer ``--rate`` req/s,
followed by a closed-loop recommend run that measures capacity; or (``--driver httpx``)
from asyncio httpx clients in a closed loop (each client sends its next request when the
previous answer arrives). A closed loop of 50 clients measures capacity, not latency at
a given load: by Little's law its latency is 50 / throughput. Each endpoint is
measured on its own, in this order, for ``--duration`` seconds after ``--warmup`` seconds
that are not recorded, and for at most ``--max-requests`` requests:

* ``recommend``: ``GET /v1/users/{user}/recommendations?k=10`` for known users that have
  a history in the store (the server re-encodes it; its per-user cache is on, as
  deployed: ``SHOPFORMER_CACHE_TTL_S`` etc. are passed through from this environment);
* ``similar``: ``GET /v1/items/{item}/similar?k=10``;
* ``event``: ``POST /v1/events`` (one event, unique ``event_id``, durable before the 201).

Per endpoint: p50/p95/p99/max latency (ms, successful answers), throughput (successful
answers per second) and errors (any other status, or no answer); the server's resident
memory (``VmRSS`` sampled during the run, peak ``VmHWM``) from ``/proc/<pid>/status``.
Each reported number is checked against the targets of issue 5 (PASS/FAIL, misses shown).

What is served (one of):

    python benchmarks/serve_latency.py --train-demo        # small SASRec on the bundled sample (default)
    python benchmarks/serve_latency.py --run RUN_FOLDER    # an already trained run, e.g. Beauty SASRec
    python benchmarks/serve_latency.py --synthetic-items 1000000   # random 1M-item SASRec catalog

``--run``: the store is filled from the run's own data folder (``run.json`` ``data_dir``)
when it still exists, else with synthetic histories of its users. ``--synthetic-items``
builds (once, cached under ``--work``) a SASRec run folder whose item table is random,
a catalog row per item and ``--synthetic-users`` users with 20 random events each; above
100k items the server builds HNSW indexes at start-up (see shopformer.serve.retrieval).

Results merge into benchmarks/results/serve_latency.{json,md}: one record per scenario and
``--workers`` (``demo``, ``run:<folder name>``, ``synthetic-<N>-d<dim>``), replaced when re-run. The load
generator runs on the same machine as the server (wrk: a C process with two threads;
httpx: one Python process), so on a small machine it takes CPU from the server; the
report says how many CPUs there were and the load average when the run started.
``--workers N`` starts ``shopformer serve --workers N`` (N processes on the port).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
from rich.table import Table

import httpx_driver
import wrk_driver
from results_file import merged
from serve_server import API_KEY, K, _tail, console, free_port, proc_memory, server_command, stop, wait_ready, wait_warm

from shopformer.evaluate.report import machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ENDPOINTS = ("recommend", "similar", "event")
#: The issue's targets (at 50 clients; the catalog ones at 1M products).
TARGET_CLIENTS = 50
TARGET_CATALOG = 1_000_000
EVENTS_PER_SYNTHETIC_USER = 20



# -- what is served ------------------------------------------------------------------------
@dataclass
class Scenario:
    key: str  # "demo", "run:<name>", "synthetic-<N>-d<dim>"
    run_dir: Path
    data_dir: Path | None  # ingested data folder to import into the store, if any
    store_template: Path | None = None  # a prepared store file to copy (synthetic)
    synthetic_items: int | None = None
    notes: list[str] = field(default_factory=list)


def demo_scenario(work: Path, retrain: bool) -> Scenario:
    """A small SASRec trained on the bundled Online Retail sample (cached under work)."""
    from shopformer.artifact import make_model
    from shopformer.demo import DEMO_DATA, sample_path
    from shopformer.experiment import train_run
    from shopformer.ingest import ingest

    data_dir, run_dir = work / "demo" / "data", work / "demo" / "run-sasrec"
    if not (data_dir / "events.parquet").exists():
        console.print(f"ingesting the bundled sample into {data_dir}")
        ingest(sample_path(), fmt="online-retail", data_dir=data_dir)
    if retrain or not (run_dir / "run.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        console.print("training a small SASRec on the sample (5 epochs, all data) ...")
        t0 = time.perf_counter()
        params = {"train.epochs": "5", "arch.d_model": "64", "arch.max_len": "50"}
        train_run(make_model("sasrec", params), data_dir, DEMO_DATA, run_dir, fit_on="all")
        console.print(f"trained in {time.perf_counter() - t0:.1f} s -> {run_dir}")
    else:
        console.print(f"using the demo run already trained in {run_dir} (--retrain-demo to redo)")
    return Scenario("demo", run_dir, data_dir)


def run_scenario(run_dir: Path) -> Scenario:
    if not (run_dir / "run.json").is_file():
        raise SystemExit(f"{run_dir} is not a trained run folder (no run.json)")
    info = json.loads((run_dir / "run.json").read_text())
    data_dir = Path(info["data_dir"]) if info.get("data_dir") else None
    sc = Scenario(f"run:{run_dir.resolve().name}", run_dir, None)
    if data_dir is not None and (data_dir / "events.parquet").exists():
        sc.data_dir = data_dir
    else:
        sc.notes.append(
            f"the run's data folder ({data_dir}) is not there: the store holds synthetic histories "
            f"({EVENTS_PER_SYNTHETIC_USER} random known items) for the sampled users"
        )
    return sc


def prebuilt_index(sc: Scenario, kind: str | None) -> dict | None:
    """With ``kind``: build the run's indexes into RUN/index now (what ``shopformer index``
    does) and return the build's kind and seconds; the scenario's key says so, so its
    results are kept apart. Without: a leftover prebuilt index of a benchmark-made run
    is removed (a run given with --run is left as it is, and its prebuilt index noted)."""
    from shopformer.artifact import load_run
    from shopformer.retrieve.faiss_index import FaissIndexConfig
    from shopformer.serve.retrieval import INDEX_DIR, save_vector_indexes

    folder = sc.run_dir / INDEX_DIR
    if kind is None:
        if sc.key.startswith("run:"):
            if folder.exists():
                sc.notes.append(f"the run folder has a prebuilt index ({folder}): the server loaded it")
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return None
    console.print(f"building the {kind} vector indexes offline into {folder} ...")
    t0 = time.perf_counter()
    built = save_vector_indexes(load_run(sc.run_dir).model, sc.run_dir, FaissIndexConfig(kind=kind))
    seconds = time.perf_counter() - t0
    console.print(f"built {built.kind} indexes over {len(built.users):,} items in {seconds:.1f} s (offline)")
    sc.key = f"{sc.key}+prebuilt-{kind}"
    sc.notes.append(f"vector indexes ({built.kind}) built offline in {seconds:.0f} s before the server started")
    return {"kind": built.kind, "build_seconds": round(seconds, 1)}


def synthetic_scenario(work: Path, n_items: int, n_users: int, dim: int, seed: int) -> Scenario:
    """A SASRec run folder over ``n_items`` random item embeddings, plus a store template
    with a catalog row per item and the users' histories (built once, then reused)."""
    folder = work / f"synthetic-{n_items}-d{dim}-u{n_users}"
    run_dir, template = folder / "run", folder / "store-template.db"
    sc = Scenario(f"synthetic-{n_items}-d{dim}", run_dir, None, template, n_items)
    sc.notes.append(
        f"random item table ({n_items:,} x {dim}) and random Transformer weights; a catalog row "
        f"(id + title) per item; {n_users:,} users x {EVENTS_PER_SYNTHETIC_USER} random events"
    )
    if (run_dir / "run.json").exists() and template.exists():
        console.print(f"using the synthetic catalog already built in {folder}")
        return sc
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    import torch

    from shopformer.artifact import save_run
    from shopformer.dataset import DataConfig
    from shopformer.features.vocab import Vocabulary
    from shopformer.models.sasrec import SASRec, SASRecConfig
    from shopformer.models.sequential import SASRecRecommender, TransformerConfig
    from shopformer.store import EventStore, StoreConfig

    t0 = time.perf_counter()
    with console.status(f"building a synthetic {n_items:,}-item SASRec run in {run_dir} ..."):
        torch.manual_seed(seed)
        arch = SASRecConfig(n_items=n_items, d_model=dim, n_layers=2, n_heads=2, max_len=50)
        model = SASRecRecommender(TransformerConfig(arch=arch))
        model.module = SASRec(arch).eval()  # nn.Embedding init: N(0, 0.02), padding row 0
        item_ids = [f"p{i:08d}" for i in range(n_items)]
        user_ids = [f"s{u:07d}" for u in range(n_users)]
        save_run(
            run_dir, model, Vocabulary(item_ids), Vocabulary(user_ids), DataConfig(),
            {"dataset": f"synthetic: {n_items} items, {n_users} users", "fit_on": "all", "synthetic": True,
             "data_dir": None},
        )
        del model
    console.print(f"synthetic run folder in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    with console.status(f"writing {n_items:,} catalog rows and {n_users * EVENTS_PER_SYNTHETIC_USER:,} events ..."):
        rng = np.random.default_rng(seed)
        with EventStore(StoreConfig(f"sqlite:///{template}")) as store:
            ids = pl.Series("item_id", item_ids)
            for start in range(0, n_items, 200_000):
                part = ids.slice(start, 200_000)
                rows = pl.DataFrame({"item_id": part}).with_columns(
                    title=pl.concat_str(pl.lit("Product "), pl.col("item_id")))
                store.upsert_products(rows)
            store.add_events(_random_events(user_ids, item_ids, rng))
    console.print(f"store template in {time.perf_counter() - t0:.1f} s -> {template}")
    return sc


def _random_events(users: list[str], items: list[str], rng: np.random.Generator, event_type: str = "view") -> pl.DataFrame:
    n = EVENTS_PER_SYNTHETIC_USER
    picks = rng.integers(0, len(items), size=len(users) * n)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return pl.DataFrame({
        "user_id": np.repeat(np.array(users, dtype=object), n).tolist(),
        "item_id": [items[i] for i in picks],
        "event_type": [event_type] * (len(users) * n),
        "timestamp": [t0 + timedelta(minutes=i) for i in range(len(users) * n)],
    })


def fill_store(sc: Scenario, store_path: Path, users: list[str], items: list[str], event_type: str, seed: int) -> int:
    """Prepare the store the server will use; returns the number of events in it."""
    from shopformer.store import EventStore, StoreConfig, import_folder

    if sc.store_template is not None:
        shutil.copyfile(sc.store_template, store_path)
        for suffix in ("-wal", "-shm"):
            extra = Path(str(sc.store_template) + suffix)
            if extra.exists():
                shutil.copyfile(extra, Path(str(store_path) + suffix))
    with EventStore(StoreConfig(f"sqlite:///{store_path}")) as store:
        if sc.data_dir is not None:
            with console.status(f"importing {sc.data_dir} into the store ..."):
                res = import_folder(store, sc.data_dir)
            console.print(f"store: imported {res.events.inserted:,} events and {res.products:,} products")
        elif sc.store_template is None:
            store.add_events(_random_events(users, items, np.random.default_rng(seed), event_type))
        return store.count_events()


# -- targets -------------------------------------------------------------------------------
def check_targets(rec: dict) -> list[dict]:
    """Every target that applies to this record, met or not (never dropped)."""
    res, cfg, mem = rec["endpoints"], rec["config"], rec["server_memory_mb"]
    clients_note = "" if cfg["clients"] == TARGET_CLIENTS else f"target is set at {TARGET_CLIENTS} clients; this run used {cfg['clients']}"
    rows: list[dict] = []

    def add(what: str, value, op: str, limit: float, unit: str, note: str = "") -> None:
        ok = value is not None and (value <= limit if op == "<=" else value < limit if op == "<" else value >= limit)
        rows.append({"target": what, "value": value, "op": op, "limit": limit, "unit": unit,
                     "pass": bool(ok), "note": note})

    synthetic = rec.get("synthetic_items")
    if synthetic:
        cat_note = "" if synthetic == TARGET_CATALOG else f"target is set for {TARGET_CATALOG:,} products; this catalog has {synthetic:,}"
        notes = "; ".join(n for n in (cat_note, clients_note) if n)
        add("server peak resident memory (VmHWM)", mem["peak"], "<", 4096, "MB", cat_note)
        add("server ready (answers) after start", rec["server_ready_s"], "<", 30, "s", cat_note)
        for ep in ("recommend", "similar"):
            if ep in res:
                add(f"{ep} p99 (large catalog)", res[ep]["p99_ms"], "<=", 30, "ms", notes)
    elif "recommend" in res:
        r = res["recommend"]
        add("recommend top-10 p50", r["p50_ms"], "<=", 5, "ms", clients_note)
        add("recommend top-10 p99", r["p99_ms"], "<=", 20, "ms", clients_note)
        cap = res.get("recommend_capacity", r)
        cap_note = "closed loop (no think time)" if "recommend_capacity" in res else ""
        add("recommend throughput", cap["throughput_rps"], ">=", 500, "req/s",
            "; ".join(n for n in (clients_note, cap_note) if n))
    if "event" in res:
        add("event POST p99", res["event"]["p99_ms"], "<=", 10, "ms", clients_note)
    for ep, r in res.items():
        add(f"{ep} errors", r["errors"], "<=", 0, "", "")
    if "event" in res and res["event"].get("stored_check") is not None:
        add("acknowledged events found in the store (missing)", res["event"]["stored_check"]["missing"], "<=", 0, "")
    return rows


# -- report --------------------------------------------------------------------------------
def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if unit in ("req/s", "MB") else f"{v:.2f}"
    return f"{v:,}"


def markdown(results: list[dict]) -> str:
    lines = [
        "# Serving latency (HTTP, loopback)", "",
        "`python benchmarks/serve_latency.py` starts the real server (a subprocess, SQLite store in a temp "
        "folder) and drives it from the same machine, either with wrk (C, keep-alive connections that each "
        "pause between an answer and the next request so that all together offer about `--rate` req/s, "
        "plus a closed-loop run for capacity) or with closed-loop asyncio clients (httpx). Each endpoint is "
        "measured on its own after an unrecorded warm-up. Throughput = answers with the expected status / "
        "wall time; errors = any other status or no answer; latency over successful answers (httpx) or all "
        "answers (wrk).", "",
    ]
    for rec in results:
        c, m = rec["config"], rec["machine"]
        lines += [
            f"## {rec['scenario']}", "",
            f"{rec['date']} · {m['platform']} · {m['processor']} · {m['cpus']} CPUs · Python {m['python']} · "
            f"load average at start {rec['load_average_at_start']}"
            + (f" · run under nice {rec['niceness']}" if rec.get("niceness") else ""), "",
            f"Model `{rec['model']['name']}` ({rec['model']['retrieval']}), {rec['catalog_items']:,} items, "
            f"{rec['store_events']:,} events in the store. {c['clients']} clients, {c['duration_s']} s per endpoint "
            f"after {c['warmup_s']} s warm-up, at most {c['max_requests']:,} requests each, k={c['k']}, "
            f"{c['users_sampled']:,} users / {c['items_sampled']:,} items sampled, launcher `{c['launcher']}`"
            + (f", {c['workers']} server processes" if c.get("workers", 1) > 1 else "")
            + (f", load from {c['driver']}" if c.get("driver") else ", load from httpx (closed loop)")
            + (f" offering {c['rate_offered']:g} req/s" if c.get("rate_offered") else "")
            + (f", access log {'on' if c['access_log'] else 'off'}" if "access_log" in c else "")
            + (f", server env {c['server_env']}" if c["server_env"] else "") + ".", "",
        ]
        for note in rec.get("notes", []):
            lines.append(f"- {note}")
        if rec.get("notes"):
            lines.append("")
        lines += [
            "| endpoint | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for ep, r in rec["endpoints"].items():
            lines.append(
                f"| {ep} | {r['requests']:,} | {r['errors']:,} | {r['throughput_rps']:,.1f} | {_fmt(r['p50_ms'])} | "
                f"{_fmt(r['p95_ms'])} | {_fmt(r['p99_ms'])} | {_fmt(r['max_ms'])} |"
            )
        mem = rec["server_memory_mb"]
        lines += [
            "",
            f"Server resident memory: {mem['ready']:,.0f} MB when ready, {mem['max_sampled']:,.0f} MB at most during "
            f"the load, {mem['end']:,.0f} MB at the end, peak (VmHWM) {mem['peak']:,.0f} MB. Ready "
            f"{rec['server_ready_s']:.1f} s after start; the pages' background warm-up was over "
            f"{rec.get('server_warm_s', rec['server_ready_s']):.1f} s after start (the load starts then)."
            + (f" History cache hit rate (recommend): {rec['endpoints']['recommend']['history_cache_hit_rate']}."
               if rec["endpoints"].get("recommend", {}).get("history_cache_hit_rate") is not None else ""),
            "",
            "| target | value | limit | result | note |",
            "|---|---:|---:|---|---|",
        ]
        for t in rec["targets"]:
            lines.append(
                f"| {t['target']} | {_fmt(t['value'], t['unit'])} {t['unit']}".rstrip() + f" | {t['op']} {t['limit']:g} {t['unit']}".rstrip() + " | "
                f"**{'PASS' if t['pass'] else 'FAIL'}** | {t['note']} |"
            )
        lines.append("")
    return "\n".join(lines)


def show(rec: dict) -> None:
    table = Table(title=f"{rec['scenario']}: {rec['config']['clients']} clients, {rec['config']['duration_s']} s each")
    for col in ("endpoint", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    for ep, r in rec["endpoints"].items():
        table.add_row(ep, f"{r['requests']:,}", f"{r['errors']:,}", f"{r['throughput_rps']:,.1f}",
                      _fmt(r["p50_ms"]), _fmt(r["p95_ms"]), _fmt(r["p99_ms"]), _fmt(r["max_ms"]))
    console.print(table)
    mem = rec["server_memory_mb"]
    console.print(f"server RSS: ready {mem['ready']:,.0f} MB, max during load {mem['max_sampled']:,.0f} MB, "
                  f"peak (VmHWM) {mem['peak']:,.0f} MB; ready after {rec['server_ready_s']:.1f} s")
    targets = Table(title="targets")
    for col in ("target", "value", "limit", "result", "note"):
        targets.add_column(col)
    for t in rec["targets"]:
        targets.add_row(t["target"], f"{_fmt(t['value'], t['unit'])} {t['unit']}", f"{t['op']} {t['limit']:g} {t['unit']}",
                        "[bold green]PASS[/]" if t["pass"] else "[bold red]FAIL[/]", t["note"])
    console.print(targets)


# -- main ----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--run", type=Path, help="serve this trained run folder")
    what.add_argument("--train-demo", action="store_true", help="serve a small SASRec trained on the bundled sample (default)")
    what.add_argument("--synthetic-items", type=int, metavar="N", help="serve a synthetic N-item SASRec catalog")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    ap.add_argument("--driver", choices=("wrk", "httpx"), default=None,
                    help="load generator: wrk (Debian package; default when installed) or the asyncio httpx clients")
    ap.add_argument("--rate", type=float, default=500.0,
                    help="wrk: requests per second offered by all clients together, by a pause between "
                         "an answer and the next request (default 500; 0 = closed loop)")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per endpoint (default 20)")
    ap.add_argument("--warmup", type=float, default=3.0, help="unrecorded seconds before each endpoint (default 3)")
    ap.add_argument("--max-requests", type=int, default=200_000, help="at most this many requests per endpoint")
    ap.add_argument("--endpoints", default=",".join(ENDPOINTS), help=f"comma separated, from {','.join(ENDPOINTS)}")
    ap.add_argument("--users", type=int, default=1000, help="known users sampled for requests (default 1000)")
    ap.add_argument("--items", type=int, default=1000, help="items sampled for similar / events (default 1000)")
    ap.add_argument("--workers", type=int, default=1, help="server processes (shopformer serve --workers)")
    ap.add_argument("--launcher", choices=("cli", "uvicorn"), default="cli",
                    help="cli: `shopformer serve` (as documented); "
                         "uvicorn: `uvicorn shopformer.serve:create_app --factory`")
    ap.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                    help="let the server log a line per request (default: --no-access-log, "
                         "passed to `shopformer serve` / uvicorn)")
    ap.add_argument("--prebuilt-index", choices=("auto", "flat", "hnsw", "ivf", "ivfpq"), default=None,
                    help="build the run's vector indexes offline first (shopformer index; timed apart) so the "
                         "server loads them instead of building at start-up; without it, a demo or synthetic "
                         "run's leftover prebuilt index is removed so the server builds its own")
    ap.add_argument("--synthetic-users", type=int, default=2000)
    ap.add_argument("--synthetic-dim", type=int, default=64)
    ap.add_argument("--retrain-demo", action="store_true", help="train the demo model again")
    ap.add_argument("--startup-timeout", type=float, default=None,
                    help="seconds to wait for the server (default 300; 3600 with --synthetic-items)")
    ap.add_argument("--request-timeout", type=float, default=30.0)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shopformer-serve-bench",
                    help="cache for the demo run and synthetic catalogs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if bad := [e for e in endpoints if e not in ENDPOINTS]:
        ap.error(f"unknown endpoint(s) {bad}; choose from {ENDPOINTS}")
    if args.clients < 1 or args.duration <= 0 or args.max_requests < 1:
        ap.error("--clients, --duration and --max-requests must be positive")
    if args.driver is None:
        args.driver = "wrk" if wrk_driver.available() else "httpx"
        if args.driver == "httpx":
            console.print("wrk is not installed (apt-get install wrk): using the asyncio httpx clients")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    args.work.mkdir(parents=True, exist_ok=True)

    if args.run is not None:
        sc = run_scenario(args.run)
    elif args.synthetic_items:
        if args.synthetic_items < 2:
            ap.error("--synthetic-items must be >= 2")
        sc = synthetic_scenario(args.work, args.synthetic_items, args.synthetic_users, args.synthetic_dim, args.seed)
    else:
        if not args.train_demo:
            console.print("no --run / --synthetic-items given: serving the demo model (--train-demo)")
        sc = demo_scenario(args.work, args.retrain_demo)
    startup_timeout = args.startup_timeout or (3600.0 if sc.synthetic_items else 300.0)
    index_build = prebuilt_index(sc, args.prebuilt_index)

    from shopformer.dataset import DataConfig
    from shopformer.features.vocab import Vocabulary

    run_info = json.loads((sc.run_dir / "run.json").read_text())
    types = DataConfig.from_dict(run_info["data_config"]).event_types
    event_type = types[0] if types else "view"  # a type the model reads, so posts count
    all_users = Vocabulary.load(sc.run_dir / "users.json").ids
    all_items = Vocabulary.load(sc.run_dir / "items.json").ids
    rnd = random.Random(args.seed)
    users = rnd.sample(all_users, min(args.users, len(all_users)))
    items = rnd.sample(all_items, min(args.items, len(all_items)))
    del all_users

    with tempfile.TemporaryDirectory(prefix="serve-latency-") as tmp:
        store_path = Path(tmp) / "store.db"
        n_events = fill_store(sc, store_path, users, items, event_type, args.seed)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        passed = {k: v for k, v in os.environ.items() if k.startswith("SHOPFORMER_")
                  and k not in ("SHOPFORMER_API_KEY", "SHOPFORMER_STORE_URL", "SHOPFORMER_RUN")}
        env = {**os.environ, "SHOPFORMER_API_KEY": API_KEY, "SHOPFORMER_STORE_URL": f"sqlite:///{store_path}",
               "SHOPFORMER_RUN": str(sc.run_dir.resolve())}
        log = Path(tmp) / "server.log"
        cmd = server_command(args.launcher, port, args.access_log, args.workers)
        console.print(f"starting: {' '.join(cmd[1:])} (log {log})")
        t_start = time.perf_counter()
        with log.open("wb") as log_fh:
            proc = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            health = wait_ready(proc, base, startup_timeout, log)
            ready_s = time.perf_counter() - t_start
            mem_ready = proc_memory(proc.pid)
            console.print(f"ready in {ready_s:.1f} s: {health['model']['name']} ({health['model']['retrieval']}), "
                          f"RSS {mem_ready.get('VmRSS', 0) / 1024:,.0f} MB")
            wait_warm(proc, base, startup_timeout, log)
            warm_s = time.perf_counter() - t_start
            console.print(f"warm-up over {warm_s:.1f} s after start")
            tag = f"{int(time.time())}-{os.getpid()}"
            makers = {ep: httpx_driver.request_maker(ep, users, items, event_type, tag, args.seed + i)
                      for i, ep in enumerate(endpoints)}
            before = _count_bench_events(store_path, tag)
            if args.driver == "wrk":
                endpoint_results, rss = wrk_driver.measure(base, proc.pid, endpoints, users, items, event_type, tag,
                                                           args, K, API_KEY)
            else:
                endpoint_results, rss = asyncio.run(httpx_driver.measure(base, proc.pid, endpoints, makers, args))
            mem_end = proc_memory(proc.pid)
            if proc.poll() is not None:
                console.print(f"[bold red]the server died during the run[/]:\n{_tail(log)}")
        finally:
            stop(proc)
        if "event" in endpoint_results:
            # every 201 (warm-up included; ids are unique) must be in the store afterwards; a
            # request that timed out on the client may still have been stored (stored > acked)
            ev = endpoint_results["event"]
            stored = _count_bench_events(store_path, tag) - before
            acked = ev["ok"] + ev["warmup_ok"]
            ev["stored_check"] = {"acknowledged": acked, "stored": stored, "missing": max(0, acked - stored)}

    record = {
        "scenario": sc.key,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "niceness": os.nice(0),  # the server inherits it
        "config": {
            "clients": args.clients, "duration_s": args.duration, "warmup_s": args.warmup,
            "max_requests": args.max_requests, "k": K, "endpoints": endpoints, "users_sampled": len(users),
            "items_sampled": len(items), "driver": args.driver, "workers": args.workers,
            "rate_offered": args.rate if args.driver == "wrk" else None, "launcher": args.launcher, "access_log": args.access_log, "command": " ".join(["python", *cmd[1:]]),
            "server_env": passed, "run": str(sc.run_dir), "event_type": event_type, "seed": args.seed,
        },
        "model": {"name": health["model"]["name"], "version": health["model"]["version"],
                  "retrieval": health["model"]["retrieval"]},
        "catalog_items": len(all_items),
        "synthetic_items": sc.synthetic_items,
        "store_events": n_events,
        "server_ready_s": round(ready_s, 2),
        "server_warm_s": round(warm_s, 2),  # the pages' background warm-up over (load starts then)
        "prebuilt_index": index_build,
        "server_memory_mb": {
            "ready": round(mem_ready.get("VmRSS", 0) / 1024, 1),
            "max_sampled": round(max(rss, default=0) / 1024, 1),
            "end": round(mem_end.get("VmRSS", 0) / 1024, 1),
            "peak": round(mem_end.get("VmHWM", 0) / 1024, 1),
        },
        "endpoints": endpoint_results,
        "notes": sc.notes,
    }
    record["targets"] = check_targets(record)
    show(record)
    args.out.mkdir(parents=True, exist_ok=True)
    # one record per scenario and number of server processes
    results = merged(args.out / "serve_latency.json", [record],
                     key=lambda r: (r["scenario"], r["config"].get("workers", 1)))
    (args.out / "serve_latency.json").write_text(json.dumps({"benchmark": "serve_latency", "results": results}, indent=2) + "\n")
    (args.out / "serve_latency.md").write_text(markdown(results))
    misses = [t["target"] for t in record["targets"] if not t["pass"]]
    console.print(f"wrote {args.out / 'serve_latency.json'} and .md; "
                  + (f"[bold red]{len(misses)} target(s) missed[/]" if misses else "[bold green]all targets met[/]"))


def _count_bench_events(store_path: Path, tag: str) -> int:
    """Events whose id starts with this run's tag (what the event phase posted)."""
    import sqlite3

    con = sqlite3.connect(store_path, timeout=30)
    try:
        return con.execute("SELECT count(*) FROM events WHERE event_id LIKE ?", (f"bench-{tag}-%",)).fetchone()[0]
    finally:
        con.close()


if __name__ == "__main__":
    main()
