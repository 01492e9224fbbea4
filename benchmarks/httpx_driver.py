"""The asyncio httpx load of benchmarks/serve_latency.py (``--driver httpx``): closed-loop
clients, each sending its next request when the previous answer arrives."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from serve_server import API_KEY, K, cache_counts, console, proc_memory


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, expected status only
    errors: Counter = field(default_factory=Counter)  # "status 503", "ReadTimeout", ...
    started: int = 0
    done: int = 0


def request_maker(endpoint: str, users: list[str], items: list[str], event_type: str, tag: str, seed: int):
    """() -> (method, url, kwargs, expected status) for one endpoint."""
    rnd = random.Random(seed)
    ids = itertools.count()
    q = urllib.parse.quote
    if endpoint == "recommend":
        return lambda: ("GET", f"/v1/users/{q(rnd.choice(users), safe='')}/recommendations",
                        {"params": {"k": K}, "headers": {"X-API-Key": API_KEY}}, 200)
    if endpoint == "similar":
        return lambda: ("GET", f"/v1/items/{q(rnd.choice(items), safe='')}/similar", {"params": {"k": K}}, 200)
    if endpoint == "event":
        def make():
            body = {"event_id": f"bench-{tag}-{next(ids)}", "user_id": rnd.choice(users),
                    "item_id": rnd.choice(items), "type": event_type}
            return "POST", "/v1/events", {"json": body, "headers": {"X-API-Key": API_KEY}}, 201
        return make
    raise ValueError(endpoint)


async def drive(client: httpx.AsyncClient, make, clients: int, seconds: float, max_requests: int,
                tally: Tally | None) -> float:
    """``clients`` closed-loop workers for ``seconds`` (or ``max_requests``); returns the
    wall time until the last answer."""
    t_start = time.perf_counter()
    deadline = t_start + seconds
    sink = tally if tally is not None else Tally()

    async def worker() -> None:
        while time.perf_counter() < deadline and sink.started < max_requests:
            sink.started += 1
            method, url, kw, expect = make()
            t0 = time.perf_counter()
            try:
                r = await client.request(method, url, **kw)
                dt = time.perf_counter() - t0
                if r.status_code == expect:
                    sink.latencies.append(dt)
                else:
                    sink.errors[f"status {r.status_code}"] += 1
            except httpx.HTTPError as exc:
                sink.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)  # e.g. the server is gone: do not spin
            sink.done += 1

    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - t_start


async def watch(tally: Tally, pid: int, progress: Progress, task, seconds: float, rss: list[int], stop_evt: asyncio.Event) -> None:
    t0 = time.perf_counter()
    while not stop_evt.is_set():
        mem = proc_memory(pid)
        if "VmRSS" in mem:
            rss.append(mem["VmRSS"])
        elapsed = time.perf_counter() - t0
        progress.update(task, completed=min(elapsed, seconds),
                        info=f"{tally.done:,} answers, {sum(tally.errors.values()):,} errors, "
                             f"RSS {mem.get('VmRSS', 0) / 1024:,.0f} MB")
        try:
            await asyncio.wait_for(stop_evt.wait(), 0.25)
        except TimeoutError:
            pass


async def measure(base: str, pid: int, endpoints: list[str], makers: dict, args) -> tuple[dict, list[int]]:
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    results, rss = {}, []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=args.request_timeout) as client:
        with Progress(TextColumn("{task.description:<10}"), BarColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[info]}"), console=console) as progress:
            for ep in endpoints:
                if args.warmup > 0:
                    task = progress.add_task(f"{ep} warm-up", total=args.warmup, info="")
                    warm, stop_evt = Tally(), asyncio.Event()
                    watcher = asyncio.create_task(watch(warm, pid, progress, task, args.warmup, rss, stop_evt))
                    # the warm-up shares the maker (event ids keep counting), and is not recorded
                    await drive(client, makers[ep], args.clients, args.warmup, args.max_requests, warm)
                    stop_evt.set()
                    await watcher
                    progress.update(task, completed=args.warmup, visible=False)
                else:
                    warm = Tally()
                tally, stop_evt = Tally(), asyncio.Event()
                task = progress.add_task(ep, total=args.duration, info="")
                cache_before = cache_counts(base) if ep == "recommend" else {}
                watcher = asyncio.create_task(watch(tally, pid, progress, task, args.duration, rss, stop_evt))
                wall = await drive(client, makers[ep], args.clients, args.duration, args.max_requests, tally)
                stop_evt.set()
                await watcher
                progress.update(task, completed=args.duration)
                results[ep] = summarize(tally, wall)
                results[ep]["warmup_requests"] = warm.done
                results[ep]["warmup_ok"] = len(warm.latencies)
                if ep == "recommend":
                    after = cache_counts(base)
                    hits = after.get("hit", 0) - cache_before.get("hit", 0)
                    misses = after.get("miss", 0) - cache_before.get("miss", 0)
                    results[ep]["history_cache_hit_rate"] = round(hits / (hits + misses), 4) if hits + misses else None
    return results, rss


def summarize(t: Tally, wall: float) -> dict:
    lat = np.asarray(t.latencies) * 1000
    pct = (lambda q: round(float(np.percentile(lat, q)), 3)) if len(lat) else (lambda q: None)
    return {
        "requests": t.done,
        "ok": len(lat),
        "errors": sum(t.errors.values()),
        "error_kinds": dict(t.errors),
        "seconds": round(wall, 3),
        "throughput_rps": round(len(lat) / wall, 1) if wall > 0 else 0.0,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(float(lat.max()), 3) if len(lat) else None,
        "mean_ms": round(float(lat.mean()), 3) if len(lat) else None,
    }


