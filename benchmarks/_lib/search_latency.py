"""Search latency through the real server on loopback: Home Depot's 54,667 products in a
SQLite store, `shopformer serve` with search on (hybrid: Tantivy + MiniLM vectors in the
vector index, and a LightGBM re-ranker trained on all of Home Depot's judged queries,
what a shop would deploy), and wrk with 50 keep-alive connections asking ``/v1/search``
with Home Depot's queries drawn at random from the 8,836 distinct ones (so most are
first-time queries: the query-vector cache rarely helps). Each connection pauses between
an answer and its next request: a think time drawn at random (exponential: independent
shoppers, Poisson arrivals) or fixed (every connection waits the same, so after the first
burst they keep arriving in waves of 50); a closed loop gives the capacity.

``workers``: server processes (``shopformer serve --workers N``, one per CPU is what a shop
would run). Each builds its own index; a catalog write through one reaches the others by
the store's catalog log, replayed every ``SHOPFORMER_SYNC_S`` (0.1 s here), so the upsert
timing polls the search until the new product comes first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import httpx

from shopformer.search import SearchConfig, Searcher
from shopformer.search.offline import train_reranker as train_reranker_on
from shopformer.store import EventStore, StoreConfig

from . import homedepot


def _ready(base: str, proc: subprocess.Popen, timeout: float, workers: int = 1) -> float:
    """Seconds until search answers; with several workers, until 20 answers in a row came
    back 200 (each connection may reach another worker)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            codes = [httpx.get(f"{base}/v1/search", params={"q": "drill"}, timeout=5).status_code
                     for _ in range(1 if workers == 1 else 20)]
            if set(codes) == {200}:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"search was not ready after {timeout:.0f} s")


def _upserts(base: str, key: str, n: int = 30, give_up_s: float = 5.0) -> dict:
    """New products PUT one at a time; each is searched for when the PUT returns, again
    and again until it is the first hit (one process: the first answer must have it): the
    time from sending the PUT to that answer, and how many were found on the first try."""
    import numpy as np

    times, first_try, found = [], 0, 0
    with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": key}) as client:
        for i in range(n):
            word = f"zorbatron{i:02d}"
            t0 = time.perf_counter()
            r = client.put("/v1/catalog/items", json=[{"item_id": f"new-{i}", "title": f"Quiet {word} ceiling fan",
                                                      "categories": ["Lighting"], "price": 99.0}])
            r.raise_for_status()
            tries = 0
            while time.perf_counter() - t0 < give_up_s:
                hits = client.get("/v1/search", params={"q": f"{word} fan", "k": 1}).json()["items"]
                tries += 1
                if hits and hits[0]["item_id"] == f"new-{i}":
                    found += 1
                    first_try += tries == 1
                    break
            times.append((time.perf_counter() - t0) * 1000)
    t = np.array(times)
    return {"products": n, "found_first": first_try, "found": found, "p50_ms": round(float(np.median(t)), 1),
            "max_ms": round(float(t.max()), 1)}


def train_reranker(products, gains, search_dir: Path, work: Path) -> dict:
    """A lambdarank re-ranker on every judged query (early stopping on a tenth), saved
    where the server looks for one."""
    from dataclasses import replace

    from shopformer.features.text import TextEncoderConfig

    config = SearchConfig(semantic=replace(SearchConfig().semantic,
                                           encoder=TextEncoderConfig(cache_dir=work / "text-cache"), query_cache=100_000))
    searcher = Searcher.build(products, config)
    queries = sorted(q for q, g in gains.items() if max(g.values()) > 0)
    searcher.semantic.query_vectors([searcher.plan(q).semantic_text for q in queries], progress=True)
    t0 = time.perf_counter()
    model = train_reranker_on(searcher, gains)  # what `shopformer train-reranker` runs
    model.save(search_dir / "reranker")
    searcher.close()
    return {"queries": len(queries), "trees": model.booster.best_iteration, "train_s": round(time.perf_counter() - t0, 1)}


