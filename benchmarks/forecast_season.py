"""Issue 24 pt 1: choices for the Transformer forecaster made on a window like the test's.

The test weeks (2011-09-12 .. 2011-11-28) are the pre-Christmas ramp; the validation weeks
of benchmarks/forecast.py (2011-06-20 .. 2011-09-05) are summer, where the Transformer and
LightGBM were level. This script scores settings on two validation windows, never on a
test week (every panel is cut at its window's last week):

- ``valid2011``: the benchmark's validation weeks (models fitted on the weeks before);
- ``peak2010``: the same 12 weeks a year earlier (2010-09-13 .. 2010-11-29), models fitted
  on the 41 weeks before (2009-12 .. 2010-09): a ramp like the test's (no year-ago weeks
  exist then, so it says nothing about year-ago features).

Scored series: the top 200 products by units before the window (as the benchmark). The
new knob is ``train_top``: the Transformer learns from the top N products (N >= 200, the
same ranking, so the scored 200 are among them): more series, more examples of a ramp.
LightGBM runs on each window as forecast.py tunes it (leaves by validation WAPE, trees by
early stopping there), trained on the top 200 as in the benchmark (and, as a check of
whether more series help it too, on the top ``--train-top``).

    python benchmarks/forecast_season.py run --window peak2010 --method transformer \
        --setting stats_d64_med_log1p --train-top 1000 --seeds 0
    python benchmarks/forecast_season.py report   # -> results/forecast_season.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

from forecast_sweep import SETTINGS, _Zero, config_of  # noqa: E402

from shopformer.forecast.backtest import Backtest, rolling_origin, scale_for  # noqa: E402
from shopformer.forecast.base import Panel  # noqa: E402
from shopformer.forecast.neural import TransformerForecaster  # noqa: E402

H, TEST_WEEKS, VALID_WEEKS, SCORED = 8, 12, 12, 200
#: validation windows: weeks before the test window's first week where the 12 targets start
WINDOWS = {"valid2011": VALID_WEEKS, "peak2010": 52}


def window_of(n_weeks: int, name: str) -> tuple[int, int]:
    """(first, last) target week index of window ``name`` in a panel of ``n_weeks`` weeks
    whose last TEST_WEEKS weeks are the test window."""
    first = n_weeks - TEST_WEEKS - WINDOWS[name]
    return first, first + VALID_WEEKS - 1


def load(data: Path | None, name: str, train_top: int) -> tuple[Panel, Panel, tuple[int, int], list[str]]:
    """(scored products' panel, training products' panel, window, [first, last] week), both
    panels cut at the window's last week: no later week is read."""
    import forecast as fb

    series, _ = fb.load_series(data)
    window = window_of(len(series.weeks), name)
    rows = series.top(max(train_top, SCORED), before=window[0])  # ranked before the window: no look-ahead
    scored = Panel.of(series.units[rows[:SCORED]], series.weeks).upto(window[1])
    train = Panel.of(series.units[rows], series.weeks).upto(window[1])
    return scored, train, window, [str(series.weeks[v]) for v in window]


