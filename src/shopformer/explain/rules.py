"""Rule provenance: which serving rule changed an item's position.

Serving applies rules after the model scores the catalog: history exclusion and the
catalog filters of ``retrieve/filters.py`` / ``serve`` (available only, category, price
range). These filters can only move an item UP, by removing items the model ranked
above it; the business rules (boost, bury, pin, exclude) move items either way and
report their own moves (:mod:`shopformer.rank.rules`); with them the caller passes the
whole score row to :func:`provenance`, since the answer is then not the top of what
the filters left. For each served item this records its rank
by model score over the whole catalog, its rank in the answer, and per rule how many of
the items above it that rule removed. A rule is given as a boolean mask over item
indexes, True = removed (an item removed by two rules counts for both).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from shopformer.explain.reasons import Provenance, RuleEffect

#: label of the history-exclusion rule
EXCLUDED_HISTORY = "excluded: already in history"


def _row(scores: np.ndarray) -> np.ndarray:
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64).ravel(), nan=-np.inf)
    s[0] = -np.inf  # padding is never ranked
    return s


def _above(s: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(K, N + 1) bool: item i is ranked above ``items[k]`` in the (N + 1,) row ``s``."""
    above = _ranked_above(s[items], items, s, np.arange(len(s)))
    above[:, 0] = False
    return above


def _ranked_above(mine: np.ndarray, items: np.ndarray, theirs: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(K, R) bool: item ``others[r]`` (score ``theirs[r]``) is ranked above ``items[k]``
    (score ``mine[k]``): a higher score, or the same score and a lower index, as
    :func:`~shopformer.retrieve.exact.top_k` breaks ties."""
    mine, theirs = mine[:, None], theirs[None, :]
    return (theirs > mine) | ((theirs == mine) & (others[None, :] < items[:, None]))


def model_ranks(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """1-based rank of each of ``items`` in the (N + 1,) score row, padding left out."""
    items = np.asarray(items, dtype=np.int64)
    return _above(_row(scores), items).sum(axis=1) + 1


def provenance(scores: np.ndarray, items: np.ndarray, removed: Mapping[str, np.ndarray]) -> list[Provenance]:
    """One :class:`Provenance` per served item (``items`` in answer order), from the
    (N + 1,) model scores of the whole catalog."""
    items = np.asarray(items, dtype=np.int64)
    above = _above(_row(scores), items)
    counts = {rule: (above & np.asarray(mask, dtype=bool)[None, :]).sum(axis=1) for rule, mask in removed.items()}
    return _records(above.sum(axis=1) + 1, counts, removed)


def provenance_from_removed(
    items: np.ndarray, item_scores: np.ndarray, removed_items: np.ndarray, removed_scores: np.ndarray,
    removed: Mapping[str, np.ndarray],
) -> list[Provenance]:
    """:func:`provenance` from the scores of the served items and of the removed ones
    only. The answer is the top of what the rules left, so every item the model ranks
    above a served one is either served before it or removed: its model rank is its
    answer position plus the removed items above it. Exact when retrieval is (exact
    search, or a flat index); an approximate index may have skipped an item, which
    this then does not count. For history exclusion that is L scores, not N."""
    items = np.asarray(items, dtype=np.int64)
    removed_items = np.asarray(removed_items, dtype=np.int64)
    theirs = np.nan_to_num(np.asarray(removed_scores, np.float64), nan=-np.inf)
    above = _ranked_above(np.asarray(item_scores, np.float64), items, theirs, removed_items)  # (K, R)
    counts = {rule: (above & np.asarray(mask, dtype=bool)[removed_items][None, :]).sum(axis=1)
              for rule, mask in removed.items()}
    return _records(np.arange(1, len(items) + 1) + above.sum(axis=1), counts, removed)


def _records(ranks: np.ndarray, counts: Mapping[str, np.ndarray], removed: Mapping[str, np.ndarray]) -> list[Provenance]:
    return [
        Provenance(
            int(ranks[r]), r + 1,
            tuple(RuleEffect(rule, int(n[r])) for rule, n in counts.items() if n[r] > 0),
            tuple(removed),
        )
        for r in range(len(ranks))
    ]


def history_mask(history: np.ndarray, n_items: int) -> np.ndarray:
    """(n_items + 1,) True at the history's items: the exclusion rule as a mask."""
    m = np.zeros(n_items + 1, dtype=bool)
    h = np.asarray(history, dtype=np.int64)
    m[h[(h > 0) & (h <= n_items)]] = True
    return m
