"""The impression log with its writer in a child process (``SHOPFORMER_IMPRESSIONS_WRITER
=process``): the API process only queues rows and hands them over, pickled, in small
chunks; the child (:mod:`shopformer.feedback.writer_child`) owns its own store connection
and runs the SQL. Measured in benchmarks/results/impression_overhead_process.md; with
the writer thread (:class:`~shopformer.feedback.impressions.ImpressionLog`), request
threads waited for the GIL while it inserted.

:class:`ProcessImpressionLog` keeps the thread writer's interface and guarantees:

- Bounded memory: ``queue_size`` bounds the rows not yet written, those waiting here and
  those handed to the child alike (the child says which are done); past it new rows are
  dropped and counted.
- A clean shutdown loses nothing: :meth:`close` sends the rest, waits for the child to
  write everything and exit; if it cannot (dead, hung), this process writes what is
  not known to be written itself. Writing a row twice adds nothing (request ids are
  unique in the store), so "not known to be written" is always safe to write again.
- ``flush`` / ``pause`` / ``resume`` / ``skip`` and the counters behave as the thread
  writer's (``flush`` waits for the child's write and raises when the store failed).
- Store errors are the child's to log and retry (the same ImpressionLog code).
- A child that dies is noticed at once (its pipe ends): logged, the rows it had not
  finished are queued again, and a new child is started; after ``MAX_RESTARTS`` deaths
  within ``RESTART_WINDOW_S`` this process falls back to the writer thread (logged as an
  error), so impressions keep being written.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .impressions import ImpressionLog, ImpressionLogConfig, PauseSwitch

log = logging.getLogger("shopformer.feedback")

#: rows per message: pickling one takes ~65 µs of the GIL (1.3 µs a row), so a request
#: thread waiting for the GIL while rows are handed over waits about that long, not for a batch
CHUNK_ROWS = 50
#: a real sleep between chunks hands the GIL to a waiting request thread (a blocking
#: write lets go of it but takes it straight back; see shopformer.store.impressions)
HANDOVER_S = 1e-5
#: more deaths than this within the window: fall back to the writer thread
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0
#: the longest flush() waits for the child's answer (the store's own busy timeout is 30 s)
REPLY_TIMEOUT_S = 60.0


class WriterProcessError(RuntimeError):
    """The writer process could not write (the store's error, as text), or is gone."""


class _Reply:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.rows = 0
        self.error: str | None = None
        self.lost = False  # the child went away before answering (the rows are queued again)
        self.child: _Child | None = None  # the child asked


class _Child:
    """One writer process and this side's ends of its two pipes."""

    def __init__(self, store_config: Any, config: ImpressionLogConfig) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])  # the directory holding the shopformer package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shopformer.feedback.writer_child", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)  # a terminal's Ctrl-C is for the server, which stops the child itself
        finally:
            os.close(to_child_r)  # the child's ends: ours closed, so its death ends our reads
            os.close(from_child_w)
        self.inbox = Connection(from_child_r, writable=False)
        self.outbox = Connection(to_child_w, readable=False)
        self.outbox.send(("start", store_config, config))
        #: cumulative counts the child reported: rows written / refused / dropped by it
        self.written = self.failed = self.dropped = 0

    @property
    def done(self) -> int:
        return self.written + self.failed + self.dropped

    def close_pipes(self) -> None:
        for conn in (self.inbox, self.outbox):
            try:
                conn.close()
            except OSError:
                pass