def run(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    args.runs.mkdir(parents=True, exist_ok=True)
    scored, train, window, weeks = load(args.data, args.window, args.train_top)
    scale = scale_for(scored, window[0])
    actual = rolling_origin(_Zero(), scored, *window, H).actual
    for seed in [int(s) for s in args.seeds.split(",")]:
        tag = args.setting if args.method == "transformer" else "lightgbm"
        out = args.runs / f"{args.window}_{tag}_top{args.train_top}_seed{seed}_e{args.epochs}"
        if out.with_suffix(".json").exists():
            continue
        load_before, cpu0, t0 = os.getloadavg(), time.process_time(), time.perf_counter()
        forecasts, curve, extra = [], [], {}
        if args.method == "transformer":
            config = config_of(args.setting, args.epochs, seed)

            def on_epoch(epoch: int, model: TransformerForecaster) -> dict:
                bt = rolling_origin(model, scored, *window, H)
                forecasts.append(bt.forecast.astype(np.float32))
                curve.append(bt.scores(scale)["wape_mean_h"])
                print(f"{out.name} epoch {epoch}: valid WAPE {curve[-1]:.4f} "
                      f"({time.process_time() - cpu0:.0f} s CPU)", flush=True)
                return {}

            TransformerForecaster(config).fit(train.upto(window[0] - 1), on_epoch)
            extra["config"] = asdict(config)
        else:
            extra["trials"] = lightgbm_trials(scored, train, window, scale, forecasts, curve)
            print(f"{out.name}: {extra['trials']}", flush=True)
        np.savez_compressed(out.with_suffix(".npz"), forecast=np.stack(forecasts), actual=actual, scale=scale)
        out.with_suffix(".json").write_text(json.dumps({
            "window": args.window, "method": args.method, "setting": tag, "train_top": args.train_top, "seed": seed,
            "epochs": args.epochs, "valid_wape_mean_h_per_epoch": curve, "cpu_s": round(time.process_time() - cpu0, 1),
            "wall_s": round(time.perf_counter() - t0, 1), "load_before": load_before, "load_after": os.getloadavg(),
            "window_weeks": weeks, "n_train_series": train.n_series, **extra}, indent=1))


def lightgbm_trials(scored: Panel, train: Panel, window: tuple[int, int], scale: np.ndarray,
                    forecasts: list, curve: list) -> list[dict]:
    """forecast.py's LightGBM tuning on this window (grid LGB_GRID, trees by early stopping
    on the window); ``forecasts``/``curve`` get each grid point's forecasts and WAPE."""
    import forecast as fb

    from shopformer.forecast.gbt import LightGBMForecastConfig, LightGBMForecaster

    trials = []
    for grid in fb.LGB_GRID:
        config = LightGBMForecastConfig(horizon=H, n_estimators=2000, threads=1, **grid)
        origins = np.arange(window[0] - 1, window[1])
        model = LightGBMForecaster(config).fit(train.upto(window[0] - 1), valid=(scored, origins))
        bt = rolling_origin(model, scored, *window, H)
        forecasts.append(bt.forecast.astype(np.float32))
        curve.append(bt.scores(scale)["wape_mean_h"])
        trials.append({**grid, "n_estimators": model.best_iteration, "valid_wape_mean_h": curve[-1]})
    return trials


def report(args: argparse.Namespace) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(args.runs.glob("*.json"))]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["window"], r["setting"], r["train_top"], r["epochs"]), []).append(r)
    rows = []
    for (window, setting, top, epochs), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["seed"])
        curves = [r["valid_wape_mean_h_per_epoch"] for r in rs]
        row = {"window": window, "setting": setting, "train_top": top, "epochs": epochs, "seeds": [r["seed"] for r in rs],
               "curves": curves, "best": [min(c) for c in curves], "best_epoch": [int(np.argmin(c)) + 1 for c in curves],
               "cpu_s": sum(r["cpu_s"] for r in rs), "n_train_series": rs[0]["n_train_series"],
               "window_weeks": rs[0]["window_weeks"]}
        if len(rs) > 1:  # the seeds' mean forecast per epoch: what an ensemble serves
            stem = f"{window}_{setting}_top{top}"
            z = [np.load(args.runs / f"{stem}_seed{r['seed']}_e{epochs}.npz") for r in rs]
            mean = np.mean([x["forecast"] for x in z], axis=0)
            actual, scale = z[0]["actual"], z[0]["scale"]
            ens = [Backtest("t", np.arange(actual.shape[1]), actual, f).scores(scale)["wape_mean_h"] for f in mean]
            row.update({"ensemble_curve": ens, "ensemble_best": min(ens), "ensemble_best_epoch": int(np.argmin(ens)) + 1})
        if setting == "lightgbm":
            row["trials"] = rs[0]["trials"]
        rows.append(row)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "note": args.note,
            "chosen": json.loads(args.chosen) if args.chosen else None,
            "load": [(r["window"], r["setting"], r["train_top"], r["seed"], r["load_before"], r["load_after"])
                     for r in runs], "cpu_s_total": round(sum(r["cpu_s"] for r in runs), 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "forecast_season.json").write_text(json.dumps({**meta, "results": rows}, indent=1))
    (RESULTS / "forecast_season.md").write_text(markdown(rows, meta))
    print((RESULTS / "forecast_season.md").read_text())


def markdown(rows: list[dict], meta: dict) -> str:
    from shopformer.evaluate.report import machine

    lines = ["# Transformer forecaster: choices on a peak-season validation window (issue 24 pt 1)", "",
             f"{meta['date']}; {machine()['processor']}, 1 thread per run, 2-core machine shared with other jobs "
             f"(load averages per run in forecast_season.json); {meta['cpu_s_total']:.0f} s CPU in all. "
             "Validation only (no test week read): rolling origin, horizons 1..8, WAPE of the top 200 products "
             "(mean over h), models fitted on the weeks before each window. Windows: "
             + "; ".join(sorted({f"{r['window']} {r['window_weeks'][0]} .. {r['window_weeks'][1]}" for r in rows})) + ".",
             "", "| window | method / setting | trained on top N | schedule | seed(s) | best WAPE per seed (epoch) "
             "| seeds' mean: best (epoch) | CPU s |", "|---|---|---:|---:|---|---|---|---:|"]
    for r in rows:
        single = ", ".join(f"{v:.4f} ({e})" for v, e in zip(r["best"], r["best_epoch"]))
        if r["setting"] == "lightgbm":
            single = ", ".join(f"{t['valid_wape_mean_h']:.4f} (leaves {t['num_leaves']}, {t['n_estimators']} trees)"
                               for t in r["trials"])
        ens = f"{r['ensemble_best']:.4f} ({r['ensemble_best_epoch']})" if "ensemble_best" in r else ""
        lines.append(f"| {r['window']} | {r['setting']} | {r['train_top']} | {r['epochs'] if r['setting'] != 'lightgbm' else '-'} "
                     f"| {r['seeds']} | {single} | {ens} | {r['cpu_s']:.0f} |")
    lines += ["", f"Settings: {', '.join(sorted({r['setting'] for r in rows} - {'lightgbm'}))} as in "
              "benchmarks/forecast_sweep.py SETTINGS; LightGBM: forecast.py's grid (leaves and trees chosen on the "
              "window itself, as the Transformer's epoch), trained on the top N shown.", ""]
    if meta.get("chosen"):
        lines += [f"Chosen for the test run: {meta['chosen']}", ""]
    if meta.get("note"):
        lines += [meta["note"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("run", "report"))
    ap.add_argument("--window", choices=tuple(WINDOWS), default="peak2010")
    ap.add_argument("--method", choices=("transformer", "lightgbm"), default="transformer")
    ap.add_argument("--setting", default="stats_d64_med_log1p", choices=tuple(SETTINGS))
    ap.add_argument("--train-top", type=int, default=SCORED, help="the Transformer learns from the top N products")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--runs", type=Path, default=Path("/tmp/forecast_season"))
    ap.add_argument("--data", type=Path, help="an ingested data folder (default: ingest both files afresh)")
    ap.add_argument("--note", default="", help="report: a line for the Markdown")
    ap.add_argument("--chosen", default="", help="report: the choice made from these numbers (JSON)")
    args = ap.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
