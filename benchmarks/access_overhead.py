"""What access control costs a request: the ``AccessControl`` middleware (resolve the
``X-API-Key`` header to a key, count the request against its rate limit) around an app
that does nothing, so the time measured is the middleware's alone. Cases: no key (open
route, no anonymous limit), a stored key without a limit, a stored key with a limit
counted in memory, and the same counted in Redis (when one answers on 127.0.0.1:6379),
against the bare app (no middleware) measured in the same run.

Usage: python benchmarks/access_overhead.py [--requests 20000]
Writes benchmarks/results/access_overhead.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results_file import save  # noqa: E402

from shopformer.evaluate.report import cpu_model  # noqa: E402
from shopformer.serve.access import AccessControl, KeyRing, RateLimits  # noqa: E402
from shopformer.store import EventStore, StoreConfig  # noqa: E402
from shopformer.store.access import create_key  # noqa: E402


async def _noop(scope, receive, send) -> None:  # noqa: ANN001
    return None


async def _time(app, headers: list, n: int) -> list[float]:  # noqa: ANN001
    async def receive():  # noqa: ANN202
        return {"type": "http.request", "body": b""}

    async def send(message):  # noqa: ANN001, ANN202
        return None

    out = []
    for _ in range(n):
        scope = {"type": "http", "path": "/v1/users/u1", "headers": headers, "client": ("10.0.0.1", 5000)}
        t0 = time.perf_counter()
        await app(scope, receive, send)
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def _redis_ok() -> bool:
    try:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379", socket_connect_timeout=1).ping()
        return True
    except Exception:  # noqa: BLE001
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EventStore(StoreConfig(f"sqlite:///{tmp}/s.db")) as store:
        _, plain = create_key(store, "no limit", ["read"])
        _, limited = create_key(store, "limited", ["read"], "1000000/second")
        ring = KeyRing("legacy-env-key")
        ring.attach(store)
        memory = RateLimits(None, None, "memory://")
        cases = [("bare app (no middleware)", _noop, []),
                 ("no key", AccessControl(_noop, ring, memory), []),
                 ("stored key, no limit", AccessControl(_noop, ring, memory), [(b"x-api-key", plain.encode())]),
                 ("stored key, limit in memory", AccessControl(_noop, ring, memory),
                  [(b"x-api-key", limited.encode())])]
        if _redis_ok():
            cases.append(("stored key, limit in Redis", AccessControl(_noop, ring, RateLimits(
                None, None, "redis://127.0.0.1:6379")), [(b"x-api-key", limited.encode())]))
        records = []
        for name, app, headers in cases:
            asyncio.run(_time(app, headers, 500))  # warm
            us = sorted(asyncio.run(_time(app, headers, args.requests)))
            records.append({"case": name, "requests": args.requests, "median_us": round(statistics.median(us), 2),
                            "p99_us": round(us[int(0.99 * len(us))], 2)})
            print(f"{name:32s} median {records[-1]['median_us']:8.2f} us  p99 {records[-1]['p99_us']:8.2f} us")
    meta = {"benchmark": "access_overhead", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "python": platform.python_version(), "system": platform.platform()},
            "config": {"requests": args.requests}}

    def markdown(results: list[dict], meta: dict) -> str:
        lines = [f"# Access control cost per request ({meta['date']})", "",
                 f"Machine: {meta['machine']['cpu']}, Python {meta['machine']['python']}. The middleware around an "
                 "app that does nothing; one request at a time.", "",
                 "| case | median (µs) | p99 (µs) |", "|---|---:|---:|"]
        lines += [f"| {r['case']} | {r['median_us']} | {r['p99_us']} |" for r in results]
        return "\n".join(lines) + "\n"

    save(args.out, "access_overhead", meta, records, markdown, key=lambda r: (r["case"],))


if __name__ == "__main__":
    main()
