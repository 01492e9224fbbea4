"""Spelling correction of query words against the catalog's own vocabulary (SymSpell).

Only words the catalog never uses are corrected ("galvinized" -> "galvanized"): a word
found in some product is kept as typed, and so is one whose stem is a catalog word's stem
("mugs" when the catalog says "mug": the engines stem both). The dictionary counts, for every normalized word
(see :func:`~shopformer.search.analysis.normalize`, before stemming), how many products
use it; the correction is the closest word by edit distance, the most used among equals.
Numbers and words with digits ("2x4", "pc1010") are never corrected. The SymSpell
structure is built once and then updated word by word as products come and go.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SpellingConfig:
    """enabled: correct unknown query words at all.
    min_length: shorter words are never corrected (too many near neighbours).
    max_edits_short / max_edits_long: edit distance allowed for words shorter than
        ``long_word`` letters / at least that long.
    min_count: a correction must be used by at least this many products."""

    enabled: bool = True
    min_length: int = 4
    long_word: int = 8
    max_edits_short: int = 1
    max_edits_long: int = 2
    min_count: int = 1


class Speller:
    """Word counts of a catalog and the corrections they allow. Thread-safe: the SymSpell
    structure is built once (:meth:`warm`, or the first correction) and then kept up to
    date word by word as products come and go."""

    def __init__(self, config: SpellingConfig = SpellingConfig(), counts: dict[str, int] | None = None) -> None:
        self.config = config
        self.counts: Counter[str] = Counter(counts or {})
        self._symspell = None
        self._stems: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _entry(self, word: str) -> bool:
        """Whether ``word`` belongs in the SymSpell dictionary at all."""
        return word.isalpha() and len(word) >= self.config.min_length - 1

    def add(self, words: Iterable[str]) -> None:
        """Count each word once per call (call once per product with its words)."""
        from .features import stem

        with self._lock:
            for w in set(words):
                self.counts[w] += 1
                if self._symspell is not None and w.isalpha():
                    if self.counts[w] == 1:
                        self._stems[stem(w)] += 1
                    if self._entry(w) and self.counts[w] == self.config.min_count:
                        self._symspell.create_dictionary_entry(w, self.counts[w])

    def remove(self, words: Iterable[str]) -> None:
        from .features import stem

        with self._lock:
            for w in set(words):
                if w not in self.counts:
                    continue
                self.counts[w] -= 1
                if self.counts[w] > 0:
                    continue
                del self.counts[w]
                if self._symspell is not None and w.isalpha():
                    self._stems[stem(w)] -= 1
                    if self._entry(w):
                        self._symspell.delete_dictionary_entry(w)

    def __contains__(self, word: str) -> bool:
        return word in self.counts

    def warm(self) -> None:
        """Build the SymSpell structure now (about a second for 30,000 words) rather than
        in the first query that needs a correction."""
        self._index()

    def _index(self):  # noqa: ANN202 - a symspellpy.SymSpell
        sym = self._symspell
        if sym is not None:
            return sym
        from symspellpy import SymSpell

        from .features import stem

        with self._lock:
            if self._symspell is None:  # built by another thread while this one waited?
                sym = SymSpell(max_dictionary_edit_distance=self.config.max_edits_long, prefix_length=7)
                for word, n in self.counts.items():
                    if n >= self.config.min_count and self._entry(word):
                        sym.create_dictionary_entry(word, n)
                self._stems = Counter(stem(w) for w in self.counts if w.isalpha())
                self._symspell = sym
            return self._symspell

    def correct_word(self, word: str) -> str:
        """``word`` itself when the catalog uses it or it cannot be corrected, else the
        closest catalog word."""
        cfg = self.config
        if not cfg.enabled or word in self.counts or len(word) < cfg.min_length or not word.isalpha():
            return word
        from symspellpy import Verbosity

        from .features import stem

        index = self._index()
        if self._stems.get(stem(word), 0) > 0:
            return word
        edits = cfg.max_edits_long if len(word) >= cfg.long_word else cfg.max_edits_short
        found = index.lookup(word, Verbosity.CLOSEST, max_edit_distance=edits)
        found = [s for s in found if self.counts.get(s.term, 0) >= cfg.min_count]
        if not found:
            return word
        best = max(found, key=lambda s: (self.counts.get(s.term, 0), s.term))  # closest, then most used
        return best.term

    def correct(self, words: list[str]) -> tuple[list[str], dict[str, str]]:
        """The corrected words, and ``{typed: corrected}`` for the words that changed."""
        out = [self.correct_word(w) for w in words]
        return out, {w: c for w, c in zip(words, out) if w != c}
