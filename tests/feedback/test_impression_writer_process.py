"""The impression log's writer process (SHOPFORMER_IMPRESSIONS_WRITER=process): rows the
child writes are in the store (SQLite, and PostgreSQL with SHOPFORMER_TEST_POSTGRES_URL),
a clean shutdown loses none, the bound covers rows the child holds, store failures and
refused rows are counted as by the thread writer, and a child that dies is replaced
(its unfinished rows written again) or, dying again and again, replaced by the thread."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from shopformer.feedback import writer_process
from shopformer.feedback.impressions import ImpressionLogConfig
from shopformer.feedback.writer_process import ProcessImpressionLog, WriterProcessError
from shopformer.serve import ServeSettings
from shopformer.store import EventStore, StoreConfig
from shopformer.store.impressions import refused


def row(**kw) -> dict:
    return {"request_id": uuid.uuid4().hex, "shown_at": datetime.now(timezone.utc), "user_id": "u1",
            "session_id": None, "placement": "home", "route": "user_recommendations", "model_name": "sasrec",
            "model_version": "run1-abc", "experiment": None, "variant": None, "strategy": "history",
            "item_ids": ["i1", "i2"], **kw}


def started(store: EventStore, **config) -> ProcessImpressionLog:
    return ProcessImpressionLog(ImpressionLogConfig(**config), store.config, store.add_impressions, refused).start()


def wait_for(check, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def sqlite_store(tmp_path):
    # a short busy timeout: while the test holds the write lock the child's writes fail fast (and are retried)
    with EventStore(StoreConfig(url=f"sqlite:///{tmp_path / 'store.db'}", busy_timeout_ms=100)) as store:
        yield store


@contextmanager
def locked(store: EventStore):
    """Hold SQLite's write lock from another connection: the child cannot write meanwhile."""
    con = sqlite3.connect(store.config.url.removeprefix("sqlite:///"), isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


def test_the_child_writes_rows_the_store_reads_back(backend_store):  # SQLite, and PostgreSQL when configured
    log = started(backend_store, flush_s=0.05, batch_size=100)
    rows = [row(user_id=f"u{n % 3}", item_ids=[f"i{n}"]) for n in range(250)]
    for r in rows:
        assert log.record(r)
    wait_for(lambda: backend_store.count_impressions() == 250)
    assert log.pid is not None and log.pid != os.getpid()  # written by another process
    wait_for(lambda: log.written == 250 and log.queued == 0)  # its counts reach this side
    got = backend_store.impressions().to_dicts()
    assert [g["request_id"] for g in got] == [r["request_id"] for r in rows]
    assert got[7]["item_ids"] == ["i7"] and got[7]["user_id"] == "u1" and got[7]["shown_at"] == rows[7]["shown_at"]
    log.close()
    assert (log.written, log.dropped, log.failed) == (250, 0, 0)


def test_a_clean_shutdown_loses_nothing_and_flush_waits_for_the_write(sqlite_store):
    log = started(sqlite_store, flush_s=3600, batch_size=100_000)  # nothing handed over before a flush or close
    first = [row() for _ in range(30)]
    for r in first:
        log.record(r)
    assert sqlite_store.count_impressions() == 0 and log.queued == 30
    assert log.flush() == 30 and sqlite_store.count_impressions() == 30  # in the store when flush returns
    for _ in range(1970):
        log.record(row())
    pid = log.pid
    log.close()
    assert sqlite_store.count_impressions() == 2000 and (log.written, log.queued, log.dropped) == (2000, 0, 0)
    with pytest.raises(ProcessLookupError):  # the child exited
        os.kill(pid, 0)
    assert not log.record(row()) and log.dropped == 1  # after close: refused, counted


def test_the_bound_counts_rows_the_child_holds_and_drops_the_rest(sqlite_store):
    log = started(sqlite_store, flush_s=0.05, batch_size=10, queue_size=50)
    with locked(sqlite_store):
        for _ in range(50):
            assert log.record(row())
        wait_for(lambda: not log._rows)  # all handed to the child, which cannot write them
        t0 = time.perf_counter()
        results = [log.record(row()) for _ in range(100)]
        assert time.perf_counter() - t0 < 0.5  # never waited for the child or the store
        assert not any(results) and log.dropped == 100 and log.queued == 50 and log.written == 0
        with pytest.raises(WriterProcessError, match="OperationalError"):  # the store's error, raised here
            log.flush()
        assert log.pause() == 0 and log.paused and log.queued == 50  # the pause holds, nothing lost
    log.resume()
    wait_for(lambda: log.written == 50)  # the child tried again once the lock was gone
    log.close()
    assert sqlite_store.count_impressions() == 50 and (log.written, log.dropped, log.failed) == (50, 100, 0)


def test_rows_the_store_refuses_are_counted_as_failed(sqlite_store):
    log = started(sqlite_store, flush_s=3600)
    for n in range(4):
        log.record(row(session_id="\ud800" if n == 2 else None))  # a lone surrogate: no UTF-8 for it
    assert log.flush() == 3
    log.close()
    assert sqlite_store.count_impressions() == 3 and (log.written, log.failed, log.queued) == (3, 1, 0)


def test_a_child_that_dies_is_replaced_and_its_unwritten_rows_written_again(sqlite_store):
    log = started(sqlite_store, flush_s=0.05, batch_size=10)
    given = [row() for _ in range(40)]
    with locked(sqlite_store):
        for r in given:
            log.record(r)
        wait_for(lambda: not log._rows)  # the child holds them, unwritten
        first = log.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: log.restarts == 1 and log.pid not in (None, first))
    wait_for(lambda: sqlite_store.count_impressions() == 40)
    log.close()
    got = sqlite_store.impressions()["request_id"].to_list()
    assert got == [r["request_id"] for r in given] and log.written == 40 and log.failed == 0


