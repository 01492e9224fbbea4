"""Retention purge speed: ``EventStore.purge_events`` on a store of ~1M events of which 30%
are older than the policy's age, while another process keeps posting single events (how
long does the purge take, and how long does a concurrent write wait at worst?).

Per backend: the writer alone first (baseline latency), then the purge with the writer
running (purge time, scrub time, write latency during the purge: max and p99, writes
done), then the same policy again with nothing left to purge (the cost of an hourly
check that finds nothing: one scan). SQLite always; PostgreSQL when ``--postgres URL``
(or SHOPFORMER_BENCH_POSTGRES_URL) is given. The old events are the oldest ones, in
arrival order, as an event log holds them.

Usage: python benchmarks/retention.py [--events 1000000] [--share 0.3] [--batch-size 5000]
Writes benchmarks/results/retention.json and .md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _lib import bulk_events  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.evaluate.report import cpu_model  # noqa: E402
from shopformer.store import EventStore, PurgeConfig, RetentionConfig, StoreConfig  # noqa: E402

NOW = datetime.now(UTC).replace(microsecond=0)
POLICY = RetentionConfig(days=365)


def rows(n: int, share: float):
    """Chunks of event tuples in arrival order: the first ``share`` are 400-800 days old,
    the rest within the last 300 days; one in ten a search."""
    n_old = int(n * share)
    for start in range(0, n, 10_000):
        out = []
        for i in range(start, min(start + 10_000, n)):
            if i < n_old:
                age = 800 - 400 * i / n_old
            else:
                age = 300 - 300 * (i - n_old) / (n - n_old)
            ts = (NOW - timedelta(days=age)).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
            search = i % 10 == 0
            out.append((f"e{i}", f"user{i % 100_000}", None if search else f"item{i % 50_000}",
                        "search" if search else "view", ts, f"s{i // 20}", f"query {i % 5000}" if search else None,
                        None, '{"page": "product"}'))
        yield out


def build_sqlite(path: Path, n: int, share: float) -> float:
    return bulk_events.load_sqlite(path, rows(n, share))


def build_postgres(url: str, schema: str, n: int, share: float) -> float:
    utc = ([(*r[:4], r[4] + "+00", *r[5:]) for r in part] for part in rows(n, share))  # UTC whatever the session's zone
    with EventStore(StoreConfig(url=url, schema=schema)) as store:
        return bulk_events.load_postgres(store, schema, utc)


def writer(url: str, schema: str | None, stop, out) -> None:  # noqa: ANN001 - mp.Event, mp.Queue
    """Post one event at a time until ``stop``; send back (wall start, seconds) per write."""
    samples = []
    with EventStore(StoreConfig(url=url, schema=schema)) as store:
        i = 0
        while not stop.is_set():
            t0 = time.time()
            store.add_events([{"event_id": f"w{os.getpid()}-{i}", "user_id": f"w{i % 100}", "item_id": "item1",
                               "event_type": "view", "timestamp": NOW}])
            samples.append((t0, time.time() - t0))
            i += 1
    out.put(samples)


def with_writer(url: str, schema: str | None, work):  # noqa: ANN001, ANN201
    """Run ``work()`` while a writer process posts events; (work's result, its window, samples)."""
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=writer, args=(url, schema, stop, out))
    proc.start()
    time.sleep(3.0)  # the writer is up and writing
    t0 = time.time()
    result = work()
    t1 = time.time()
    time.sleep(0.5)
    stop.set()
    samples = out.get(timeout=120)
    proc.join(timeout=60)
    return result, (t0, t1), samples


def latency(samples: list[tuple[float, float]], window: tuple[float, float]) -> dict:
    lat = sorted(s for t, s in samples if window[0] <= t <= window[1])
    if not lat:
        return {"writes": 0}
    return {"writes": len(lat), "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
            "max_ms": round(1000 * lat[-1], 1), "over_100ms": sum(x > 0.1 for x in lat)}


