"""Baselines on Amazon Beauty through the CLI, re-scored by an independent evaluator.

For each baseline: settings are chosen on the VALIDATION split (a small grid, one
`shopformer evaluate --split valid` each), then one `shopformer evaluate` gives test
metrics, `shopformer train` + `shopformer recommend` export the test top-10 lists, and
`independent_eval.py` (no shopformer code) re-scores them. HR@10 and NDCG@10 from both
must agree to 4 decimals.

    python benchmarks/beauty_baselines.py [--data-root ../shared/data] [--work /tmp/beauty-bench]

Writes benchmarks/results/beauty_baselines.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from independent_eval import score as independent_score  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402

GRIDS: dict[str, list[dict[str, str]]] = {
    "popular": [{}],
    "itemknn": [{"neighbors": str(n), "shrink": str(s)} for n in (100, 500) for s in (0, 50)],
    "ease": [{"l2": str(v)} for v in (50, 100, 200, 500)],
}


def sh(*args: str) -> float:
    t0 = time.perf_counter()
    print("$", " ".join(args), flush=True)
    subprocess.run(args, check=True)
    return time.perf_counter() - t0


def sets(params: dict[str, str]) -> list[str]:
    return [a for k, v in params.items() for a in ("--set", f"{k}={v}")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-beauty-bench"))
    args = ap.parse_args()
    seq_file = args.data_root / "amazon-beauty" / "Beauty.txt.gz"
    if not seq_file.exists():
        sys.exit(f"{seq_file} not found: this benchmark needs ../shared/data")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / "beauty"
    if not (data / "events.parquet").exists():
        sh("shopformer", "ingest", str(seq_file), "--format", "sequence", "--data", str(data))

    rows = []
    for model, grid in GRIDS.items():
        valid = []
        for params in grid:
            out = work / f"{model}_valid_{'_'.join(f'{k}{v}' for k, v in params.items()) or 'default'}.json"
            sh("shopformer", "evaluate", "--data", str(data), "--model", model, *sets(params),
               "--split", "valid", "--out", str(out))
            valid.append((json.loads(out.read_text())[0]["metrics"]["NDCG@10"], params))
        best_ndcg, best = max(valid, key=lambda v: v[0])
        test_json = work / f"{model}_test.json"
        eval_s = sh("shopformer", "evaluate", "--data", str(data), "--model", model, *sets(best),
                    "--split", "test", "--out", str(test_json))
        record = json.loads(test_json.read_text())[0]
        run = work / "runs" / model
        sh("shopformer", "train", "--data", str(data), "--model", model, *sets(best), "--out", str(run))
        recs = work / f"{model}_test_top10.jsonl"
        sh("shopformer", "recommend", "--run", str(run), "--split", "test", "--k", "10", "--out", str(recs))
        indep = independent_score(str(seq_file), str(recs), 10)
        ours = record["metrics"]
        agree = all(round(ours[m], 4) == round(indep[m], 4) for m in ("HR@10", "NDCG@10"))
        rows.append({
            "model": model,
            "chosen_on_validation": best,
            "validation_grid": [{"params": p, "valid_NDCG@10": v} for v, p in valid],
            "test": {m: ours[m] for m in ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "Coverage@10")},
            "independent": indep,
            "agree_4dp": agree,
            "fit_seconds": record["fit_seconds"],
            "evaluate_command_seconds": round(eval_s, 1),
            "users": record["users_evaluated"],
        })
        print(json.dumps(rows[-1], indent=1), flush=True)

    out = {
        "benchmark": "beauty_baselines",
        "dataset": "amazon-beauty (S3-Rec 5-core), leave-one-out, full ranking over all items, "
                   "training-history items excluded",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": rows,
    }
    res_dir = HERE / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "beauty_baselines.json").write_text(json.dumps(out, indent=2))
    lines = [
        "# Baselines on Amazon Beauty", "",
        f"{out['dataset']}. {out['date']}, {machine()['platform']}, {machine()['cpus']} CPUs.",
        "Settings chosen on validation NDCG@10; test read once with the chosen settings.", "",
        "| model | chosen settings | test HR@10 | test NDCG@10 | independent HR@10 | independent NDCG@10 | agree (4 dp) | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['chosen_on_validation'] or 'defaults'} | {r['test']['HR@10']:.4f} | "
            f"{r['test']['NDCG@10']:.4f} | {r['independent']['HR@10']:.4f} | "
            f"{r['independent']['NDCG@10']:.4f} | {'yes' if r['agree_4dp'] else 'NO'} | {r['fit_seconds']} |"
        )
    (res_dir / "beauty_baselines.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not all(r["agree_4dp"] for r in rows):
        sys.exit("independent evaluator disagrees")


if __name__ == "__main__":
    main()
