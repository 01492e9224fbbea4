"""Calibrate a saved fused-Transformer run on its validation split, then score its test
split once: for runs trained before fit calibrated by itself (``models.calibration``).

    python benchmarks/calibrate_run.py --dataset ml-1m --entry sasrec_content_30min1t

reads the run folder accuracy.py saved for that entry (WORK/runs/DATASET-ENTRY) and its
record in results/accuracy.json, and adds the record ENTRY_calibrated: the same network,
its output ID scale, text weight and text history chosen on validation.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accuracy import RESULTS, markdown  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.artifact import load_run  # noqa: E402
from shopformer.evaluate.protocol import EvalConfig  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.experiment import evaluate_model, reload_data  # noqa: E402
from shopformer.models.calibration import calibrate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--entry", required=True, help="the accuracy.py entry (model name with its tag)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-accuracy"))
    args = ap.parse_args()
    records = json.loads((RESULTS / "accuracy.json").read_text())["results"]
    base = next((r for r in records if (r["dataset"], r["model"]) == (args.dataset, args.entry)), None)
    if base is None:
        sys.exit(f"no record {args.dataset}/{args.entry} in results/accuracy.json")
    run = load_run(args.work / "runs" / f"{args.dataset}-{args.entry}")
    if getattr(run.model, "content", None) is None:
        sys.exit("calibration needs a model with content")
    data, split = reload_data(run)
    cal = calibrate(run.model, split.valid)
    run.model.apply_calibration(cal)
    cfg = EvalConfig(cutoffs=(5, 10, 20))
    valid = evaluate_model(run.model, data, split, "valid", cfg, {}, progress=False)
    test = evaluate_model(run.model, data, split, "test", cfg, {}, progress=False)
    rec = {**base, "model": f"{args.entry}_calibrated", "model_config": asdict(run.model.config),
           "valid": valid["metrics"], "test": test["metrics"], "calibrated_from": args.entry,
           "calibration": asdict(cal)}
    rec.pop("training", None)  # the curve belongs to the entry it came from
    print(f"{rec['model']}: id_scale {cal.id_scale} text_weight {cal.text_weight} text_history {cal.text_history} "
          f"new_item_bias {cal.new_item_bias}; "
          f"valid NDCG@10 {base['valid']['NDCG@10']:.4f} -> {rec['valid']['NDCG@10']:.4f}; "
          f"test NDCG@10 {base['test']['NDCG@10']:.4f} -> {rec['test']['NDCG@10']:.4f}", flush=True)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
    save(RESULTS, "accuracy", meta, [rec], markdown)


if __name__ == "__main__":
    main()
