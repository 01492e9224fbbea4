"""Choosing the warm-start recipe of retraining on validation (issue 19): the setting of
benchmarks/retrain_warm.py (UCI Online Retail, SASRec trained on the events before
2011-10-01, retrained on those before 2011-11-01), one warm run per recipe
(``feedback.warmstart.WarmStartConfig``: peak learning rate, warm-up, new items' rows,
shrink and perturb, plan length), each recording its validation NDCG@10 per epoch. No
test case is read here: the recipe that reaches the scratch run's best validation
NDCG@10 in the fewest epochs (then the highest best) is what retrain_warm.py then runs
and tests once.

    python benchmarks/retrain_warm_recipes.py --recipe lr3 --recipe neighbours  # appends
    python benchmarks/retrain_warm_recipes.py --report  # Markdown from what was run

Needs the initial run and data folders of ``retrain_warm.py`` (``--work``; run it, or
this with ``--prepare``). Appends one JSON line per recipe to
benchmarks/results/retrain_warm_recipes.jsonl and writes retrain_warm_recipes.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.progress import Progress

from shopformer.artifact import load_run, make_model
from shopformer.evaluate.report import machine
from shopformer.experiment import train_run
from shopformer.feedback.warmstart import WarmStartConfig, train_like

import retrain_warm as bench

#: name -> (recipe, planned epochs); the current default is "default" (9 of 30 epochs)
RECIPES: dict[str, tuple[WarmStartConfig, int]] = {
    "default": (WarmStartConfig(), 9),
    "lr2": (WarmStartConfig(lr_scale=2.0), 9),
    "lr3": (WarmStartConfig(lr_scale=3.0), 9),
    "lr3-15ep": (WarmStartConfig(lr_scale=3.0), 15),
    "neighbours": (WarmStartConfig(new_rows="neighbours"), 9),
    "neighbours-lr3": (WarmStartConfig(new_rows="neighbours", lr_scale=3.0), 9),
    "shrink0.5-perturb0.1": (WarmStartConfig(shrink=0.5, perturb=0.1), 9),
    "shrink0.5-perturb0.1-lr2": (WarmStartConfig(shrink=0.5, perturb=0.1, lr_scale=2.0), 9),
    "shrink0.8-perturb0.1": (WarmStartConfig(shrink=0.8, perturb=0.1), 9),
    "full-plan": (WarmStartConfig(), 30),
    "replay0.3": (WarmStartConfig(replay=0.3), 9),
    "replay0.3-lr2": (WarmStartConfig(replay=0.3, lr_scale=2.0), 9),
    "replay0.3-15ep": (WarmStartConfig(replay=0.3), 15),
}
RESULTS = bench.RESULTS / "retrain_warm_recipes.jsonl"
#: the scratch run's best validation NDCG@10 in the earlier run of retrain_warm.py (the
#: sweep's yardstick; the final comparison runs scratch again)
EARLIER_TARGET = 0.1756589784002697
EARLIER_TARGET_EPOCH = 17


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-retrain"))
    ap.add_argument("--data-root", type=Path, default=bench.HERE.parent.parent / "shared" / "data")
    ap.add_argument("--recipe", action="append", default=[], choices=sorted(RECIPES))
    ap.add_argument("--prepare", action="store_true", help="make the data folders and the initial run first")
    ap.add_argument("--report", action="store_true", help="write the Markdown from the JSON lines")
    args = ap.parse_args()
    torch.set_num_threads(1)
    split, until = (datetime(2011, 10, 1, tzinfo=timezone.utc), datetime(2011, 11, 1, tzinfo=timezone.utc))
    run_dir = args.work / "initial-run-2011-10-01"
    if args.prepare:
        initial_dir, _ = bench.folders(args.data_root, args.work, split, until)
        train_run(make_model("sasrec", bench.SASREC), initial_dir, bench.CONFIG, run_dir)
    full_dir = args.work / "before-2011-11-01"
    if args.recipe:
        initial = load_run(run_dir)
        with Progress() as bar:
            task = bar.add_task("recipes", total=len(args.recipe))
            for name in args.recipe:
                recipe, epochs = RECIPES[name]
                load = [round(os.getloadavg()[0], 2)]
                cpu0 = os.times()
                folder = args.work / "sweep" / name  # kept: retrain_warm.py tests the chosen one from here
                shutil.rmtree(folder, ignore_errors=True)
                trained = train_like(initial, full_dir, folder, warm=True, epochs=epochs, recipe=recipe)
                cpu = os.times()
                load.append(round(os.getloadavg()[0], 2))
                h = trained.model.history
                row = {"recipe": name, "config": asdict(recipe), "epochs_planned": epochs,
                       "epochs_run": len(h.records), "stopped": h.stopped, "best_valid": h.best_valid,
                       "best_epoch": h.best_epoch, "fit_seconds": round(trained.seconds, 1),
                       "items_kept": trained.items_kept, "items_added": trained.items_added,
                       "cpu_seconds": round(cpu.user + cpu.system - cpu0.user - cpu0.system, 1),
                       "curve": bench.curve(trained.model), "load_average_1min": load,
                       "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
                with RESULTS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                (args.work / "sweep" / f"{name}.json").write_text(json.dumps(row))
                bar.console.print(f"{name}: best valid {h.best_valid:.4f} (epoch {h.best_epoch}), "
                                  f"{len(h.records)} epochs, {trained.seconds:.0f} s, load {load}")
                bar.advance(task)
    if args.report:
        (bench.RESULTS / "retrain_warm_recipes.md").write_text(markdown(args.work))


def markdown(work: Path) -> str:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    target, epoch, which = EARLIER_TARGET, EARLIER_TARGET_EPOCH, "the earlier scratch run's"
    scratch = work / "retrain-scratch.json"  # retrain_warm.py's scratch run, when it ran
    if scratch.exists():
        s = json.loads(scratch.read_text())
        target, epoch, which = s["best_valid"], s["best_epoch"], "the scratch run's (retrain_warm.md)"
    lines = ["# Retraining: choosing the warm-start recipe on validation", "",
             "Online Retail, the setting of retrain_warm.md; one warm run per recipe (validation only, no test case "
             f"read; 1 torch thread each, several at once on 2 shared CPUs). Yardstick: {which} best validation "
             f"NDCG@10, {target:.4f} (epoch {epoch}; half its epochs: {epoch / 2:g}). A replay run's epochs are "
             "shorter (fewer customers): compare its fit and CPU seconds too.", "",
             "| recipe | lr x | warm-up | new rows | shrink / perturb | epochs run / planned | best valid (of target) "
             "| best epoch | first epoch >= 99% | first epoch >= 100% | fit s (CPU s) | load before / after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["config"]
        hit99, hit = bench.reach(r["curve"], 0.99 * target), bench.reach(r["curve"], target)
        lines.append(
            f"| {r['recipe']} | {c['lr_scale']:g} | {c['warmup_steps'] if c['warmup_steps'] is not None else '100'} "
            f"| {c['new_rows']} | {c['shrink']:g} / {c['perturb']:g} | {r['epochs_run']} / {r['epochs_planned']} "
            f"| {r['best_valid']:.4f} ({r['best_valid'] / target:.1%}) | {r['best_epoch']} "
            f"| {hit99['epoch'] if hit99 else '-'} | {hit['epoch'] if hit else '-'} "
            f"| {r['fit_seconds']:.0f} ({r['cpu_seconds']:.0f}) | {' / '.join(str(x) for x in r['load_average_1min'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