def test_a_flush_across_a_death_is_answered_by_the_next_child(sqlite_store):
    log = started(sqlite_store, flush_s=3600, batch_size=100_000)
    for _ in range(20):
        log.record(row())
    os.kill(log.pid, signal.SIGKILL)
    assert log.flush() == 20 and sqlite_store.count_impressions() == 20 and log.restarts == 1
    log.close()
    assert log.written == 20


def test_after_repeated_deaths_the_thread_writes(sqlite_store, monkeypatch):
    monkeypatch.setattr(writer_process, "MAX_RESTARTS", 1)
    log = started(sqlite_store, flush_s=0.05, batch_size=10)
    for _ in range(2):  # the first death: a new child; the second: the thread
        pid = log.pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: log.pid != pid)
    assert log.pid is None and log.restarts == 1
    for _ in range(25):
        assert log.record(row())
    wait_for(lambda: sqlite_store.count_impressions() == 25)
    log.record(row())
    log.close()
    assert sqlite_store.count_impressions() == 26 and log.written == 26


def test_a_child_killed_at_shutdown_loses_nothing(sqlite_store):
    log = started(sqlite_store, flush_s=3600, batch_size=100_000)
    for _ in range(300):
        log.record(row())
    log.flush()
    for _ in range(200):
        log.record(row())
    os.kill(log.pid, signal.SIGKILL)
    log.close()  # whether a new child or this process writes the rest: all of it is written
    assert sqlite_store.count_impressions() == 500 and log.written == 500 and log.queued == 0


def test_the_writer_setting():
    assert ImpressionLogConfig().writer == "process"
    got = ServeSettings.from_env({"SHOPFORMER_IMPRESSIONS_WRITER": "thread"}).impressions
    assert got == ImpressionLogConfig(writer="thread")
    with pytest.raises(ValueError, match="SHOPFORMER_IMPRESSIONS_WRITER"):
        ServeSettings.from_env({"SHOPFORMER_IMPRESSIONS_WRITER": "fork"})
    with pytest.raises(ValueError, match="writer"):
        ImpressionLogConfig(writer="fork")
