"""Erasure speed: ``EventStore.forget_user`` for a customer with 10,000 events in a store
holding ~1M events of other customers (issue 17's target: the call under 1 s), and
whether the customer's bytes are gone from the database file and its WAL afterwards.

SQLite always (the default call: delete + secure_delete + WAL checkpoint/truncate; and
``compact=True``, which adds VACUUM); PostgreSQL when ``--postgres URL`` (or
SHOPFORMER_BENCH_POSTGRES_URL) is given and reachable (DELETE + VACUUM; VACUUM FULL).
Each timed call runs on a fresh copy of the same store (an erasure is destructive).

Usage: python benchmarks/erasure.py [--others 1000000] [--user-events 10000] [--repeats 3]
Writes benchmarks/results/erasure.json and .md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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
from shopformer.store import ErasureConfig, EventStore, StoreConfig  # noqa: E402

USER = "erase-me-4f1c9a"
MARK = "zq-bench-marker-9c2e"
T0 = datetime(2024, 1, 1)


def rows(others: int, user_events: int, seed: int = 0):
    """Chunks of event tuples: other customers (10 events each on average) with the
    erased customer's events spread evenly through the log (1 in 4 a search)."""
    rng = random.Random(seed)
    chunk, per = 10_000, max(1, round(user_events * 10_000 / others))
    j = 0
    for start in range(0, others, chunk):
        out = []
        for i in range(start, min(start + chunk, others)):
            ts = (T0 + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f")
            out.append((f"o{i}", f"user{rng.randrange(others // 10)}", f"item{rng.randrange(50_000)}", "view", ts,
                        f"s{i // 20}", None, None, '{"page": "product"}'))
        for _ in range(per if j < user_events else 0):
            ts = (T0 + timedelta(seconds=start + j % chunk)).strftime("%Y-%m-%d %H:%M:%S.%f")
            search = j % 4 == 0
            out.insert(rng.randrange(len(out) + 1), (
                f"{USER}-e{j}", USER, None if search else f"item{rng.randrange(50_000)}",
                "search" if search else "view", ts, f"{USER}-s{j // 20}",
                f"{MARK} query {j}" if search else None, None, f'{{"note": "{MARK}", "j": {j}}}'))
            j += 1
            if j >= user_events:
                break
        yield out
    assert j == user_events, f"placed {j} of {user_events} events of the user"


def build_sqlite(path: Path, others: int, user_events: int) -> float:
    return bulk_events.load_sqlite(path, rows(others, user_events))


def bytes_left(path: Path) -> dict[str, int]:
    """How many times the user's id or marker occurs in the database file and its WAL."""
    out = {}
    for p in (path, Path(f"{path}-wal")):
        if p.exists():
            data = p.read_bytes()
            out[p.name] = data.count(USER.encode()) + data.count(MARK.encode())
    return out


def bench_sqlite(work: Path, others: int, user_events: int, repeats: int) -> list[dict]:
    template = work / "template.db"
    load_s = build_sqlite(template, others, user_events)
    size = template.stat().st_size
    before = bytes_left(template)
    print(f"sqlite: {others:,} + {user_events:,} events loaded in {load_s:.1f} s ({size / 1e6:.0f} MB); "
          f"user bytes before: {before}")
    out = []
    for mode, config, n in (("default", ErasureConfig(), repeats), ("compact (VACUUM)", ErasureConfig(compact=True), 1)):
        calls = []
        for _ in range(n):
            db = work / "run.db"
            for p in work.glob("run.db*"):
                p.unlink()
            shutil.copyfile(template, db)
            with EventStore(StoreConfig(f"sqlite:///{db}")) as store:
                t0 = time.perf_counter()
                receipt = store.forget_user(USER, config=config)
                wall = time.perf_counter() - t0
                left = store.count_events()
                open_left = bytes_left(db)  # the store still open: its WAL is there
            assert receipt.removed == {"events": user_events} and left == others
            closed_left = bytes_left(db)
            calls.append({"seconds": round(wall, 4), "delete_seconds": receipt.storage["delete_seconds"],
                          "scrub_seconds": receipt.storage["scrub_seconds"],
                          "bytes_left": {**open_left, **{f"{k} (closed)": v for k, v in closed_left.items()}},
                          "wal_truncated": receipt.storage["wal_truncated"]})
            print(f"sqlite {mode}: {wall:.3f} s (delete {receipt.storage['delete_seconds']:.3f}, "
                  f"scrub {receipt.storage['scrub_seconds']:.3f}); user bytes left {calls[-1]['bytes_left']}")
        out.append(_record("sqlite", mode, others, user_events, calls, {"db_mb": round(size / 1e6, 1),
                                                                       "load_seconds": round(load_s, 1),
                                                                       "bytes_before": before}))
    return out


def bench_postgres(url: str, others: int, user_events: int, repeats: int) -> list[dict]:
    from sqlalchemy import create_engine, text

    from shopformer.store.engine import normalize_url

    out = []
    for mode, config, n in (("default (VACUUM)", ErasureConfig(), repeats), ("compact (VACUUM FULL)", ErasureConfig(compact=True), 1)):
        calls = []
        for _ in range(n):
            schema = f"shopformer_bench_{uuid.uuid4().hex[:10]}"
            try:
                with EventStore(StoreConfig(url=url, schema=schema)) as store:
                    load_s = bulk_events.load_postgres(store, schema, rows(others, user_events))
                    t0 = time.perf_counter()
                    receipt = store.forget_user(USER, config=config)
                    wall = time.perf_counter() - t0
                    assert receipt.removed == {"events": user_events} and store.count_events() == others
                calls.append({"seconds": round(wall, 4), "delete_seconds": receipt.storage["delete_seconds"],
                              "scrub_seconds": receipt.storage["scrub_seconds"], "load_seconds": round(load_s, 1)})
                print(f"postgres {mode}: {wall:.3f} s (delete {receipt.storage['delete_seconds']:.3f}, "
                      f"vacuum {receipt.storage['scrub_seconds']:.3f})")
            finally:
                engine = create_engine(normalize_url(url))
                with engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                engine.dispose()
        out.append(_record("postgresql", mode, others, user_events, calls, {}))
    return out


def _record(backend: str, mode: str, others: int, user_events: int, calls: list[dict], extra: dict) -> dict:
    secs = [c["seconds"] for c in calls]
    return {"backend": backend, "mode": mode, "other_events": others, "user_events": user_events,
            "median_seconds": round(statistics.median(secs), 4), "calls": calls, **extra}


def to_markdown(results: list[dict], meta: dict) -> str:
    m = meta["machine"]
    lines = [
        "# Erasure speed",
        "",
        f"{meta['date']} · {m['platform']} · {m['cpu']} ({m['cpu_count']} CPUs) · Python {m['python']}",
        "",
        "`EventStore.forget_user` for one customer among ~1M other events: the whole call (delete in one",
        "transaction + receipt, then the scrub: SQLite WAL checkpoint/truncate with secure_delete, optionally",
        "VACUUM; PostgreSQL VACUUM / VACUUM FULL of the events table). Target: < 1 s. Bytes left: occurrences",
        "of the customer's id or context/query marker in the SQLite file and WAL after the call (store open),",
        "and in the file once the store is closed (before the call: `bytes_before` in the JSON).",
        "",
        "| backend | mode | other events | user events | median s | delete s | scrub s | calls | bytes left |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        c = r["calls"]
        lines.append(
            f"| {r['backend']} | {r['mode']} | {r['other_events']:,} | {r['user_events']:,} | {r['median_seconds']:.3f} | "
            f"{statistics.median(x['delete_seconds'] for x in c):.3f} | {statistics.median(x['scrub_seconds'] for x in c):.3f} | "
            f"{', '.join(format(x['seconds'], '.3f') for x in c)} | {c[0].get('bytes_left', 'n/a')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--others", type=int, default=1_000_000)
    ap.add_argument("--user-events", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--postgres", default=os.environ.get("SHOPFORMER_BENCH_POSTGRES_URL"))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results += bench_sqlite(Path(tmp), args.others, args.user_events, args.repeats)
    if args.postgres:
        results += bench_postgres(args.postgres, args.others, args.user_events, args.repeats)
    meta = {
        "benchmark": "erasure",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"others": args.others, "user_events": args.user_events, "repeats": args.repeats,
                   "postgres": bool(args.postgres)},
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "sqlite": sqlite3.sqlite_version},
    }
    save(args.out, "erasure", meta, results, to_markdown, key=lambda r: (r["backend"], r["mode"]))
    print(f"wrote {args.out / 'erasure.json'} and .md")


if __name__ == "__main__":
    main()
