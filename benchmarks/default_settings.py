"""Plain `shopformer train --model sasrec` with the old fixed defaults against the new
data-sized defaults (issue 21 point 2), per dataset, against the best published result
and EASE.

Each arm trains what `train --model sasrec` (IDs only, no --set but one torch thread)
trains on accuracy.py's leave-one-out split: ``old`` the config's fixed defaults (what
`train --fixed-defaults` keeps: d_model 64, batch 128, 200 epochs, dropout 0.2, no weight
decay), ``new`` the data-sized defaults (``shopformer.tune.defaults``). Training stops
early on validation NDCG@10 as always; the test split is read ONCE per (dataset, arm),
after training. Nothing here was chosen on test.

    python benchmarks/default_settings.py --dataset lastfm [--arm old|new|both] [--threads 1]

Writes benchmarks/results/default_settings.{json,md} (one record per dataset and arm,
replaced when rerun). EASE and published numbers come from results/accuracy.json and
accuracy.PUBLISHED (the same split).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accuracy import DATASETS, PUBLISHED, load  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.evaluate.protocol import EvalConfig, evaluate  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.tune.defaults import size_model, to_record  # noqa: E402

ARMS = {"old": "sasrec-old-defaults", "new": "sasrec-data-sized"}


def ease_test(dataset: str) -> float | None:
    """EASE's test NDCG@10 in results/accuracy.json (its l2 chosen there on validation)."""
    path = HERE / "results" / "accuracy.json"
    rows = json.loads(path.read_text())["results"] if path.exists() else []
    ease = next((r for r in rows if r["dataset"] == dataset and r["model"] == "ease"), None)
    return round(ease["test"]["NDCG@10"], 4) if ease else None


def run_arm(dataset: str, arm: str, data, split, threads: int) -> dict:
    given = {"train.threads": str(threads)}  # the one thing set: the machine's share
    model = make_model("sasrec", given)
    sized = size_model(model, given, split.train, data.n_items) if arm == "new" else None
    load_before = os.getloadavg()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    model.fit(split.train, data.n_items, valid=split.valid)
    h = model.history
    test = evaluate(model, split.test, data.n_items, EvalConfig(cutoffs=(10,)), progress=False).metrics  # read once
    published = max(PUBLISHED.get(dataset, []), key=lambda p: p[2], default=None)
    c = model.config
    record = {
        "dataset": dataset, "model": ARMS[arm], "arm": arm, "started": started,
        "settings": {"d_model": c.arch.d_model, "n_layers": c.arch.n_layers, "dropout": c.arch.dropout,
                     "attn_dropout": c.arch.attn_dropout, "max_len": c.arch.max_len, "batch_size": c.train.batch_size,
                     "epochs": c.train.epochs, "lr": c.train.lr, "weight_decay": c.train.weight_decay,
                     "decay_embeddings": c.train.decay_embeddings, "crop": c.train.crop,
                     "patience": c.train.patience, "eval_every": c.train.eval_every},
        "defaults": to_record(sized) if sized is not None else {"rule": "fixed (the model's config defaults)"},
        "fit_seconds": round(h.records[-1].wall_seconds, 1) if h.records else 0.0,
        "epochs_run": len(h.records), "best_epoch": h.best_epoch, "stopped": h.stopped,
        "valid_ndcg10": round(float(h.best_valid), 4),
        "test_ndcg10": round(float(test["NDCG@10"]), 4), "test_hr10": round(float(test["HR@10"]), 4),
        "published": {"name": published[0], "ndcg10": published[2]} if published else None,
        "ease_ndcg10": ease_test(dataset), "threads": threads,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
    }
    if published:
        record["vs_published"] = round(record["test_ndcg10"] / published[2] - 1, 4)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=list(DATASETS), required=True)
    ap.add_argument("--arm", choices=["old", "new", "both"], default="both")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shopformer-accuracy")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--note", default="", help="the run's conditions, kept with its record (load, threads ...)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data, split = load(args.dataset, args.data_root, args.work)
    for arm in (["old", "new"] if args.arm == "both" else [args.arm]):
        record = {**run_arm(args.dataset, arm, data, split, args.threads), "note": args.note}
        meta = {"benchmark": "default_settings", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": machine()}
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / ".default_settings.lock", "w") as lock:  # runs of other datasets may finish at once
            fcntl.flock(lock, fcntl.LOCK_EX)
            save(args.out, "default_settings", meta, [record], markdown)
        print(json.dumps({k: record[k] for k in ("dataset", "model", "valid_ndcg10", "test_ndcg10", "fit_seconds")}))


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Plain `train --model sasrec`: old fixed defaults vs data-sized defaults", "",
             f"{meta['date']} · {meta['machine']}", "",
             "Leave-one-out, full ranking, IDs only, one torch thread; early stopping on validation NDCG@10; "
             "test read once per dataset and arm, after training.", "",
             "| dataset | defaults | d_model | batch | epochs (run, best) | dropout | weight decay | max_len | crop | "
             "fit s | valid NDCG@10 | test NDCG@10 | test HR@10 | best published | vs published | EASE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["dataset"], r["arm"] != "old")):
        s, pub = r["settings"], r.get("published")
        lines.append(
            f"| {r['dataset']} | {r['arm']} | {s['d_model']} | {s['batch_size']} | {s['epochs']} "
            f"({r['epochs_run']}, {r['best_epoch']}) | {s['dropout']} | {s['weight_decay']} | {s['max_len']} | "
            f"{s['crop']} | {r['fit_seconds']:.0f} | {r['valid_ndcg10']:.4f} | **{r['test_ndcg10']:.4f}** | "
            f"{r['test_hr10']:.4f} | "
            + (f"{pub['ndcg10']:.4f} ({pub['name']}) | {r['vs_published']:+.1%} | " if pub else "- | - | ")
            + f"{r['ease_ndcg10'] if r['ease_ndcg10'] is not None else '-'} |")
    notes = [f"- {r['dataset']}, {r['arm']}: {r['note']} (load average 1/5/15 min: before "
             f"{r['load_average']['before']}, after {r['load_average']['after']})"
             for r in sorted(results, key=lambda r: (r["dataset"], r["arm"])) if r.get("note")]
    if notes:
        lines += ["", "Conditions:", ""] + notes
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
