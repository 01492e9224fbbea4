"""benchmarks/phased_load.py, the load behind benchmarks/impression_overhead.py: requests
are attributed to the phase they were sent in (guards, switches and the tail left out),
the on - off quantile differences and their pair-bootstrap intervals find a known shift,
and the raw HTTP exchange reads status and body."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def phased():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("phased_load")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _run(phased, sends: list[float], latencies: list[float], switches: list[tuple[float, float]], ended: float):
    run = phased.PhasedRun(started=switches[0][0], ended=ended)
    run.switches = [phased.Switch(i % 2 == 1, s, a, 200, b"{}") for i, (s, a) in enumerate(switches)]
    run.sent.extend(sends)
    run.latency.extend(latencies)
    run.status.extend([200] * len(sends))
    return run


def test_requests_belong_to_the_phase_they_were_sent_in(phased):
    # switches sent at 10, 13, 16 and answered 0.1 s later; the last phase ends at 19
    run = _run(phased, [9.0, 10.05, 10.2, 10.4, 12.9, 13.05, 13.5, 16.4, 18.99, 19.5], [0.002] * 10,
               [(10.0, 10.1), (13.0, 13.1), (16.0, 16.1)], ended=19.0)
    got = phased.phase_index(run, guard_s=0.25).tolist()
    # before the first switch; during it; in the guard (10.1 + 0.25); phase 0; phase 0 until the
    # next switch is sent; during that switch; phase 1; phase 2; phase 2; after the end
    assert got == [-1, -1, -1, 0, 0, -1, 1, 2, 2, -1]


def test_compare_finds_a_known_shift(phased):
    rng = np.random.default_rng(3)
    sends, lats, switches, t = [], [], [], 0.0
    for i in range(40):  # 20 pairs; "on" adds 2 ms to every request
        switches.append((t, t + 0.01))
        n = 2000
        sends += list(t + 0.01 + np.sort(rng.uniform(0, 2.99, n)))
        lats += list(rng.lognormal(np.log(0.003), 0.4, n) + (0.002 if i % 2 else 0.0))
        t += 3.0
    found = phased.compare(_run(phased, sends, lats, switches, ended=t), guard_s=0.0, seed=0, draws=500)
    assert found["requests"]["off"] + found["requests"]["on"] == 80_000 and found["requests"]["left_out"] == 0
    for q in ("p50", "p99"):
        lo, hi = found[q]["on_minus_off_95ci"]
        assert found[q]["on_minus_off_ms"] == pytest.approx(2.0, abs=0.3)
        assert 0.5 < lo <= 2.0 <= hi < 3.5
    assert found["per_pair_p99_difference_ms"]["median"] == pytest.approx(2.0, abs=0.6)
    assert len(found["phases"]) == 40 and [p["on"] for p in found["phases"][:3]] == [False, True, False]
    assert found["switch_ms"] == {"median": 10.0, "max": 10.0}
    assert found["achieved_rps"] == pytest.approx(80_000 / 120, rel=0.01)


def test_exchange_reads_status_and_body(phased):
    async def main() -> tuple[int, bytes]:
        async def answer(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await phased.exchange(reader, writer, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        finally:
            writer.close()
            server.close()

    assert asyncio.run(main()) == (201, b"hello")


def test_a_post_stream_runs_beside_the_main_load_and_is_split_by_kind(phased):
    """A tiny HTTP server: GETs answer 200, POSTs echo their JSON body with 201 (bad JSON: 400)."""
    import io
    import json
    import threading

    from rich.console import Console

    posted: list[dict] = []

    async def answer(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:-2]
                                  ).get(b"content-length", 0))
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"POST"):
                    try:
                        posted.append(json.loads(body))
                        status = b"201 Created"  # the body echoed
                    except ValueError:
                        status, body = b"400 Bad Request", b"not JSON"
                else:  # the main load's GETs and the switch (a PUT)
                    status, body = b"200 OK", b"{}"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    loop, ready = asyncio.new_event_loop(), threading.Event()
    server = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server["s"] = loop.run_until_complete(asyncio.start_server(answer, "127.0.0.1", 0))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    port = server["s"].sockets[0].getsockname()[1]
    cfg = phased.PhasedLoadConfig(clients=2, rate=100, pairs=2, phase_s=0.3, guard_s=0.0, warmup_s=0.1)
    events = phased.Stream("events", clients=2, rate=40, path=lambda rnd: "/v1/events",
                           body=lambda rnd: json.dumps({"n": rnd.randrange(1000)}).encode(), ok_status=201)
    try:
        run = phased.run_phased("127.0.0.1", port, lambda rnd: "/get", {}, cfg,
                                lambda on: b"PUT /switch HTTP/1.1\r\nHost: x\r\n\r\n", 0,
                                Console(file=io.StringIO()), streams=(events,))
    finally:
        async def shutdown() -> None:  # the server, and its connections' handlers still reading
            server["s"].close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in handlers:
                t.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)

    main, posts = run.only("main"), run.only("events")
    assert len(main.sent) + len(posts.sent) == len(run.sent) and len(posts.sent) >= 20
    assert set(main.status) == {200} and set(posts.status) == {201} and run.failures == [] and run.errors == 0
    assert len(posted) >= len(posts.sent) and all(set(p) == {"n"} for p in posted)  # the bodies arrived whole
    assert phased.compare(posts, guard_s=0.0, seed=0, draws=50, ok_status=201)["requests"]["not_ok"] == 0
    with pytest.raises(ValueError, match="own kind"):
        phased.run_phased("127.0.0.1", port, lambda rnd: "/", {}, cfg, lambda on: b"", 0, Console(),
                          streams=(phased.Stream("main", 1, 1.0, lambda rnd: "/"),))
