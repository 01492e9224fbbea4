"""Ingest speed: ml-1m sequences (~1M interactions) and the full UCI Online Retail log
(542k rows), end to end (read + validate + write Parquet into a fresh data folder).

Usage: python benchmarks/ingest_speed.py [--data ../shared/data] [--repeats 3]
Writes benchmarks/results/ingest_speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from shopformer.evaluate.report import cpu_model
from shopformer.ingest import ingest_to_folder

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"

CASES = [
    ("ml-1m sequences", "ml-1m/ml-1m_sequences.txt.gz", "sequence"),
    ("online retail", "online-retail/online_retail.csv.gz", "online-retail"),
]


def run(data: Path, repeats: int) -> dict:
    results = []
    for name, rel, fmt in CASES:
        src = data / rel
        times, report = [], None
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                report = ingest_to_folder(Path(tmp) / "data", src, fmt)
                times.append(time.perf_counter() - t0)
        assert report is not None
        med = statistics.median(times)
        results.append(
            {
                "case": name,
                "file": rel,
                "format": fmt,
                "rows_read": report.rows_read,
                "rows_accepted": report.rows_accepted,
                "rejected": report.rejected,
                "seconds": [round(t, 4) for t in times],
                "median_seconds": round(med, 4),
                "rows_per_second": round(report.rows_read / med),
            }
        )
        print(f"{name}: median {med:.2f} s, {report.rows_read / med:,.0f} rows/s "
              f"({report.rows_read:,} rows; runs {', '.join(f'{t:.2f}' for t in times)})")
    return {
        "benchmark": "ingest_speed",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"repeats": repeats, "data": str(data), "what": "ingest_to_folder into a fresh folder"},
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "polars": pl.__version__,
            "polars_threads": pl.thread_pool_size(),
        },
        "results": results,
    }


def to_markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# Ingest speed",
        "",
        f"{res['date']} · {m['platform']} · {m['cpu']} ({m['cpu_count']} CPUs) · "
        f"Python {m['python']} · Polars {m['polars']}",
        "",
        f"End to end (read + validate + write Parquet), median of {res['config']['repeats']} runs.",
        "",
        "| case | rows read | rows accepted | median s | rows/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["results"]:
        lines.append(
            f"| {r['case']} | {r['rows_read']:,} | {r['rows_accepted']:,} | "
            f"{r['median_seconds']:.2f} | {r['rows_per_second']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"data folder not found: {args.data}")
    res = run(args.data, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest_speed.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "ingest_speed.md").write_text(to_markdown(res))
    print(f"wrote {args.out / 'ingest_speed.json'} and .md")


if __name__ == "__main__":
    main()
