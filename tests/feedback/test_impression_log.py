"""The impression log: batches written off the caller's thread, nothing lost on close,
a bounded queue that drops (and counts) instead of blocking, failed writes retried."""

from __future__ import annotations

import threading
import time

import pytest

from shopformer.feedback.impressions import ImpressionLog, ImpressionLogConfig


class Sink:
    """A store stand-in: keeps the batches; ``gate`` (when set) holds every write until
    it is set; ``fail`` makes the next writes raise."""

    def __init__(self) -> None:
        self.batches: list[list[dict]] = []
        self.gate: threading.Event | None = None
        self.fail = 0
        self.threads: set[str] = set()

    def __call__(self, rows) -> int:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            self.fail -= 1
            raise OSError("store down")
        self.batches.append(list(rows))
        return len(rows)

    @property
    def ids(self) -> list[int]:
        return [r["n"] for b in self.batches for r in b]


def test_config_is_checked():
    with pytest.raises(ValueError, match="flush_s"):
        ImpressionLogConfig(flush_s=0)
    with pytest.raises(ValueError, match="queue_size"):
        ImpressionLogConfig(queue_size=0)


def test_batches_are_written_by_the_thread_and_close_loses_nothing():
    sink = Sink()
    log = ImpressionLog(ImpressionLogConfig(flush_s=0.05, batch_size=100), sink).start()
    for n in range(250):
        assert log.record({"n": n})
    deadline = time.monotonic() + 5
    while len(sink.ids) < 250 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.ids == list(range(250)) and max(len(b) for b in sink.batches) <= 100
    assert sink.threads == {"shopformer-impressions"}  # never the caller's thread
    for n in range(250, 1250):  # queued faster than the thread writes: close() writes the rest
        log.record({"n": n})
    log.close()
    assert sink.ids == list(range(1250)) and log.written == 1250 and log.dropped == 0 and log.queued == 0
    assert not log.record({"n": -1}) and log.dropped == 1  # after close: refused, counted


def test_a_full_queue_drops_and_counts_without_blocking():
    sink = Sink()
    sink.gate = threading.Event()  # the store hangs
    log = ImpressionLog(ImpressionLogConfig(flush_s=0.01, batch_size=10, queue_size=50), sink).start()
    log.record({"n": 0})
    deadline = time.monotonic() + 5
    while log.queued and time.monotonic() < deadline:  # until the thread took row 0 and waits on the store
        time.sleep(0.005)
    t0 = time.perf_counter()
    results = [log.record({"n": n}) for n in range(1, 201)]
    assert time.perf_counter() - t0 < 0.5  # never waited for the store
    assert results.count(True) == 50 and log.dropped == 150 and log.queued <= 50
    sink.gate.set()
    log.close()
    assert sink.ids == list(range(51)) and log.written == 51


def test_a_failed_write_is_tried_again_first():
    sink = Sink()
    sink.fail = 1
    log = ImpressionLog(ImpressionLogConfig(flush_s=10, batch_size=3), sink)  # no thread: flush() by hand
    for n in range(5):
        log.record({"n": n})
    with pytest.raises(OSError):
        log.flush()
    assert log.queued == 5 and sink.ids == []
    assert log.flush() == 5 and sink.ids == [0, 1, 2, 3, 4]  # in order: the failed batch first


def test_rows_the_store_still_refuses_at_close_are_counted():
    sink = Sink()
    sink.fail = 100
    log = ImpressionLog(ImpressionLogConfig(flush_s=0.01), sink).start()
    for n in range(7):
        log.record({"n": n})
    log.close()
    assert log.failed == 7 and log.written == 0 and log.queued == 0


def test_rows_the_store_refuses_as_data_are_dropped_alone():
    def write(rows):
        if any(r["n"] == "bad" for r in rows):
            raise ValueError("a value the store cannot hold")
        sink(rows)

    sink = Sink()
    log = ImpressionLog(ImpressionLogConfig(flush_s=10), write, refused=lambda exc: isinstance(exc, ValueError))
    for n in (0, 1, "bad", 3):
        log.record({"n": n})
    assert log.flush() == 3 and sink.ids == [0, 1, 3] and (log.failed, log.written, log.queued) == (1, 3, 0)


def test_pause_writes_the_queue_skips_new_answers_and_resume_logs_again():
    sink = Sink()
    log = ImpressionLog(ImpressionLogConfig(flush_s=3600, batch_size=100), sink).start()
    for n in range(5):
        assert log.record({"n": n})
    assert sink.ids == []  # an hour's flush: still queued
    assert log.pause() == 5 and log.paused
    assert sink.ids == [0, 1, 2, 3, 4] and log.queued == 0  # written at once, in the caller's thread
    for _ in range(3):
        log.skip()
    assert log.skipped == 3 and log.written == 5 and log.dropped == 0
    log.resume()
    assert not log.paused and log.record({"n": 5})
    log.close()
    assert sink.ids == [0, 1, 2, 3, 4, 5] and log.written == 6 and log.skipped == 3


def test_a_pause_the_store_fails_holds_and_keeps_the_rows():
    sink = Sink()
    log = ImpressionLog(ImpressionLogConfig(flush_s=3600, batch_size=100), sink).start()
    for n in range(4):
        log.record({"n": n})
    sink.fail = 1
    assert log.pause() == 0 and log.paused and log.queued == 4  # not raised, nothing lost
    log.close()
    assert sink.ids == [0, 1, 2, 3] and log.written == 4 and log.failed == 0
