"""Validation-only runs of one Transformer setting (never reads the test split).

    python benchmarks/tune_transformer.py --dataset beauty --name d256 arch.d_model=256 train.epochs=40 ...

Writes benchmarks/results/tuning/<dataset>_<name>.json with the validation curve. The
settings that win here become accuracy.py's TRANSFORMER_GRID entry for the dataset.
Two runs can share the 2 CPUs with train.threads=1 each (their wall times then say
nothing about speed: speed is measured by accuracy.py's final runs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from accuracy import CATALOGS, DATASETS, load, load_content

from shopformer.artifact import make_model
from shopformer.experiment import fit

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=list(DATASETS), required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-accuracy"))
    ap.add_argument("--content", action="store_true", help="fuse the dataset's item content (accuracy.CATALOGS)")
    ap.add_argument("settings", nargs="*", help="KEY=VALUE model settings")
    args = ap.parse_args()
    params = dict(s.split("=", 1) for s in args.settings)
    data, split = load(args.dataset, args.data_root, args.work)
    model = make_model(args.model, params)
    if args.content:
        model.content = load_content(args.dataset, args.data_root, args.work, data.items)
    seconds = fit(model, data, split)
    h = model.history
    out = {
        "dataset": args.dataset, "name": args.name, "model": args.model, "settings": params,
        "content": {"fields": CATALOGS[args.dataset][2], "text": CATALOGS[args.dataset][3]} if args.content else None,
        "best_valid_NDCG@10": h.best_valid, "best_epoch": h.best_epoch, "stopped": h.stopped,
        "seconds": round(seconds, 1),
        "curve": [(r.epoch, r.wall_seconds, round(r.loss, 4), r.valid) for r in h.records],
    }
    folder = HERE / "results" / "tuning"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{args.dataset}_{args.name}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}))


if __name__ == "__main__":
    main()
