"""One continuous paced load on one server while a server-side switch is flipped off and
on in short alternating phases; per-request latencies recorded client side and compared
between the two states (benchmarks/impression_overhead.py uses it).

Why: two servers loaded in 10 s turns cannot resolve a 1 ms p99 difference on a small
shared machine (one turn's p99 moves by tens of ms with the neighbours' load). Flipping
the switch every few seconds over the SAME load on the SAME process puts whatever varies
slower than a phase (other processes, caches, the store's size) on both states alike.

The load is serve_latency's: ``clients`` keep-alive connections, each pausing
``clients / rate`` s after an answer (wrk's fixed think time), requests on raw asyncio
streams (a few µs of client CPU each, unlike httpx, so the client disturbs the server
little). Each request keeps its send time and latency. The switch is one HTTP request
(``switch(on) -> raw request bytes``, on its own connection); a phase starts when the
switch's answer arrives and ends when the next switch is sent; a request belongs to the
phase it was SENT in, after the first ``guard_s`` of the phase (left out on both sides
alike: answers in flight across the switch, and whatever the switch itself costs).
Phases alternate off, on, off, on ...; phases 2k and 2k+1 are pair k.

Other kinds of request can run beside that load (``Stream``: e.g. POSTs with a JSON body
on their own connections at their own rate); every request keeps its stream's kind, and
``PhasedRun.only(kind)`` gives one kind's requests to ``compare`` (the main load's kind is
``"main"``; a load without streams is exactly the GET load above).

Statistics: p50 / p99 of each state over all its phases' requests pooled, their
difference (on - off), and a bootstrap 95% interval of it that resamples PAIRS of phases
(so a disturbance that spans a phase counts as one draw, not as many requests). Quantiles
in the bootstrap come from per-phase histograms on a 0.2 %-wide log grid (exact quantiles
of the raw latencies are the point estimates).
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@dataclass(frozen=True)
class PhasedLoadConfig:
    """clients: keep-alive connections. rate: requests per second they offer together.
    pairs: off/on phase pairs measured. phase_s: seconds per phase. guard_s: seconds left
    out at the start of every phase. warmup_s: unrecorded load first (switch on)."""

    clients: int = 50
    rate: float = 500.0
    pairs: int = 180
    phase_s: float = 3.0
    guard_s: float = 0.25
    warmup_s: float = 10.0
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.clients < 1 or self.rate <= 0 or self.pairs < 2 or not 0 <= self.guard_s < self.phase_s:
            raise ValueError(f"bad phased load config: {self}")


@dataclass(frozen=True)
class Stream:
    """Requests of one kind beside the main load: ``clients`` keep-alive connections
    offering ``rate`` req/s together, each ``GET path(rng)``, or ``POST path(rng)`` with
    the JSON ``body(rng)`` when ``body`` is given. ``ok_status``: the answer that counts
    as a success (what ``compare`` and the failure list go by)."""

    kind: str
    clients: int
    rate: float
    path: Callable[[random.Random], str]
    body: Callable[[random.Random], bytes] | None = None
    ok_status: int = 200


@dataclass
class Switch:
    on: bool
    sent: float  # perf_counter seconds
    answered: float
    status: int
    body: bytes


@dataclass
class PhasedRun:
    """What the load saw: per request (send time, latency in s, HTTP status, kind: an index
    into ``kinds``) and the switches."""

    sent: array = field(default_factory=lambda: array("d"))
    latency: array = field(default_factory=lambda: array("d"))
    status: array = field(default_factory=lambda: array("H"))
    errors: int = 0  # connection errors and timeouts (no status)
    switches: list[Switch] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    kind: array = field(default_factory=lambda: array("B"))
    kinds: list[str] = field(default_factory=lambda: ["main"])
    kind_errors: dict[str, int] = field(default_factory=dict)  # ``errors`` by kind
    #: (kind, status, first 300 bytes of the body) of the first 20 answers of each kind that were not its
    #: stream's ok_status: what went wrong, not only that something did
    failures: list[tuple[str, int, bytes]] = field(default_factory=list)

    def only(self, kind: str) -> PhasedRun:
        """The requests of one kind, with the same switches and times (for ``compare``)."""
        kinds = np.frombuffer(self.kind, dtype=np.uint8) if self.kind else np.zeros(len(self.sent), np.uint8)
        keep = kinds == self.kinds.index(kind)  # (a run filled without kinds is all "main")

        def pick(a: array) -> array:
            return array(a.typecode, np.frombuffer(a, dtype=a.typecode)[keep].tobytes())

        errors = self.kind_errors.get(kind, 0)
        return PhasedRun(pick(self.sent), pick(self.latency), pick(self.status), errors, self.switches, self.started,
                         self.ended, array("B", kinds[keep].tobytes()), self.kinds, {kind: errors},
                         [f for f in self.failures if f[0] == kind])


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request, read its answer (Content-Length bodies only)."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise ValueError("a chunked answer: this client reads Content-Length bodies only")
    body = await reader.readexactly(length) if length else b""
    return int(head[9:12]), body


def _request(host: str, headers: str, stream: Stream, rnd: random.Random) -> bytes:
    if stream.body is None:
        return f"GET {stream.path(rnd)} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode()
    body = stream.body(rnd)
    return (f"POST {stream.path(rnd)} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _load(host: str, port: int, streams: list[Stream], headers: str, cfg: PhasedLoadConfig,
                switch: Callable[[bool], bytes], seed: int, console: Console) -> PhasedRun:
    run = PhasedRun(kinds=[s.kind for s in streams], kind_errors={s.kind: 0 for s in streams})
    stop = asyncio.Event()

    async def client(k: int, n: int) -> None:
        stream, pause = streams[k], streams[k].clients / streams[k].rate
        rnd = random.Random(seed * 1009 + n + 100_000 * k)  # k = 0, the main load: the seeds it always had
        reader, writer = await asyncio.open_connection(host, port)
        await asyncio.sleep(rnd.uniform(0, pause))  # spread the connections over one think time
        while not stop.is_set():
            raw = _request(host, headers, stream, rnd)
            t0 = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(exchange(reader, writer, raw), cfg.timeout_s)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                run.errors += 1
                run.kind_errors[stream.kind] += 1
                writer.close()
                await asyncio.sleep(0.01)
                reader, writer = await asyncio.open_connection(host, port)
                continue
            run.sent.append(t0)
            run.latency.append(time.perf_counter() - t0)
            run.status.append(status)
            run.kind.append(k)
            if status != stream.ok_status and sum(f[0] == stream.kind for f in run.failures) < 20:
                run.failures.append((stream.kind, status, body[:300]))
            await asyncio.sleep(pause)
        writer.close()

    async def flip(on: bool) -> Switch:
        reader, writer = await asyncio.open_connection(host, port)  # a fresh one: no keep-alive timeout to meet
        try:
            t0 = time.perf_counter()
            status, body = await exchange(reader, writer, switch(on))
            return Switch(on, t0, time.perf_counter(), status, body)
        finally:
            writer.close()

    async def switcher() -> None:
        phases = 2 * cfg.pairs
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[info]}"), console=console) as progress:
            task = progress.add_task(f"warm-up {cfg.warmup_s:g} s", total=phases, info="")
            await asyncio.sleep(cfg.warmup_s)
            run.started = time.perf_counter()
            for i in range(phases):
                on = i % 2 == 1
                done = await flip(on)
                run.switches.append(done)
                if done.status != 200:
                    raise RuntimeError(f"the switch answered {done.status}: {done.body[:300]!r}")
                progress.update(task, completed=i, description=f"phase {'on ' if on else 'off'}",
                                info=f"{len(run.latency):,} answers, {run.errors} errors")
                await asyncio.sleep(max(0.0, cfg.phase_s - (time.perf_counter() - done.sent)))
            run.ended = time.perf_counter()
            progress.update(task, completed=phases)
        stop.set()

    await asyncio.gather(switcher(), *(client(k, n) for k, s in enumerate(streams) for n in range(s.clients)))
    return run


def run_phased(host: str, port: int, path: Callable[[random.Random], str], headers: dict[str, str],
               cfg: PhasedLoadConfig, switch: Callable[[bool], bytes], seed: int, console: Console,
               streams: tuple[Stream, ...] = ()) -> PhasedRun:
    """Load ``host:port`` with ``GET path(rng)`` (``headers`` on every request; ``cfg.clients``
    connections, ``cfg.rate`` req/s: kind ``"main"``), and ``streams`` beside it, while
    ``switch`` flips the server off and on every ``cfg.phase_s`` seconds."""
    main = Stream("main", cfg.clients, cfg.rate, path)
    if any(s.kind == "main" for s in streams) or len({s.kind for s in streams}) < len(streams):
        raise ValueError("each stream needs its own kind, and 'main' is the main load's")
    try:
        import uvloop  # the server's loop too; the stdlib loop costs the client more CPU

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    header_text = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return runner(_load(host, port, [main, *streams], header_text, cfg, switch, seed, console))


# -- analysis -----------------------------------------------------------------------------
GRID = np.geomspace(1e-5, 120.0, 8200)  # seconds: 10 µs .. 2 min, bins 0.2 % wide


def phase_index(run: PhasedRun, guard_s: float) -> np.ndarray:
    """Each request's phase (-1: sent before the first switch's answer, during a switch,
    in a phase's first ``guard_s``, or after the last phase)."""
    sent = np.frombuffer(run.sent, dtype=float)
    starts = np.array([s.answered for s in run.switches]) + guard_s
    ends = np.array([s.sent for s in run.switches[1:]] + [run.ended])
    i = np.searchsorted(starts, sent, side="right") - 1
    ok = (i >= 0) & (sent < ends[np.clip(i, 0, None)])
    return np.where(ok, i, -1)


