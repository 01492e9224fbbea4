"""The re-ranker's features computed one candidate at a time: the reference the
vectorized :func:`shopformer.search.features.candidate_features` is checked against."""

from __future__ import annotations

import math

import numpy as np

from shopformer.search.features import FEATURES, STOP, _title, _unit, stem


def reference_features(plan, searcher, c, pick: np.ndarray, fused: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """What shopformer.search.features.candidate_features computed before it was vectorized:
    one candidate at a time, the features read straight from their definitions."""
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
