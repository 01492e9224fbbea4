"""Durability: every event the API acknowledged survives the server being killed.

The real server (``shopformer serve``) runs as a subprocess on a free port over a store
in tmp_path (SQLite: WAL + ``synchronous=FULL``, the store's default). Client threads
post events (single ones and all-or-nothing batches) as fast as the server answers,
recording every ``event_id`` whose POST got a 2xx. Mid-load the server gets SIGKILL (no
shutdown code runs, requests in flight are cut off). The server is then started again
on the same store, which must come up healthy, and the store is read directly: every
acknowledged event must be there. Requests cut off by the kill were not acknowledged,
so whether they were stored does not matter.

Why this catches a store or route that answers before committing: the writers keep the
store saturated (SQLite serializes them), so at the kill there are always requests
between "written" and "answered"; if answers went out before the commit, acknowledged
events would still be uncommitted (or only queued in the process) when it dies, and the
set difference below would name them. (kill -9 does not test fsync: the OS keeps what
the process wrote. The on-disk settings that survive a power cut are checked by
tests/store/test_store_contract.py::test_sqlite_runs_wal_with_full_sync.)

PostgreSQL too when SHOPFORMER_TEST_POSTGRES_URL is set: the server gets a database of
its own (CREATE DATABASE, dropped afterwards), since it has no schema setting.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

from shopformer.store import EventStore, StoreConfig  # noqa: E402

PG_URL = os.environ.get("SHOPFORMER_TEST_POSTGRES_URL")
KEY = "durability-key"
WRITERS = 6  # client threads; enough to keep the single writer of the store busy
BATCH = 5  # events per batch post (one writer posts batches)
LOAD_S = (0.8, 3.0)  # kill after at least the first, at most the second, of load
ENOUGH_ACKS = 150  # ... or as soon as this many events were acknowledged


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``shopformer serve`` in a subprocess (no model: the event routes need none)."""

    def __init__(self, store_url: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFORMER_")}
        env["SHOPFORMER_API_KEY"] = KEY
        cmd = [sys.executable, "-m", "shopformer.cli", "serve", "--store", store_url, "--port", str(self.port)]
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                r = httpx.get(f"{self.base}/health", timeout=2)
                if r.status_code == 200 and r.json()["store"] == "ok":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server not ready after {timeout} s:\n{self.tail()}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@contextmanager
def running(store_url: str, log: Path) -> Iterator[Server]:
    server = Server(store_url, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the SHOPFORMER_TEST_POSTGRES_URL server, dropped afterwards."""
    from sqlalchemy.exc import DBAPIError

    from shopformer.store.engine import scratch_database

    with ExitStack() as stack:
        try:  # only the creation may skip: a database error in the test itself fails it
            url = stack.enter_context(scratch_database(PG_URL, "shopformer_durability"))
        except DBAPIError as exc:
            pytest.skip(f"cannot CREATE DATABASE on SHOPFORMER_TEST_POSTGRES_URL (needed to give the "
                        f"server its own tables): {exc.orig}")
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="set SHOPFORMER_TEST_POSTGRES_URL to run the durability test on PostgreSQL"))])
def store_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        with postgres_database() as url:
            yield url


class Writers:
    """Client threads posting events until told to stop; ``acked`` holds every event_id
    whose POST answered 2xx."""

    def __init__(self, base: str, tag: str) -> None:
        self.base, self.tag = base, tag
        self.acked: set[str] = set()
        self.unanswered = 0  # posts cut off (connection reset / refused)
        self.in_flight = 0
        self.unexpected: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(WRITERS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, w: int) -> None:
        with httpx.Client(base_url=self.base, headers={"X-API-Key": KEY}, timeout=10) as client:
            for n in range(1_000_000):
                if self.stop.is_set():
                    return
                ids = [f"{self.tag}-{w}-{n}-{b}" for b in range(BATCH if w == 0 else 1)]
                body = [{"event_id": i, "user_id": f"user-{w}", "item_id": f"item-{n % 50}", "type": "view"} for i in ids]
                with self._lock:
                    self.in_flight += 1
                try:
                    if len(body) == 1:
                        r = client.post("/v1/events", json=body[0])
                    else:
                        r = client.post("/v1/events:batch", json=body)
                except httpx.TransportError:
                    with self._lock:
                        self.unanswered += 1
                    time.sleep(0.01)  # the server is gone: do not spin
                    continue
                finally:
                    with self._lock:
                        self.in_flight -= 1
                if 200 <= r.status_code < 300:
                    with self._lock:
                        self.acked.update(ids)
                else:
                    self.unexpected.append(f"{r.status_code} {r.text[:200]}")

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)


def stored_ids(store_url: str, tag: str) -> set[str]:
    with EventStore(StoreConfig(store_url, pool_size=1)) as store:
        ids = store.events()["event_id"].to_list()
    return {i for i in ids if i.startswith(tag)}


def test_acknowledged_events_survive_kill_9(store_url, tmp_path):
    tag = f"dur-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "server.log"
    server = Server(store_url, log)
    try:
        server.wait_ready()
        writers = Writers(server.base, tag)
        writers.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < LOAD_S[1]:
            if time.monotonic() - t0 >= LOAD_S[0] and writers.acked_count() >= ENOUGH_ACKS:
                break
            time.sleep(0.02)
        in_flight_at_kill = writers.in_flight
        server.kill9()
        assert server.proc.returncode == -signal.SIGKILL
        writers.join()
    finally:
        server.stop()
    acked = set(writers.acked)
    assert not writers.unexpected, f"non-2xx answers under load: {writers.unexpected[:5]}"
    assert len(acked) >= 20, f"only {len(acked)} events acknowledged before the kill: the test proved nothing\n{server.tail()}"

    # The server comes back on the store the crash left behind and answers reads.
    with running(store_url, log) as again:
        r = httpx.get(f"{again.base}/v1/users/user-1", params={"limit": 1000}, headers={"X-API-Key": KEY}, timeout=10)
        assert r.status_code == 200, r.text
        # and every acknowledged event is stored (what the restarted server reads)
        missing = acked - stored_ids(store_url, tag)
    assert not missing, (
        f"{len(missing)} of {len(acked)} acknowledged events were lost after kill -9 "
        f"({in_flight_at_kill} requests in flight at the kill), e.g. {sorted(missing)[:5]}"
    )
