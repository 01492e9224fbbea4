"""Query-product features for the learned re-ranker.

Every feature is computed from the query, the product's catalog entry and the two
engines' evidence; none from which products happen to have been judged (that would leak
the labels): the retrieval scores and ranks, the cosine, term coverage of the title
(stemmed, IDF-weighted, the head noun, numbers and units, bigrams), whether the brand
was named, fuzzy string similarities (RapidFuzz), lengths, and whether the query was
spelling-corrected. IDF comes from the catalog's word counts (how many products use a
word), so it is the same at training and at serving time.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .analysis import STOPWORDS
from .fusion import Candidates

if TYPE_CHECKING:
    from .searcher import QueryPlan, Searcher

STOP = STOPWORDS | {"x"}  # "x" of dimensions: the dimension token carries it

FEATURES: tuple[str, ...] = (
    "lexical", "lexical_rel", "lexical_rank", "cosine", "cosine_rel", "semantic_rank", "fused",
    "query_terms", "title_terms", "coverage", "all_covered", "idf_coverage", "head_noun", "first_term",
    "query_numbers", "numbers_matched", "units_matched", "brand_named", "bigrams", "first_match_pos",
    "fuzz_token_set", "fuzz_partial", "fuzz_token_sort", "corrected", "query_chars", "title_chars",
    "missing_idf", "mean_idf", "matched_terms", "head_in_type", "type_coverage", "unit_conflicts",
    "leading_word_named",
)
#: words after which a title stops naming the product type ("Faucet Trim Kit in Chrome")
_TYPE_END = frozenset({"in", "with", "for", "and", "by"})


_local = threading.local()


def _stemmer():  # noqa: ANN202
    """This thread's Snowball stemmer (a stemmer object keeps state while it works: one
    shared by the server's request threads gives wrong stems or IndexErrors)."""
    found = getattr(_local, "stemmer", None)
    if found is None:
        import snowballstemmer

        found = _local.stemmer = snowballstemmer.stemmer("english")
    return found


@lru_cache(maxsize=500_000)
def stem(word: str) -> str:
    return _stemmer().stemWord(word)


def _terms(text: str) -> list[str]:
    return [stem(w) for w in text.split() if w not in STOP]


def _type_span(title: str) -> list[str]:
    """Stems of the last three words before the title's first "in"/"with"/"for"/...:
    where e-commerce titles name the product type."""
    words = title.split()
    end = next((i for i, w in enumerate(words) if w in _TYPE_END and i > 0), len(words))
    return [stem(w) for w in words[:end] if w not in STOP][-3:]


def _unit(token: str) -> tuple[str, str] | None:
    """("0.5", "in") for a bound number-unit token, else None."""
    i = 0
    while i < len(token) and (token[i].isdigit() or token[i] == "."):
        i += 1
    return (token[:i], token[i:]) if 0 < i < len(token) and token[i:].isalpha() else None


#: stem -> a small integer, shared by every title and query (titles' stems as integer
#: arrays let a query's candidates be matched in a few array operations)
_STEM_IDS: dict[str, int] = {}
_NEW_STEM = threading.Lock()


def _stem_id(s: str) -> int:
    found = _STEM_IDS.get(s)
    if found is None:
        with _NEW_STEM:  # two request threads reading new stems must not take the same id
            found = _STEM_IDS.setdefault(s, len(_STEM_IDS))
    return found


@dataclass(frozen=True)
class _Title:
    """What the features read of one normalized title (cached: titles recur across queries)."""

    terms: list[str]  # stems, stop words dropped, in order
    term_ids: np.ndarray  # (len(terms),) int64: their stem ids
    term_set: frozenset[str]
    words: frozenset[str]  # normalized words as written
    bigrams: frozenset[tuple[str, str]]
    span: frozenset[str]  # the product-type span's stems
    unit_kinds: frozenset[str]  # units of its number-unit tokens


#: titles whose reading is cached (the re-ranker reads up to rerank_depth per query)
TITLE_CACHE = 200_000


@lru_cache(maxsize=TITLE_CACHE)
def _title(title: str) -> _Title:
    terms = _terms(title)
    words = title.split()
    units = {u[1] for u in map(_unit, (w for w in words if w[:1].isdigit())) if u}
    ids = np.fromiter((_stem_id(t) for t in terms), np.int64, len(terms))
    return _Title(terms, ids, frozenset(terms), frozenset(words), frozenset(zip(terms, terms[1:])),
                  frozenset(_type_span(title)), frozenset(units))


@lru_cache(maxsize=100_000)
def _brand_stems(brand: str) -> frozenset[str] | None:
    """The stems of a brand's words (None for no brand)."""
    words = brand.lower().split()
    return frozenset(stem(b) for b in words) if words else None


def warm_titles(titles: list[str]) -> int:
    """Read up to :data:`TITLE_CACHE` catalog titles into the cache ahead of the first
    queries (a cold title costs the request its stems and sets; with a re-ranker, the
    search service does this before it reports ready). Returns how many were read."""
    n = 0
    for title in titles[:TITLE_CACHE]:
        if title:
            _title(title)
            n += 1
    return n


