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


@dataclass(frozen=True)
class _Title:
    """What the features read of one normalized title (cached: titles recur across queries)."""

    terms: list[str]  # stems, stop words dropped, in order
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
    return _Title(terms, frozenset(terms), frozenset(words), frozenset(zip(terms, terms[1:])),
                  frozenset(_type_span(title)), frozenset(units))


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
    """(len(pick), len(FEATURES)) float32 for the candidates at positions ``pick``."""
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
    titles = [cat.norm_titles[r] for r in rows.tolist()]
    depth = searcher.config.fusion.depth + 1
    top_lex = float(c.lexical.max()) if len(c) else 0.0
    top_cos = float(c.cosine.max()) if len(c) else 0.0
    out = np.zeros((len(pick), len(FEATURES)), np.float32)
    if len(pick) == 0:
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
    mean_idf = float(np.mean([idf[t] for t in q_set])) if q_set else 0.0
    out[:, 27] = mean_idf
    for i, (r, title) in enumerate(zip(rows.tolist(), titles)):
        t = _title(title)
        hit = q_set & t.term_set
        out[i, 8] = len(t.terms)
        out[i, 9] = len(hit) / len(q_set) if q_set else 0.0
        out[i, 10] = bool(q_set) and hit == q_set
        out[i, 11] = sum(idf[x] for x in hit) / idf_total
        out[i, 12] = head in t.term_set
        out[i, 13] = first in t.term_set
        out[i, 14] = len(numbers)
        out[i, 15] = len(numbers & t.words) / len(numbers) if numbers else -1.0
        out[i, 16] = len(units & t.words) / len(units) if units else -1.0
        brand = cat.brands[r].lower().split()
        out[i, 17] = bool(brand) and all(stem(b) in q_set for b in brand)
        out[i, 18] = len(q_bigrams & t.bigrams) / len(q_bigrams) if q_bigrams else -1.0
        pos = next((j for j, x in enumerate(t.terms) if x in q_set), None)
        out[i, 19] = pos / max(len(t.terms), 1) if pos is not None else 1.0
        out[i, 25] = len(cat.titles[r] or "")
        missing = [idf[x] for x in q_set - hit]
        out[i, 26] = max(missing) if missing else 0.0
        out[i, 28] = len(hit)
        out[i, 29] = head in t.span
        out[i, 30] = len(q_set & t.span) / len(q_set) if q_set else 0.0
        out[i, 31] = sum(1 for w, u in q_units if w not in t.words and u[1] in t.unit_kinds)
        out[i, 32] = bool(t.terms) and t.terms[0] in q_set
    return out
