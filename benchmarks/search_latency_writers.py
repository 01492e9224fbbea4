"""Search p99 at 50 clients with each impression writer: the served hybrid + re-ranker
search (search_quality.py's latency part: Home Depot's 54,667 products, wrk with 50
keep-alive connections, 1 s exponential think time) once with impressions written by a
thread of the server (``SHOPFORMER_IMPRESSIONS_WRITER=thread``) and once by a child
process (``=process``), alternating over ``--rounds`` rounds, so that the two share the
machine's moods alike. Every search answer logs an impression, so the writer is on the
search path as it is on recommendations' (issue 19 measured the latter).

    python benchmarks/search_latency_writers.py [--rounds 2] [--seconds 30]

Writes benchmarks/results/search_latency_writers.{json,md}. Needs the text-vector cache
and trained re-ranker search_quality.py leaves under --work (built here when missing).
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

WRITERS = ("thread", "process")


def key(record: dict) -> tuple:
    return record["round"], record["writer"]


def markdown(records: list[dict], meta: dict) -> str:
    lines = ["# Search latency with each impression writer (`benchmarks/search_latency_writers.py`)", "",
             f"{meta['date']} · {meta['machine']} · 1-minute load before {meta['load_before']}, after "
             f"{meta['load_after']}", "",
             "Hybrid + re-ranker on Home Depot's 54,667 products, one server process, wrk with 50 connections on the same "
             f"2 CPUs, 1 s exponential think time, {meta['seconds']} s measured after {meta['warmup']} s of warm-up; the "
             "writers alternate by round. Every answer logs an impression.", "",
             "| round | writer | served req/s | p50 ms | p95 ms | p99 ms | errors |", "|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=key):
        lines.append(f"| {r['round']} | {r['writer']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['p99_ms']} | {r['errors']} |")
    lines += ["", "| writer | mean p50 ms | mean p99 ms | rounds |", "|---|---|---|---|"]
    for w in WRITERS:
        rs = [r for r in records if r["writer"] == w]
        if rs:
            lines.append(f"| {w} | {np.mean([r['p50_ms'] for r in rs]):.2f} | {np.mean([r['p99_ms'] for r in rs]):.2f} | "
                         f"{len(rs)} |")
    return "\n".join(lines + ["", *meta.get("notes", [])]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-search"))
    ap.add_argument("--note", action="append", default=[], help="a line for the results file (repeatable)")
    args = ap.parse_args()
    meta = {"machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": args.seconds, "warmup": args.warmup, "load_before": round(os.getloadavg()[0], 2),
            "notes": args.note}
    records = []
    for n in range(args.rounds):
        for writer in WRITERS if n % 2 == 0 else WRITERS[::-1]:
            os.environ["SHOPFORMER_IMPRESSIONS_WRITER"] = writer  # the server inherits it
            rows, run = search_latency.run(args.data_root, args.work, duration=args.seconds, warmup=args.warmup,
                                           phases=(("search", 1000, "exp"),))
            r = rows[0]
            records.append({"round": n, "writer": writer, "ready_s": run["ready_s"],
                            **{k: r[k] for k in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors")}})
            print(f"round {n} {writer}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms", flush=True)
    meta["load_after"] = round(os.getloadavg()[0], 2)
    save(HERE / "results", "search_latency_writers", meta, records, markdown, key)
    print((HERE / "results" / "search_latency_writers.md").read_text())


if __name__ == "__main__":
    main()