def _boot_quantile(weights: np.ndarray, hists: np.ndarray, bins: np.ndarray, q: float, chunk: int = 500) -> np.ndarray:
    """Quantile ``q`` of each bootstrap draw: ``weights`` (draws x pairs) times the pairs'
    histograms ``hists`` (pairs x bins, the GRID bins numbered ``bins``), at the bin's middle."""
    out = []
    for lo in range(0, len(weights), chunk):  # draws x bins at once would take GBs
        cum = np.cumsum(weights[lo:lo + chunk] @ hists, axis=1)
        idx = bins[np.argmax(cum >= q * cum[:, -1:], axis=1)]
        out.append(np.sqrt(GRID[idx] * GRID[idx + 1]))
    return np.concatenate(out)


def compare(run: PhasedRun, guard_s: float, seed: int, quantiles: tuple[float, ...] = (0.5, 0.99, 0.999),
            draws: int = 10_000, ok_status: int = 200) -> dict:
    """Per-state quantiles (ms) pooled over phases, on - off differences with pair-bootstrap
    95% intervals, and per-phase counts / p99s."""
    lat = np.frombuffer(run.latency, dtype=float)
    status = np.frombuffer(run.status, dtype=np.uint16)
    phase = phase_index(run, guard_s)
    keep = (phase >= 0) & (status == ok_status)
    phases = 2 * (len(run.switches) // 2)
    per_phase = [lat[keep & (phase == p)] for p in range(phases)]
    hists = np.stack([np.histogram(x, GRID)[0] for x in per_phase]).astype(float)
    bins = np.flatnonzero(hists.sum(axis=0))  # the bins any request fell in
    off, on = hists[0::2][:, bins], hists[1::2][:, bins]  # pair k = (phase 2k off, 2k+1 on)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(off), size=(draws, len(off)))
    weights = np.stack([np.bincount(row, minlength=len(off)) for row in pick]).astype(float)
    off_all, on_all = np.concatenate(per_phase[0::2]), np.concatenate(per_phase[1::2])
    out: dict = {"requests": {"off": int(off_all.size), "on": int(on_all.size),
                              "left_out": int((~keep).sum()), "not_ok": int((status != ok_status).sum())}}
    for q in quantiles:
        name = f"p{q * 100:g}".replace(".", "_")
        a, b = float(np.quantile(off_all, q)) * 1e3, float(np.quantile(on_all, q)) * 1e3
        boot = (_boot_quantile(weights, on, bins, q) - _boot_quantile(weights, off, bins, q)) * 1e3
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[name] = {"off_ms": round(a, 3), "on_ms": round(b, 3), "on_minus_off_ms": round(b - a, 3),
                     "on_minus_off_95ci": [round(float(lo), 3), round(float(hi), 3)]}
    p99 = np.array([np.quantile(x, 0.99) * 1e3 if x.size else np.nan for x in per_phase])
    diffs = p99[1::2] - p99[0::2]
    boot_median = np.nanmedian(diffs[pick], axis=1)
    out["per_pair_p99_difference_ms"] = {
        "median": round(float(np.nanmedian(diffs)), 3),
        "median_95ci": [round(float(x), 3) for x in np.percentile(boot_median, [2.5, 97.5])]}
    out["phases"] = [{"on": bool(i % 2), "requests": int(x.size), "p50_ms": round(float(np.median(x)) * 1e3, 3),
                      "p99_ms": round(float(np.quantile(x, 0.99)) * 1e3, 3)} if x.size else
                     {"on": bool(i % 2), "requests": 0} for i, x in enumerate(per_phase)]
    switch_ms = np.array([(s.answered - s.sent) * 1e3 for s in run.switches])
    out["switch_ms"] = {"median": round(float(np.median(switch_ms)), 3), "max": round(float(switch_ms.max()), 3)}
    sent = np.frombuffer(run.sent, dtype=float)
    measured = int(((sent >= run.started) & (sent < run.ended)).sum())
    out["achieved_rps"] = round(measured / (run.ended - run.started), 1) if run.ended > run.started else None
    return out


__all__ = ["PhasedLoadConfig", "PhasedRun", "Stream", "compare", "exchange", "phase_index", "run_phased"]
