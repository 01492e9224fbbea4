"""What impression logging costs in one process, with no HTTP and no load to blur it
(benchmarks/impression_overhead.py): the logging call on the request path, the writer
thread's CPU per impression, and how long a flush keeps another thread waiting for the GIL.

The GIL measure: a probe thread sleeps ``probe_s`` again and again and records how late
it wakes (the OS wakes it on time; the lateness is mostly the wait for the GIL, which a
request thread pays the same way after each I/O). Meanwhile the main thread writes
batches through the store as the impression log's writer does, ``gap_s`` apart; probe
wakes that overlap a write are compared with those that do not. The SQLite insert is
measured as it is now (in chunks with a GIL hand-over between them) and in one chunk (as
before), alternated; then the writer PROCESS (SHOPFORMER_IMPRESSIONS_WRITER=process): the
main thread queues the batch and flushes it through
:class:`shopformer.feedback.writer_process.ProcessImpressionLog` (rows handed over, the
child writes them, the flush returns when they are written), so the window holds only
what the API process does for a batch; its CPU is this process's, the child's not counted.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ITEMS = [f"p{i}" for i in range(10)]
_batches = itertools.count()  # request ids never repeat (a stored id would be left out, not written)


def impression_rows(tag: str, n: int) -> list[dict]:
    """``n`` impression rows as serve/feedback.py queues them (10 items each)."""
    b = next(_batches)
    return [{"request_id": f"cost-{tag}-{b}-{i}", "shown_at": datetime.now(timezone.utc), "user_id": f"u{i}",
             "session_id": None, "placement": "user_recommendations", "route": "user_recommendations",
             "model_name": "sasrec", "model_version": "run-0123456789ab", "experiment": None, "variant": None,
             "strategy": "history", "item_ids": ITEMS} for i in range(n)]


def request_path_us(store, calls: int = 20_000, writer: str = "process") -> dict:
    """The answer's logging call (``serve.feedback.answered``) one call at a time, with
    the log on, paused and off: median and p99 in µs (``writer``: the log's writer)."""
    from prometheus_client import CollectorRegistry
    from starlette.responses import Response

    from shopformer.feedback.impressions import ImpressionLogConfig
    from shopformer.feedback.metrics import FeedbackMetrics
    from shopformer.serve.feedback import answered, start_feedback
    from shopformer.serve.settings import ServeSettings

    served = type("Served", (), {"name": "sasrec", "version": "run-0123456789ab"})()
    out = {}
    for mode in ("off", "paused", "on"):
        settings = ServeSettings(store_url="sqlite://", impressions=None if mode == "off" else
                                 ImpressionLogConfig(writer=writer))
        feedback = start_feedback(settings, store, FeedbackMetrics(CollectorRegistry()))
        if mode == "paused":
            feedback.log.pause()
        state = type("State", (), {"feedback": feedback, "pseudonyms": None})()
        request = type("Request", (), {"app": type("App", (), {"state": state})()})()
        times = []
        for i in range(calls):
            response = Response()
            t0 = time.perf_counter()
            answered(request, response, route="user_recommendations", items=ITEMS, served=served,
                     strategy="history", user_id=f"u{i % 1000}")
            times.append(time.perf_counter() - t0)
        feedback.close()
        us = np.asarray(times) * 1e6
        out[f"request_path_{mode}_us"] = {"median": round(float(np.median(us)), 2),
                                          "p99": round(float(np.percentile(us, 99)), 2)}
    return out


def writer_cpu_us(store, batch: int = 250, batches: int = 20) -> float:
    """The writer thread's CPU per impression (median over batches), in µs."""
    cpu = []
    for b in range(batches):
        rows = impression_rows(f"cpu{b}", batch)
        t0 = time.thread_time()
        store.add_impressions(rows)
        cpu.append((time.thread_time() - t0) / batch * 1e6)
    return round(float(np.median(cpu)), 2)


def _wakes(store, batch: int, flushes: int, gap_s: float, probe_s: float,
           queue=None, flush=None) -> tuple[np.ndarray, np.ndarray, list]:
    """Probe wakes' lateness (ms) during flushes and outside them, and the flushes' wall ms.
    ``queue(rows)`` (before the window) and ``flush()`` (the window): the writer; default
    the thread writer's insert of the rows."""
    held: list[list[dict]] = []
    queue = queue or held.append
    flush = flush or (lambda: store.add_impressions(held.pop()))
    done = threading.Event()
    wakes: list[tuple[float, float]] = []  # (slept at, woke at)

    def probe() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            time.sleep(probe_s)
            wakes.append((t0, time.perf_counter()))

    thread = threading.Thread(target=probe, name="gil-probe")
    thread.start()
    windows = []
    try:
        for f in range(flushes):
            time.sleep(gap_s)
            queue(impression_rows("gil", batch))  # the request threads' work
            t0 = time.perf_counter()
            flush()
            windows.append((t0, time.perf_counter()))
    finally:
        done.set()
        thread.join()
    w = np.asarray(windows)
    slept, woke = np.asarray(wakes).T
    i = np.clip(np.searchsorted(w[:, 0], woke) - 1, 0, None)  # the last flush started before the wake
    during = (woke > w[i, 0]) & (slept < w[i, 1])
    late = (woke - slept - probe_s) * 1e3
    return late[during], late[~during], list((w[:, 1] - w[:, 0]) * 1e3)


def _stats(x: np.ndarray) -> dict:
    return {"wakes": int(x.size), "p50": round(float(np.median(x)), 3), "p99": round(float(np.percentile(x, 99)), 3),
            "max": round(float(x.max()), 3)}


def gil_wait_ms(store, batch: int = 250, flushes: int = 100, gap_s: float = 0.05, probe_s: float = 0.0005,
                chunk_rows: int | None = None) -> dict:
    """Probe wakes' lateness (ms arrays) during flushes of ``batch`` rows and between them,
    the flushes' wall ms and the writer's CPU µs per impression. ``chunk_rows``: the SQLite
    insert chunk (store/impressions.py's SQLITE_CHUNK_ROWS; None: as it is, ``batch``: one
    chunk, as before chunking)."""
    from shopformer.store import impressions as shown

    kept = shown.SQLITE_CHUNK_ROWS
    if chunk_rows is not None:
        shown.SQLITE_CHUNK_ROWS = chunk_rows
    try:
        during, outside, walls = _wakes(store, batch, flushes, gap_s, probe_s)
        cpu = writer_cpu_us(store, batch, batches=5)
    finally:
        shown.SQLITE_CHUNK_ROWS = kept
    return {"during": during, "outside": outside, "walls": walls, "cpu": cpu}


def process_gil_wait_ms(store, batch: int = 250, flushes: int = 100, gap_s: float = 0.05,
                        probe_s: float = 0.0005) -> dict:
    """As :func:`gil_wait_ms` for the writer process: a flush hands ``batch`` rows over and
    waits for the child's write; ``cpu``: this process's CPU per impression for it."""
    from shopformer.feedback.impressions import ImpressionLogConfig
    from shopformer.feedback.writer_process import ProcessImpressionLog
    from shopformer.store.impressions import refused

    log = ProcessImpressionLog(ImpressionLogConfig(flush_s=3600, batch_size=100_000), store.config,
                               store.add_impressions, refused).start()
    try:
        log.flush()  # the child is up
        cpu: list[float] = []

        def queue(rows: list[dict]) -> None:
            for r in rows:
                log.record(r)

        def flush() -> None:
            t0 = time.thread_time()
            log.flush()
            cpu.append((time.thread_time() - t0) / batch * 1e6)

        during, outside, walls = _wakes(store, batch, flushes, gap_s, probe_s, queue, flush)
    finally:
        log.close()
    return {"during": during, "outside": outside, "walls": walls, "cpu": float(np.median(cpu))}


def compare_chunking(store, batch: int, flushes: int = 100, rounds: int = 2) -> dict:
    """The GIL wait with the insert in one chunk (before), in chunks (the thread writer)
    and with the writer process, alternated ``rounds`` times, pooled."""
    from shopformer.store import impressions as shown

    variants = {"one_chunk": batch, f"chunks_of_{shown.SQLITE_CHUNK_ROWS}": None, "process_writer": "process"}
    got: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, chunk in variants.items():
            got[name].append(process_gil_wait_ms(store, batch, flushes // rounds) if chunk == "process" else
                             gil_wait_ms(store, batch, flushes // rounds, chunk_rows=chunk))
    return {name: {"during_flush": _stats(np.concatenate([r["during"] for r in runs])),
                   "outside_flush": _stats(np.concatenate([r["outside"] for r in runs])),
                   "flush_wall_ms_median": round(float(np.median(sum((r["walls"] for r in runs), []))), 3),
                   "writer_cpu_us_per_impression": round(float(np.median([r["cpu"] for r in runs])), 2)}
            for name, runs in got.items()}


def in_process_costs(tmp: Path, batch: int = 250, writer: str = "process") -> dict:
    """All of them, on a fresh SQLite store under ``tmp``; the GIL wait for a batch of
    ``batch`` (a 0.5 s flush at 500 answers/s) and of 1,000 (the default batch_size cap)."""
    from shopformer.store import EventStore, StoreConfig

    with EventStore(StoreConfig(f"sqlite:///{tmp / 'costs.db'}")) as store:
        out = request_path_us(store, writer=writer)
        out["batch"] = batch
        out["writer_cpu_us_per_impression"] = writer_cpu_us(store, batch)
        out["writer_gil_wait_ms"] = {f"batch_{b}": compare_chunking(store, b, 100 if b <= 250 else 40)
                                     for b in (batch, 1000)}
    return out


__all__ = ["compare_chunking", "gil_wait_ms", "process_gil_wait_ms", "impression_rows", "in_process_costs", "request_path_us",
           "writer_cpu_us"]
