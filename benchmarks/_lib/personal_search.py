"""Personalized product search, the protocol of personalized product search papers (Ai et
al., SIGIR 2017 and after): the product a customer bought next is the target, the query
is built from that product's category path (Amazon Scientific) or from its title's head
words (UCI Online Retail: the last two words of the description, its product type, e.g.
"t-light holder"), and the customer's purchases before it are the context. Cases whose
query is the product's whole name (e.g. Online Retail's POSTAGE fee line) are left out:
there is nothing to find. Every product
of the catalog can be returned (full catalog); the metrics are MRR and NDCG@10 of the
target in the answer (0 when search does not return it).

The same searcher answers each case twice: alone, and re-ordered with the customer's
SASRec scores (the user vector recommendations use, from the history before the target)
with weight ``w``: ``z(search score) + w * z(model score)`` over the top ``rerank_depth``
candidates. ``w`` is chosen on the validation cases (leave-one-out: the second-to-last
purchase, history before it) and the test cases (the last purchase) are scored once.
The SASRec is trained on the training split only, with accuracy.py's settings.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
from rich.progress import Progress

from shopformer.artifact import load_run, make_model, save_run
from shopformer.dataset import describe, load_products
from shopformer.experiment import fit
from shopformer.features.text import TextEncoderConfig
from shopformer.ingest import ingest
from shopformer.search import SearchConfig, Searcher
from shopformer.search.analysis import STOPWORDS, normalize
from shopformer.search.fusion import fused_scores, order
from shopformer.search.searcher import _standard

from .homedepot import bar

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
K = 10


def _accuracy():  # the accuracy benchmark's datasets and Transformer settings
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import accuracy

    return accuracy


def query_of(dataset: str, title: str) -> str:
    """The query of a target product (see the module docstring)."""
    if dataset == "scientific":
        parts = title.rsplit(". ", 2)
        cats = parts[1] if len(parts) == 3 else title
        cats = cats.replace("Industrial & Scientific", " ")
        words = [w for w in normalize(cats).split() if w not in STOPWORDS]
        return " ".join(dict.fromkeys(words))
    words = [w for w in re.findall(r"[a-z0-9\-]+", (title or "").lower()) if w not in STOPWORDS]
    return " ".join(words[-2:])


def products_of(dataset: str, root: Path, work: Path) -> pl.DataFrame:
    acc = _accuracy()
    file, fmt, _, _ = acc.CATALOGS[dataset]
    folder = work / (dataset if file is None else f"{dataset}-catalog")
    if not (folder / "products.parquet").exists():
        ingest(root / (file or acc.DATASETS[dataset][0]), fmt=fmt, data_dir=folder)
    return load_products(folder)


def sasrec_run(dataset: str, data, split, work: Path):
    """SASRec on the training split with accuracy.py's setting for ``dataset`` (trained
    once, kept in the work folder)."""
    folder = work / "runs" / f"{dataset}-sasrec-search"
    if (folder / "run.json").exists():
        return load_run(folder).model
    acc = _accuracy()
    params = acc.TRANSFORMER_GRID[dataset]["sasrec"][0]
    model = make_model("sasrec", params)
    seconds = fit(model, data, split)
    save_run(folder, model, data.items, data.users, acc.DATASETS[dataset][2],
             {"dataset": describe(data), "fit_on": "train", "fit_seconds": round(seconds, 1), "settings": params})
    return model


def _cases(cases, data, products: pl.DataFrame, dataset: str, max_cases: int | None):
    """(history row, target item id, query) of each case whose query has words."""
    titles = dict(zip(products["item_id"].cast(pl.String).to_list(), products["title"].to_list()))
    out = []
    for i in range(len(cases)):
        target = data.items.decode(cases.targets.rows(np.array([i])).items[:1])[0]
        title = titles.get(target) or ""
        q = query_of(dataset, title)
        # a query that is the product's whole name (POSTAGE, a fee line) leaves nothing to find
        if q and set(q.split()) != set(normalize(title).split()):
            out.append((i, target, q))
    if max_cases:
        out = out[:max_cases]
    return out


def _scored(searcher: Searcher, model, data, cases, rows, progress: Progress, what: str):
    """For each case: (rows of the fused order, fused head scores, model head scores)."""
    out = []
    task = progress.add_task(what, total=len(rows))
    for start in range(0, len(rows), 256):
        chunk = rows[start : start + 256]
        scores = np.asarray(model.score(cases.history.rows(np.array([i for i, _, _ in chunk]))))
        for (i, target, q), row in zip(chunk, scores):
            plan = searcher.plan(q)
            c = searcher.candidates(plan)
            fused = fused_scores(c, searcher.fusion)
            ranked = order(fused, c.rows)
            head = ranked[: searcher.config.rerank_depth]
            ids = [searcher.catalog.ids[r] for r in c.rows[ranked].tolist()]
            idx = data.items.encode(ids[: len(head)])
            mine = np.where(idx > 0, row[idx], np.nan)
            out.append((target, ids, fused[head], mine))
            progress.advance(task)
    return out


def _metrics(scored, weight: float) -> tuple[float, float]:
    """(MRR, NDCG@10) of the targets when the head is re-ordered with ``weight``."""
    rr, nd = [], []
    for target, ids, base, mine in scored:
        head = len(base)
        if weight > 0 and np.isfinite(mine).any():
            s = _standard(base) + weight * _standard(mine)
            first = [ids[j] for j in np.lexsort((np.arange(head), -s))]
        else:
            first = ids[:head]
        ranking = first + ids[head:]
        if target in ranking:
            r = ranking.index(target) + 1
            rr.append(1.0 / r)
            nd.append(1.0 / np.log2(r + 1) if r <= K else 0.0)
        else:
            rr.append(0.0)
            nd.append(0.0)
    return float(np.mean(rr)), float(np.mean(nd))


def run(dataset: str, root: Path, work: Path, max_cases: int | None = None) -> list[dict]:
    acc = _accuracy()
    data, split = acc.load(dataset, root, work)
    products = products_of(dataset, root, work)
    model = sasrec_run(dataset, data, split, work)
    config = SearchConfig(semantic=replace(SearchConfig().semantic, encoder=TextEncoderConfig(cache_dir=work / "text-cache"),
                                           query_cache=1_000_000))
    searcher = Searcher.build(products, config)
    valid = _cases(split.valid, data, products, dataset, max_cases)
    test = _cases(split.test, data, products, dataset, max_cases)
    searcher.semantic.query_vectors(list({q for _, _, q in valid + test}))
    with bar() as progress:
        v = _scored(searcher, model, data, split.valid, valid, progress, f"{dataset} validation")
        t = _scored(searcher, model, data, split.test, test, progress, f"{dataset} test")
    grid = [(w, *_metrics(v, w)) for w in WEIGHTS]
    best = max(grid, key=lambda g: g[2])[0]  # validation NDCG@10
    base_mrr, base_ndcg = _metrics(t, 0.0)
    mrr, ndcg = _metrics(t, best)
    common = {"dataset": dataset, "cases": len(t), "valid_cases": len(v), "products": len(searcher),
              "query": "category path" if dataset == "scientific" else "last two title words",
              "examples": [q for _, _, q in test[:5]], "strategy": searcher.fusion.kind,
              "validation_grid": [{"weight": w, "mrr": round(a, 4), "ndcg@10": round(b, 4)} for w, a, b in grid]}
    searcher.close()
    return [
        {**common, "method": "search", "mrr": base_mrr, "ndcg@10": base_ndcg, "personal_weight": 0.0},
        {**common, "method": "search+personal", "mrr": mrr, "ndcg@10": ndcg, "personal_weight": best},
    ]
