"""Plain lexical engines, the baselines search is measured against: Tantivy's BM25 over
the raw title with its default tokenizer and with its English stemming one (``en_stem``),
and SQLite's FTS5 with its built-in bm25() (porter stemmer), each given the query's words
as an OR of terms (what a shop gets by putting the titles into the engine and passing
the words through)."""

from __future__ import annotations

import re
import sqlite3
import time

import numpy as np


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _answer_all(queries: list[str], answer) -> tuple[dict[str, list[str]], float]:  # noqa: ANN001
    """``answer(terms)`` for every query's distinct words; the median time per query."""
    out, times = {}, []
    for q in queries:
        t = time.perf_counter()
        terms = list(dict.fromkeys(_words(q)))
        out[q] = answer(terms) if terms else []
        times.append(time.perf_counter() - t)
    return out, float(np.median(times)) * 1000


def tantivy_english(ids: list[str], titles: list[str], queries: list[str], k: int) -> tuple[dict[str, list[str]], dict]:
    """The same with Tantivy's built-in English stemming tokenizer (``en_stem``)."""
    return tantivy_default(ids, titles, queries, k, tokenizer="en_stem")


def tantivy_default(ids: list[str], titles: list[str], queries: list[str], k: int,
                    tokenizer: str = "default") -> tuple[dict[str, list[str]], dict]:
    """Top-k ids per query and timings from Tantivy with its default tokenizer."""
    import tantivy

    t0 = time.perf_counter()
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("row", stored=True, fast=True)
    sb.add_text_field("title", tokenizer_name=tokenizer)
    schema = sb.build()
    index = tantivy.Index(schema)
    w = index.writer(heap_size=128_000_000, num_threads=1)
    for i, t in enumerate(titles):
        w.add_document(tantivy.Document(row=i, title=t or ""))
    w.commit()
    index.reload()
    build = time.perf_counter() - t0
    searcher = index.searcher()
    if tokenizer == "en_stem":  # the query's words through the same analyzer as the titles
        english = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.remove_long(40))
                   .filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.stemmer("english")).build())
        stems = english.analyze
    else:
        stems = lambda word: [word]  # noqa: E731 - the default tokenizer only lowercases

    def answer(terms: list[str]) -> list[str]:
        terms = list(dict.fromkeys(x for t in terms for x in stems(t)))
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "title", x)) for x in terms])
        hits = searcher.search(query, k, count=False).hits
        return [ids[r] for r in searcher.fast_field_values("row", [a for _, a in hits])] if hits else []

    out, p50 = _answer_all(queries, answer)
    return out, {"build_s": round(build, 2), "query_p50_ms": round(p50, 3)}


def sqlite_fts5(ids: list[str], titles: list[str], queries: list[str], k: int) -> tuple[dict[str, list[str]], dict]:
    """Top-k ids per query and timings from SQLite FTS5 (porter stemmer, bm25())."""
    t0 = time.perf_counter()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(title, tokenize='porter unicode61')")
    db.executemany("INSERT INTO docs(rowid, title) VALUES (?, ?)", [(i, t or "") for i, t in enumerate(titles)])
    db.commit()
    build = time.perf_counter() - t0

    def answer(terms: list[str]) -> list[str]:
        match = " OR ".join(f'"{x}"' for x in terms)
        rows = db.execute("SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?", (match, k)).fetchall()
        return [ids[r] for (r,) in rows]

    out, p50 = _answer_all(queries, answer)
    db.close()
    return out, {"build_s": round(build, 2), "query_p50_ms": round(p50, 3)}