def candidate_features(plan: "QueryPlan", searcher: "Searcher", c: Candidates, pick: np.ndarray,
                       fused: np.ndarray) -> np.ndarray:
    """(len(pick), len(FEATURES)) float32 for the candidates at positions ``pick``.

    The term-coverage features come from one (candidates, query terms) match matrix
    built on the titles' stem ids: a request re-ranks a hundred candidates, and a Python
    loop over them was most of the re-ranker's cost (tests/search/test_rerank.py checks
    every value against that loop)."""
    from rapidfuzz import fuzz, process

    cat = searcher.catalog
    counts = searcher.speller.counts
    n_docs = max(len(cat), 1)
    q_words = [w for w in plan.tokens if w not in STOP]
    q_terms = [stem(w) for w in q_words]
    q_set = set(q_terms)
    idf = {stem(w): math.log((n_docs + 1) / (counts.get(w, 0) + 1)) for w in q_words}
    idf_total = sum(idf[t] for t in q_set) or 1.0
    numbers = {t for t in q_words if any(ch.isdigit() for ch in t)}
    units = {t for t in numbers if any(ch.isalpha() for ch in t)}
    q_units = [(t, u) for t, u in ((t, _unit(t)) for t in units) if u]
    q_bigrams = set(zip(q_terms, q_terms[1:]))
    head, first = (q_terms[-1], q_terms[0]) if q_terms else ("", "")
    query_text = " ".join(plan.tokens)

    rows = c.rows[pick]
    row_list = rows.tolist()
    titles = [cat.norm_titles[r] for r in row_list]
    depth = searcher.config.fusion.depth + 1
    top_lex = float(c.lexical.max()) if len(c) else 0.0
    top_cos = float(c.cosine.max()) if len(c) else 0.0
    n = len(pick)
    out = np.zeros((n, len(FEATURES)), np.float32)
    if n == 0:
        return out
    out[:, 0] = c.lexical[pick]
    out[:, 1] = c.lexical[pick] / top_lex if top_lex > 0 else 0.0
    out[:, 2] = np.where(c.lexical_rank[pick] > 0, c.lexical_rank[pick], depth)
    out[:, 3] = c.cosine[pick]
    out[:, 4] = c.cosine[pick] - top_cos
    out[:, 5] = np.where(c.semantic_rank[pick] > 0, c.semantic_rank[pick], depth)
    out[:, 6] = fused[pick]
    out[:, 7] = len(q_set)
    out[:, 20] = process.cdist([query_text], titles, scorer=fuzz.token_set_ratio, workers=1)[0] / 100
    out[:, 21] = process.cdist([query_text], titles, scorer=fuzz.partial_ratio, workers=1)[0] / 100
    out[:, 22] = process.cdist([query_text], titles, scorer=fuzz.token_sort_ratio, workers=1)[0] / 100
    out[:, 23] = bool(plan.corrections)
    out[:, 24] = len(plan.text)
    out[:, 27] = float(np.mean([idf[t] for t in q_set])) if q_set else 0.0
    out[:, 14] = len(numbers)

    ts = [_title(title) for title in titles]
    lengths = np.fromiter((len(t.terms) for t in ts), np.int64, n)
    out[:, 8] = lengths
    out[:, 25] = [len(cat.titles[r] or "") for r in row_list]
    # match[i, j]: candidate i's title holds query term j (q_list's order)
    q_list = list(q_set)
    q_ids = np.array([_STEM_IDS.get(t, -1) for t in q_list], np.int64)
    ids = np.concatenate([t.term_ids for t in ts])
    owner = np.repeat(np.arange(n), lengths)
    position = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    match = np.zeros((n, len(q_list)), bool)
    any_match = np.zeros(len(ids), bool)
    for j, qid in enumerate(q_ids.tolist()):
        found = ids == qid
        match[owner[found], j] = True
        any_match |= found
    idf_of = np.array([idf[t] for t in q_list], np.float64)
    hits = match.sum(axis=1)
    if q_list:
        out[:, 9] = hits / len(q_list)
        out[:, 10] = hits == len(q_list)
        out[:, 11] = (match * idf_of).sum(axis=1) / idf_total
        out[:, 26] = np.where(hits < len(q_list), np.where(match, -np.inf, idf_of).max(axis=1), 0.0)
        out[:, 12] = match[:, q_list.index(head)]
        out[:, 13] = match[:, q_list.index(first)]
    out[:, 28] = hits
    first_pos = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_pos, owner[any_match], position[any_match])
    found_any = first_pos < np.iinfo(np.int64).max
    out[:, 19] = np.where(found_any, first_pos / np.maximum(lengths, 1), 1.0)
    out[:, 15] = [len(numbers & t.words) / len(numbers) for t in ts] if numbers else -1.0
    out[:, 16] = [len(units & t.words) / len(units) for t in ts] if units else -1.0
    brands = [_brand_stems(cat.brands[r]) for r in row_list]
    out[:, 17] = [b is not None and b <= q_set for b in brands]
    out[:, 18] = [len(q_bigrams & t.bigrams) / len(q_bigrams) for t in ts] if q_bigrams else -1.0
    out[:, 29] = [head in t.span for t in ts]
    out[:, 30] = [len(q_set & t.span) / len(q_set) for t in ts] if q_set else 0.0
    if q_units:
        out[:, 31] = [sum(1 for w, u in q_units if w not in t.words and u[1] in t.unit_kinds) for t in ts]
    out[:, 32] = [bool(t.terms) and t.terms[0] in q_set for t in ts]
    return out
