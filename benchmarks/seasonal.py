"""Does time context (day of year, days to Christmas, time since the last purchase, of
the events and of the moment asked) lift SASRec's NDCG@10 on Christmas-season purchases?

UCI Online Retail II + I (2009-12 to 2011-12: two Christmas seasons before the test
one). Cases: each purchase, given the customer's whole history before it (the model
reads its latest ``max_len`` events) and asked at the purchase's time; ranked over the
full catalog (the products sold before the test period), history items INCLUDED (this
shop's wholesale customers re-buy: as benchmarks/replay.py serves it). Test purchases of
products first sold in the test period count as misses.

Protocol, for each variant (without / with ``arch.time_context``) and seed, same
settings and epoch budget:
1. train on purchases before 2011-10-01, early-stopped on October 2011's purchases
   (a sample): the best epoch is chosen on validation;
2. retrain on everything before 2011-11-01 for that many epochs;
3. score every purchase from 2011-11-01 to the end of the data (2011-12-09), once.

    python benchmarks/seasonal.py [--quick] [--seeds 2] [--epochs 10] [--threads 1]

Writes benchmarks/results/seasonal.{json,md,png}.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
DATA = HERE.parent.parent / "shared" / "data"

from _lib.seasonal_data import load, next_purchase_cases, utc  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.evaluate.protocol import EvalConfig, evaluate  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.models.sasrec import SASRecConfig  # noqa: E402
from shopformer.models.sequential import SASRecRecommender, TransformerConfig  # noqa: E402
from shopformer.train.loop import TrainConfig  # noqa: E402

VALID_START, TEST_START, TEST_END = utc(2011, 10, 1), utc(2011, 11, 1), utc(2012, 1, 1)
#: the same network for both variants; the only difference is arch.time_context
ARCH = SASRecConfig(max_len=50, d_model=64, n_layers=2, n_heads=2, dropout=0.3)
VARIANTS = {"sasrec": False, "sasrec_time": True}


def train_config(args: argparse.Namespace, seed: int, epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=128, lr=2e-3, patience=args.patience, seed=seed,
                       threads=args.threads, time_limit_s=args.time_limit)


def run_variant(name: str, timed: bool, seed: int, args, data, valid, test) -> dict:
    seqs, n = data.data.sequences, data.data.n_items
    arch = replace(ARCH, time_context=timed)
    t0 = time.perf_counter()
    chooser = SASRecRecommender(TransformerConfig(arch=arch, train=train_config(args, seed, args.epochs)))
    chooser.fit(seqs.keep(seqs.timestamps < VALID_START), n, valid.cases)
    best = max(1, chooser.history.best_epoch)
    t1 = time.perf_counter()
    final = SASRecRecommender(TransformerConfig(arch=arch, train=train_config(args, seed, best)))
    final.fit(seqs.keep(seqs.timestamps < TEST_START), n)
    t2 = time.perf_counter()
    res = evaluate(final, test.cases, n, EvalConfig(cutoffs=(10,), exclude_history=False), progress=False)
    return {"variant": name, "time_context": timed, "seed": seed, "best_epoch": best,
            "valid_ndcg10": chooser.history.best_valid, "select_s": round(t1 - t0, 1), "final_train_s": round(t2 - t1, 1),
            "eval_s": round(res.wall_seconds, 1), "ndcg": res.per_user["NDCG@10"], "hr": res.per_user["HR@10"]}


def summary(runs: list[dict], test, share_known: float) -> dict:
    """Per variant: mean over seeds (and min/max) of NDCG@10 and HR@10, overall, on the
    products the customer had bought before (repeat) and on the others (new to them);
    ``*_all`` counts products new to the shop as misses."""
    out = {}
    for name in VARIANTS:
        rs = [r for r in runs if r["variant"] == name]
        row = {"seeds": [r["seed"] for r in rs], "best_epochs": [r["best_epoch"] for r in rs],
               "valid_ndcg10": [round(r["valid_ndcg10"] or 0.0, 4) for r in rs],
               "train_s": [round(r["select_s"] + r["final_train_s"], 1) for r in rs]}
        for metric in ("ndcg", "hr"):
            for part, mask in (("", slice(None)), ("_repeat", test.repeat), ("_new_to_customer", ~test.repeat)):
                vals = [float(r[metric][mask].mean()) for r in rs]
                row[f"{metric}10{part}"] = float(np.mean(vals))
                row[f"{metric}10{part}_min"], row[f"{metric}10{part}_max"] = min(vals), max(vals)
            row[f"{metric}10_all"] = row[f"{metric}10"] * share_known
        out[name] = row
    return out


def paired_lift(runs: list[dict], seed: int = 0) -> dict:
    """NDCG@10 with time context minus without, per test case (mean over seeds), with a
    95% bootstrap interval over cases."""
    a = np.mean([r["ndcg"] for r in runs if not r["time_context"]], axis=0)
    b = np.mean([r["ndcg"] for r in runs if r["time_context"]], axis=0)
    d = b - a
    rng = np.random.default_rng(seed)
    boots = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(1000)]
    return {"mean": float(d.mean()), "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            "relative": float(d.mean() / a.mean()) if a.mean() else 0.0}


def weekly(runs: list[dict], test) -> dict:
    """NDCG@10 per week of the test period (week 0 starts 2011-11-01), mean over seeds."""
    week = ((test.times - TEST_START) // (7 * 86400)).astype(int)
    out = {}
    for name in VARIANTS:
        per_case = np.mean([r["ndcg"] for r in runs if r["variant"] == name], axis=0)
        out[name] = [float(per_case[week == w].mean()) for w in range(week.max() + 1)]
    out["cases"] = [int((week == w).sum()) for w in range(week.max() + 1)]
    return out


def plot(weeks: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(weeks["cases"]))
    for name, style in (("sasrec", "o-"), ("sasrec_time", "s-")):
        ax.plot(x, weeks[name], style, label=f"{name} ({'with' if VARIANTS[name] else 'without'} time context)")
    labels = [datetime.fromtimestamp(TEST_START + 7 * 86400 * w, timezone.utc).strftime("%b %d") + f"\n{c} cases"
              for w, c in enumerate(weeks["cases"])]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("NDCG@10 (full catalog, history included)")
    ax.set_title("Online Retail: Nov-Dec 2011 purchases by week")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(records: list[dict], meta: dict) -> str:
    r = records[-1]
    s, lift = r["summary"], r["lift"]

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.4f} ({row[key + '_min']:.4f}-{row[key + '_max']:.4f})"

    lines = [f"# Time context in SASRec: Online Retail, Nov-Dec 2011 ({meta['date']})", "",
             f"Machine: {meta['machine']['processor']}, {meta['threads']} thread(s); {meta['wall_s']:.0f} s in all"
             f"{'; QUICK run (small samples, not a result)' if meta['quick'] else ''}.", "",
             f"Data: {r['data']}. Test: {r['test_cases']} purchases from 2011-11-01 to 2011-12-09 "
             f"({r['test_unknown']} more are of products first sold then: misses in the `_all` numbers); "
             f"validation: {r['valid_cases']} October 2011 purchases.", "",
             "Full-catalog ranking, history items included; mean over seeds (min-max):", "",
             "| model | NDCG@10 | HR@10 | NDCG@10 re-buys | NDCG@10 new to customer | NDCG@10 incl. new products | best epochs | valid NDCG@10 | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in s.items():
        lines.append(f"| {name} | {cell(row, 'ndcg10')} | {cell(row, 'hr10')} | {cell(row, 'ndcg10_repeat')} | "
                     f"{cell(row, 'ndcg10_new_to_customer')} | {row['ndcg10_all']:.4f} | {row['best_epochs']} | "
                     f"{row['valid_ndcg10']} | {row['train_s']} |")
    lines += ["", f"Share of test purchases that re-buy a product the customer bought before: {r['repeat_share']:.1%}.", "",
              f"Paired lift of NDCG@10 (with - without, per purchase, mean over seeds): {lift['mean']:+.4f} "
              f"({lift['relative']:+.1%}), 95% bootstrap interval [{lift['ci95'][0]:+.4f}, {lift['ci95'][1]:+.4f}].", "",
              "Weekly NDCG@10 (week starting):", "", "| week | cases | sasrec | sasrec_time |", "|---|---|---|---|"]
    w = r["weekly"]
    for i, c in enumerate(w["cases"]):
        day = datetime.fromtimestamp(TEST_START + 7 * 86400 * i, timezone.utc).strftime("%Y-%m-%d")
        lines.append(f"| {day} | {c} | {w['sasrec'][i]:.4f} | {w['sasrec_time'][i]:.4f} |")
    lines += ["", f"Settings: `{r['config']}`", "", f"![weekly NDCG@10]({meta['png']})", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small samples and 2 epochs: checks the script end to end")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10, help="most epochs of the validation run (the budget)")
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--time-limit", type=float, default=0.0, help="seconds per training run (0 = none: the epochs are the budget)")
    ap.add_argument("--valid-cases", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    ii_file, i_file = DATA / "online-retail-ii" / "online_retail_II_2009-2010.csv.gz", DATA / "online-retail" / "online_retail.csv.gz"
    if not (ii_file.exists() and i_file.exists()):
        raise SystemExit(f"needs {ii_file} and {i_file}")
    if args.quick:
        args.seeds, args.epochs, args.valid_cases = 1, 2, 300
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = load(ii_file, i_file, TEST_START, TEST_END)
    seqs = data.data.sequences
    valid = next_purchase_cases(seqs, VALID_START, TEST_START, ARCH.max_len, args.valid_cases, seed=1)
    test = next_purchase_cases(seqs, TEST_START, TEST_END, ARCH.max_len, 2000 if args.quick else 0, seed=2)
    print(f"{data.counts}; valid {len(valid.cases)}, test {len(test.cases)} cases (+{data.test_unknown} new products)")
    runs = []
    with Progress() as bar:
        task = bar.add_task("variants x seeds", total=args.seeds * len(VARIANTS))
        for seed in range(args.seeds):
            for name, timed in VARIANTS.items():
                runs.append(run_variant(name, timed, seed, args, data, valid, test))
                r = runs[-1]
                print(f"{name} seed {seed}: best epoch {r['best_epoch']}, valid {r['valid_ndcg10']:.4f}, "
                      f"test NDCG@10 {r['ndcg'].mean():.4f}, HR@10 {r['hr'].mean():.4f}")
                bar.advance(task)
            write(runs, args, data, valid, test, t0)  # after every seed: a cut-short run keeps its seeds
    print((RESULTS / f"{'seasonal_quick' if args.quick else 'seasonal'}.md").read_text())


def write(runs: list[dict], args, data, valid, test, t0: float) -> None:
    known = len(test.cases) / (len(test.cases) + (0 if args.quick else data.test_unknown))
    weeks = weekly(runs, test)
    record = {"dataset": "online-retail-i+ii", "model": "sasrec vs sasrec_time" + (" (quick)" if args.quick else ""),
              "data": data.counts, "test_cases": len(test.cases), "test_unknown": data.test_unknown,
              "valid_cases": len(valid.cases), "repeat_share": float(test.repeat.mean()),
              "summary": summary(runs, test, known), "lift": paired_lift(runs), "weekly": weeks,
              "runs": [{k: v for k, v in r.items() if k not in ("ndcg", "hr")} for r in runs],
              "config": {"arch": {k: v for k, v in asdict(ARCH).items() if k in
                                  ("max_len", "d_model", "n_layers", "n_heads", "dropout", "holidays")},
                         "train": {k: v for k, v in asdict(train_config(args, 0, args.epochs)).items()
                                   if k in ("epochs", "batch_size", "lr", "patience", "time_limit_s", "crop", "loss")}}}
    stem = "seasonal_quick" if args.quick else "seasonal"
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "threads": args.threads, "quick": args.quick, "wall_s": time.perf_counter() - t0, "png": f"{stem}.png"}
    save(RESULTS, stem, meta, [record], markdown)
    plot(weeks, RESULTS / f"{stem}.png")

if __name__ == "__main__":
    main()