def bench(backend: str, url: str, schema: str | None, n: int, share: float, config: PurgeConfig,
          load_s: float) -> dict:
    _, alone_window, base = with_writer(url, schema, lambda: time.sleep(5.0))
    print(f"{backend}: writer alone {latency(base, alone_window)}")

    def purge():  # noqa: ANN202
        with EventStore(StoreConfig(url=url, schema=schema)) as store:
            return store.purge_events(POLICY, config=config)

    with EventStore(StoreConfig(url=url, schema=schema)) as store:
        before = store.count_events()
    result, window, during = with_writer(url, schema, purge)
    print(f"{backend}: purged {result.deleted:,} in {result.seconds:.2f} s ({result.batches} batches, scrub "
          f"{result.storage.get('scrub_seconds')}); writer during the purge {latency(during, window)}")
    t0 = time.perf_counter()
    again = purge()
    noop_s = time.perf_counter() - t0
    print(f"{backend}: nothing left to purge: {noop_s:.2f} s")
    assert result.deleted == int(n * share) and again.deleted == 0
    return {"backend": backend, "events": before, "purged": result.deleted, "batch_size": config.batch_size,
            "pause_s": config.pause_s,
            "purge_seconds": result.seconds, "batches": result.batches,
            "scrub_seconds": result.storage.get("scrub_seconds"), "storage": result.storage,
            "noop_purge_seconds": round(noop_s, 3), "load_seconds": round(load_s, 1),
            "writer_alone": latency(base, alone_window), "writer_during_purge": latency(during, window)}


def to_markdown(results: list[dict], meta: dict) -> str:
    m = meta["machine"]
    lines = [
        "# Retention purge speed",
        "",
        f"{meta['date']} · {m['platform']} · {m['cpu']} ({m['cpu_count']} CPUs) · Python {m['python']}",
        "",
        "`EventStore.purge_events` with a 365-day policy on a store whose oldest 30% of events are older (in",
        "arrival order), while another process posts single events one after another. Purge s: the whole call",
        "(batched deletes + log + scrub: SQLite WAL checkpoint/truncate with secure_delete, PostgreSQL VACUUM).",
        "Nothing-left s: the same policy again (one scan, what an hourly check that finds nothing costs).",
        "Write latency: one event per call from the other process, alone / during the purge.",
        "",
        ("| backend | events | purged | batch, pause s | purge s | scrub s | nothing-left s | writes alone p50 / p99 / max ms "
         "| writes during purge | during p50 / p99 / max ms |"),
        "|---|---:|---:|---|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        a, d = r["writer_alone"], r["writer_during_purge"]
        lines.append(f"| {r['backend']} | {r['events']:,} | {r['purged']:,} | {r['batch_size']:,}, {r.get('pause_s', 0.0)} | "
                     f"{r['purge_seconds']:.2f} | {r['scrub_seconds']} | {r['noop_purge_seconds']:.2f} | "
                     f"{a.get('p50_ms')} / {a.get('p99_ms')} / {a.get('max_ms')} | {d['writes']:,} | "
                     f"{d.get('p50_ms')} / {d.get('p99_ms')} / {d.get('max_ms')} ({d.get('over_100ms', '?')} over 100) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=PurgeConfig.batch_size)
    ap.add_argument("--pause-s", type=float, default=PurgeConfig.pause_s)
    ap.add_argument("--postgres", default=os.environ.get("SHOPFORMER_BENCH_POSTGRES_URL"))
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    config = PurgeConfig(batch_size=args.batch_size, pause_s=args.pause_s)
    results = []
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "shop.db"
            load_s = build_sqlite(db, args.events, args.share)
            print(f"sqlite: {args.events:,} events loaded in {load_s:.1f} s ({db.stat().st_size / 1e6:.0f} MB)")
            results.append(bench("sqlite", f"sqlite:///{db}", None, args.events, args.share, config, load_s))
            shutil.rmtree(tmp, ignore_errors=True)
    if args.postgres:
        from sqlalchemy import create_engine, text

        from shopformer.store.engine import normalize_url

        schema = f"shopformer_bench_{uuid.uuid4().hex[:10]}"
        try:
            load_s = build_postgres(args.postgres, schema, args.events, args.share)
            print(f"postgres: {args.events:,} events loaded in {load_s:.1f} s")
            results.append(bench("postgresql", args.postgres, schema, args.events, args.share, config, load_s))
        finally:
            engine = create_engine(normalize_url(args.postgres))
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            engine.dispose()
    meta = {
        "benchmark": "retention",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"events": args.events, "share": args.share, "batch_size": args.batch_size, "pause_s": args.pause_s,
                   "policy": POLICY.to_dict(), "postgres": bool(args.postgres)},
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "sqlite": sqlite3.sqlite_version},
    }
    save(args.out, "retention", meta, results, to_markdown, key=lambda r: (r["backend"], r["batch_size"], r.get("pause_s", 0.0)))
    print(f"wrote {args.out / 'retention.json'} and .md")


if __name__ == "__main__":
    main()
