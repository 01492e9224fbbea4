"""Engines: SQLite in WAL mode (the default) and PostgreSQL through psycopg 3.

SQLite connections run ``journal_mode=WAL`` (readers never block the writer),
``synchronous=FULL`` (a commit is on disk before it returns, so an acknowledged event
survives a power cut), ``secure_delete=ON`` (freed bytes are overwritten with zeros on
every write, not only during an erasure: a customer's bytes can otherwise survive in the
free space that earlier page splits left behind, see :mod:`shopformer.store.erasure`),
``foreign_keys=ON`` and a ``busy_timeout`` (a writer in another
process waits for the lock instead of failing; writers in one process queue on the
store's own lock first, see :mod:`shopformer.store.base`). pysqlite's own transaction handling is switched off
and the store emits ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for writes (the write lock is
taken up front, so two writers queue instead of deadlocking), ``BEGIN`` for reads (a
consistent snapshot). PostgreSQL sessions run in UTC; a commit is durable with the
server's default ``synchronous_commit=on``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:
    from .base import StoreConfig

#: Execution option read by the SQLite ``begin`` hook: "DEFERRED" or "IMMEDIATE".
SQLITE_BEGIN = "shopformer_sqlite_begin"


class StoreError(ValueError):
    """A user-facing store error (bad URL, rejected catalog rows, ...)."""


def normalize_url(url: str | URL) -> URL:
    """``postgres://`` / ``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3)."""
    u = make_url(url)
    if u.drivername in ("postgres", "postgresql"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def backend_name(url: str | URL) -> str:
    return normalize_url(url).get_backend_name()


def create_store_engine(config: StoreConfig) -> Engine:
    url = normalize_url(config.url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if config.schema:
            raise StoreError("StoreConfig.schema is for PostgreSQL; SQLite has one schema")
        return _sqlite_engine(url, config)
    if backend == "postgresql":
        if url.drivername != "postgresql+psycopg":
            raise StoreError(f"use the psycopg 3 driver: postgresql+psycopg://..., not {url.drivername}")
        return _postgres_engine(url, config)
    raise StoreError(
        f"unsupported database URL {url.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path/to/file.db or postgresql://user@host:5432/db"
    )


def _pool_args(config: StoreConfig, pre_ping_default: bool) -> dict:
    pre_ping = pre_ping_default if config.pool_pre_ping is None else config.pool_pre_ping
    return dict(
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout,
        pool_recycle=config.pool_recycle,
        pool_pre_ping=pre_ping,
    )


def _sqlite_engine(url: URL, config: StoreConfig) -> Engine:
    memory = url.database in (None, "", ":memory:")
    connect_args = {"check_same_thread": False, "timeout": config.busy_timeout_ms / 1000}
    if memory:  # one shared connection, or every connection would see its own database
        engine = create_engine(url, echo=config.echo, poolclass=StaticPool, connect_args=connect_args)
    else:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # no pre-ping by default: a file connection does not go stale, and the check
        # would cost a query per checkout
        engine = create_engine(url, echo=config.echo, connect_args=connect_args, **_pool_args(config, False))
    busy_ms = int(config.busy_timeout_ms)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # no implicit BEGIN/COMMIT from pysqlite
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA secure_delete = ON")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _postgres_engine(url: URL, config: StoreConfig) -> Engine:
    engine = create_engine(
        url, echo=config.echo, connect_args={"options": "-c timezone=UTC"}, **_pool_args(config, True)
    )
    if config.schema:
        quoted = engine.dialect.identifier_preparer.quote_identifier(config.schema)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
    return engine


def as_utc(ts: datetime | None) -> datetime | None:
    """A timestamp read back from the store, aware and in UTC: SQLite gives naive UTC
    datetimes back, PostgreSQL aware ones."""
    if ts is None or ts.tzinfo is not None:
        return ts
    return ts.replace(tzinfo=timezone.utc)


@contextmanager
def scratch_database(url: str | URL, prefix: str = "shopformer_scratch") -> Iterator[str]:
    """A new PostgreSQL database ``<prefix>_<random>`` on the server of ``url``, for
    tests and benchmarks whose servers take no schema setting; yields its URL (password
    kept) and drops it afterwards, connections and all. Raises SQLAlchemy's
    ``DBAPIError`` when the server refuses to create it."""
    admin_url = normalize_url(url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
