"""Load generated events into a store fast, for benchmarks that need a big store: the
store's schema (EventStore creates it), then bulk writes past the store's API (SQLite:
executemany on one connection with the store's pragmas; PostgreSQL: COPY, then VACUUM
ANALYZE for a settled table, as in production). Rows are tuples in ``COLS`` order."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from shopformer.store import EventStore, StoreConfig

COLS = ("event_id", "user_id", "item_id", "event_type", "timestamp", "session_id", "query", "value", "context")
Chunks = Iterable[list[tuple]]


def load_sqlite(path: Path, chunks: Chunks) -> float:
    """A new SQLite store at ``path`` holding ``chunks`` (one transaction each, secure_delete
    on as every store connection has it, WAL checkpointed); returns the seconds taken."""
    EventStore(StoreConfig(f"sqlite:///{path}")).close()
    t0 = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA secure_delete = ON")
    sql = f"INSERT INTO events ({', '.join(COLS)}) VALUES ({', '.join('?' * len(COLS))})"
    for part in chunks:
        conn.execute("BEGIN")
        conn.executemany(sql, part)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


def load_postgres(store: EventStore, schema: str, chunks: Chunks) -> float:
    """COPY ``chunks`` into ``store``'s events table (in PostgreSQL schema ``schema``), then
    VACUUM ANALYZE it; returns the seconds taken."""
    t0 = time.perf_counter()
    raw = store._base_engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f'COPY "{schema}".events ({", ".join(COLS)}) FROM STDIN') as copy:
            for part in chunks:
                for r in part:
                    copy.write_row(r)
        raw.commit()
        raw.driver_connection.autocommit = True
        cur.execute(f'VACUUM ANALYZE "{schema}".events')
        raw.driver_connection.autocommit = False
    finally:
        raw.close()
    return time.perf_counter() - t0
