"""Search over a trained run's catalog, outside the server: what ``shopformer search
"query" --run RUN`` answers.

The index lives in the run folder (``RUN/search``) and is rebuilt when the catalog of
the run's data folder changed since it was saved (its products file's size and time);
text vectors are cached in the data folder (``cache/``), as training caches them. With
``user_id`` the run's model personalizes the order from the user's full sequence in the
run's data (the user vector recommendations use).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from shopformer.features.text import TextEncoderConfig

from .catalog import SearchFilter
from .searcher import PersonalScores, SearchConfig, Searcher, SearchResult, scores_by_item

STAMP = "catalog_stamp.json"


def _stamp(products_file: Path) -> dict:
    st = products_file.stat() if products_file.exists() else None
    return {"file": str(products_file), "size": st.st_size if st else 0, "mtime_ns": st.st_mtime_ns if st else 0}


def open_searcher(run_folder: Path, data_dir: Path | None = None, rebuild: bool = False,
                  config: SearchConfig | None = None, progress: bool = False) -> Searcher:
    """The run's search index, built (and saved in ``RUN/search``) when missing, stale or
    ``rebuild`` is set."""
    from shopformer.dataset import load_products

    run_folder = Path(run_folder)
    info = json.loads((run_folder / "run.json").read_text())
    data = Path(data_dir or info["data_dir"])
    folder = run_folder / "search"
    stamp = _stamp(data / "products.parquet")
    if not rebuild and (folder / STAMP).is_file() and json.loads((folder / STAMP).read_text()) == stamp:
        return Searcher.load(folder)
    products = load_products(data)
    if not products.height:
        raise ValueError(f"no catalog in {data} (products.parquet is missing or empty): ingest one with --catalog")
    config = config or SearchConfig()
    encoder = TextEncoderConfig(cache_dir=data / "cache")
    config = replace(config, semantic=replace(config.semantic, encoder=encoder))
    from .tantivy_index import TantivyIndex

    searcher = Searcher.build(products, config, lexical=TantivyIndex(config.lexical, path=folder / "lexical"),
                              progress=progress)
    searcher.save(folder)
    (folder / STAMP).write_text(json.dumps(stamp))
    return searcher


def personal_scores(run_folder: Path, user_id: str, data_dir: Path | None = None) -> PersonalScores:
    """The run model's scores for the user's full sequence, by item id (NaN for items the
    model does not know)."""
    from shopformer.artifact import load_run
    from shopformer.experiment import reload_data

    run = load_run(Path(run_folder))
    data, _ = reload_data(run, data_dir)
    if user_id not in data.users:
        raise ValueError(f"unknown user {user_id!r}: not in the data run {run_folder} was trained on")
    history = data.sequences.rows(np.array([data.users.index(user_id) - 1]))
    return scores_by_item(np.asarray(run.model.score(history))[0], run.items)


def search_run(run_folder: Path, query: str, k: int = 10, flt: SearchFilter | None = None,
               user_id: str | None = None, data_dir: Path | None = None, rebuild: bool = False,
               personal_weight: float | None = None) -> SearchResult:
    searcher = open_searcher(run_folder, data_dir, rebuild)
    try:
        personal = None
        if user_id is not None:
            if personal_weight is not None:
                searcher.config = replace(searcher.config, personal_weight=personal_weight)
            personal = personal_scores(run_folder, user_id, data_dir)
        return searcher.search(query, k, flt, personal=personal, record=False)
    finally:
        searcher.close()


def read_judgments(path: Path, gain_offset: float = 0.0) -> dict[str, dict[str, float]]:
    """Judged pairs from a CSV with columns ``query``, ``item_id``, ``relevance`` (gain =
    relevance - ``gain_offset``; a repeated pair: the last wins). Bad rows are named."""
    import polars as pl

    df = pl.read_csv(path, infer_schema_length=0)
    missing = {"query", "item_id", "relevance"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; need query, item_id, relevance")
    out: dict[str, dict[str, float]] = {}
    for line, (q, item, rel) in enumerate(df.select("query", "item_id", "relevance").iter_rows(), 2):
        try:
            gain = float(rel) - gain_offset
        except (TypeError, ValueError):
            raise ValueError(f"{path}, line {line}: relevance {rel!r} is not a number") from None
        if not q or not item or not np.isfinite(gain) or gain < 0:
            raise ValueError(f"{path}, line {line}: need a query, an item_id and relevance >= {gain_offset}")
        out.setdefault(q, {})[item] = gain
    if not out:
        raise ValueError(f"{path}: no judged pairs")
    return out


def train_reranker(searcher: Searcher, judgments: dict[str, dict[str, float]], config=None):  # noqa: ANN001, ANN201
    """A re-ranker trained on ``judgments`` over this searcher's retrieval; a tenth of
    the queries (by a hash of their text) stop the boosting early."""
    import hashlib

    from .rerank import Reranker, RerankerConfig, training_set

    queries = sorted(q for q, g in judgments.items() if g and max(g.values()) > 0)
    if len(queries) < 10:
        raise ValueError(f"{len(queries)} judged queries with a relevant product: at least 10 are needed")
    held = {q for q in queries if int(hashlib.sha256(("inner" + q).encode()).hexdigest(), 16) % 10 == 0}
    fit = [q for q in queries if q not in held]
    valid = sorted(held)
    model = Reranker(config or RerankerConfig())
    return model.fit(training_set(searcher, fit, judgments), training_set(searcher, valid, judgments) if valid else None)
