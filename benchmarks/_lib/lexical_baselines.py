"""Plain lexical engines with their defaults, the baselines search is measured against:
Tantivy's default analyzer and BM25 over the raw title, and SQLite's FTS5 with its
built-in bm25() (porter stemmer), each given the query's words as an OR of terms (what a
shop gets by putting the titles into the engine and passing the words through)."""

from __future__ import annotations

import re
import sqlite3
import time

import numpy as np


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def tantivy_default(ids: list[str], titles: list[str], queries: list[str], k: int) -> tuple[dict[str, list[str]], dict]:
    """Top-k ids per query and timings from Tantivy with its default tokenizer."""
    import tantivy

    t0 = time.perf_counter()
    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("row", stored=True, fast=True)
    sb.add_text_field("title")
    schema = sb.build()
    index = tantivy.Index(schema)
    w = index.writer(heap_size=128_000_000, num_threads=1)
    for i, t in enumerate(titles):
        w.add_document(tantivy.Document(row=i, title=t or ""))
    w.commit()
    index.reload()
    build = time.perf_counter() - t0
    searcher = index.searcher()
    out, times = {}, []
    for q in queries:
        t = time.perf_counter()
        terms = list(dict.fromkeys(_words(q)))
        if not terms:
            out[q] = []
            continue
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "title", x)) for x in terms])
        hits = searcher.search(query, k, count=False).hits
        rows = searcher.fast_field_values("row", [a for _, a in hits]) if hits else []
        out[q] = [ids[r] for r in rows]
        times.append(time.perf_counter() - t)
    return out, {"build_s": round(build, 2), "query_p50_ms": round(float(np.median(times)) * 1000, 3)}


def sqlite_fts5(ids: list[str], titles: list[str], queries: list[str], k: int) -> tuple[dict[str, list[str]], dict]:
    """Top-k ids per query and timings from SQLite FTS5 (porter stemmer, bm25())."""
    t0 = time.perf_counter()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(title, tokenize='porter unicode61')")
    db.executemany("INSERT INTO docs(rowid, title) VALUES (?, ?)", [(i, t or "") for i, t in enumerate(titles)])
    db.commit()
    build = time.perf_counter() - t0
    out, times = {}, []
    for q in queries:
        t = time.perf_counter()
        terms = list(dict.fromkeys(_words(q)))
        if not terms:
            out[q] = []
            continue
        match = " OR ".join(f'"{x}"' for x in terms)
        rows = db.execute("SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?", (match, k)).fetchall()
        out[q] = [ids[r] for (r,) in rows]
        times.append(time.perf_counter() - t)
    db.close()
    return out, {"build_s": round(build, 2), "query_p50_ms": round(float(np.median(times)) * 1000, 3)}
