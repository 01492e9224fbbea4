"""BM25 of a question against a product's answers: one Tantivy index over every answer.

Why one index over the whole corpus, filtered to the product's answers at query time,
and not a BM25 per product (rank_bm25 over each product's 2-10 answers): BM25's inverse
document frequency needs a corpus, and a product's handful of answers gives a noisy
one (a word in one of three answers looks rare); the corpus-wide statistics of all
answers rate words by how informative they are in answers in general. Tantivy is the
project's lexical engine (search/tantivy_index.py) and scores the filtered answers in
microseconds. Text goes through the same normalization and analyzer (lowercase, English
stop words, Snowball stems) as product search.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from shopformer.search.analysis import normalize

ANALYZER = "qa"


def _analyzer():  # noqa: ANN202 - tantivy.TextAnalyzer, as search/tantivy_index.py builds it
    import tantivy

    return (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace())
            .filter(tantivy.Filter.remove_long(40)).filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.stopword("english")).filter(tantivy.Filter.stemmer("english")).build())


class AnswerIndex:
    """A Tantivy index of answers (``qa_id``, ``item_id``, answer text) in ``path`` (a
    temporary folder when None, removed by :meth:`close`)."""

    def __init__(self, path: Path | None = None) -> None:
        import tantivy

        self._tantivy = tantivy
        self._own_dir = path is None
        self.path = Path(tempfile.mkdtemp(prefix="shopformer-answers-")) if path is None else Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        sb = tantivy.SchemaBuilder()
        sb.add_integer_field("qa_id", stored=True, indexed=True, fast=True)
        sb.add_text_field("item", tokenizer_name="raw")
        sb.add_text_field("answer", tokenizer_name=ANALYZER)
        self._schema = sb.build()
        self._index = tantivy.Index(self._schema, path=str(self.path), reuse=True)
        self._analyzer = _analyzer()
        self._index.register_tokenizer(ANALYZER, self._analyzer)
        self._index.reload()
        self._lock = threading.Lock()

    def add(self, qa_ids: np.ndarray, item_ids: list[str], answers: list[str]) -> None:
        with self._lock:
            w = self._index.writer(heap_size=64_000_000, num_threads=1)
            for q, item, a in zip(np.asarray(qa_ids).tolist(), item_ids, answers):
                d = self._tantivy.Document()
                d.add_integer("qa_id", int(q))
                d.add_text("item", item)
                d.add_text("answer", normalize(a))
                w.add_document(d)
            w.commit()
            w.wait_merging_threads()
            self._index.reload()

    def terms(self, text: str) -> list[str]:
        return list(dict.fromkeys(self._analyzer.analyze(normalize(text))))

    def scores(self, question: str, item_id: str, qa_ids: np.ndarray) -> np.ndarray:
        """(len(qa_ids),) float32 BM25 of ``question`` for each of ``qa_ids`` (answers of
        ``item_id``); 0 where no term matches."""
        qa_ids = np.asarray(qa_ids, dtype=np.int64)
        out = np.zeros(len(qa_ids), np.float32)
        terms = self.terms(question)
        if not terms or not len(qa_ids):
            return out
        Q, Occur = self._tantivy.Query, self._tantivy.Occur
        text = Q.boolean_query([(Occur.Should, Q.term_query(self._schema, "answer", t)) for t in terms])
        # the filters score nothing: the text's BM25 is the answer's score
        q = Q.boolean_query([(Occur.Must, text),
                             (Occur.Must, Q.const_score_query(Q.term_query(self._schema, "item", item_id), 0.0)),
                             (Occur.Must, Q.const_score_query(
                                 Q.term_set_query(self._schema, "qa_id", qa_ids.tolist()), 0.0))])
        searcher = self._index.searcher()
        hits = searcher.search(q, len(qa_ids), count=False).hits
        if hits:
            found = searcher.fast_field_values("qa_id", [a for _, a in hits])
            where = {int(x): i for i, x in enumerate(qa_ids.tolist())}
            for qid, (score, _) in zip(found, hits):
                out[where[int(qid)]] = score
        return out

    def __len__(self) -> int:
        return int(self._index.searcher().num_docs)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        if folder.resolve() != self.path.resolve():
            if folder.exists():
                shutil.rmtree(folder)
            shutil.copytree(self.path, folder)

    def close(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.path, ignore_errors=True)
