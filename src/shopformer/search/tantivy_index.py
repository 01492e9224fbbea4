"""The embedded lexical index: Tantivy (a Rust search library, Lucene's design) through
its Python package. No server; the index is a folder of files (or a temporary folder).

Why Tantivy (benchmarks/search_quality.py measures it beside SQLite FTS5 and PostgreSQL
full text on Home Depot): it ranks by BM25 per field, indexes 55k products in about two
seconds and answers in a few hundredths of a millisecond (SQLite FTS5: the same quality,
1.2 ms a query), updates and deletes documents in place (searchable at commit), and has
typed fast fields for filters (price ranges, brands, categories, availability) inside the
query. Not measured: bm25s (NumPy) rebuilds to update, Whoosh is unmaintained, Lucene
(Pyserini) needs a JVM.

Scoring: each text field is searched with its weight (``LexicalConfig.field_weights``):
the score is ``sum over fields and query terms of weight(field) * weight(term) *
BM25(field, term)`` (Tantivy's BM25, k1 = 1.2, b = 0.75). Documents are analyzed by
whitespace tokens (the text is normalized first, see .analysis), lowercase, English stop
words, Snowball English stems; query tokens go through the same analyzer and become
term queries directly, so no query syntax is ever parsed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from shopformer.retrieve.index import check_k

from .catalog import TEXT_FIELDS, SearchFilter
from .lexical import LexicalConfig, LexicalQuery

ANALYZER = "shop"
META = "lexical.json"


def _analyzer():  # noqa: ANN202 - tantivy.TextAnalyzer
    import tantivy

    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _schema():  # noqa: ANN202 - tantivy.Schema
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("row", stored=True, indexed=True, fast=True)
    for name in TEXT_FIELDS:
        sb.add_text_field(name, tokenizer_name=ANALYZER)
    sb.add_text_field("brand_key", tokenizer_name="raw")
    sb.add_text_field("category", tokenizer_name="raw")
    sb.add_float_field("price", indexed=True, fast=True)
    sb.add_boolean_field("available", indexed=True)
    return sb.build()


class TantivyIndex:
    """A Tantivy index in ``path`` (a temporary folder when None). Writes are serialized
    by a lock; searches run concurrently with them on the last committed state."""

    def __init__(self, config: LexicalConfig = LexicalConfig(), path: Path | None = None,
                 heap_bytes: int = 128_000_000) -> None:
        import tantivy

        self.config = config
        self._own_dir = path is None
        self.path = Path(tempfile.mkdtemp(prefix="shopformer-tantivy-")) if path is None else Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._tantivy = tantivy
        self._schema = _schema()
        self._index = tantivy.Index(self._schema, path=str(self.path), reuse=True)
        self._analyzer = _analyzer()
        self._index.register_tokenizer(ANALYZER, self._analyzer)
        self._heap = heap_bytes
        self._writer = None
        self._lock = threading.Lock()
        self._index.reload()

    # -- writes -------------------------------------------------------------------
    def _writer_(self):  # noqa: ANN202
        if self._writer is None:
            self._writer = self._index.writer(heap_size=self._heap, num_threads=1)
        return self._writer

    def _document(self, row: int, doc: dict[str, Any]):  # noqa: ANN202 - tantivy.Document
        d = self._tantivy.Document()
        d.add_integer("row", int(row))
        for name in TEXT_FIELDS:
            if doc.get(name):
                d.add_text(name, doc[name])
        if doc.get("brand_key"):
            d.add_text("brand_key", doc["brand_key"])
        for c in doc.get("category_keys") or ():
            d.add_text("category", c)
        if doc.get("price") is not None:
            d.add_float("price", float(doc["price"]))
        d.add_boolean("available", bool(doc.get("available", True)))
        return d

    def add_or_update(self, rows: np.ndarray, docs: list[dict[str, Any]]) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != len(docs):
            raise ValueError(f"{len(rows)} rows but {len(docs)} documents")
        with self._lock:
            w = self._writer_()
            for row, doc in zip(rows.tolist(), docs):
                w.delete_documents_by_term("row", int(row))
                w.add_document(self._document(row, doc))
            self._commit(w)

    def delete(self, rows: np.ndarray) -> None:
        with self._lock:
            w = self._writer_()
            for row in np.asarray(rows, dtype=np.int64).tolist():
                w.delete_documents_by_term("row", int(row))
            self._commit(w)

    def reset(self) -> None:
        with self._lock:
            w = self._writer_()
            w.delete_all_documents()
            self._commit(w)

    def _commit(self, w) -> None:  # noqa: ANN001
        w.commit()
        self._index.reload()  # the next searcher sees the commit: searchable on return

    # -- reads --------------------------------------------------------------------
    def analyze(self, text: str) -> list[str]:
        """The index terms of ``text`` (already normalized)."""
        return self._analyzer.analyze(text)

    def _text_query(self, query: LexicalQuery):  # noqa: ANN202
        Q, Occur = self._tantivy.Query, self._tantivy.Occur
        clauses = []
        for token, tw in query.merged(self.config.max_terms):
            for term in dict.fromkeys(self.analyze(token)):
                for name, fw in self.config.fields:
                    clauses.append((Occur.Should, Q.boost_query(Q.term_query(self._schema, name, term), fw * tw)))
        return Q.boolean_query(clauses) if clauses else None

    def _filter_clauses(self, f: SearchFilter | None) -> list:
        if f is None or f.is_empty:
            return []
        Q, Occur, FT = self._tantivy.Query, self._tantivy.Occur, self._tantivy.FieldType
        out = []
        if f.brands:
            out.append((Occur.Must, Q.term_set_query(self._schema, "brand_key", list(f.brands))))
        if f.categories:
            out.append((Occur.Must, Q.term_set_query(self._schema, "category", list(f.categories))))
        if f.min_price is not None or f.max_price is not None:
            lo = None if f.min_price is None else float(f.min_price)
            hi = None if f.max_price is None else float(f.max_price)
            out.append((Occur.Must, Q.range_query(self._schema, "price", FT.Float, lo, hi)))
        if f.available_only:
            out.append((Occur.MustNot, Q.term_query(self._schema, "available", False)))
        return out

    def search(self, query: LexicalQuery, k: int, flt: SearchFilter | None = None,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        text = self._text_query(query)
        if text is None or (rows is not None and len(rows) == 0):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        filters = self._filter_clauses(flt)
        Q, Occur = self._tantivy.Query, self._tantivy.Occur
        if rows is not None:
            filters.append((Occur.Must, Q.term_set_query(self._schema, "row", [int(r) for r in rows])))
        if filters:
            if all(o == Occur.MustNot for o, _ in filters):
                filters.append((Occur.Must, Q.all_query()))
            # filters score nothing: the text query's score is the document's score
            q = Q.boolean_query([(Occur.Must, text)] + [(o, Q.const_score_query(c, 0.0)) for o, c in filters])
        else:
            q = text
        searcher = self._index.searcher()
        hits = searcher.search(q, k, count=False).hits
        if not hits:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows = searcher.fast_field_values("row", [a for _, a in hits])
        return np.asarray(rows, dtype=np.int64), np.asarray([s for s, _ in hits], dtype=np.float32)

    def __len__(self) -> int:
        return int(self._index.searcher().num_docs)

    # -- persistence ----------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Copy the committed index into ``folder`` (no-op when it already lives there)."""
        folder = Path(folder)
        with self._lock:
            if self._writer is not None:
                self._commit(self._writer)
            if folder.resolve() != self.path.resolve():
                folder.mkdir(parents=True, exist_ok=True)
                for f in self.path.iterdir():
                    if f.is_file() and not f.name.endswith(".lock"):
                        shutil.copy2(f, folder / f.name)
        (folder / META).write_text(json.dumps({"type": "tantivy", "config": self.config.to_dict()}, indent=2))

    @classmethod
    def load(cls, folder: Path, **kwargs: Any) -> "TantivyIndex":
        """Open the index saved in ``folder`` in place (later writes go there)."""
        meta = json.loads((Path(folder) / META).read_text())
        return cls(LexicalConfig(**meta["config"]), path=Path(folder), **kwargs)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.wait_merging_threads()  # releases the writer's lock file
                self._writer = None
        if self._own_dir:
            shutil.rmtree(self.path, ignore_errors=True)
