"""Why does the demo pick a baseline over the Transformer on its bundled sample, and
what does the Transformer need there? Variants of the sample, the data settings and the
Transformer's schedule, each fitted on the training split and scored on validation (the
demo's model choice reads validation only); test is reported beside it, never used to
choose.

    python benchmarks/demo_model_choice.py --tag now --variants demo,or_bench [--sample FILE]
        [--protocol temporal] [--min 3] [--baselines]

Appends one JSON line per (tag, variant) to benchmarks/results/demo_model_choice.jsonl;
the note benchmarks/results/demo_model_choice.md summarises them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from shopformer.artifact import make_model
from shopformer.dataset import DataConfig, describe, load_events, prepare
from shopformer.evaluate.protocol import EvalConfig
from shopformer.experiment import evaluate_model, fit
from shopformer.ingest import ingest

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "demo_model_choice.jsonl"

_SMALL = {"arch.d_model": "64", "arch.max_len": "100", "train.batch_size": "32", "arch.dropout": "0.5",
          "arch.attn_dropout": "0.5"}
#: named Transformer settings (model, settings)
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    # what the demo ran before this round
    "demo": ("sasrec", {"train.epochs": "30", "train.patience": "5"}),
    "demo_bert4rec": ("bert4rec", {"train.epochs": "30", "train.patience": "5"}),
    # accuracy.py's Online Retail setting (full data, leave-one-out)
    "or_bench": ("sasrec", {**_SMALL, "train.epochs": "30", "train.patience": "5"}),
    "or_bench_w10": ("sasrec", {**_SMALL, "train.epochs": "30", "train.patience": "5", "train.warmup_steps": "10"}),
    "b32_e60": ("sasrec", {**_SMALL, "train.epochs": "60", "train.patience": "10", "train.warmup_steps": "10"}),
    "b16_e30": ("sasrec", {**_SMALL, "train.batch_size": "16", "train.epochs": "30", "train.patience": "5",
                           "train.warmup_steps": "10"}),
    "b32_e30_lr2": ("sasrec", {**_SMALL, "train.epochs": "30", "train.patience": "5", "train.warmup_steps": "10",
                               "train.lr": "0.002"}),
    "b32_e30_len50": ("sasrec", {**_SMALL, "arch.max_len": "50", "train.epochs": "30", "train.patience": "5",
                                 "train.warmup_steps": "10"}),
    "b32_e30_d02": ("sasrec", {**_SMALL, "arch.dropout": "0.2", "arch.attn_dropout": "0.0", "train.epochs": "30",
                               "train.patience": "5", "train.warmup_steps": "10"}),
    "b32_e30_d128": ("sasrec", {**_SMALL, "arch.d_model": "128", "train.epochs": "30", "train.patience": "5",
                                "train.warmup_steps": "10"}),
    "b32_e30_all": ("sasrec", {**_SMALL, "train.crop": "all", "train.epochs": "30", "train.patience": "5",
                               "train.warmup_steps": "10"}),
    "b32_e30_wd": ("sasrec", {**_SMALL, "train.epochs": "30", "train.patience": "5", "train.warmup_steps": "10",
                              "train.weight_decay": "0.1", "train.decay_embeddings": "true"}),
    "b32_e30_noattn": ("sasrec", {**_SMALL, "arch.attn_dropout": "0.0", "train.epochs": "30", "train.patience": "5",
                                  "train.warmup_steps": "10"}),
    "b32_e20": ("sasrec", {**_SMALL, "train.epochs": "20", "train.patience": "5", "train.warmup_steps": "10"}),
    # batches of 16, attention dropout off (PyTorch's fused attention: a third less CPU an epoch)
    "b16_e30_noattn": ("sasrec", {**_SMALL, "train.batch_size": "16", "arch.attn_dropout": "0.0", "train.epochs": "30",
                                  "train.patience": "5", "train.warmup_steps": "10"}),
    "b16_e40_noattn": ("sasrec", {**_SMALL, "train.batch_size": "16", "arch.attn_dropout": "0.0", "train.epochs": "40",
                                  "train.patience": "5", "train.warmup_steps": "10"}),
    "b16_e30_len50_noattn": ("sasrec", {**_SMALL, "train.batch_size": "16", "arch.attn_dropout": "0.0",
                                        "arch.max_len": "50", "train.epochs": "30", "train.patience": "5",
                                        "train.warmup_steps": "10"}),
    "b8_e20_noattn": ("sasrec", {**_SMALL, "train.batch_size": "8", "arch.attn_dropout": "0.0", "train.epochs": "20",
                                 "train.patience": "5", "train.warmup_steps": "10"}),
    "bert_b32_e30": ("bert4rec", {**_SMALL, "train.epochs": "30", "train.patience": "5", "train.warmup_steps": "10"}),
}
BASELINES = {
    "popular": [{}],
    "itemknn": [{"neighbors": str(n), "shrink": str(s)} for n in (100, 500) for s in (0, 50)],
    "ease": [{"l2": str(v)} for v in (50, 200, 500, 2000)],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", required=True, help="names this data setting in the results")
    ap.add_argument("--sample", type=Path, default=None, help="Online Retail CSV (default: the bundled sample)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/demo-choice"))
    ap.add_argument("--protocol", default="temporal")
    ap.add_argument("--min", type=int, default=3, help="min_user_events = min_item_events")
    ap.add_argument("--no-dedupe", action="store_true")
    ap.add_argument("--variants", default="")
    ap.add_argument("--baselines", action="store_true", help="the baselines' grids")
    ap.add_argument("--best-baselines", action="store_true", help="the baselines with the demo's settings")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default); 1 on a shared machine")
    args = ap.parse_args()
    from shopformer.demo import DEMO_SETTINGS, sample_path

    sample = args.sample or sample_path()
    folder = args.work / sample.name.replace(".csv.gz", "")
    if not (folder / "events.parquet").exists():
        ingest(sample, fmt="online-retail", data_dir=folder)
    config = DataConfig(event_types=("purchase",), min_user_events=args.min, min_item_events=args.min,
                        dedupe_consecutive=not args.no_dedupe, protocol=args.protocol)
    data, split = prepare(load_events(folder), config)
    print(f"{args.tag}: {describe(data)}, valid users {len(split.valid)}, test users {len(split.test)}", flush=True)
    runs: list[tuple[str, str, dict]] = []
    if args.baselines:
        runs += [(f"{m}", m, p) for m, grid in BASELINES.items() for p in grid]
    elif args.best_baselines:  # the demo's baseline settings only
        runs += [(m, m, DEMO_SETTINGS.get(m, {})) for m in ("popular", "itemknn", "ease")]
    runs += [(v, *VARIANTS[v]) for v in args.variants.split(",") if v]
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = EvalConfig(cutoffs=(10,))
    for name, model_name, params in runs:
        model = make_model(model_name, params)
        t0, cpu0 = time.perf_counter(), time.process_time()
        seconds = fit(model, data, split)
        cpu = time.process_time() - cpu0
        valid = evaluate_model(model, data, split, "valid", cfg, {}, progress=False)["metrics"]
        test = evaluate_model(model, data, split, "test", cfg, {}, progress=False)["metrics"]
        h = getattr(model, "history", None)
        rec = {
            "tag": args.tag, "variant": name, "model": model_name, "settings": params,
            "sample": str(sample.name), "data": {**config.to_dict(), **describe(data), "valid_users": len(split.valid),
                                                 "test_users": len(split.test)},
            "valid": {k: round(v, 4) for k, v in valid.items() if k in ("HR@10", "NDCG@10")},
            "test": {k: round(v, 4) for k, v in test.items() if k in ("HR@10", "NDCG@10")},
            "fit_s": round(seconds, 1), "fit_cpu_s": round(cpu, 1), "wall_s": round(time.perf_counter() - t0, 1),
            "epochs": len(h.records) if h is not None else None, "best_epoch": h.best_epoch if h is not None else None,
            "threads": torch.get_num_threads(), "load": os.getloadavg()[0],
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with OUT.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{args.tag} {name} {params}: valid NDCG@10 {rec['valid']['NDCG@10']:.4f} HR@10 {rec['valid']['HR@10']:.4f}"
              f" | test NDCG@10 {rec['test']['NDCG@10']:.4f} HR@10 {rec['test']['HR@10']:.4f}"
              f" | fit {rec['fit_s']} s ({rec['fit_cpu_s']} s CPU), epochs {rec['epochs']} (best {rec['best_epoch']}), load {rec['load']:.1f}",
              flush=True)


if __name__ == "__main__":
    main()