class ProcessImpressionLog(PauseSwitch):
    """A bounded queue of impression rows handed to a writer process that writes them to
    the store of ``store_config`` (a :class:`shopformer.store.StoreConfig`; not an
    in-memory SQLite one: the child could not see it). ``write`` / ``refused``: this
    process's way to the same store, used only when the child cannot be (see the module
    docstring). Call :meth:`start` once, :meth:`close` once."""

    def __init__(self, config: ImpressionLogConfig, store_config: Any,
                 write: Callable[[Sequence[dict[str, Any]]], int],
                 refused: Callable[[Exception], bool] = lambda exc: False) -> None:
        self.config = config
        self._store_config = store_config
        self._write = write
        self._refused = refused
        self._rows: deque[dict[str, Any]] = deque()  # not handed over yet
        self._sent: deque[dict[str, Any]] = deque()  # handed to the child, not done yet
        self._sending = threading.Lock()  # one sender at a time (order), and the restart
        self._wake = threading.Event()
        self._closed = False
        self._counting = threading.Lock()
        self._child: _Child | None = None
        self._replies: dict[int, _Reply] = {}
        self._tokens = itertools.count(1)
        self._deaths: deque[float] = deque()
        self._fallback: ImpressionLog | None = None
        self._sender: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        # counts of children that are gone, and of rows this process wrote itself
        self._written = self._failed = self._dropped = 0
        self.paused = False
        self.skipped = 0
        #: children started after one died
        self.restarts = 0

    # -- the counters the thread writer has --------------------------------------------
    @property
    def written(self) -> int:
        child, fb = self._child, self._fallback
        return self._written + (child.written if child else 0) + (fb.written if fb else 0)

    @property
    def failed(self) -> int:
        child, fb = self._child, self._fallback
        return self._failed + (child.failed if child else 0) + (fb.failed if fb else 0)

    @property
    def dropped(self) -> int:
        child, fb = self._child, self._fallback
        return self._dropped + (child.dropped if child else 0) + (fb.dropped if fb else 0)

    @property
    def queued(self) -> int:
        fb = self._fallback
        return len(self._rows) + len(self._sent) + (fb.queued if fb else 0)

    @property
    def pid(self) -> int | None:
        """The writer process's id (None: none runs, e.g. after falling back to the thread)."""
        child = self._child
        return child.proc.pid if child is not None and self._fallback is None else None

    # -- the request path ---------------------------------------------------------------
    def record(self, row: dict[str, Any]) -> bool:
        """Queue one row; False (and counted in ``dropped``) when ``queue_size`` rows are
        not written yet. Never blocks, runs no I/O (as the thread writer's)."""
        fb = self._fallback
        if fb is not None:
            return fb.record(row)
        if self._closed or len(self._rows) + len(self._sent) >= self.config.queue_size:
            with self._counting:
                self._dropped += 1
            return False
        self._rows.append(row)
        if len(self._rows) >= self.config.batch_size:
            self._wake.set()
        return True

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> ProcessImpressionLog:
        try:
            self._start_child()
        except Exception:  # noqa: BLE001 - impressions are still written, by a thread
            log.exception("could not start the impression writer process; a thread of this process writes")
            with self._sending:
                self._fall_back()
        self._sender = threading.Thread(target=self._send_loop, name="shopformer-impressions", daemon=True)
        self._sender.start()
        return self

    def flush(self) -> int:
        """Hand over everything queued and wait until the child wrote it; returns rows
        written. Raises :class:`WriterProcessError` when the store failed (the rows stay
        queued) or the child died meanwhile (they are queued again)."""
        for _ in range(2):  # a child that died meanwhile is replaced: ask the next one once
            reply = self._ask("flush")
            if reply is None:
                break
            if not reply.done.wait(REPLY_TIMEOUT_S):
                raise WriterProcessError(f"the impression writer did not answer a flush in {REPLY_TIMEOUT_S:g} s")
            if reply.error is None:
                return reply.rows
            if not reply.lost:
                raise WriterProcessError(reply.error)
            deadline = time.monotonic() + 10  # until the reader has replaced the dead child
            while self._child is reply.child and time.monotonic() < deadline:
                time.sleep(0.01)
        if self._fallback is None:
            raise WriterProcessError(reply.error)
        with self._sending:
            self._to_fallback()
        return self._fallback.flush()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking rows, have the child write every row queued and exit; what it could
        not write (it died or hung) is written here. Rows the store still refuses are
        counted in ``failed`` and logged, as by the thread writer."""
        self._closed = True
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout_s)
            if self._sender.is_alive() and self._child is not None:  # stuck sending to a hung child
                self._child.proc.kill()
                self._sender.join(5)
        reply = self._ask("close")
        child = self._child  # after the ask: a restart under way when closing began has finished
        if reply is not None and child is not None:
            if not reply.done.wait(timeout_s) or reply.error is not None:
                log.warning("the impression writer process did not finish (%s); writing here what it had not",
                            reply.error or f"no answer in {timeout_s:g} s")
            try:
                child.proc.wait(5)
            except subprocess.TimeoutExpired:
                log.warning("the impression writer process %d did not exit; killing it", child.proc.pid)
                child.proc.kill()
                child.proc.wait(5)
            if self._reader is not None:
                self._reader.join(5)
            child.close_pipes()
        with self._sending:
            left = list(self._sent) + list(self._rows)
            self._sent.clear()
            self._rows.clear()
        if self._fallback is not None:
            self._fallback._rows.extend(left)
            self._fallback.close(timeout_s)
        elif left:  # written again: a row the child did write adds nothing (unique request ids)
            writer = ImpressionLog(self.config, self._write, self._refused)
            writer._rows.extend(left)
            writer.close(timeout_s)
            with self._counting:
                self._written += writer.written
                self._failed += writer.failed

    # -- inside ---------------------------------------------------------------------------
    def _start_child(self) -> None:
        self._child = _Child(self._store_config, self.config)
        self._reader = threading.Thread(target=self._read_loop, args=(self._child,),
                                        name="shopformer-impressions-reader", daemon=True)
        self._reader.start()

    def _ask(self, kind: str) -> _Reply | None:
        """Hand over the queue, then ``kind`` (flush / close); the reader sets the reply.
        None: there is no child (this log fell back to the thread)."""
        reply = _Reply()
        with self._sending:
            if self._child is None:
                return None
            reply.child = self._child
            token = next(self._tokens)
            self._replies[token] = reply
            try:
                self._hand_over()
                self._child.outbox.send((kind, token))
            except OSError as exc:  # the child is gone (the reader replaces it, unless closing)
                self._replies.pop(token, None)
                reply.error, reply.lost = f"the impression writer process is gone ({exc})", True
                reply.done.set()
        return reply

    def _hand_over(self) -> None:
        """Send the queue in chunks (the caller holds ``_sending``). Rows move to ``_sent``
        before they are sent, so a child that dies meanwhile is sent them again."""
        first = True
        while self._rows and self._child is not None:
            if not first:
                time.sleep(HANDOVER_S)
            first = False
            chunk = [self._rows.popleft() for _ in range(min(CHUNK_ROWS, len(self._rows)))]
            self._sent.extend(chunk)
            self._child.outbox.send(("rows", chunk))

    def _send_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.config.flush_s)
            self._wake.clear()
            if self._fallback is not None:
                self._to_fallback()
                continue
            with self._sending:
                try:
                    self._hand_over()
                except OSError:  # the child is gone: the reader handles it; the rows are in _sent
                    pass

    def _read_loop(self, child: _Child) -> None:
        """The child's messages, until its pipe ends: then, unless closing, it died."""
        while True:
            try:
                msg = child.inbox.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "state":
                # rows the child finished leave _sent, oldest first. No lock: this thread
                # alone takes from _sent (the sender only appends), and waiting here for a
                # sender blocked on a full pipe while the child waits to send this would deadlock
                for _ in range(min(sum(msg[1:]) - child.done, len(self._sent))):
                    self._sent.popleft()
                child.written, child.failed, child.dropped = msg[1:]
            elif msg[0] in ("flushed", "closed"):
                reply = self._replies.pop(msg[1], None)
                if reply is not None:
                    reply.rows, reply.error = (msg[2], msg[3]) if msg[0] == "flushed" else (0, None)
                    reply.done.set()
        if self._closed:  # close() writes here what the child did not
            self._fail_replies("the impression writer process ended before answering")
            return
        self._died(child)

    def _fail_replies(self, error: str) -> None:
        for reply in list(self._replies.values()):
            reply.error, reply.lost = error, True
            reply.done.set()
        self._replies.clear()

    def _died(self, child: _Child) -> None:
        try:
            code = child.proc.wait(5)
        except subprocess.TimeoutExpired:  # its pipe closed but it runs on: not ours to trust
            child.proc.kill()
            code = child.proc.wait()
        child.close_pipes()
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - RESTART_WINDOW_S:
            self._deaths.popleft()
        with self._sending:
            with self._counting:  # record() counts drops meanwhile
                self._written += child.written
                self._failed += child.failed
                self._dropped += child.dropped
                child.written = child.failed = child.dropped = 0
            self._rows.extendleft(reversed(self._sent))  # not known written: queued again, first
            self._sent.clear()
            self._fail_replies(f"the impression writer process died (exit code {code})")
            if self._closed:  # close() writes the rest here
                log.error("the impression writer process died (exit code %s) while closing", code)
                self._child = None
                return
            if len(self._deaths) > MAX_RESTARTS:
                log.error("the impression writer process died (exit code %s), %d times in %g s: impressions are "
                          "written by a thread of this process from now on", code, len(self._deaths),
                          RESTART_WINDOW_S)
                self._fall_back()
                return
            log.error("the impression writer process died (exit code %s); starting another (%d impressions queued, "
                      "those it had not finished included)", code, len(self._rows))
            self.restarts += 1
            try:
                self._start_child()
            except Exception:  # noqa: BLE001 - cannot start one: the thread writes
                log.exception("could not start an impression writer process; a thread of this process writes")
                self._fall_back()
                return
        self._wake.set()

    def _fall_back(self) -> None:
        """Switch to the writer thread for good (the caller holds ``_sending``)."""
        self._fallback = ImpressionLog(self.config, self._write, self._refused).start()
        self._child = None
        self._to_fallback()

    def _to_fallback(self) -> None:
        """Move rows queued here (after the switch to the thread writer) to it."""
        while self._rows:
            try:
                self._fallback._rows.append(self._rows.popleft())
            except IndexError:
                break


__all__ = ["ProcessImpressionLog", "WriterProcessError"]
