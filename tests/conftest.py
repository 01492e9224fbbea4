"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared/data`` beside the checkout (real public datasets; see its README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not present: {SHARED_DATA} does not exist")
    return SHARED_DATA


@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request, tmp_path):
    """A StoreConfig on SQLite, then on PostgreSQL in a fresh schema (dropped afterwards)
    when SHOPFORMER_TEST_POSTGRES_URL is set (skipped with a reason when it is not)."""
    import os
    import uuid

    from sqlalchemy import create_engine, text

    from shopformer.store import StoreConfig
    from shopformer.store.engine import normalize_url

    if request.param == "sqlite":
        yield StoreConfig(f"sqlite:///{tmp_path / 'shop.db'}")
        return
    url = os.environ.get("SHOPFORMER_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set SHOPFORMER_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) "
                    "to run the PostgreSQL store tests")
    schema = f"shopformer_test_{uuid.uuid4().hex[:12]}"
    try:
        yield StoreConfig(url=url, schema=schema, pool_size=3)
    finally:
        engine = create_engine(normalize_url(url))
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def backend_store(store_config):
    """An open EventStore on each backend of :func:`store_config`."""
    from shopformer.store import EventStore

    with EventStore(store_config) as store:
        yield store


@pytest.fixture(scope="module")
def restore_threads():
    """Serving sets torch and FAISS (and with it the OpenMP runtime they share) to one
    thread; give the rest of the test session its threads back after the module.
    Modules that start a server use it: ``pytestmark = pytest.mark.usefixtures("restore_threads")``."""
    import faiss
    import torch

    before = faiss.omp_get_max_threads(), torch.get_num_threads()
    yield
    faiss.omp_set_num_threads(before[0])
    torch.set_num_threads(before[1])
