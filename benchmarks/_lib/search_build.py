"""Index build time: Home Depot's 54,667 products, and a synthetic 1,000,000-product
catalog made from Home Depot's titles (each synthetic title takes a real title and
swaps in another title's brand, a model number and a size; 500 category paths, prices,
availability), so the text has real statistics.

Measured separately, each its own clock: the lexical side (documents, Tantivy, the
catalog columns and the spelling dictionary: everything but vectors), the product text
encoding (MiniLM; on 1M products it is measured on a sample and the rate given, as
encoding 1M titles on two CPUs takes hours and is done once, cached by text), and the
vector index over given vectors (HNSW; the 1M vectors are Home Depot's real title
vectors, each repeated with a small random perturbation).
"""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from shopformer.features.text import TextEncoderConfig
from shopformer.retrieve.faiss_index import FaissIndex
from shopformer.search import SearchConfig, Searcher
from shopformer.search.semantic import SemanticIndex

from . import homedepot


def synthetic_catalog(titles: list[str], n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, len(titles), n)
    donor = rng.integers(0, len(titles), n)
    brands = [t.split()[0] if t else "Acme" for t in titles]
    sizes = ["1/2 in.", "3/4 in.", "10 ft.", "2 in. x 4 in.", "5 gal.", "18-Volt", "60-Watt", "1 qt.", "36 in.", ""]
    paths = [[f"Dept {a}", f"Aisle {a}-{b}", f"Bay {a}-{b}-{c}"] for a in range(10) for b in range(10) for c in range(5)]
    out_titles = []
    for i, (b, d) in enumerate(zip(base.tolist(), donor.tolist())):
        words = titles[b].split()
        rest = " ".join(words[1:]) if len(words) > 1 else titles[b]
        out_titles.append(f"{brands[d]} {rest} {sizes[i % len(sizes)]} #{rng.integers(100, 99999)}".strip())
    return pl.DataFrame({
        "item_id": [f"p{i}" for i in range(n)],
        "title": out_titles,
        "brand": [brands[d] for d in donor.tolist()],
        "categories": [paths[i % len(paths)] for i in rng.integers(0, len(paths), n).tolist()],
        "price": np.round(np.exp(rng.normal(3.5, 1.2, n)), 2),
        "available": rng.random(n) > 0.05,
    })


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def lexical_build(products: pl.DataFrame) -> dict:
    gc.collect()
    t0 = time.perf_counter()
    searcher = Searcher.build(products, SearchConfig(use_semantic=False))
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = searcher.search("cordless drill 18v", k=10)
    query_ms = (time.perf_counter() - t0) * 1000
    out = {"products": len(searcher), "lexical_build_s": round(seconds, 1), "first_query_ms": round(query_ms, 1),
           "hits": len(r.hits), "peak_rss_mb": round(_peak_mb())}
    searcher.close()
    return out


def run(root: Path, work: Path, n: int = 1_000_000, encode_sample: int = 5_000) -> tuple[list[dict], dict]:
    products, _ = homedepot.load(root)
    titles = products["title"].to_list()
    records = []
    # Home Depot: lexical, text vectors from cold (no cache), and the vector index
    hd = lexical_build(products)
    cold = TextEncoderConfig(cache_dir=None)
    t0 = time.perf_counter()
    vectors = SemanticIndex(replace(SearchConfig().semantic, encoder=cold)).encode_products(titles, progress=True)
    hd["encode_s"] = round(time.perf_counter() - t0, 1)
    table = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])
    t0 = time.perf_counter()
    index = FaissIndex(SearchConfig().semantic.index).build(table)
    hd["vector_index_s"], hd["vector_index_kind"] = round(time.perf_counter() - t0, 1), index.kind
    records.append({"dataset": "homedepot", "method": "build", **hd})
    print(records[-1])
    # 1M synthetic
    big = synthetic_catalog(titles, n)
    one = lexical_build(big)
    sample = big["title"].head(encode_sample).to_list()
    t0 = time.perf_counter()
    SemanticIndex(replace(SearchConfig().semantic, encoder=cold)).encode_products(sample)
    rate = encode_sample / (time.perf_counter() - t0)
    one["encode_rate_per_s"] = round(rate, 1)
    one["encode_1m_estimate_h"] = round(n / rate / 3600, 2)
    rng = np.random.default_rng(1)
    reps = -(-n // len(vectors))
    big_vectors = np.vstack([np.zeros((1, vectors.shape[1]), np.float32)] + [vectors] * reps)[: n + 1]
    big_vectors[1:] += rng.normal(0, 0.02, big_vectors[1:].shape).astype(np.float32)
    big_vectors[1:] /= np.linalg.norm(big_vectors[1:], axis=1, keepdims=True)
    del vectors
    t0 = time.perf_counter()
    index = FaissIndex(SearchConfig().semantic.index).build(big_vectors, copy=False)
    one["vector_index_s"], one["vector_index_kind"] = round(time.perf_counter() - t0, 1), index.kind
    one["peak_rss_mb"] = round(_peak_mb())
    records.append({"dataset": "synthetic-1m", "method": "build", **one})
    print(records[-1])
    return records, {}
