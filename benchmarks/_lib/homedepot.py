"""Search quality on Home Depot's judged queries (../shared/data/homedepot-search).

Full-catalog NDCG@10 over all 54,667 products, gain = relevance - 1, unjudged = 0.
Everything learned (the fusion, the re-rankers) is chosen and trained by cross-validation
by query: queries fall into ``folds`` folds by a hash of their text; each fold is scored
by settings chosen and models trained on the other folds only (and the re-rankers stop
early on a tenth of those, split by another hash). No feature comes from which products
were judged: retrieval is the engines', the features are query-product text features.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from shopformer.evaluate.metrics import graded_ndcg
from shopformer.features.text import TextEncoderConfig
from shopformer.search import FusionConfig, SearchConfig, Searcher
from shopformer.search.fusion import choose_fusion, fused_scores, order
from shopformer.search.rerank import Reranker, RerankerConfig, TrainingSet, examples

from .lexical_baselines import sqlite_fts5, tantivy_default, tantivy_english

K = 10


def bar() -> Progress:
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn())


def load(root: Path) -> tuple[pl.DataFrame, dict[str, dict[str, float]]]:
    folder = root / "homedepot-search"
    products = pl.read_csv(folder / "products.csv.gz", schema_overrides={"product_uid": pl.String})
    products = products.rename({"product_uid": "item_id", "product_title": "title"})
    judged = pl.read_csv(folder / "judgments.csv.gz", schema_overrides={"product_uid": pl.String})
    gains: dict[str, dict[str, float]] = {}
    for q, p, r in judged.select("search_term", "product_uid", "relevance").iter_rows():
        gains.setdefault(q, {})[p] = float(r) - 1.0
    return products, gains


def fold_of(query: str, folds: int, salt: str = "") -> int:
    return int(hashlib.sha256((salt + query).encode("utf-8")).hexdigest(), 16) % folds


def ndcg(rankings: dict[str, list[str]], gains: dict[str, dict[str, float]], queries: list[str]) -> np.ndarray:
    """Per-query NDCG@10 of ``rankings`` (item ids, best first)."""
    g = np.zeros((len(queries), K))
    width = max(len(gains[q]) for q in queries)
    ideal = np.zeros((len(queries), width))
    for i, q in enumerate(queries):
        ranked = rankings.get(q, [])[:K]
        g[i, : len(ranked)] = [gains[q].get(x, 0.0) for x in ranked]
        ideal[i, : len(gains[q])] = list(gains[q].values())
    return graded_ndcg(g, ideal, K)


def _postgres(products: pl.DataFrame, queries: list[str], url: str, depth: int):
    """Lexical rankings from the PostgreSQL backend, or (None, reason) without a server."""
    from shopformer.search.postgres_index import PostgresLexicalIndex

    try:
        lexical = PostgresLexicalIndex(url=url, name="bench_homedepot")
    except Exception as exc:  # noqa: BLE001 - no server: the row is left out
        print(f"PostgreSQL lexical row skipped: {type(exc).__name__}: {exc}")
        return None, None
    t0 = time.perf_counter()
    searcher = Searcher.build(products, SearchConfig(use_semantic=False), lexical=lexical)
    build = time.perf_counter() - t0
    out, times = {}, []
    with bar() as progress:
        task = progress.add_task("PostgreSQL full text", total=len(queries))
        for q in queries:
            t = time.perf_counter()
            rows, _ = searcher.lexical.search(searcher.plan(q).lexical(searcher.config.synonym_weight), K)
            times.append(time.perf_counter() - t)
            out[q] = [searcher.catalog.ids[r] for r in rows.tolist()]
            progress.advance(task)
    lexical.drop()
    searcher.close()
    return out, {"build_s": round(build, 2), "query_p50_ms": round(float(np.median(times)) * 1000, 3),
                 "query_p99_ms": round(float(np.percentile(times, 99)) * 1000, 3)}


def _subset(parts: dict[str, tuple[np.ndarray, np.ndarray]], queries: list[str]) -> TrainingSet:
    qs = [q for q in queries if q in parts and len(parts[q][1])]
    if not qs:
        return TrainingSet(np.zeros((0, 1), np.float32), np.zeros(0), [], [])
    return TrainingSet(np.concatenate([parts[q][0] for q in qs]), np.concatenate([parts[q][1] for q in qs]),
                       [len(parts[q][1]) for q in qs], qs)


def run(root: Path, work: Path, folds: int = 5, max_queries: int | None = None, depth: int = 100,
        postgres_url: str | None = "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        quantize_queries: str = "none") -> tuple[list[dict], dict]:
    """``quantize_queries``: SemanticConfig's option, queries encoded as it serves them."""
    products, gains = load(root)
    queries = sorted(q for q, g in gains.items() if max(g.values()) > 0)
    if max_queries:
        queries = sorted(queries, key=lambda q: hashlib.sha256(q.encode()).hexdigest())[:max_queries]
    fold = {q: fold_of(q, folds) for q in queries}
    ids, titles = products["item_id"].to_list(), products["title"].to_list()
    records: list[dict] = []
    common = {"dataset": "homedepot", "queries": len(queries), "products": products.height, "folds": folds}

    def record(method: str, per_query: np.ndarray, **extra) -> None:
        by_fold = [float(np.nanmean(per_query[[fold[q] == f for q in queries]])) for f in range(folds)]
        records.append({**common, "method": method, "ndcg@10": float(np.nanmean(per_query)),
                        "ndcg@10_by_fold": by_fold, **extra})

    # -- plain engines, their defaults ---------------------------------------------------
    found, timing = tantivy_default(ids, titles, queries, K)
    record("bm25_tantivy_default", ndcg(found, gains, queries), timing=timing,
           what="Tantivy, default tokenizer, BM25 over titles, the query's words OR-ed")
    found, timing = tantivy_english(ids, titles, queries, K)
    record("bm25_tantivy_en_stem", ndcg(found, gains, queries), timing=timing,
           what="Tantivy, English stemming tokenizer (en_stem), BM25 over titles, the query's words OR-ed")
    found, timing = sqlite_fts5(ids, titles, queries, K)
    record("bm25_sqlite_fts5", ndcg(found, gains, queries), timing=timing,
           what="SQLite FTS5, porter stemmer, bm25() over titles, the query's words OR-ed")

    # -- shopformer's searcher -----------------------------------------------------------------
    config = SearchConfig(
        semantic=replace(SearchConfig().semantic, encoder=TextEncoderConfig(cache_dir=work / "text-cache"),
                         query_cache=1_000_000, quantize_queries=quantize_queries),
        fusion=FusionConfig(depth=depth), rerank_depth=depth)
    t0 = time.perf_counter()
    from shopformer.search.semantic import SemanticIndex

    vectors = SemanticIndex(config.semantic).encode_products(
        [t or "" for t in titles], progress=True)  # product_text of a title-only catalog is the title
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    searcher = Searcher.build(products, config, vectors=vectors)
    t_build = time.perf_counter() - t0
    plans = {q: searcher.plan(q) for q in queries}
    searcher.semantic.query_vectors([plans[q].semantic_text for q in queries], progress=True)
    cands, judged = {}, {}
    with bar() as progress:
        task = progress.add_task("candidates (both engines)", total=len(queries))
        for q in queries:
            cands[q] = searcher.candidates(plans[q])
            rows = searcher.catalog.rows(list(gains[q]))
            judged[q] = searcher.candidates(plans[q], extra_rows=rows[rows > 0])
            progress.advance(task)
    n_corrected = sum(bool(plans[q].corrections) for q in queries)

    def ranked(rows_of) -> dict[str, list[str]]:
        return {q: [searcher.catalog.ids[r] for r in rows_of(cands[q]).tolist()] for q in queries}

    lex = ranked(lambda c: c.rows[c.lexical_rank > 0][np.argsort(c.lexical_rank[c.lexical_rank > 0])])
    record("lexical", ndcg(lex, gains, queries), corrected_queries=n_corrected,
           what="shopformer lexical: Tantivy, field-weighted BM25, unit/number normalization, spelling correction")
    dense = ranked(lambda c: c.rows[c.semantic_rank > 0][np.argsort(c.semantic_rank[c.semantic_rank > 0])])
    record("dense", ndcg(dense, gains, queries),
           what=f"all-MiniLM-L6-v2 cosine (FAISS {searcher.semantic.index.kind}), the query as typed, corrected")
    if postgres_url:
        found, timing = _postgres(products, queries, postgres_url, depth)
        if found is not None:
            record("lexical_postgres", ndcg(found, gains, queries), timing=timing,
                   what="the same lexical search on PostgreSQL full-text search (ts_rank, weight classes)")

    # -- cross-validated fusion and re-rankers ---------------------------------------------------
    hybrid, reranked, regressed = {}, {}, {}
    fusion_chosen, iterations = [], []
    sq_err, sq_err_mean, n_pairs = 0.0, 0.0, 0

    for f in range(folds):
        train = [q for q in queries if fold[q] != f]
        test = [q for q in queries if fold[q] == f]
        best, table = choose_fusion(
            [cands[q] for q in train],
            lambda i, rows: float(np.nan_to_num(
                ndcg({train[i]: [searcher.catalog.ids[r] for r in rows[:K].tolist()]}, gains, [train[i]])[0])))
        best = replace(best, depth=depth)
        fusion_chosen.append({"fold": f, **asdict(best), "validation_grid": [(asdict(c)["kind"], c.alpha, c.rrf_k, round(v, 4)) for c, v in table]})
        searcher.config = replace(searcher.config, fusion=best)
        for q in test:
            c = cands[q]
            hybrid[q] = [searcher.catalog.ids[r] for r in c.rows[order(fused_scores(c, best), c.rows)][:depth].tolist()]
        # re-rankers, trained on this fold's training queries only
        inner_valid = {q for q in train if fold_of(q, 10, "inner") == 0}
        rank_parts, reg_parts = {}, {}
        with bar() as progress:
            task = progress.add_task(f"fold {f}: features", total=len(queries))
            for q in queries:
                if plans[q].has_terms:
                    rank_parts[q] = examples(searcher, plans[q], cands[q], gains[q], "lambdarank")
                    reg_parts[q] = examples(searcher, plans[q], judged[q], gains[q], "regression")
                progress.advance(task)
        fit_q = [q for q in train if q not in inner_valid]
        val_q = [q for q in train if q in inner_valid]
        ranker = Reranker(RerankerConfig("lambdarank")).fit(_subset(rank_parts, fit_q), _subset(rank_parts, val_q))
        regressor = Reranker(RerankerConfig("regression")).fit(_subset(reg_parts, fit_q), _subset(reg_parts, val_q))
        iterations.append({"fold": f, "lambdarank": ranker.booster.best_iteration,
                           "regression": regressor.booster.best_iteration})
        train_mean = float(_subset(reg_parts, train).y.mean()) + 1.0
        for q in test:
            c = cands[q]
            head = order(fused_scores(c, best), c.rows)[:depth]
            if q in rank_parts:
                for model, out in ((ranker, reranked), (regressor, regressed)):
                    s = model.predict(rank_parts[q][0])
                    out[q] = [searcher.catalog.ids[r] for r in c.rows[head][np.lexsort((c.rows[head], -s))].tolist()]
                X, y = reg_parts[q]
                if len(y):
                    pred = regressor.predict(X) + 1.0
                    sq_err += float(((pred - (y + 1.0)) ** 2).sum())
                    sq_err_mean += float(((train_mean - (y + 1.0)) ** 2).sum())
                    n_pairs += len(y)
            else:
                reranked[q] = regressed[q] = hybrid[q]
    record("hybrid", ndcg(hybrid, gains, queries), fusion_by_fold=fusion_chosen,
           what="convex or RRF fusion of the two, chosen on the other folds")
    record("hybrid+rerank", ndcg(reranked, gains, queries), iterations_by_fold=iterations,
           what=f"LightGBM lambdarank over the fused top {depth}, trained on the other folds' judged queries "
                "(unjudged candidates gain 0)")
    record("hybrid+rerank_regression", ndcg(regressed, gains, queries),
           rmse=float(np.sqrt(sq_err / max(n_pairs, 1))), rmse_mean_predictor=float(np.sqrt(sq_err_mean / max(n_pairs, 1))),
           judged_pairs=n_pairs,
           what="LightGBM regression of the relevance grade, trained on the other folds' judged pairs only")
    meta = {"vectors_s": round(t_vec, 1), "index_build_s": round(t_build, 2), "corrected_queries": n_corrected,
            "search_config": config.to_dict()}
    searcher.close()
    return records, meta
