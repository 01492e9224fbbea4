"""The wrk load of benchmarks/serve_latency.py (``--driver wrk``).

wrk (Debian package ``wrk``) is a C load generator: on a 2-core machine it leaves the
server most of the CPU that the Python client took. Each connection sends a request,
waits for the answer, pauses ``think_ms`` (serve_load.lua's ``delay``), then sends the
next, so ``clients`` connections offer about ``clients * 1000 / (think_ms + latency)``
requests per second; ``think_ms=0`` is a closed loop (the server's capacity).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

from serve_server import cache_counts, console, proc_memory

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "serve_load.lua"


def available() -> bool:
    return shutil.which("wrk") is not None


def think_ms(clients: int, rate: float) -> int:
    """Pause per connection so that ``clients`` connections offer ``rate`` req/s in all
    (0 = closed loop)."""
    return 0 if rate <= 0 else max(0, round(clients * 1000.0 / rate))


def run(base: str, endpoint: str, users: list[str], items: list[str], *, clients: int, seconds: float,
        think: int, k: int, key: str, tag: str, event_type: str, threads: int = 2, timeout_s: float = 30.0,
        think_dist: str = "fixed") -> dict:
    """One wrk run; returns serve_latency's endpoint summary (latencies over every answer)."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        ufile, ifile = Path(tmp) / "users.txt", Path(tmp) / "items.txt"
        ufile.write_text("\n".join(urllib.parse.quote(u, safe="") for u in users) + "\n")
        ifile.write_text("\n".join(urllib.parse.quote(i, safe="") for i in items) + "\n")
        env = {**os.environ, "BENCH_ENDPOINT": endpoint, "BENCH_USERS": str(ufile), "BENCH_ITEMS": str(ifile),
               "BENCH_K": str(k), "BENCH_KEY": key, "BENCH_TAG": tag, "BENCH_TYPE": event_type,
               "BENCH_THINK_MS": str(think), "BENCH_THINK_DIST": think_dist}
        cmd = ["wrk", f"-t{min(threads, clients)}", f"-c{clients}", f"-d{max(1, round(seconds))}s",
               f"--timeout={max(1, round(timeout_s))}s", "-s", str(SCRIPT), base]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout[-2000:]}")
    w = json.loads(line.removeprefix("BENCH_JSON "))
    wall = w["duration_us"] / 1e6
    kinds = {k: w[k] for k in ("connect", "read", "write", "timeout") if w[k]}
    if w["bad_status"]:
        kinds["unexpected status"] = w["bad_status"]
    ms = lambda us: round(us / 1000, 3)  # noqa: E731
    return {
        "requests": w["requests"],
        "ok": w["ok"],
        "errors": sum(kinds.values()),
        "error_kinds": kinds,
        "seconds": round(wall, 3),
        "throughput_rps": round(w["ok"] / wall, 1) if wall > 0 else 0.0,
        "p50_ms": ms(w["p50_us"]),
        "p95_ms": ms(w["p95_us"]),
        "p99_ms": ms(w["p99_us"]),
        "max_ms": ms(w["max_us"]),
        "mean_ms": ms(w["mean_us"]),
        "think_ms": think,
        "think_dist": think_dist,
        "offered_rps": round(clients * 1000.0 / think, 1) if think else None,
    }


def measure(base: str, pid: int, endpoints: list[str], users: list[str], items: list[str], event_type: str,
            tag: str, args, k: int, key: str) -> tuple[dict, list[int]]:
    """The same phases with wrk (see wrk_driver): each endpoint paced at ``--rate``
    (after an unrecorded warm-up), then recommend once more in a closed loop (capacity)."""
    import threading

    think = think_ms(args.clients, args.rate)
    results, rss, done = {}, [], threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            mem = proc_memory(pid)
            if "VmRSS" in mem:
                rss.append(mem["VmRSS"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    common = dict(clients=args.clients, k=k, key=key, event_type=event_type, timeout_s=args.request_timeout)
    phases = [(ep, ep, think) for ep in endpoints]  # (result key, endpoint, think ms)
    if "recommend" in endpoints and think:
        phases.append(("recommend_capacity", "recommend", 0))
    for key, ep, pause in phases:
        name = f"{key} (think {pause} ms)"
        if args.warmup > 0:
            console.print(f"{name}: warm-up {args.warmup:.0f} s")
            warm = run(base, ep, users, items, seconds=args.warmup, think=pause, tag=f"{tag}-{key}-w",
                                  **common)
        else:
            warm = {"requests": 0, "ok": 0}
        cache_before = cache_counts(base) if ep == "recommend" else {}
        console.print(f"{name}: {args.clients} connections, {args.duration:.0f} s")
        r = run(base, ep, users, items, seconds=args.duration, think=pause, tag=f"{tag}-{key}", **common)
        r["warmup_requests"], r["warmup_ok"] = warm["requests"], warm["ok"]
        if ep == "recommend":
            after = cache_counts(base)
            hits = after.get("hit", 0) - cache_before.get("hit", 0)
            misses = after.get("miss", 0) - cache_before.get("miss", 0)
            r["history_cache_hit_rate"] = round(hits / (hits + misses), 4) if hits + misses else None
        results[key] = r
        console.print(f"  {r['ok']:,} ok, {r['errors']:,} errors, {r['throughput_rps']:,.1f} req/s, "
                      f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
    done.set()
    sampler.join()
    return results, rss
