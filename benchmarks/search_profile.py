"""Why a search's p99 under load is several times its time alone: the served search timed
one request at a time over HTTP, then under wrk's 50 connections (1 s exponential think
time, as search_quality.py's latency part), sampled meanwhile by py-spy for the thread
holding the GIL.

Reuses the server folder search_quality.py's latency part leaves (``--work``, default
/tmp/shopformer-search/latency: Home Depot's 54,667 products in a SQLite store and the
trained re-ranker); run that first. Without ``py-spy`` on PATH the GIL profile is skipped.

    python benchmarks/search_profile.py [--work /tmp/shopformer-search] [--seconds 20]

Writes benchmarks/results/search_profile.{json,md}: sequential p50/p99, loaded p50/p99,
and the GIL-held milliseconds per request by stage (what one process's 2 search slots
cannot run side by side).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import wrk_driver  # noqa: E402
from _lib import homedepot  # noqa: E402
from _lib.search_latency import _ready  # noqa: E402
from results_file import save  # noqa: E402
from serve_server import API_KEY, free_port, server_command, stop  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402

#: the stages a GIL-held sample is charged to: the innermost of these on its stack
STAGES = (
    ("encode the query", "QueryEncoder.encode"),
    ("Tantivy", "TantivyIndex.search"),
    ("FAISS", "SemanticIndex.search"),
    ("re-ranker features", "candidate_features"),
    ("LightGBM", "Reranker.predict"),
    ("rest of the search", "Searcher.search"),
    ("route (rules, impressions, response)", "serve/routes/search.py"),
    ("HTTP and middleware (event loop)", "RequestResponseCycle.run_asgi"),
)


def gil_profile(raw: Path) -> dict[str, int]:
    """GIL-held samples by stage from py-spy's raw (collapsed stack) output."""
    out: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        stage = "other (event loop, thread pool)"
        for name, marker in STAGES:  # the first match in STAGES order is the innermost stage
            if any(marker in f for f in frames):
                stage = name
                break
        out[stage] += int(n)
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-search"))
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args()
    folder = args.work / "latency"
    if not (folder / "store.db").exists():
        raise SystemExit(f"no server folder at {folder}: run benchmarks/search_quality.py --part latency first")
    _, gains = homedepot.load(args.data_root)
    queries = sorted(gains)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SHOPFORMER_STORE_URL": f"sqlite:///{folder / 'store.db'}",
           "SHOPFORMER_SEARCH_DIR": str(folder / "search"), "SHOPFORMER_API_KEY": API_KEY, "SHOPFORMER_SYNC_S": "0"}
    record: dict = {"dataset": "homedepot", "model": "hybrid+rerank, 1 process", "clients": args.clients}
    with open(folder / "profile-server.log", "w") as log:
        proc = subprocess.Popen(server_command("cli", port), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        record["ready_s"] = round(_ready(base, proc, 900), 1)
        with httpx.Client(base_url=base, timeout=30) as client:  # one at a time: no queue, no second search
            for q in queries[:30]:
                client.get("/v1/search", params={"q": q})
            times = []
            for q in queries[1000:1300]:
                t = time.perf_counter()
                client.get("/v1/search", params={"q": q}).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
        record["sequential"] = {"requests": len(times), "p50_ms": round(float(np.percentile(times, 50)), 2),
                                "p99_ms": round(float(np.percentile(times, 99)), 2)}
        items = sorted({urllib.parse.quote(q, safe="") for q in gains})
        common = dict(clients=args.clients, k=10, key=API_KEY, event_type="view", timeout_s=30, think_dist="exp")
        wrk_driver.run(base, "search", ["u"], items, seconds=10, think=1000, tag="w", **common)
        spy, raw = None, Path(tempfile.mkdtemp()) / "gil.txt"
        if subprocess.run(["which", "py-spy"], capture_output=True).returncode == 0:
            spy = subprocess.Popen(["py-spy", "record", "-p", str(proc.pid), "-d", str(round(args.seconds)),
                                    "-r", "200", "-f", "raw", "-o", str(raw), "--threads", "--gil"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        loaded = wrk_driver.run(base, "search", ["u"], items, seconds=args.seconds, think=1000, tag="m", **common)
        record["loaded"] = {k: loaded[k] for k in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors")}
        if spy is not None and spy.wait() == 0 and raw.exists():
            samples = gil_profile(raw)
            answered = loaded["ok"]
            per = {k: round(v * 5.0 / answered, 2) for k, v in samples.items()}  # 200 Hz: a sample is 5 ms
            record["gil"] = {"samples": sum(samples.values()), "window_samples": round(args.seconds * 200),
                             "held_share": round(sum(samples.values()) / (args.seconds * 200), 3),
                             "ms_per_request": per, "ms_per_request_total": round(sum(per.values()), 2)}
    finally:
        stop(proc)
    meta = {"benchmark": "search_profile", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "load_1min": round(os.getloadavg()[0], 2)}
    save(args.results, "search_profile", meta, [record], markdown)
    print(markdown([record], meta))


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Search under load: where the time goes (`benchmarks/search_profile.py`)", "",
             f"{meta['date']} · {meta['machine']} · 1-minute load at the end {meta['load_1min']}", ""]
    for r in results:
        s, ld = r["sequential"], r["loaded"]
        lines += [f"## {r['model']}, Home Depot (server ready {r['ready_s']} s after start)", "",
                  "| requests | req/s | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|---:|",
                  f"| one at a time ({s['requests']}, httpx) | - | {s['p50_ms']} | - | {s['p99_ms']} |",
                  f"| {r['clients']} connections, 1 s exponential think time (wrk) | {ld['throughput_rps']} | "
                  f"{ld['p50_ms']} | {ld['p95_ms']} | {ld['p99_ms']} |", ""]
        g = r.get("gil")
        if g:
            lines += [f"The GIL was held {g['held_share']:.0%} of the loaded window ({g['samples']} of "
                      f"{g['window_samples']} py-spy samples at 200 Hz), {g['ms_per_request_total']} ms per answered "
                      "request; by stage (the innermost stage on the holding thread's stack):", "",
                      "| stage | GIL-held ms per request |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(g["ms_per_request"].items(), key=lambda kv: -kv[1])]
            lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
