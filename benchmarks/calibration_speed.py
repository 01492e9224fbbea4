"""How long a fused Transformer's calibration takes (issue 21: ``train --auto --minutes
10`` spent 303 s of its 600 calibrating one Beauty trial), before and after counting
each candidate's NDCG@10 instead of sorting, and what a seeded sample of the validation
cases (``CalibrationConfig.max_cases``, what short ``--auto`` budgets use) costs in the
candidate it picks. Validation only: the test split is not read.

    git show d5a9d89:src/shopformer/models/calibration.py > /tmp/calibration_before.py
    python benchmarks/calibration_speed.py --reference /tmp/calibration_before.py

One fused network is trained first (the auto search's first trial on the dataset, for
``--train-seconds``, calibration off; kept in ``--work`` and reused), then calibrated:

* by ``--reference`` (a copy of the module before the change) and by the current one,
  on every validation case (or the first ``--cases``): seconds (process CPU and wall,
  one torch thread) and whether the grids and choices are the same;
* on ``--seeds`` samples of each of ``--samples`` cases: seconds, the candidate picked,
  and its NDCG@10 on all validation cases (from the full grid) against the full
  grid's best: the "regret" of choosing on a sample.

Writes benchmarks/results/calibration_speed.{json,md} (one record per dataset).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accuracy import CATALOGS, load, load_content  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.models import calibration  # noqa: E402
from shopformer.models.sequential import SASRecRecommender  # noqa: E402
from shopformer.tune.priors import DataStats, starting_setting  # noqa: E402
from shopformer.tune.space import model_params  # noqa: E402

KEYS = ("id_scale", "text_weight", "text_history")


def trained(args, data, split, content) -> tuple[SASRecRecommender, dict]:  # noqa: ANN001
    """The search's first fused setting, trained for ``--train-seconds`` (or reloaded),
    and what it was: its parameters and best validation NDCG@10."""
    folder = args.work / f"calibration-speed-{args.dataset}-{args.train_seconds:g}s"
    choice = starting_setting(DataStats.of(split.train, data.n_items), content=True)
    params = {**model_params(choice, args.train_seconds, 0, 1), "calibration.enabled": "false"}
    if not (folder / "trained.json").exists():
        model = make_model("sasrec", params)
        model.content = content
        model.fit(split.train, data.n_items, valid=split.valid)
        folder.mkdir(parents=True, exist_ok=True)
        model.save(folder)
        info = {"params": params, "valid_ndcg10": round(float(model.history.best_valid), 6),
                "epochs": len(model.history.records)}
        (folder / "trained.json").write_text(json.dumps(info))
    return SASRecRecommender.load(folder), json.loads((folder / "trained.json").read_text())


def timed(fn, *args) -> tuple[object, float, float]:  # noqa: ANN001
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args)
    return out, round(time.process_time() - cpu, 2), round(time.perf_counter() - wall, 2)


def reference_module(path: Path):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("calibration_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=list(CATALOGS), default="beauty")
    ap.add_argument("--train-seconds", type=float, default=210.0, help="what the 10-minute search's first trial trained")
    ap.add_argument("--reference", type=Path, help="the calibration module before the change (see above)")
    ap.add_argument("--samples", default="5000", help="sample sizes, comma-separated")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cases", type=int, default=0, help="the first this many validation cases only (0: all)")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shopformer-accuracy")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--note", default="", help="the run's conditions (what else ran on the machine ...)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()

    data, split = load(args.dataset, args.data_root, args.work)
    content = load_content(args.dataset, args.data_root, args.work, data.items)
    sizes = [int(s) for s in args.samples.split(",") if s.strip()]
    valid = split.valid
    if 0 < args.cases < len(valid):  # when the machine has no time for the whole set
        valid = calibration._cases_at(valid, np.arange(args.cases))
    meta = {"benchmark": "calibration_speed", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine()}
    with Progress() as progress:
        steps = progress.add_task("train, calibrate", total=2 + bool(args.reference) + len(sizes) * args.seeds)
        model, info = trained(args, data, split, content)
        progress.advance(steps)
        config = model.config.calibration
        record = {"dataset": args.dataset, "model": "calibration", "n_items": data.n_items,
                  "valid_cases": len(valid), "all_valid_cases": len(split.valid), "trained_s": args.train_seconds,
                  "trained_params": info["params"],
                  "trained_valid_ndcg10": info["valid_ndcg10"], "trained_epochs": info["epochs"], "samples": [],
                  "note": args.note, "torch_threads": torch.get_num_threads()}
        if args.reference is not None:
            before = reference_module(args.reference)
            old, cpu, wall = timed(before.calibrate, model, valid, before.CalibrationConfig())
            record["before"] = _summary(old, cpu, wall)
            progress.advance(steps)
        full, cpu, wall = timed(calibration.calibrate, model, valid, replace(config, enabled=True))
        record.update(candidates=len(full.grid), bias_candidates=len(full.bias_grid), after=_summary(full, cpu, wall))
        if args.reference is not None:
            record["same_grid"] = list(old.grid) == list(full.grid) and list(old.bias_grid) == list(full.bias_grid)
            record["same_choice"] = asdict(old) == {k: v for k, v in asdict(full).items() if k != "cases"}
        _save(args, meta, record, load_before)  # kept should the samples not finish
        progress.advance(steps)
        by_key = {tuple(g[k] for k in KEYS): g["valid_NDCG@10"] for g in full.grid}
        best = max(by_key.values())
        for size in sizes:
            for seed in range(args.seeds):
                cal, cpu, wall = timed(calibration.calibrate, model, valid,
                                       replace(config, enabled=True, max_cases=size, sample_seed=seed))
                picked = tuple(getattr(cal, k) for k in KEYS)
                record["samples"].append({"cases": size, "seed": seed, "cpu_s": cpu, "wall_s": wall,
                                          **dict(zip(KEYS, picked)), "new_item_bias": cal.new_item_bias,
                                          "full_valid_NDCG@10": by_key[picked], "regret": round(best - by_key[picked], 6)})
                progress.advance(steps)
    _save(args, meta, record, load_before)
    print(markdown([record], meta))


def _summary(cal, cpu_s: float, wall_s: float) -> dict:  # noqa: ANN001
    return {"cpu_s": cpu_s, "wall_s": wall_s, **{k: getattr(cal, k) for k in KEYS},
            "new_item_bias": cal.new_item_bias, "valid_ndcg10": cal.valid_ndcg}


def _save(args, meta: dict, record: dict, load_before: tuple) -> None:  # noqa: ANN001
    record["load_average"] = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    save(args.out, "calibration_speed", meta, [record], markdown)


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# A fused Transformer's calibration: seconds, before and after, and choosing on a sample", "",
             f"{meta['date']} · {meta['machine']}", "",
             "Validation cases only (the test split is not read). Seconds: process CPU, one torch thread.", ""]
    for r in results:
        a, b = r["after"], r.get("before")
        lines += [f"## {r['dataset']}: {r['valid_cases']:,} validation cases (of {r['all_valid_cases']:,}), "
                  f"{r['n_items']:,} items, "
                  f"{r['candidates']} candidates (+ {r['bias_candidates']} new-product biases)", "",
                  f"The network: the auto search's first fused setting trained {r['trained_s']:g} s "
                  f"({r['trained_epochs']} epochs, validation NDCG@10 {r['trained_valid_ndcg10']:.4f}, uncalibrated).", "",
                  "| calibration | CPU s | wall s | id_scale | text_weight | text_history | new_item_bias | valid NDCG@10 |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, x in (("before (sorted)", b), ("after (counted)", a)):
            if x is not None:
                lines.append(f"| {name} | {x['cpu_s']:.1f} | {x['wall_s']:.1f} | {x['id_scale']} | {x['text_weight']} | "
                             f"{x['text_history']} | {x['new_item_bias']} | {x['valid_ndcg10']:.6f} |")
        if b is not None:
            lines += ["", f"Same grid (every candidate's value): **{r['same_grid']}**; same choice: "
                      f"**{r['same_choice']}**; {b['cpu_s'] / a['cpu_s']:.1f}x less CPU time."]
        if r["samples"]:
            lines += ["", "Chosen on a seeded sample of the validation cases; \"full NDCG@10\": the picked candidate's "
                      "value on all cases (the full grid), regret: the full grid's best minus it.", "",
                      "| cases | seed | CPU s | id_scale | text_weight | text_history | new_item_bias | full NDCG@10 | regret |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for s in r["samples"]:
                lines.append(f"| {s['cases']:,} | {s['seed']} | {s['cpu_s']:.1f} | {s['id_scale']} | {s['text_weight']} | "
                             f"{s['text_history']} | {s['new_item_bias']} | {s['full_valid_NDCG@10']:.6f} | "
                             f"{s['regret']:.6f} |")
        lines += ["", f"Load average (1, 5, 15 min) before {r['load_average']['before']}, after "
                  f"{r['load_average']['after']}; torch threads {r['torch_threads']}."]
        if r.get("note"):
            lines += ["", f"Conditions: {r['note']}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
