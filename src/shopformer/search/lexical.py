"""The lexical index interface (BM25-style ranking over the catalog's text fields), its
config and the query it takes.

Two backends implement :class:`LexicalIndex`: :class:`~.tantivy_index.TantivyIndex`
(embedded, no server: the default) and :class:`~.postgres_index.PostgresLexicalIndex`
(PostgreSQL full-text search, for shops whose store is PostgreSQL). Both take documents
from :func:`shopformer.search.catalog.documents` addressed by row, and queries as
normalized tokens with weights (:class:`LexicalQuery`), which each backend analyzes the
way it analyzed the documents (lowercase, English stop words, Snowball English stems).
No user text ever reaches an engine's query parser, so query-syntax characters are
just characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from .catalog import TEXT_FIELDS, SearchFilter


def _default_weights() -> dict[str, float]:
    return {"title": 3.0, "brand": 2.0, "categories": 1.5, "attributes": 1.0, "tags": 1.0, "description": 0.5}


@dataclass(frozen=True)
class LexicalConfig:
    """field_weights: a field's term scores are multiplied by its weight and summed
    over fields (a field with weight 0 is not searched); keys from TEXT_FIELDS.
    max_terms: query tokens beyond this many are ignored (a 10 KB query stays cheap)."""

    field_weights: dict[str, float] = field(default_factory=_default_weights)
    max_terms: int = 32

    def __post_init__(self) -> None:
        unknown = set(self.field_weights) - set(TEXT_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)} in field_weights; fields: {', '.join(TEXT_FIELDS)}")
        if any(w < 0 for w in self.field_weights.values()):
            raise ValueError("field weights must be >= 0")

    @property
    def fields(self) -> list[tuple[str, float]]:
        return [(f, w) for f, w in self.field_weights.items() if w > 0]

    def to_dict(self) -> dict[str, Any]:
        return {"field_weights": dict(self.field_weights), "max_terms": self.max_terms}


@dataclass(frozen=True)
class LexicalQuery:
    """Normalized query tokens with weights (1.0 for what was typed, less for synonyms)."""

    terms: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, tokens: list[str], weight: float = 1.0) -> "LexicalQuery":
        return cls(tuple((t, weight) for t in tokens))

    def merged(self, max_terms: int) -> list[tuple[str, float]]:
        """Distinct tokens, each with its largest weight, the first ``max_terms``."""
        best: dict[str, float] = {}
        for t, w in self.terms:
            if t and w > 0:
                best[t] = max(best.get(t, 0.0), w)
        return list(best.items())[:max_terms]


@runtime_checkable
class LexicalIndex(Protocol):
    config: LexicalConfig

    def add_or_update(self, rows: np.ndarray, docs: list[dict[str, Any]]) -> None:
        """Index ``docs`` (from :func:`~shopformer.search.catalog.documents`) under
        ``rows``, replacing what those rows held; searchable when this returns."""
        ...

    def delete(self, rows: np.ndarray) -> None:
        """Remove rows; they are never returned after this returns."""
        ...

    def reset(self) -> None:
        """Remove every document (a new catalog numbering starts)."""
        ...

    def search(self, query: LexicalQuery, k: int, flt: SearchFilter | None = None,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``k`` best matches that pass ``flt``, best first
        (int64, float32); fewer when fewer match; empty for a query with no terms.
        ``rows``: only these rows are considered (to score another engine's candidates)."""
        ...

    def save(self, folder: Path) -> None:
        ...

    @classmethod
    def load(cls, folder: Path, **kwargs: Any) -> Self:
        ...

    def __len__(self) -> int:
        ...

    def close(self) -> None:
        ...

