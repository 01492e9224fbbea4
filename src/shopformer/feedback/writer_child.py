"""The impression writer process: writes the impression rows an API process hands it to
the store, so that the API's Python process runs no SQL for them (issue 19: while a
writer THREAD inserted, request threads waited for the GIL).

Started by :class:`shopformer.feedback.writer_process.ProcessImpressionLog` as
``python -m shopformer.feedback.writer_child IN_FD OUT_FD`` (not multiprocessing's
spawn: that re-imports the server's ``__main__``, the whole CLI with torch, in the
child). It opens its own connection to the same store and runs an
:class:`~shopformer.feedback.impressions.ImpressionLog` without a thread, so batching,
retries of failed writes and dropping of rows the store refuses are the thread writer's
own.

Messages are pickled tuples over two pipes (``multiprocessing.connection.Connection``).
In: ``("start", StoreConfig, ImpressionLogConfig)`` first, then ``("rows", [row, ...])``,
``("flush", token)``, ``("close", token)``. Out: ``("state", written, failed, dropped)``
after every write (cumulative; rows are done in the order received, so the API knows
which of the rows it sent are done), ``("flushed", token, rows, error)`` and
``("closed", token)``. The process ignores SIGINT and SIGTERM (a Ctrl-C or a service
manager's SIGTERM reaches the whole process group, and a clean shutdown needs this
process to write what it holds): it stops on ``close``, or when the API process is gone
(end of file on its pipe) after writing what it holds.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from multiprocessing.connection import Connection

log = logging.getLogger("shopformer.feedback")


def serve(inbox: Connection, outbox: Connection) -> None:
    """Write what ``inbox`` brings until ``close`` or its end."""
    from shopformer.store import EventStore
    from shopformer.store.impressions import refused

    from .impressions import ImpressionLog

    kind, store_config, config = inbox.recv()
    if kind != "start":
        raise ValueError(f"the impression writer expected 'start' first, got {kind!r}")
    store = EventStore(store_config)
    impressions = ImpressionLog(config, store.add_impressions, refused)  # no thread: this loop writes
    reported = (0, 0, 0)
    retry_at = 0.0  # after a failed write, the next try waits flush_s (as the thread writer's tick)

    def report() -> None:
        nonlocal reported
        now = (impressions.written, impressions.failed, impressions.dropped)
        if now != reported:
            try:
                outbox.send(("state", *now))
            except OSError:  # the API process is gone: keep writing; its pipe's end stops this loop
                return
            reported = now

    try:
        while True:
            wait = max(0.0, retry_at - time.monotonic()) if impressions.queued else None
            if inbox.poll(wait):
                try:
                    msg = inbox.recv()
                except EOFError:  # the API process is gone: write what is held, then stop
                    impressions.close()
                    return
                if msg[0] == "rows":
                    for row in msg[1]:
                        impressions.record(row)
                    if impressions.queued < config.batch_size and inbox.poll(0):
                        continue  # read the rest of a burst first: fewer, larger transactions
                elif msg[0] == "flush":
                    try:
                        n, error = impressions.flush(), None
                    except Exception as exc:  # noqa: BLE001 - the API side raises it; the rows stay queued
                        n, error = 0, f"{type(exc).__name__}: {exc}"
                        retry_at = time.monotonic() + config.flush_s
                    report()
                    try:
                        outbox.send(("flushed", msg[1], n, error))
                    except OSError:  # the API process is gone: write what is held, then stop
                        impressions.close()
                        return
                    continue
                elif msg[0] == "close":
                    impressions.close()  # what the store still refuses is counted in failed
                    report()
                    try:
                        outbox.send(("closed", msg[1]))
                    except OSError:
                        pass
                    return
                else:
                    raise ValueError(f"unknown message {msg[0]!r}")
            if impressions.queued and time.monotonic() >= retry_at:
                impressions.write_pending()
                if impressions.queued:  # the store failed: rows kept, tried again after flush_s
                    retry_at = time.monotonic() + config.flush_s
                report()
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [impression writer %(process)d] %(message)s")
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    serve(inbox, outbox)


if __name__ == "__main__":
    main()
