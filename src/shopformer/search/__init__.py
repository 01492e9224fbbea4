"""Product search: lexical (Tantivy or PostgreSQL full text) + semantic (product text
vectors) + fusion + learned re-ranking + personalization, with filters, facets,
spelling correction, synonyms and autocomplete. :class:`Searcher` is the entry point."""

from .analysis import Synonyms, normalize
from .catalog import SearchCatalog, SearchFilter
from .fusion import FusionConfig
from .lexical import LexicalConfig, LexicalIndex, LexicalQuery
from .searcher import QueryPlan, SearchConfig, Searcher, SearchHit, SearchResult
from .spelling import SpellingConfig

__all__ = [
    "FusionConfig", "LexicalConfig", "LexicalIndex", "LexicalQuery", "QueryPlan", "SearchCatalog", "SearchConfig",
    "SearchFilter", "SearchHit", "SearchResult", "Searcher", "SpellingConfig", "Synonyms", "normalize",
]
