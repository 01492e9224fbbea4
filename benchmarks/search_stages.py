"""Where one hybrid + re-ranker search spends its CPU, stage by stage, in process.

Builds (once, kept under ``--work``) the Home Depot searcher the latency benchmark serves:
Tantivy + MiniLM vectors + a LightGBM re-ranker trained on every judged query, then times
each stage of a search for ``--queries`` random Home Depot queries (after 30 to warm up)
with ``time.process_time`` and prints CPU ms per query. A search's p99 under load follows
from these costs (one process's GIL, 2 CPUs); results/search_latency_day2.md quotes a run.

    python benchmarks/search_stages.py [--queries 270] [--work /tmp/shopformer-search]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _lib import homedepot  # noqa: E402

from shopformer.features.text import TextEncoderConfig  # noqa: E402
from shopformer.search import SearchConfig, Searcher  # noqa: E402
from shopformer.search.features import candidate_features, warm_titles  # noqa: E402
from shopformer.search.fusion import fused_scores, order  # noqa: E402
from shopformer.search.offline import train_reranker  # noqa: E402


def searcher(products, gains, work: Path) -> Searcher:
    folder = work / "stages-searcher"
    if (folder / "search.json").is_file():
        return Searcher.load(folder)
    encoder = TextEncoderConfig(cache_dir=work / "text-cache")  # the latency benchmark's cache
    config = SearchConfig(semantic=replace(SearchConfig().semantic, encoder=encoder, query_cache=100_000))
    s = Searcher.build(products, config, progress=True)
    s.reranker = train_reranker(s, gains)
    s.save(folder)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=270)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-search"))
    args = ap.parse_args()
    products, gains = homedepot.load(args.data_root)
    s = searcher(products, gains, args.work)
    warm_titles(s.catalog.norm_titles)
    queries = sorted(gains)
    random.Random(args.seed).shuffle(queries)
    for q in queries[:30]:
        s.search(q, record=False)
    totals: dict[str, float] = {}

    def tick(name: str, c0: float) -> float:
        now = time.process_time()
        totals[name] = totals.get(name, 0.0) + now - c0
        return now

    measured = queries[30: 30 + args.queries]
    for q in measured:
        c = time.process_time()
        plan = s.plan(q)
        c = tick("plan", c)
        if not plan.has_terms:
            continue
        s.semantic.query_vector(plan.semantic_text)  # a first-time query: encoded here
        c = tick("encode the query", c)
        s.lexical.search(plan.lexical(s.config.synonym_weight), s.config.lexical_lookup_depth, None)
        c = tick("Tantivy, lexical_lookup_depth deep", c)
        s.semantic.search(s.semantic.query_vector(plan.semantic_text), s.config.fusion.depth, None)
        c = tick("FAISS top fusion.depth (query vector cached)", c)
        cand = s.candidates(plan)
        c = tick("candidates: both engines and the union (query vector cached)", c)
        fused = fused_scores(cand, s.fusion)
        head = order(fused, cand.rows)[: s.config.rerank_depth]
        c = tick("fusion", c)
        X = candidate_features(plan, s, cand, head, fused)
        c = tick("re-ranker features", c)
        s.reranker.predict(X)
        c = tick("LightGBM predict", c)
        s.catalog.facets(cand.rows[head])
        c = tick("facets", c)
        s.search(q, record=False)
        tick("whole search (query vector cached)", c)
    per_query = {k: round(v / len(measured) * 1000, 2) for k, v in totals.items()}
    for k, v in per_query.items():
        print(f"{k:62s} {v:7.2f} ms CPU")
    print(json.dumps({"queries": len(measured), "trees": s.reranker.booster.num_trees() if s.reranker else None,
                      "cpu_ms": per_query}))


if __name__ == "__main__":
    main()
