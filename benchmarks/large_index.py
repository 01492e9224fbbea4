"""A vector index over a very large catalog (issue 22: 10M products with IVF-PQ, recall@10
against exact >= 0.9, RSS < 8 GB).

The item table is synthetic: ``--items`` vectors of ``--dim`` dimensions drawn around
``--clusters`` random centres (learned item tables are clustered, not uniform noise),
float32, built in chunks. The index is :class:`shopformer.retrieve.FaissIndex` of
``--kind`` (default ivfpq: product-quantized codes, ``refine`` x k candidates re-ranked
exactly), as ``shopformer index`` builds it. Measured: build seconds, peak RSS of the
process (table + index), recall@10 of ``--queries`` user-like queries (a centre plus
noise) against exact search over the whole table, and single-query latency (p50/p99,
one thread, as a serving process searches).

    python benchmarks/large_index.py --items 10000000 [--kind ivfpq --nprobe 16]

Writes benchmarks/results/large_index.{json,md} (one record per kind and size).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results_file import save  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.retrieve.faiss_index import FaissIndex, FaissIndexConfig  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_table(n: int, dim: int, clusters: int, seed: int, chunk: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """(n + 1, dim) float32 table (row 0 padding) around ``clusters`` centres, and the centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    table = np.zeros((n + 1, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        rows = table[1 + start:1 + start + m]
        rows[:] = centres[rng.integers(0, clusters, m)]
        rows += 0.3 * rng.standard_normal((m, dim), dtype=np.float32)
    return table, centres


def exact_top10(table: np.ndarray, queries: np.ndarray, chunk: int = 1_000_000) -> np.ndarray:
    """Exact top 10 item indexes per query, scanning the table in chunks."""
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    for start in range(1, len(table), chunk):
        block = table[start:start + chunk]
        scores = queries @ block.T  # (Q, chunk)
        part = np.argpartition(-scores, 9, axis=1)[:, :10]
        s = np.take_along_axis(scores, part, axis=1)
        all_s, all_i = np.hstack([best_s, s]), np.hstack([best_i, part + start])
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :10]
        best_s, best_i = np.take_along_axis(all_s, order, axis=1), np.take_along_axis(all_i, order, axis=1)
    return best_i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=10_000)
    ap.add_argument("--kind", default="ivfpq", choices=("flat", "hnsw", "ivf", "ivfpq"))
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--refine", type=int, default=8)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    import faiss

    t0 = time.perf_counter()
    table, centres = synthetic_table(args.items, args.dim, args.clusters, args.seed)
    make_s = time.perf_counter() - t0
    rss_table = peak_rss_mb()
    print(f"table {table.shape} in {make_s:.0f} s, RSS {rss_table:,.0f} MB")
    t0 = time.perf_counter()
    index = FaissIndex(FaissIndexConfig(kind=args.kind, nprobe=args.nprobe, refine=args.refine)).build(table, copy=False)
    build_s = time.perf_counter() - t0
    rss_index = peak_rss_mb()
    print(f"{index.kind} index built in {build_s:.0f} s, peak RSS {rss_index:,.0f} MB")

    rng = np.random.default_rng(args.seed + 1)
    queries = (centres[rng.integers(0, args.clusters, args.queries)]
               + 0.3 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)).astype(np.float32)
    t0 = time.perf_counter()
    truth = exact_top10(table, queries)
    exact_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)  # a serving process searches one query per thread
    found, latencies = [], []
    for q in queries:
        t1 = time.perf_counter()
        idx, _ = index.search(q[None], 10)
        latencies.append((time.perf_counter() - t1) * 1e3)
        found.append(idx[0])
    recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(found, truth)]))
    lat = np.asarray(latencies)
    record = {
        "dataset": f"synthetic-{args.items}-d{args.dim}", "model": args.kind, "items": args.items, "dim": args.dim,
        "clusters": args.clusters, "nprobe": args.nprobe, "refine": args.refine, "built_kind": index.kind,
        "table_seconds": round(make_s, 1), "build_seconds": round(build_s, 1),
        "peak_rss_mb": round(rss_index, 0), "rss_after_table_mb": round(rss_table, 0),
        "recall_at_10": round(recall, 4), "queries": args.queries,
        "query_ms": {"p50": round(float(np.median(lat)), 2), "p99": round(float(np.percentile(lat, 99)), 2)},
        "exact_scan_seconds_per_query": round(exact_s / args.queries, 3),
        "targets": {"recall_at_10": 0.9, "peak_rss_mb": 8192},
    }
    record["targets_met"] = recall >= 0.9 and rss_index < 8192
    meta = {"benchmark": "large_index", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine()}
    save(args.out, "large_index", meta, [record], markdown)
    print(markdown([record], meta))


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Vector index over a very large synthetic catalog", "", f"{meta['date']} · {meta['machine']}", "",
             "Clustered synthetic item vectors (float32); recall@10 of user-like queries against an exact scan of "
             "the whole table; single-query latency on one thread. Targets (10M items, IVF-PQ): recall@10 >= 0.9, "
             "RSS < 8 GB.", "",
             "| items | dim | kind | nprobe / refine | build (s) | peak RSS | recall@10 | query p50 / p99 | targets |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['items']:,} | {r['dim']} | {r['built_kind']} | {r['nprobe']} / {r['refine']} | "
                     f"{r['build_seconds']:.0f} | {r['peak_rss_mb'] / 1024:.2f} GB | {r['recall_at_10']:.4f} | "
                     f"{r['query_ms']['p50']} / {r['query_ms']['p99']} ms | {'met' if r['targets_met'] else 'NOT met'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
