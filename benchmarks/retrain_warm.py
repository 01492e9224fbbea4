"""Retraining warm-started from the served run against retraining from scratch: how long
each takes to reach the same validation NDCG@10 (issue 19's target: warm at most half
the time of scratch).

Protocol (UCI Online Retail, purchases, repeated invoice lines of a product merged,
leave-one-out; the SASRec setting of benchmarks/accuracy.py): the initial run is trained
on the events before ``--split`` (2011-10-01: ten months); then the shop has one more
month (October 2011, to ``--until``) and the run is retrained on all of it, twice, with
the same settings: from scratch (its planned 30 epochs, early stopping on
validation) and warm-started from the initial run (``feedback.warmstart``: items keep
their indexes, new ones get fresh rows, every weight continues; the default plan of
retraining, 30% of the epochs). Both read the same validation cases every epoch. Target
= the best validation NDCG@10 the scratch run reaches; each run's time to reach it is
the wall time of the first epoch at or above it (training and its validation passes,
from the start of fit). Also reported: the warm start point (the initial network over
the grown catalog, before any step), the time to 99% of the target, and both runs' test
NDCG@10 (leave-one-out test cases, read once, chosen on nothing).

Caveat, in favour of warm: the initial run chose its best epoch on its own validation
cases, which for customers with no purchase after the split are the same events as the
new validation cases (never trained on by either run, but looked at once by the initial
run's early stopping).

    python benchmarks/retrain_warm.py [--work /tmp/shopformer-retrain]

Writes benchmarks/results/retrain_warm.{json,md} and retrain_warm_online-retail.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import torch

from results_file import save

from shopformer.artifact import load_run, make_model
from shopformer.dataset import DataConfig, load_events
from shopformer.evaluate.protocol import EvalConfig
from shopformer.evaluate.report import machine
from shopformer.experiment import evaluate_model, reload_data, train_run
from shopformer.feedback.retrain import RetrainConfig
from shopformer.feedback.warmstart import WarmStartConfig, train_like
from shopformer.ingest import ingest
from shopformer.ingest.api import EVENTS_FILE, PRODUCTS_FILE, _write_atomically

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATASET = "online-retail"
FILE = "online-retail/online_retail.csv.gz"
CONFIG = DataConfig(event_types=("purchase",), dedupe_consecutive=True, protocol="leave_one_out")
#: benchmarks/accuracy.py's Online Retail setting (chosen on validation there)
SASREC = {"arch.d_model": "64", "arch.max_len": "100", "train.batch_size": "32", "train.epochs": "30",
          "arch.dropout": "0.5", "arch.attn_dropout": "0.5", "train.patience": "5"}


def folders(data_root: Path, work: Path, split: datetime, until: datetime) -> tuple[Path, Path]:
    """(events before ``split``, events before ``until``), both with the whole catalog."""
    full = work / "full"
    if not (full / EVENTS_FILE).exists():
        ingest(data_root / FILE, fmt="online-retail", data_dir=full)
    out = []
    for end in (split, until):
        folder = work / f"before-{end:%Y-%m-%d}"
        if not (folder / EVENTS_FILE).exists():
            events = load_events(full).filter(pl.col("timestamp") < end)
            _write_atomically(folder, {EVENTS_FILE: events, PRODUCTS_FILE: pl.read_parquet(full / PRODUCTS_FILE)})
        out.append(folder)
    return out[0], out[1]


def curve(model) -> list[dict]:
    return [{"epoch": r.epoch, "step": r.step, "wall_s": r.wall_seconds, "train_s": r.seconds, "valid": r.valid}
            for r in model.history.records if r.valid is not None]


#: shares of the target (the scratch run's best validation NDCG@10) each run's time is reported for
FRACTIONS = (0.95, 0.97, 0.99, 1.0)


def reach(points: list[dict], target: float) -> dict | None:
    hit = next((p for p in points if p["valid"] >= target), None)
    return None if hit is None else {"epoch": hit["epoch"], "wall_s": hit["wall_s"], "train_s": hit["train_s"]}


def warm_modes() -> dict[str, tuple[bool, int | None, WarmStartConfig | None]]:
    """mode -> (warm, planned epochs, recipe): scratch, the retrain default (its recipe and
    its share of the plan) and the earlier default recipe (before the recipe was chosen
    on validation: benchmarks/retrain_warm_recipes.py)."""
    config = RetrainConfig()
    planned = int(SASREC["train.epochs"])
    return {"scratch": (False, None, None),
            "warm": (True, max(1, round(planned * config.warm_epoch_share)), config.warm_start),
            "warm, earlier recipe": (True, max(1, round(planned * 0.3)), WarmStartConfig())}


def train_scratch(full_dir: Path):
    """The scratch retrain without the initial run (the same model as ``train_like(..,
    warm=False)`` builds: the benchmark's settings, trained on ``full_dir``)."""
    import time

    from shopformer.dataset import prepare
    from shopformer.feedback.warmstart import Trained

    model = make_model("sasrec", SASREC)
    data, split = prepare(load_events(full_dir), CONFIG)
    t0 = time.perf_counter()
    model.fit(split.train, data.n_items, valid=split.valid)
    return Trained(model, data, split, time.perf_counter() - t0, False, 0, len(data.items))


def from_sweep(work: Path, recipe: WarmStartConfig, epochs: int):
    """(the sweep's record, its saved run) of a warm run with this recipe and plan that
    retrain_warm_recipes.py trained into ``work/sweep``; None when there is none."""
    for path in sorted((work / "sweep").glob("*.json")):
        row = json.loads(path.read_text())
        folder = path.with_suffix("")
        if row["config"] == asdict(recipe) and row["epochs_planned"] == epochs and (folder / "run.json").exists():
            return row, load_run(folder)
    return None


def run_mode(mode: str, initial, full_dir: Path, cfg: EvalConfig, work: Path) -> dict:
    """Train one retrain, read its test cases once; the record (with the load around it)."""
    warm, epochs, recipe = warm_modes()[mode]
    swept = from_sweep(work, recipe, epochs) if warm else None
    if swept is not None:  # trained by the recipe sweep (validation only): its test cases are read here, once
        row, run = swept
        data, split = reload_data(run, full_dir)
        model, load = run.model, row["load_average_1min"]
        done = {k: row[k] for k in ("fit_seconds", "epochs_planned", "epochs_run", "stopped", "best_valid",
                                    "best_epoch", "curve")}
        done |= {"items_kept": row["items_kept"], "items_added": row["items_added"],
                 "trained_by": f"retrain_warm_recipes.py ({row['recipe']}, {row['date']})"}
    else:
        load = [round(os.getloadavg()[0], 2)]
        trained = train_like(initial, full_dir, None, warm=True, epochs=epochs, recipe=recipe) if warm \
            else train_scratch(full_dir)
        load.append(round(os.getloadavg()[0], 2))
        model, data, split = trained.model, trained.data, trained.split
        done = {"fit_seconds": round(trained.seconds, 1), "epochs_planned": model.config.train.epochs,
                "epochs_run": len(model.history.records), "stopped": model.history.stopped,
                "best_valid": model.history.best_valid, "best_epoch": model.history.best_epoch,
                "curve": curve(model), "items_kept": trained.items_kept, "items_added": trained.items_added}
    test = evaluate_model(model, data, split, "test", cfg, {}, progress=False)
    record = {**done, "test_ndcg10": test["metrics"]["NDCG@10"], "recipe": asdict(recipe) if recipe else None,
              "load_average_1min": load,
              "retrain_data": {"users": len(data.users), "items": len(data.items),
                               "interactions": data.sequences.n_interactions}}
    print(f"{mode}: best valid NDCG@10 {record['best_valid']:.4f} after {record['epochs_run']} epochs, "
          f"{record['fit_seconds']:.0f} s; test {record['test_ndcg10']:.4f}; load {load}", flush=True)
    return record


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-retrain"))
    ap.add_argument("--split", default="2011-10-01", help="the initial run is trained on the events before this day")
    ap.add_argument("--until", default="2011-11-01", help="the retrains on the events before this day")
    ap.add_argument("--reuse-initial", action="store_true", help="keep WORK/initial-run if it is there")
    ap.add_argument("--mode", action="append", choices=list(warm_modes()),
                    help="run only these retrains (each kept in WORK/retrain-MODE.json); default all")
    ap.add_argument("--reuse-runs", action="store_true",
                    help="take a retrain kept in WORK/retrain-MODE.json instead of running it again")
    ap.add_argument("--no-report", action="store_true", help="only run (and keep) the retrains asked for")
    args = ap.parse_args()
    torch.set_num_threads(1)  # a shared 2-CPU machine
    if not (args.data_root / FILE).exists():
        sys.exit(f"{args.data_root / FILE} not found: needs ../shared/data")
    split, until = (datetime.fromisoformat(d).replace(tzinfo=timezone.utc) for d in (args.split, args.until))
    initial_dir, full_dir = folders(args.data_root, args.work, split, until)
    modes = args.mode or list(warm_modes())
    cfg = EvalConfig(cutoffs=(10,))
    run_dir = args.work / f"initial-run-{args.split}"
    initial = None
    if modes != ["scratch"] or not args.no_report:
        if args.reuse_initial and (run_dir / "run.json").exists():
            initial = load_run(run_dir)
        else:
            initial = train_run(make_model("sasrec", SASREC), initial_dir, CONFIG, run_dir)
        print(f"initial run: {initial.info['dataset']} in {initial.info['fit_seconds']:.0f} s", flush=True)
    runs = {}
    for mode in modes:
        kept = args.work / f"retrain-{mode.replace(', ', '-').replace(' ', '-')}.json"
        if args.reuse_runs and kept.exists():
            runs[mode] = json.loads(kept.read_text())
            continue
        runs[mode] = run_mode(mode, initial, full_dir, cfg, args.work)
        kept.write_text(json.dumps(runs[mode]))
    if args.no_report:
        return
    start = train_like(initial, full_dir, None, warm=True, epochs=0)  # the warm start point, no step taken
    start_valid = evaluate_model(start.model, start.data, start.split, "valid", cfg, {}, progress=False)
    target = runs["scratch"]["best_valid"]
    for r in runs.values():
        r["reach"] = {str(f): reach(r["curve"], f * target) for f in FRACTIONS}
    s, w = runs["scratch"]["reach"]["1.0"], runs["warm"]["reach"]["1.0"]
    ratio = None if s is None or w is None else round(w["wall_s"] / s["wall_s"], 3)
    epoch_ratio = None if s is None or w is None else round(w["epoch"] / s["epoch"], 3)
    data = runs["scratch"]["retrain_data"]
    record = {"dataset": DATASET, "model": "sasrec", "settings": SASREC, "data_config": CONFIG.to_dict(),
              "split": args.split, "until": args.until,
              "initial": {"dataset": initial.info["dataset"], "fit_seconds": initial.info["fit_seconds"]},
              "retrain_data": data, "warm_start_valid": start_valid["metrics"]["NDCG@10"], "target_valid": target,
              "runs": runs, "warm_over_scratch_time": ratio, "warm_over_scratch_epochs": epoch_ratio,
              "target_met": ratio is not None and ratio <= 0.5 and epoch_ratio <= 0.5,
              "threads": torch.get_num_threads(), "earlier": EARLIER}
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "retrain_config": asdict(RetrainConfig())}
    plot(record, RESULTS / f"retrain_warm_{DATASET}.png")
    results = save(RESULTS, "retrain_warm", meta, [record], markdown)
    print(markdown(results, meta))


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colours = {"scratch": "tab:blue", "warm": "tab:red", "warm, earlier recipe": "tab:orange"}
    for mode, run in record["runs"].items():
        pts = run["curve"]
        xs, ys = [p["epoch"] for p in pts], [p["valid"] for p in pts]
        if mode != "scratch":
            xs, ys = [0, *xs], [record["warm_start_valid"], *ys]
        ax.plot(xs, ys, marker=".", color=colours.get(mode), label=f"{mode} ({run['fit_seconds']:.0f} s fit)")
    ax.axhline(record["target_valid"], color="grey", linestyle="--", linewidth=0.8, label="scratch's best")
    ax.set_xlabel("epochs (an epoch costs the same for every run; wall times in the table)")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(f"Retraining SASRec on {record['dataset']}: warm start vs from scratch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: the earlier run of this benchmark (2026-12-04, before the warm recipe was chosen on
#: validation; default recipe: lr and warm-up of the current run, random new rows)
EARLIER = {
    "date": "2026-12-04T23:02:22+00:00", "target_valid": 0.1757, "warm_start_valid": 0.1669,
    "rows": [
        "| scratch | 22 / 30 | 329 | 0.1757 (100.0%) | 0.1600 | 159 s (ep. 9) | 207 s (ep. 11) | 292 s (ep. 16) | 297 s (ep. 17) |",
        "| warm | 9 / 9 | 49 | 0.1698 (96.7%) | 0.1620 | 21 s (ep. 4) | not reached | not reached | not reached |",
        "| warm, full plan | 23 / 30 | 119 | 0.1751 (99.7%) | 0.1646 | 20 s (ep. 4) | 40 s (ep. 8) | 65 s (ep. 13) "
        "| not reached |",
    ],
}
HEADER = ("| retrain | epochs run / planned | fit s | best valid NDCG@10 (of target) | test NDCG@10 | to 95% | to 97% "
          "| to 99% | to 100% |")


def recipe_text(recipe: dict | None) -> str:
    if recipe is None:
        return "from scratch"
    return (f"peak lr x{recipe['lr_scale']:g}, warm-up {recipe['warmup_steps'] if recipe['warmup_steps'] is not None else 'as the run'}"
            f", patience {recipe['patience'] if recipe['patience'] is not None else 'as the run'}, new rows "
            f"{recipe['new_rows']}, shrink {recipe['shrink']:g} / perturb {recipe['perturb']:g}")


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Retraining: warm start against from scratch", "",
             f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs, 1 torch thread per run. "
             f"Updated {meta['date']}.",
             "The initial SASRec is trained on the events before the split; each retrain trains on every event "
             "before the second date with the same settings and reads the same validation cases each epoch. Target: "
             "the scratch run's best validation NDCG@10. A time is the wall time from the start of fit to the end of "
             "the first epoch (and its validation pass) at or above that share of the target. The warm recipe was "
             "chosen on validation alone (retrain_warm_recipes.md); each run's test cases were read once.", ""]
    for r in results:
        d = r["retrain_data"]
        lines += [f"## {r['dataset']}: initial run on the events before {r['split']} ({r['initial']['dataset']['interactions']} "
                  f"events, {r['initial']['fit_seconds']:.0f} s); retrained on the events before {r['until']} "
                  f"({d['users']} users, {d['items']} items, {d['interactions']} events; "
                  f"{r['runs']['warm']['items_added']} new items)", "",
                  f"Target {r['target_valid']:.4f}; the warm start point (the initial network over the grown catalog, "
                  f"before any step) scores {r['warm_start_valid']:.4f} ({r['warm_start_valid'] / r['target_valid']:.1%} "
                  "of it).", "", HEADER, "|---|---|---|---|---|---|---|---|---|"]
        for mode, x in r["runs"].items():
            cells = ["not reached" if v is None else f"{v['wall_s']:.0f} s (ep. {v['epoch']})" for v in x["reach"].values()]
            lines.append(f"| {mode} | {x['epochs_run']} / {x['epochs_planned']} | {x['fit_seconds']:.0f} "
                         f"| {x['best_valid']:.4f} ({x['best_valid'] / r['target_valid']:.1%}) | {x['test_ndcg10']:.4f} | "
                         + " | ".join(cells) + " |")
        lines += [""] + [f"- {mode}: {recipe_text(x.get('recipe'))}; 1-minute load average before / after: "
                         f"{' / '.join(str(v) for v in x.get('load_average_1min', []))}" for mode, x in r["runs"].items()]
        ratio, epochs = r["warm_over_scratch_time"], r.get("warm_over_scratch_epochs")
        lines += ["", "A scratch epoch and a warm one cost the same (the same data through the same network), so the "
                  "epoch counts compare the two under equal load; the wall times were measured on 2 CPUs shared with "
                  "other engineers' jobs (the load averages above), so they are noisier. The target is the best of the "
                  "scratch run's validation evaluations, a maximum over noisy epochs; the test cases (read once, "
                  "chosen on nothing) are the unbiased comparison of the final runs.",
                  "", "Target (issue 19): warm start (the default recipe and plan of `shopformer retrain`) reaches the "
                  f"scratch run's best validation NDCG@10 in at most half its time: **{'met' if r['target_met'] else 'not met'}**"
                  + ("" if ratio is None else f" (warm / scratch: wall time {ratio:.2f}, epochs {epochs:.2f})") + ".", ""]
        e = r.get("earlier")
        if e:
            lines += [f"### The earlier run ({e['date']}, before the recipe was chosen; same protocol, load not "
                      "recorded)", "", f"Target {e['target_valid']:.4f}; warm start point {e['warm_start_valid']:.4f}.",
                      "", HEADER, "|---|---|---|---|---|---|---|---|---|", *e["rows"], "",
                      "Then: not met (the default warm plan stopped after 9 epochs at 96.7% of the target; "
                      "the full 30-epoch plan plateaued at 99.7%).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
