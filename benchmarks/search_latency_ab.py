"""Search latency, old code against new, in the same time window.

This machine's speed drifts through the day (the same code's p99 moves by half), so a
change is judged by running the server of an earlier commit and of the working tree
alternately, the same load each time: benchmarks/_lib/search_latency.py's hybrid +
re-ranker server on Home Depot, one phase of 50 connections with exponential think
times (mean 1 s), ``--rounds`` times each. The earlier commit is checked out in a git
worktree and put first on the server's PYTHONPATH; installed packages are this
environment's for both.

    python benchmarks/search_latency_ab.py --before 7550fe1 [--rounds 2] [--seconds 30]

Writes results/search_latency_ab.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _lib import search_latency  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402


def markdown(records: list[dict], meta: dict) -> str:
    lines = ["# Search latency: earlier code against the working tree, alternating", "",
             f"Machine: {meta['machine']}; {meta['date']}. Hybrid + re-ranker on Home Depot's 54,667 products, "
             "one process, wrk with 50 connections on the same 2 CPUs, exponential think time (mean 1 s), "
             f"{records[0]['seconds']} s measured a round after a {records[0]['warmup_s']} s warm-up.", "",
             "| round | code | p50 ms | p95 ms | p99 ms | served req/s |", "|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['round']} | {r['code']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['rps']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the earlier commit")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-search"))
    args = ap.parse_args()
    tree = args.work / f"worktree-{args.before}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree), args.before], check=True)
    meta = {"machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "before": args.before}
    head = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    records = []
    try:
        for rnd in range(args.rounds):
            for code in (f"before ({args.before})", f"after (working tree at {head})"):
                if code.startswith("before"):
                    os.environ["PYTHONPATH"] = str(tree / "src")
                else:
                    os.environ.pop("PYTHONPATH", None)
                recs, run = search_latency.run(args.data_root, args.work, 50, args.seconds, warmup=args.warmup,
                                               phases=(("search", 1000, "exp"),), rerank=True)
                r = recs[0]
                records.append({"dataset": "homedepot", "model": f"{code} round {rnd}", "code": code, "round": rnd,
                                "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"], "p99_ms": r["p99_ms"],
                                "rps": r["throughput_rps"], "seconds": args.seconds, "warmup_s": args.warmup,
                                "ready_s": run["ready_s"], "date": meta["date"]})
                print(records[-1], flush=True)
    finally:
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(tree)], check=False)
    save(HERE / "results", "search_latency_ab", meta, records, markdown, key=lambda r: (r["round"], r["code"][:5]))
    print((HERE / "results" / "search_latency_ab.md").read_text())


if __name__ == "__main__":
    main()
