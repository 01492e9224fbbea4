"""The lexical contract on both backends: Tantivy (embedded) and PostgreSQL full text
(skipped when no PostgreSQL server answers at SHOPFORMER_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import uuid

import pytest

from shopformer.search.lexical import LexicalConfig

from .contract import LexicalContract

pytest.importorskip("tantivy", reason="tantivy is not installed")


class TestTantivyIndex(LexicalContract):
    def make(self, tmp_path):
        from shopformer.search.tantivy_index import TantivyIndex

        return TantivyIndex(LexicalConfig(), path=tmp_path / "tantivy")

    def reopen(self, index, folder):
        from shopformer.search.tantivy_index import TantivyIndex

        return TantivyIndex.load(folder)


def test_tantivy_temporary_folder_is_removed_on_close():
    from shopformer.search.tantivy_index import TantivyIndex

    index = TantivyIndex()
    path = index.path
    assert path.is_dir()
    index.close()
    assert not path.exists()


POSTGRES_URL = os.environ.get("SHOPFORMER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_ok() -> str | None:
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        return f"no PostgreSQL at {POSTGRES_URL}: {type(exc).__name__}"


@pytest.mark.skipif(_postgres_ok() is not None, reason=_postgres_ok() or "")
class TestPostgresLexicalIndex(LexicalContract):
    def make(self, tmp_path):
        from shopformer.search.postgres_index import PostgresLexicalIndex

        self.name = "t" + uuid.uuid4().hex[:12]
        return _Dropping(PostgresLexicalIndex(LexicalConfig(), url=POSTGRES_URL, name=self.name))

    def reopen(self, index, folder):
        from shopformer.search.postgres_index import PostgresLexicalIndex

        return PostgresLexicalIndex.load(folder, url=POSTGRES_URL, name=self.name)


class _Dropping:
    """The index, dropping its table when closed (tests leave nothing in the database)."""

    def __init__(self, index):
        self._index = index

    def __getattr__(self, name):
        return getattr(self._index, name)

    def __len__(self):
        return len(self._index)

    def close(self):
        self._index.drop()
        self._index.close()
