"""The impression log: what each answer showed, written to the store off the request path.

A request only appends a row to an in-memory queue (no I/O, no lock held while writing):
a background thread writes the queue every ``flush_s`` seconds, or sooner once
``batch_size`` rows wait, one write transaction per batch
(:meth:`shopformer.store.EventStore.add_impressions`). The queue is bounded: when
``queue_size`` rows wait (the store is slow or down), new rows are dropped and counted
(``dropped``), so memory stays bounded and no request ever waits for the store. A batch
whose write fails is kept and tried again on the next tick (new rows still queue behind
it, within the bound), unless the store refused its DATA (``refused``: e.g. text
PostgreSQL cannot hold): then its rows are written one by one and only the rows refused
are dropped and counted (``failed``), so one bad row never blocks the log. :meth:`ImpressionLog.close` (a clean shutdown: the app's lifespan
exit) writes everything queued before it returns; :meth:`ImpressionLog.flush` does the
same without stopping (an erasure calls it first, so the receipt counts what this
process showed the customer). :meth:`ImpressionLog.pause` stops logging new answers at
runtime (an operator's switch, ``PUT /v1/admin/impressions``): answers while paused are
counted in ``skipped``, not queued, and what was queued is written at once;
:meth:`ImpressionLog.resume` logs again.

This class is the ``thread`` writer (``SHOPFORMER_IMPRESSIONS_WRITER=thread``). The default,
``process``, keeps the same queue and guarantees but runs the SQL in a child process
(:mod:`shopformer.feedback.writer_process`), which runs this class, without its thread:
a writer thread inserting in the API process made request threads wait for the GIL.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("shopformer.feedback")

#: where the impression SQL runs (ImpressionLogConfig.writer)
WRITERS = ("process", "thread")


@dataclass(frozen=True)
class ImpressionLogConfig:
    """How answers' impressions reach the store (SHOPFORMER_IMPRESSIONS_* settings).

    flush_s: the longest a shown answer waits in memory before its batch is written.
    batch_size: rows per write transaction; a queue this long is written at once.
    queue_size: the most rows waiting; beyond it new rows are dropped and counted.
    recent: answers this process remembers (LRU) to attribute events posted to it
        without a store read (:class:`shopformer.feedback.attribution.Attributor`).
    writer: who runs the SQL: ``process`` (a child process with its own store
        connection, :mod:`shopformer.feedback.writer_process`; the API process only
        hands rows over) or ``thread`` (:class:`ImpressionLog`'s thread in the API
        process). An in-memory SQLite store always uses the thread (a child cannot see it).
    """

    flush_s: float = 0.5
    batch_size: int = 1000
    queue_size: int = 20_000
    recent: int = 20_000
    writer: str = "process"

    def __post_init__(self) -> None:
        if not self.flush_s > 0:
            raise ValueError(f"impressions flush_s must be > 0, got {self.flush_s}")
        if self.batch_size < 1 or self.queue_size < 1 or self.recent < 0:
            raise ValueError(f"impressions batch_size and queue_size must be >= 1 and recent >= 0, got "
                             f"{self.batch_size}, {self.queue_size}, {self.recent}")
        if self.writer not in WRITERS:
            raise ValueError(f"impressions writer must be one of {', '.join(WRITERS)}, got {self.writer!r}")


class PauseSwitch:
    """The operator's switch (``PUT /v1/admin/impressions``), the same for both writers: a
    log using it sets ``paused``, ``skipped`` and ``_counting`` (a lock) and has
    ``flush()`` and ``queued``."""

    def skip(self) -> None:
        """Count an answer not logged because the log is paused (the caller checked
        :attr:`paused` first, so a paused server builds no row)."""
        with self._counting:
            self.skipped += 1

    def pause(self) -> int:
        """Stop logging new answers and write what is queued now (so nothing waits in
        memory while paused); returns rows written. A store failure is logged, not raised:
        the rows stay queued and the writer tries again."""
        self.paused = True
        try:
            return self.flush()
        except Exception:  # noqa: BLE001 - the pause holds; the writer keeps trying
            log.exception("could not write the %d impressions queued at pause; the writer tries again", self.queued)
            return 0

    def resume(self) -> None:
        """Log new answers again."""
        self.paused = False


class ImpressionLog(PauseSwitch):
    """A bounded queue of impression rows and the thread that writes them with ``write``
    (a batch of row dicts -> rows written). Call :meth:`start` once, :meth:`close` once."""

    def __init__(self, config: ImpressionLogConfig, write: Callable[[Sequence[dict[str, Any]]], int],
                 refused: Callable[[Exception], bool] = lambda exc: False) -> None:
        self.config = config
        self._write = write
        self._refused = refused
        self._rows: deque[dict[str, Any]] = deque()
        self._failed: list[dict[str, Any]] = []  # a batch to write again (the store failed)
        self._wake = threading.Event()
        self._writing = threading.Lock()  # one writer at a time: the thread, or flush()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._counting = threading.Lock()  # drops may come from several threads at once
        #: rows handed to the store (it leaves out, on purpose, request ids already stored
        #: and customers erased since), rows dropped because the queue was full (or the log
        #: was closed), rows lost because the store refused their data or was still
        #: failing at close
        self.written = 0
        self.dropped = 0
        self.failed = 0
        #: True between pause() and resume(): answers are not logged, only counted here
        self.paused = False
        self.skipped = 0

    def start(self) -> ImpressionLog:
        self._thread = threading.Thread(target=self._run, name="shopformer-impressions", daemon=True)
        self._thread.start()
        return self

    def record(self, row: dict[str, Any]) -> bool:
        """Queue one row; False (and counted in ``dropped``) when the queue is full. Never
        blocks: appending to a deque is atomic, and the bound is checked without a lock
        (concurrent callers may overshoot it by a row each, which is harmless)."""
        if self._closed or len(self._rows) >= self.config.queue_size:
            with self._counting:
                self.dropped += 1
            return False
        self._rows.append(row)
        if len(self._rows) >= self.config.batch_size:
            self._wake.set()
        return True

    @property
    def queued(self) -> int:
        return len(self._rows) + len(self._failed)

    def flush(self) -> int:
        """Write everything queued now (in the caller's thread); returns rows written.
        Raises what the store raised (the rows stay queued for the next try)."""
        with self._writing:
            return self._drain(raise_errors=True)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking rows and write every row queued (a clean shutdown loses none);
        rows the store still refuses then are counted in ``failed`` and logged."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._writing:
            try:
                self._drain(raise_errors=True)
            except Exception:  # noqa: BLE001 - shutting down: say what was lost
                lost = self.queued
                self.failed += lost
                self._rows.clear()
                self._failed = []
                log.exception("could not write %d impressions at shutdown; they are lost", lost)

    def write_pending(self) -> int:
        """Write what is queued now; a store failure is logged, not raised (the rows stay
        queued for the next try). The writer thread's tick, and the writer process's."""
        with self._writing:
            return self._drain(raise_errors=False)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.config.flush_s)
            self._wake.clear()
            self.write_pending()

    def _drain(self, raise_errors: bool) -> int:
        """Write the queue batch by batch (the caller holds ``_writing``)."""
        done = 0
        while self._failed or self._rows:
            batch, self._failed = self._failed, []
            while len(batch) < self.config.batch_size and self._rows:
                batch.append(self._rows.popleft())
            try:
                taken = self._write_batch(batch)
            except Exception:
                self._failed = batch  # tried again next time, ahead of newer rows
                if raise_errors:
                    raise
                log.exception("could not write %d impressions; trying again in %.2f s", len(batch),
                              self.config.flush_s)
                return done
            # rows the store left out on purpose (request id already stored, customer
            # erased since) were handled, not lost: they count as written
            self.written += taken
            done += taken
        return done

    def _write_batch(self, batch: list[dict[str, Any]]) -> int:
        """Write ``batch``; when the store refuses its data, row by row, dropping the rows it
        refuses. Returns the rows taken; raises when the store fails otherwise (a batch
        written again after part of it went in adds nothing twice: request ids are unique)."""
        try:
            self._write(batch)
            return len(batch)
        except Exception as exc:
            if not self._refused(exc):
                raise
            if len(batch) == 1:
                with self._counting:
                    self.failed += 1
                log.warning("the store refused impression %s (%s); dropped", batch[0].get("request_id"), exc)
                return 0
        return sum(self._write_batch([row]) for row in batch)


__all__ = ["ImpressionLog", "ImpressionLogConfig"]
