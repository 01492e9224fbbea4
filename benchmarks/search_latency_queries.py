"""Search latency and server CPU per answer with each query encoder: the served hybrid +
re-ranker search (search_quality.py's latency part: Home Depot's 54,667 products, wrk with
50 keep-alive connections, 1 s exponential think time, one server process) with queries
through the float ONNX export and through each quantized copy
(``SemanticConfig.quantize_queries``, written to the server's ``search_config.json``),
alternating over ``--rounds`` rounds so that the variants share the machine's moods alike.

Besides p50/p99 it records the server's CPU per answer (its processes' user + system time
over the measured phase, divided by the requests): a p99 at 50 requests a second on this
machine moves by 10 ms from one run to the next, the CPU a search costs far less.

    python benchmarks/search_latency_queries.py [--variants none,blockwise] [--rounds 3]

Writes benchmarks/results/search_latency_queries.{json,md}. Needs the text-vector cache and
trained re-ranker search_quality.py leaves under --work (built here when missing).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _lib import search_latency  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402

FIELDS = ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors", "server_cpu_ms_per_request")


def key(record: dict) -> tuple:
    return record["date"], record["round"], record["quantize_queries"]


def markdown(records: list[dict], meta: dict) -> str:
    lines = ["# Search latency with each query encoder (`benchmarks/search_latency_queries.py`)", "",
             "Hybrid + re-ranker on Home Depot's 54,667 products, one server process, wrk with 50 connections on the "
             "same 2 CPUs, 1 s exponential think time; the query encoders alternate by round. CPU ms / answer: the "
             "server's processes' CPU over the measured phase divided by its requests.", ""]
    for date in sorted({r["date"] for r in records}):
        rs = sorted((r for r in records if r["date"] == date), key=key)
        m = rs[0]["meta"]
        lines += [f"## Run of {date}", "", f"{m['machine']} · {m['seconds']} s measured after {m['warmup']} s of "
                  f"warm-up · 1-minute load before {m['load_before']}, after {m.get('load_after')}", "",
                  "| round | queries | served req/s | p50 ms | p95 ms | p99 ms | errors | CPU ms / answer |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rs:
            lines.append(f"| {r['round']} | {r['quantize_queries']} | {r['throughput_rps']} | {r['p50_ms']} | "
                         f"{r['p95_ms']} | {r['p99_ms']} | {r['errors']} | {r['server_cpu_ms_per_request']} |")
        lines += ["", "| queries | mean p50 ms | mean p99 ms | mean CPU ms / answer | rounds |", "|---|---|---|---|---|"]
        for v in dict.fromkeys(r["quantize_queries"] for r in rs):
            vs = [r for r in rs if r["quantize_queries"] == v]
            lines.append(f"| {v} | {np.mean([r['p50_ms'] for r in vs]):.2f} | {np.mean([r['p99_ms'] for r in vs]):.2f} | "
                         f"{np.mean([r['server_cpu_ms_per_request'] for r in vs]):.2f} | {len(vs)} |")
        lines += ["", *m.get("notes", []), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="none,blockwise", help="SemanticConfig.quantize_queries values, comma separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-search"))
    ap.add_argument("--note", action="append", default=[], help="a line for the results file (repeatable)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta = {"machine": machine(), "seconds": args.seconds, "warmup": args.warmup,
            "load_before": round(os.getloadavg()[0], 2), "notes": args.note}
    records = []
    for n in range(args.rounds):
        for v in variants if n % 2 == 0 else variants[::-1]:
            rows, run = search_latency.run(args.data_root, args.work, duration=args.seconds, warmup=args.warmup,
                                           phases=(("search", 1000, "exp"),),
                                           search_config={"semantic": {"quantize_queries": v}})
            r = rows[0]
            records.append({"date": date, "round": n, "quantize_queries": v, "ready_s": run["ready_s"], "meta": meta,
                            **{k: r[k] for k in FIELDS}})
            print(f"round {n} {v}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                  f"CPU {r['server_cpu_ms_per_request']} ms / answer", flush=True)
    meta["load_after"] = round(os.getloadavg()[0], 2)
    save(HERE / "results", "search_latency_queries", {"machine": machine(), "last_run": date}, records, markdown, key)
    print((HERE / "results" / "search_latency_queries.md").read_text())


if __name__ == "__main__":
    main()
