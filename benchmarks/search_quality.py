"""Search quality, personalization and speed (issue 16).

    python benchmarks/search_quality.py --part homedepot [--folds 5] [--quantize-queries none|dynamic]
    python benchmarks/search_quality.py --part personal --dataset scientific|online-retail
    python benchmarks/search_quality.py --part latency | build
    python benchmarks/search_quality.py --part render   (the Markdown and plot from the JSON)

homedepot: full-catalog NDCG@10 on Home Depot's judged queries (gain = relevance - 1,
unjudged = 0) for plain engines (Tantivy and SQLite FTS5 with their defaults) and
shopformer's lexical, dense, hybrid and re-ranked search, fusion and re-rankers chosen and
trained by cross-validation by query (see _lib/homedepot.py); the regression re-ranker's
RMSE on judged pairs against predicting the mean.

Results merge into benchmarks/results/search_quality.{json,md} (one record per dataset
and method), with a bar chart per dataset (search_quality_<dataset>.png).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from _lib import homedepot, personal_search, search_build, search_latency  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.search.query_encoder import QUANTIZATIONS  # noqa: E402
from shopformer.search.semantic import SemanticConfig  # noqa: E402

#: results files of query encoders other than the served default
SIDE_NAMES = {"none": "float", "dynamic": "int8"}


def key(record: dict) -> tuple:
    return record["dataset"], record["method"]


def markdown(records: list[dict], meta: dict) -> str:
    lines = ["# Search quality", "", f"Machine: {json.dumps(meta['machine'])}; last run {meta['date']}.", ""]
    if meta.get("note"):
        lines += [meta["note"], ""]
    hd = [r for r in records if r["dataset"] == "homedepot" and "ndcg@10_by_fold" in r]
    if hd:
        plain = [r for r in hd if r["method"].startswith("bm25_")]
        best = max(plain, key=lambda r: r["ndcg@10"]) if plain else None
        base = best["ndcg@10"] if best else None
        lines += ["## Home Depot (full catalog, NDCG@10, gain = relevance - 1, unjudged = 0)", "",
                  f"{hd[0]['queries']} judged queries with a relevant product, {hd[0]['products']} products, "
                  f"{hd[0]['folds']}-fold cross-validation by query for everything learned.", "",
                  f"| method | NDCG@10 | vs the best plain BM25 ({best['method'] if best else '-'}) | per fold | what |",
                  "|---|---|---|---|---|"]
        for r in hd:
            rel = f"{(r['ndcg@10'] / base - 1) * 100:+.1f}%" if base else ""
            folds = " / ".join(f"{v:.3f}" for v in r["ndcg@10_by_fold"])
            lines.append(f"| {r['method']} | {r['ndcg@10']:.4f} | {rel} | {folds} | {r.get('what', '')} |")
        reg = next((r for r in hd if "rmse" in r), None)
        if reg:
            lines += ["", f"Regression re-ranker on {reg['judged_pairs']} judged pairs (each predicted by a model that "
                      f"never saw its query): RMSE **{reg['rmse']:.4f}** against {reg['rmse_mean_predictor']:.4f} "
                      "for predicting the training folds' mean relevance."]
        timed = [r for r in hd if "timing" in r]
        if timed:
            lines += ["", "| lexical engine | index build s | query p50 ms (top 10) |", "|---|---|---|"]
            lines += [f"| {r['method']} | {r['timing']['build_s']} | {r['timing']['query_p50_ms']} |" for r in timed]
    timed = [r for r in records if r["method"].startswith("latency_")]
    if timed:
        lines += ["", f"## Latency (the real server on loopback, wrk with {timed[0]['clients']} connections on the "
                  f"same 2 CPUs, {timed[0].get('seconds', '?')} s a phase after a warm-up; Home Depot's 54,667 products; "
                  "random queries from its 8,836)", "",
                  "| served | endpoint | think time ms | offered req/s | served req/s | p50 ms | p95 ms | p99 ms | errors |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in timed:
            think = f"{r['think_ms']} ({r.get('think_dist', 'fixed')})" if r["think_ms"] else "0"
            procs = r.get("workers", 1)
            lines.append(f"| {r['run'].get('strategy')}, {procs} process{'es' if procs > 1 else ''} "
                         f"(ready {r['run'].get('ready_s')} s after start, "
                         f"peak RSS {r['run'].get('peak_rss_mb')} MB) | {r['endpoint']} | {think} | "
                         f"{r['offered_rps'] or 'closed loop'} | "
                         f"{r['throughput_rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['errors']} |")
    upserts = {r["run"]["strategy"]: r["run"]["upsert_to_searchable_ms"] for r in timed
               if r["run"].get("upsert_to_searchable_ms")}
    for strategy, u in upserts.items():
        lines += ["", f"Catalog upsert -> searchable ({strategy}): {u['products']} new products PUT one at a time, each "
                  f"searched for as the PUT returned: found first {u['found_first']} of {u['products']}; PUT + search "
                  f"p50 {u['p50_ms']} ms, max {u['max_ms']} ms."]
    built = [r for r in records if r["method"] == "build"]
    if built:
        lines += ["", "## Index build (one process, two CPUs)", "",
                  "| catalog | products | lexical side s (documents, Tantivy, catalog, spelling) | text vectors | "
                  "vector index s (kind) | peak RSS MB |", "|---|---|---|---|---|---|"]
        for r in built:
            enc = (f"{r['encode_s']} s" if "encode_s" in r else
                   f"{r['encode_rate_per_s']}/s on a sample (1M: ~{r['encode_1m_estimate_h']} h, once, cached by text)")
            lines.append(f"| {r['dataset']} | {r['products']:,} | {r['lexical_build_s']} | {enc} | "
                         f"{r['vector_index_s']} ({r['vector_index_kind']}) | {r['peak_rss_mb']} |")
    personal = [r for r in records if r["method"] in ("search", "search+personal")]
    if personal:
        lines += ["", "## Personalized search (full catalog; leave-one-out: the query is built from the product "
                  "bought next, the history before it personalizes)", "",
                  "| dataset | query from | cases | method | MRR | NDCG@10 | change | weight (validation) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in personal:
            base = next(x for x in personal if x["dataset"] == r["dataset"] and x["method"] == "search")
            change = f"{(r['ndcg@10'] / base['ndcg@10'] - 1) * 100:+.1f}%" if r is not base and base["ndcg@10"] else ""
            lines.append(f"| {r['dataset']} | {r['query']} | {r['cases']} | {r['method']} | {r['mrr']:.4f} | "
                         f"{r['ndcg@10']:.4f} | {change} | {r['personal_weight']} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in records if r["dataset"] == dataset and "ndcg@10_by_fold" in r]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rs) + 1.8))
    bars = ax.barh([r["method"] for r in rs][::-1], [r["ndcg@10"] for r in rs][::-1], color="#4c78a8")
    ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=8)
    plain = [r["ndcg@10"] for r in rs if r["method"].startswith("bm25_")]
    base = max(plain) if plain else None
    if base:
        for mult, style in ((1.05, "--"), (1.15, ":")):
            ax.axvline(base * mult, color="#e45756", linestyle=style, label=f"best plain BM25 x {mult}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    ax.set_xlabel("NDCG@10 (full catalog)")
    ax.set_title(f"search quality: {dataset}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["homedepot", "personal", "latency", "build", "render"], required=True)
    ap.add_argument("--products", type=int, default=1_000_000, help="--part build: synthetic catalog size")
    ap.add_argument("--clients", type=int, default=50, help="--part latency: concurrent connections")
    ap.add_argument("--duration", type=float, default=20.0, help="--part latency: seconds measured per phase")
    ap.add_argument("--no-rerank", action="store_true", help="--part latency: serve without the re-ranker")
    ap.add_argument("--workers", type=int, default=1, help="--part latency: server processes")
    ap.add_argument("--dataset", choices=["scientific", "online-retail"], default="scientific",
                    help="--part personal: the dataset")
    ap.add_argument("--max-cases", type=int, default=None, help="--part personal: the first N cases (smoke runs)")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-search"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--depth", type=int, default=100, help="candidates from each engine, and re-ranked")
    ap.add_argument("--max-queries", type=int, default=None, help="a hashed subset (smoke runs)")
    ap.add_argument("--quantize-queries", choices=list(QUANTIZATIONS), default=SemanticConfig().quantize_queries,
                    help="--part homedepot: queries through this encoder (SemanticConfig.quantize_queries); other than "
                         "the served default, the results go to search_quality_<float|int8>_queries.{json,md}")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if args.part == "render":  # the Markdown and the plot again from the JSON
        saved = json.loads((args.results / "search_quality.json").read_text())
        (args.results / "search_quality.md").write_text(markdown(saved["results"], saved))
        plot(saved["results"], "homedepot", args.results / "search_quality_homedepot.png")
    elif args.part == "homedepot":
        records, run_meta = homedepot.run(args.data_root, args.work, args.folds, args.max_queries, args.depth,
                                          quantize_queries=args.quantize_queries)
        for r in records:
            r.update(date=meta["date"], machine=meta["machine"], run=run_meta, quantize_queries=args.quantize_queries)
        if args.quantize_queries != SemanticConfig().quantize_queries:  # beside the default's results, not over them
            stem = f"search_quality_{SIDE_NAMES.get(args.quantize_queries, args.quantize_queries)}_queries"
            meta["note"] = f"--part homedepot with SemanticConfig.quantize_queries={args.quantize_queries!r}"
            save(args.results, stem, meta, records, markdown, key)
            print((args.results / f"{stem}.md").read_text())
            return
        results = save(args.results, "search_quality", meta, records, markdown, key)
        plot(results, "homedepot", args.results / "search_quality_homedepot.png")
    elif args.part == "build":
        records, _ = search_build.run(args.data_root, args.work, args.products)
        for r in records:
            r.update(date=meta["date"], machine=meta["machine"])
        save(args.results, "search_quality", meta, records, markdown, key)
    elif args.part == "latency":
        records, run_meta = search_latency.run(args.data_root, args.work, args.clients, args.duration,
                                               rerank=not args.no_rerank, workers=args.workers)
        for r in records:
            r.update(date=meta["date"], machine=meta["machine"], run=run_meta)
        save(args.results, "search_quality", meta, records, markdown, key)
    elif args.part == "personal":
        records = personal_search.run(args.dataset, args.data_root, args.work, args.max_cases)
        for r in records:
            r.update(date=meta["date"], machine=meta["machine"])
        save(args.results, "search_quality", meta, records, markdown, key)
    print((args.results / "search_quality.md").read_text())


if __name__ == "__main__":
    main()
