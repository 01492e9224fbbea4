"""Autocomplete: prefix suggestions from past queries, the catalog's words and product titles.

``suggest("cordless dr")`` answers, most useful first: past queries that start with the
typed text (by how often they were searched), then the typed words completed with catalog
words that start with the last, partial word (by how many products use the word); the
searcher adds the titles of a few products that the completed text finds. Past
queries come from search events (``type: search``) and from every search the engine
answers; the catalog words are the spelling dictionary's (products' normalized words).
Lookups are binary searches over sorted lists, rebuilt lazily after changes.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def clean(text: str) -> str:
    """Lowercase, single spaces, no leading/trailing space: how queries are counted."""
    return re.sub(r"\s+", " ", text.strip().lower())


@dataclass(frozen=True)
class Suggestion:
    text: str
    kind: str  # "query" (searched before), "completion" (catalog words) or "product" (a title)
    count: int  # searches, or products using the completing word (0 for products)
    item_id: str | None = None  # the product, for kind "product"


class Suggester:
    """Past queries (counted) and a view of the catalog's word counts."""

    def __init__(self, words: Mapping[str, int], queries: Mapping[str, int] | None = None,
                 max_query_chars: int = 100) -> None:
        self.words = words  # live view: the speller's counts
        self.queries: Counter[str] = Counter(queries or {})
        self.max_query_chars = max_query_chars
        self._sorted_queries: list[str] | None = None
        self._sorted_words: list[str] | None = None
        self._n_words = -1
        self._lock = threading.Lock()

    def record(self, queries: Iterable[str]) -> None:
        """Count searched queries (empty ones and very long ones are not suggestions). A new
        query is inserted into the sorted list in place (no re-sort per search)."""
        self.add_counts(Counter(queries))

    def add_counts(self, counts: Mapping[str, int]) -> None:
        """Count each query ``counts[query]`` more times (see :meth:`record`)."""
        cleaned: Counter[str] = Counter()
        for x, n in counts.items():
            q = clean(x)
            if q and len(q) <= self.max_query_chars:
                cleaned[q] += n
        if cleaned:
            with self._lock:
                for q, n in cleaned.items():
                    if q not in self.queries and self._sorted_queries is not None:
                        bisect.insort(self._sorted_queries, q)
                    self.queries[q] += n

    def subtract(self, counts: Mapping[str, int]) -> None:
        """Count each query ``counts[query]`` fewer times, never below zero; a query whose
        count reaches zero is no longer suggested. How an erased customer's searches leave
        autocomplete (their stored queries' counts, taken back)."""
        cleaned: Counter[str] = Counter()
        for x, n in counts.items():
            q = clean(x)
            if q and n > 0:
                cleaned[q] += n
        with self._lock:
            for q, n in cleaned.items():
                left = self.queries.get(q, 0) - n
                if left > 0:
                    self.queries[q] = left
                elif q in self.queries:
                    del self.queries[q]
                    if self._sorted_queries is not None:
                        i = bisect.bisect_left(self._sorted_queries, q)
                        if i < len(self._sorted_queries) and self._sorted_queries[i] == q:
                            del self._sorted_queries[i]

    def _lists(self) -> tuple[list[str], list[str]]:
        with self._lock:
            if self._sorted_queries is None:
                self._sorted_queries = sorted(self.queries)
            if self._sorted_words is None or self._n_words != len(self.words):
                self._sorted_words = sorted(w for w in list(self.words) if w.isalpha())  # list(): one atomic copy
                self._n_words = len(self.words)
            return self._sorted_queries, self._sorted_words

    @staticmethod
    def _prefixed(items: list[str], prefix: str) -> list[str]:
        lo = bisect.bisect_left(items, prefix)
        hi = bisect.bisect_left(items, prefix + "\uffff")
        return items[lo:hi]

    def suggest(self, prefix: str, k: int = 10) -> list[Suggestion]:
        p = clean(prefix)[: self.max_query_chars]
        queries, words = self._lists()
        past = self._prefixed(queries, p) if p else queries
        out = [Suggestion(q, "query", self.queries[q]) for q in sorted(past, key=lambda q: (-self.queries[q], q))[:k]]
        if len(out) < k and p and not p.endswith(" "):
            head, _, last = p.rpartition(" ")
            seen = {s.text for s in out}
            done = [w for w in self._prefixed(words, last) if w != last]
            for w in sorted(done, key=lambda w: (-self.words.get(w, 0), w)):
                text = f"{head} {w}".strip()
                if text not in seen:
                    out.append(Suggestion(text, "completion", int(self.words.get(w, 0))))
                    seen.add(text)
                if len(out) >= k:
                    break
        return out
