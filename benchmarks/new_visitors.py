"""New visitors: HR@10 / NDCG@10 for a visitor's first and second interaction.

Protocol (``shopformer.features.newvisitors``): with timestamps (UCI Online Retail),
models are trained on the events before the 70% time quantile and the new visitors are
the customers whose first purchase comes after it; without timestamps
(Amazon Beauty) 10% of the users are held out entirely. Step 0 scores a visitor's first
event from nothing, step 1 the second from the first. Ranking is over the full catalog,
history excluded; visitors are split in halves: settings (trending half-life, EASE l2,
SASRec early stopping) are chosen on the validation half, the test half is read once.

    python benchmarks/new_visitors.py --dataset online-retail
    python benchmarks/new_visitors.py --dataset beauty

Writes benchmarks/results/new_visitors.{json,md} (merged per dataset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from results_file import save

from shopformer.artifact import make_model
from shopformer.dataset import DataConfig, load_events, prepare
from shopformer.evaluate.protocol import EvalConfig, evaluate
from shopformer.evaluate.report import machine
from shopformer.features.newvisitors import NewVisitorConfig, new_visitor_split
from shopformer.ingest import ingest
from shopformer.models.trending import trending_weights

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: events file, ingest format, data settings
DATASETS = {
    "online-retail": ("online-retail/online_retail.csv.gz", "online-retail",
                      DataConfig(event_types=("purchase",), dedupe_consecutive=True)),
    "beauty": ("amazon-beauty/Beauty.txt.gz", "sequence", DataConfig()),
}
#: candidates per model, chosen on the validation visitors (mean HR@10 over the steps
#: the model can personalise: step 0 for the non-personal ones, steps >= 1 otherwise)
GRIDS: dict[str, list[dict[str, str]]] = {
    "popular": [{}],
    "trending": [{"half_life_days": str(d)} for d in (1, 3, 7, 14, 30, 90)],
    "itemknn": [{"neighbors": "100", "shrink": "50"}],
    "ease": [{"l2": str(v)} for v in (50, 200, 500)],
    "sasrec": [{"arch.d_model": "64", "arch.dropout": "0.5", "arch.attn_dropout": "0.5", "train.batch_size": "32",
                "train.epochs": "30", "train.patience": "5", "train.time_limit_s": "600"}],
}
GRIDS["trending_live"] = GRIDS["trending"]
PERSONAL = {"itemknn", "ease", "sasrec"}


class TrendingLive:
    """Trending as a live service computes it: for each case, from every event in the
    data (any customer's) before the moment of the event being predicted, with ages
    measured from that moment. The training cutoff does not apply: the store keeps
    taking events after the model is trained."""

    name = "trending_live"

    def __init__(self, half_life_days: float, seqs):
        order = np.argsort(seqs.timestamps, kind="stable")
        self.items, self.times = seqs.items[order], seqs.timestamps[order]
        self.offsets, self.all_times = seqs.offsets, seqs.timestamps
        self.half_life_days = half_life_days

    def rows(self, cases, step: int, n_items: int) -> np.ndarray:
        """(len(cases), n_items + 1) scores, one row per case in order."""
        out = np.empty((len(cases), n_items + 1), dtype=np.float32)
        for r, u in enumerate(cases.users):
            now = self.all_times[self.offsets[u] + step]
            n = int(np.searchsorted(self.times, now, side="left"))  # strictly earlier events
            out[r] = trending_weights(self.items[:n], self.times[:n], n_items, self.half_life_days, now=now)
        out[:, 0] = -np.inf
        return out


class Precomputed:
    """Score rows computed ahead, one per case, handed out in case order (the order in
    which ``evaluate`` reads its cases)."""

    def __init__(self, rows: np.ndarray):
        self.rows, self.at = rows, 0

    def score(self, history) -> np.ndarray:
        out = self.rows[self.at : self.at + len(history)].copy()
        self.at += len(history)
        return out


def load(dataset: str, data_root: Path, work: Path):
    file, fmt, data_config = DATASETS[dataset]
    folder = work / dataset
    if not (folder / "events.parquet").exists():
        ingest(data_root / file, fmt=fmt, data_dir=folder)
    data, _ = prepare(load_events(folder), data_config)
    return data


def scores(model, cases, n_items, step: int = 0) -> dict[str, float]:
    if isinstance(model, TrendingLive):
        model = Precomputed(model.rows(cases, step, n_items))
    res = evaluate(model, cases, n_items, EvalConfig(cutoffs=(10,)), progress=False)
    return {"HR@10": res.metrics["HR@10"], "NDCG@10": res.metrics["NDCG@10"], "cases": len(cases)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=list(DATASETS), required=True)
    ap.add_argument("--models", default="popular,trending,trending_live,itemknn,ease,sasrec")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-newvisitors"))
    args = ap.parse_args()
    if not (args.data_root / DATASETS[args.dataset][0]).exists():
        sys.exit(f"{args.data_root / DATASETS[args.dataset][0]} not found: needs ../shared/data")
    data = load(args.dataset, args.data_root, args.work)
    config = NewVisitorConfig(cutoff_quantile=0.7, horizon_days=0.0)
    split = new_visitor_split(data.sequences, config)
    steps = range(config.steps)
    print(f"{args.dataset}: {split.protocol} protocol, {data.n_items} items, training events "
          f"{split.train.n_interactions}; test visitors by step {[len(c) for c in split.test]}", flush=True)
    records = []
    for name in args.models.split(","):
        if name.startswith("trending") and split.protocol != "temporal":
            print("trending: skipped (no timestamps: it would equal popular)", flush=True)
            continue
        chosen = GRIDS[name][0] if len(GRIDS[name]) == 1 else None
        grid, best = [], None
        for params in GRIDS[name] if chosen is None else [chosen]:
            t0 = time.perf_counter()
            if name == "trending_live":
                model = TrendingLive(float(params["half_life_days"]), data.sequences)
            else:
                model = make_model(name, params)
                # Early stopping (SASRec) reads the validation visitors' second events.
                model.fit(split.train, data.n_items, valid=split.valid[1] if name == "sasrec" else None)
            fit_s = time.perf_counter() - t0
            valid = [scores(model, split.valid[k], data.n_items, k) for k in steps]
            wanted = [k for k in steps if (k >= 1) == (name in PERSONAL)] or list(steps)
            value = sum(valid[k]["HR@10"] for k in wanted) / len(wanted)
            grid.append({"settings": params, "valid_HR@10": value})
            if best is None or value > best[0]:
                best = (value, params, model, fit_s, valid)
        _, params, model, fit_s, valid = best
        rec = {"dataset": args.dataset, "model": name, "settings": params, "fit_seconds": round(fit_s, 1),
               "valid": valid, "test": [scores(model, split.test[k], data.n_items, k) for k in steps],
               "validation_grid": grid if len(grid) > 1 else []}
        records.append(rec)
        print(f"{name} {params}: test HR@10 by step " + ", ".join(f"{r['HR@10']:.4f}" for r in rec["test"])
              + f" (fit {fit_s:.0f} s)", flush=True)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "protocol": asdict(config)}
    results = save(RESULTS, "new_visitors", meta, records, markdown)
    print(markdown(results, meta))


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# New visitors: a visitor's first and second interaction", "",
        f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs. Updated {meta['date']}.",
        "Full-catalog ranking, history excluded. Step 0: the first event, from no history; step 1: the "
        "second event, from the first. Settings chosen on the validation visitors; test visitors below.", "",
        "| dataset | model | step 0 HR@10 | step 0 NDCG@10 | step 1 HR@10 | step 1 NDCG@10 | cases (step 0 / 1) | settings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s0, s1 = r["test"][0], r["test"][1]
        lines.append(f"| {r['dataset']} | {r['model']} | {s0['HR@10']:.4f} | {s0['NDCG@10']:.4f} | {s1['HR@10']:.4f} | "
                     f"{s1['NDCG@10']:.4f} | {s0['cases']} / {s1['cases']} | `{json.dumps(r['settings'])}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