def run(root: Path, work: Path, clients: int = 50, duration: float = 20.0, warmup: float = 15.0,
        phases: tuple[tuple[str, int, str], ...] = (("search", 1000, "exp"), ("search", 1000, "fixed"),
                                                    ("search", 500, "exp"), ("search", 0, "fixed"),
                                                    ("suggest", 1000, "exp")),
        rerank: bool = True, workers: int = 1, search_config: dict | None = None) -> tuple[list[dict], dict]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import wrk_driver
    from serve_server import API_KEY, free_port, proc_cpu_s, proc_memory, server_command, stop

    products, gains = homedepot.load(root)
    folder = work / (("latency" if rerank else "latency-norerank") + (f"-w{workers}" if workers > 1 else ""))
    shutil.rmtree(folder, ignore_errors=True)
    search_dir = folder / "search"
    search_dir.mkdir(parents=True)
    (work / "text-cache").mkdir(parents=True, exist_ok=True)
    os.symlink((work / "text-cache").resolve(), search_dir / "text-cache")
    meta: dict = {"reranker": None, "workers": workers}
    if search_config:  # what the server reads from its search folder (SearchConfig fields)
        (search_dir / "search_config.json").write_text(json.dumps(search_config))
    if rerank:  # trained once (it does not depend on this run), copied into the server's folder
        trained = work / "latency-reranker"
        if not (trained / "reranker" / "model.txt").exists():
            (trained / "meta.json").parent.mkdir(parents=True, exist_ok=True)
            (trained / "meta.json").write_text(json.dumps(train_reranker(products, gains, trained, work)))
        shutil.copytree(trained / "reranker", search_dir / "reranker")
        meta["reranker"] = json.loads((trained / "meta.json").read_text())
    url = f"sqlite:///{folder / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        for start in range(0, products.height, 10_000):
            store.upsert_products(products[start : start + 10_000])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SHOPFORMER_STORE_URL": url, "SHOPFORMER_SEARCH_DIR": str(search_dir),
           "SHOPFORMER_API_KEY": API_KEY, "SHOPFORMER_SYNC_S": "0" if workers == 1 else "0.1"}
    log = folder / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(server_command("cli", port, workers=workers), env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    records = []
    try:
        meta["ready_s"] = round(_ready(base, proc, 1800, workers), 1)  # the index is built at start-up
        queries = sorted({urllib.parse.quote(q, safe="") for q in gains})
        prefixes = sorted({urllib.parse.quote(q[: max(2, len(q) // 2)], safe="") for q in gains})
        for endpoint, think, dist in phases:
            items = queries if endpoint == "search" else prefixes
            common = dict(clients=clients, k=10, key=API_KEY, event_type="view", timeout_s=30, think_dist=dist)
            if warmup:
                wrk_driver.run(base, endpoint, ["u"], items, seconds=warmup, think=think, tag="w", **common)
            cpu0 = proc_cpu_s(proc.pid)
            r = wrk_driver.run(base, endpoint, ["u"], items, seconds=duration, think=think, tag="m", **common)
            # the server's CPU per answer (wrk's requests, ok or not): steadier than a p99 on a
            # machine whose speed drifts
            cpu = proc_cpu_s(proc.pid) - cpu0
            r["server_cpu_ms_per_request"] = round(cpu * 1000 / r["requests"], 2) if r["requests"] else None
            r["rss_mb"] = round(proc_memory(proc.pid).get("VmRSS", 0) / 1024, 1)
            served = ("hybrid+rerank" if rerank else "hybrid") + (f"_w{workers}" if workers > 1 else "")
            records.append({"dataset": "homedepot", "method": f"latency_{served}_{endpoint}_think{think}{dist}",
                            "endpoint": endpoint, "served": served, "clients": clients, "workers": workers, **r})
            print(f"{endpoint} think {think} ms ({dist}): {r['throughput_rps']} req/s, p50 {r['p50_ms']} ms, "
                  f"p99 {r['p99_ms']} ms, errors {r['errors']}")
        meta["upsert_to_searchable_ms"] = _upserts(base, API_KEY)
        sample = httpx.get(f"{base}/v1/search", params={"q": "cordless drill"}, timeout=10).json()
        meta["strategy"] = sample["strategy"]
        meta["peak_rss_mb"] = round(proc_memory(proc.pid).get("VmHWM", 0) / 1024, 1)
    finally:
        stop(proc)
    meta["search_config"] = SearchConfig.from_dict(search_config or {}).to_dict()
    return records, meta

