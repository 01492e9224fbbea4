"""The lexical index on PostgreSQL full-text search, for shops whose store is PostgreSQL:
the index lives in the database beside the events and the catalog, so every API replica
reads the same one and nothing is copied between hosts.

One table (``search_<name>`` in the store's schema) with a row per product: its
``tsvector`` (GIN-indexed) and the filter columns. The vector is written from the
normalized document (see .analysis) with Snowball English stems computed here, because
PostgreSQL's own parser would split the normalized unit tokens (``0.75in``) apart; the
fields take weight classes A (title), B (brand, categories), C (attributes, tags),
D (description), and ranking is ``sum over query terms of weight(term) * ts_rank(class
weights, document, term, 1)`` (length-normalized), class weights from
``LexicalConfig.field_weights``. It is not BM25 (PostgreSQL has none) and is measured
beside Tantivy in benchmarks/search_quality.py. Filters are SQL conditions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from shopformer.retrieve.index import check_k
from shopformer.store.engine import normalize_url

from .analysis import STOPWORDS
from .catalog import SearchFilter
from .features import stem
from .lexical import LexicalConfig, LexicalQuery

#: weight class of each text field
CLASSES = {"title": "A", "brand": "B", "categories": "B", "attributes": "C", "tags": "C", "description": "D"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def lexemes(text_: str) -> list[str]:
    """Index terms of normalized text: the same stop words and Snowball English stems
    as the Tantivy index."""
    return [stem(w) for w in text_.split() if w not in STOPWORDS and len(w) <= 40]


def _tsvector_literal(doc: dict[str, Any]) -> str:
    """``'term':1A,5A 'other':2B ...`` with positions and weight classes."""
    where: dict[str, list[str]] = {}
    pos = 0
    for field, cls in CLASSES.items():
        for term in lexemes(doc.get(field) or ""):
            pos = min(pos + 1, 16383)
            where.setdefault(term, []).append(f"{pos}{cls}")
    return " ".join(f"'{t}':{','.join(p[:255])}" for t, p in where.items())


class PostgresLexicalIndex:
    """Lexical search in PostgreSQL (see the module docstring). ``url``: the store's
    PostgreSQL URL; ``name``: the index's table suffix; ``schema``: the store's schema."""

    def __init__(self, config: LexicalConfig = LexicalConfig(), url: str = "", name: str = "catalog",
                 schema: str | None = None, engine=None) -> None:  # noqa: ANN001
        from sqlalchemy import create_engine

        if not _NAME.match(name):
            raise ValueError(f"index name must be lowercase letters, digits and _ (got {name!r})")
        if schema is not None and not _NAME.match(schema):
            raise ValueError(f"schema must be lowercase letters, digits and _ (got {schema!r})")
        self.config = config
        self.url, self.name, self.schema = url, name, schema
        self._own_engine = engine is None
        self._engine = engine or create_engine(normalize_url(url), pool_pre_ping=True)
        if self._engine.dialect.name != "postgresql":
            raise ValueError("PostgresLexicalIndex needs a PostgreSQL URL")
        self.table = f"{schema + '.' if schema else ''}search_{name}"
        classes = {c: 0.0 for c in "ABCD"}
        for f, w in config.field_weights.items():
            classes[CLASSES[f]] = max(classes[CLASSES[f]], w)
        top = max(classes.values()) or 1.0
        # ts_rank's weights array is {D, C, B, A}
        self._weights = "{" + ",".join(f"{classes[c] / top:.4f}" for c in "DCBA") + "}"
        with self._engine.begin() as conn:
            if schema:
                conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
            conn.execute(text(
                f"CREATE TABLE IF NOT EXISTS {self.table} (row BIGINT PRIMARY KEY, item_id TEXT NOT NULL, "
                "doc TSVECTOR NOT NULL, brand_key TEXT, category_keys TEXT[], price DOUBLE PRECISION, "
                "available BOOLEAN NOT NULL)"))
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS search_{name}_doc ON {self.table} USING GIN (doc)"))

    def reset(self) -> None:
        """Empty the table (a new catalog numbering starts)."""
        with self._engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {self.table}"))

    def add_or_update(self, rows: np.ndarray, docs: list[dict[str, Any]]) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != len(docs):
            raise ValueError(f"{len(rows)} rows but {len(docs)} documents")
        params = [{"row": int(r), "item_id": d["item_id"], "doc": _tsvector_literal(d), "brand": d.get("brand_key") or None,
                   "cats": list(d.get("category_keys") or []), "price": d.get("price"),
                   "available": bool(d.get("available", True))} for r, d in zip(rows.tolist(), docs)]
        stmt = text(
            f"INSERT INTO {self.table} (row, item_id, doc, brand_key, category_keys, price, available) "
            "VALUES (:row, :item_id, CAST(:doc AS tsvector), :brand, :cats, :price, :available) "
            "ON CONFLICT (row) DO UPDATE SET item_id = EXCLUDED.item_id, doc = EXCLUDED.doc, "
            "brand_key = EXCLUDED.brand_key, category_keys = EXCLUDED.category_keys, price = EXCLUDED.price, "
            "available = EXCLUDED.available")
        with self._engine.begin() as conn:
            for i in range(0, len(params), 2000):
                conn.execute(stmt, params[i : i + 2000])

    def delete(self, rows: np.ndarray) -> None:
        with self._engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {self.table} WHERE row = ANY(:rows)"),
                         {"rows": [int(r) for r in np.asarray(rows).tolist()]})

    def search(self, query: LexicalQuery, k: int, flt: SearchFilter | None = None,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        terms: dict[str, float] = {}
        for token, w in query.merged(self.config.max_terms):
            for t in lexemes(token):
                terms[t] = max(terms.get(t, 0.0), w)
        if not terms or (rows is not None and len(rows) == 0):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        params: dict[str, Any] = {"k": k, "any": " | ".join(f"'{t}'" for t in terms)}
        score = []
        for i, (t, w) in enumerate(terms.items()):
            params[f"t{i}"], params[f"w{i}"] = f"'{t}'", w
            score.append(f"CAST(:w{i} AS float8) * ts_rank(CAST('{self._weights}' AS float4[]), doc, "
                         f"CAST(:t{i} AS tsquery), 1)")
        where = ["doc @@ CAST(:any AS tsquery)"]
        if flt is not None and not flt.is_empty:
            if flt.brands:
                where.append("brand_key = ANY(:brands)")
                params["brands"] = list(flt.brands)
            if flt.categories:
                where.append("category_keys && CAST(:cats AS text[])")
                params["cats"] = list(flt.categories)
            if flt.min_price is not None:
                where.append("price >= :lo")
                params["lo"] = flt.min_price
            if flt.max_price is not None:
                where.append("price <= :hi")
                params["hi"] = flt.max_price
            if flt.available_only:
                where.append("available")
        if rows is not None:
            where.append("row = ANY(:rows)")
            params["rows"] = [int(r) for r in np.asarray(rows).tolist()]
        sql = (f"SELECT row, {' + '.join(score)} AS score FROM {self.table} WHERE {' AND '.join(where)} "
               "ORDER BY score DESC, row ASC LIMIT :k")
        with self._engine.connect() as conn:
            found = conn.execute(text(sql), params).all()
        return (np.array([r for r, _ in found], dtype=np.int64), np.array([s for _, s in found], dtype=np.float32))

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {self.table}")).scalar_one())

    def save(self, folder: Path) -> None:
        """Nothing to write: the index lives in the database."""

    @classmethod
    def load(cls, folder: Path, **kwargs: Any) -> "PostgresLexicalIndex":
        return cls(**kwargs)

    def drop(self) -> None:
        with self._engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {self.table}"))

    def close(self) -> None:
        if self._own_engine:
            self._engine.dispose()
