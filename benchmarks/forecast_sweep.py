"""The Transformer forecaster's settings, swept on the VALIDATION window only (issue 24 pt 1).

Same data, series and protocol as benchmarks/forecast.py (top 200 products of UCI
Online Retail II + I, rolling origin, horizons 1..8): every setting is trained on the
weeks before the validation window (2011-06-20 .. 2011-09-05) and scored there after
every epoch. The test weeks are never read here (the panel is cut at the last
validation week). The winner goes to benchmarks/forecast.py, which refits it on the
weeks before the test window and reads the test weeks once.

Each (setting, seed) run stores its validation forecasts per epoch, so a setting run
with several seeds is also scored as an ensemble (the mean of its seeds' forecasts at
each epoch: what ``TransformerForecastConfig.ensemble`` serves).

    python benchmarks/forecast_sweep.py run --settings base,stats --seeds 0 [--epochs 10]
    python benchmarks/forecast_sweep.py report     # -> results/forecast_sweep.{json,md}

Runs are kept in --runs (default /tmp/forecast_sweep) so two processes can share the
work (run each with 1 thread under nice on a shared machine).
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

from shopformer.forecast.backtest import Backtest, rolling_origin, scale_for  # noqa: E402
from shopformer.forecast.base import Panel  # noqa: E402
from shopformer.forecast.neural import TransformerForecastConfig, TransformerForecaster  # noqa: E402

H, TEST_WEEKS, VALID_WEEKS = 8, 12, 12

#: the settings tried: overrides of the benchmark's earlier choice (BASE)
BASE = {"context": 26, "d_model": 32, "n_layers": 2, "dropout": 0.1, "lr": 2e-3, "static_stats": False,
        "median_stats": False, "input_transform": "none"}
SETTINGS: dict[str, dict] = {
    "base": {},
    "stats": {"static_stats": True},
    "stats_ctx52": {"static_stats": True, "context": 52},
    "stats_d64": {"static_stats": True, "d_model": 64},
    "stats_l3": {"static_stats": True, "n_layers": 3},
    "stats_lr1e-3": {"static_stats": True, "lr": 1e-3},
    "stats_lr4e-3": {"static_stats": True, "lr": 4e-3},
    "stats_drop0.2": {"static_stats": True, "dropout": 0.2},
    "stats_drop0": {"static_stats": True, "dropout": 0.0},
    "ctx52": {"context": 52},
    "stats_ctx52_d64": {"static_stats": True, "context": 52, "d_model": 64},
    "stats_ctx39": {"static_stats": True, "context": 39},
    # robust inputs (issue 24: LightGBM's trees never feel a spike's size, the net's linear
    # embedding does): the inputs through log1p, the rolling medians as summaries, both
    "stats_d64_log1p": {"static_stats": True, "d_model": 64, "input_transform": "log1p"},
    "stats_d64_med": {"static_stats": True, "d_model": 64, "median_stats": True},
    "stats_d64_med_log1p": {"static_stats": True, "d_model": 64, "median_stats": True, "input_transform": "log1p"},
    "stats_d64_med_log1p_b64": {"static_stats": True, "d_model": 64, "median_stats": True,
                                "input_transform": "log1p", "batch_size": 64},
}


def load_products(data: Path | None = None) -> tuple[Panel, tuple[int, int], list[str]]:
    """(the top products' panel cut at the last validation week, validation (first, last)
    week indexes, [first, last] week) built as benchmarks/forecast.py builds them (from
    ``data``, an ingested folder, or both files ingested afresh)."""
    import forecast as fb

    series, _ = fb.load_series(data)
    T = len(series.weeks)
    valid = (T - TEST_WEEKS - VALID_WEEKS, T - TEST_WEEKS - 1)
    rows = series.top(200, before=valid[0])
    products = Panel.of(series.units[rows], series.weeks).upto(valid[1])  # no test week past here
    return products, valid, [str(series.weeks[v]) for v in valid]


def config_of(name: str, epochs: int, seed: int) -> TransformerForecastConfig:
    return TransformerForecastConfig(horizon=H, epochs=epochs, stop_after=None, seed=seed, threads=1, ensemble=1,
                                     **{**BASE, **SETTINGS[name]})


def run(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    products, valid, weeks = load_products(args.data)
    scale_v = scale_for(products, valid[0])
    args.runs.mkdir(parents=True, exist_ok=True)
    for name in args.settings.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = args.runs / f"{name}_seed{seed}_e{args.epochs}"
            if out.with_suffix(".json").exists():
                continue
            config = config_of(name, args.epochs, seed)
            forecasts, curve = [], []
            load_before, cpu0, t0 = os.getloadavg(), time.process_time(), time.perf_counter()

            def on_epoch(epoch: int, model: TransformerForecaster) -> dict:
                bt = rolling_origin(model, products, *valid, H)
                forecasts.append(bt.forecast.astype(np.float32))
                curve.append(bt.scores(scale_v)["wape_mean_h"])
                print(f"{name} seed {seed} epoch {epoch}: valid WAPE {curve[-1]:.4f} "
                      f"({time.process_time() - cpu0:.0f} s CPU)", flush=True)
                return {}

            TransformerForecaster(config).fit(products.upto(valid[0] - 1), on_epoch)
            actual = rolling_origin(_Zero(), products, *valid, H).actual
            np.savez_compressed(out.with_suffix(".npz"), forecast=np.stack(forecasts), actual=actual,
                                scale=scale_v)
            out.with_suffix(".json").write_text(json.dumps({
                "setting": name, "seed": seed, "epochs": args.epochs, "config": asdict(config),
                "valid_wape_mean_h_per_epoch": curve, "cpu_s": round(time.process_time() - cpu0, 1),
                "wall_s": round(time.perf_counter() - t0, 1), "load_before": load_before,
                "load_after": os.getloadavg(), "valid_weeks": weeks}, indent=1))


class _Zero:
    """A forecaster of zeros: rolling_origin's actuals without a model."""

    name = "zero"

    def predict(self, panel: Panel, horizon: int) -> np.ndarray:
        return np.zeros((panel.n_series, horizon))


def report(args: argparse.Namespace) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(args.runs.glob("*.json"))]
    by_setting: dict[tuple[str, int], list[dict]] = {}
    for r in runs:
        by_setting.setdefault((r["setting"], r["epochs"]), []).append(r)
    rows = []
    for (name, epochs), rs in by_setting.items():
        rs.sort(key=lambda r: r["seed"])
        curves = [r["valid_wape_mean_h_per_epoch"] for r in rs]
        best_single = [min(c) for c in curves]
        row = {"setting": name, "overrides": SETTINGS.get(name, {}), "epochs": epochs, "seeds": [r["seed"] for r in rs],
               "single_curves": curves, "single_best": best_single,
               "single_best_epoch": [int(np.argmin(c)) + 1 for c in curves],
               "cpu_s": sum(r["cpu_s"] for r in rs)}
        if len(rs) > 1:  # the seeds' mean forecast at each epoch
            z = [np.load(args.runs / f"{name}_seed{r['seed']}_e{epochs}.npz") for r in rs]
            mean = np.mean([x["forecast"] for x in z], axis=0)  # [E, N, O, H]
            actual, scale = z[0]["actual"], z[0]["scale"]
            ens = [Backtest("t", np.arange(actual.shape[1]), actual, f).scores(scale)["wape_mean_h"] for f in mean]
            row.update({"ensemble_curve": ens, "ensemble_best": min(ens), "ensemble_best_epoch": int(np.argmin(ens)) + 1})
        rows.append(row)
    rows.sort(key=lambda r: min(r["single_best"]))
    meta = {"chosen": choose(rows), "note": args.note, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "base": BASE,
            "valid_weeks": runs[0]["valid_weeks"] if runs else None,
            "load": [(r["setting"], r["seed"], r["load_before"], r["load_after"]) for r in runs],
            "cpu_s_total": round(sum(r["cpu_s"] for r in runs), 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "forecast_sweep.json").write_text(json.dumps({**meta, "results": rows}, indent=1))
    (RESULTS / "forecast_sweep.md").write_text(markdown(rows, meta))
    print((RESULTS / "forecast_sweep.md").read_text())


#: nets averaged when the chosen setting ran one seed only (fixed in advance, not validated)
DEFAULT_ENSEMBLE = 3


def choose(rows: list[dict]) -> dict:
    """The setting benchmarks/forecast.py tests, from validation numbers alone. Every
    setting runs seed 0 under the same schedule; the leaders then run more seeds. If
    some settings ran several seeds, those with the most seeds are ranked by their
    seeds' mean forecast (best epoch) and the winner is that ensemble stopped at its
    best epoch (or seed 0 alone at its best epoch, if that scored lower). Otherwise the
    lowest seed-0 WAPE wins, as an ensemble of DEFAULT_ENSEMBLE seeds stopped at seed
    0's best epoch (the ensemble size then fixed in advance, not validated)."""
    def seed0(r: dict) -> tuple[float, int]:
        k = r["seeds"].index(0)
        return r["single_best"][k], r["single_best_epoch"][k]

    most = max(len(r["seeds"]) for r in rows)
    if most > 1:
        best = min((r for r in rows if len(r["seeds"]) == most and 0 in r["seeds"]), key=lambda r: r["ensemble_best"])
    else:
        best = min((r for r in rows if 0 in r["seeds"]), key=lambda r: seed0(r)[0])
    wape, epoch = seed0(best)
    choice = {"setting": best["setting"], "overrides": best["overrides"], "epochs": best["epochs"],
              "ensemble": 1, "stop_after": epoch, "valid_wape_mean_h": wape, "ensemble_validated": most > 1}
    if most == 1:
        choice["ensemble"] = DEFAULT_ENSEMBLE
    elif best["ensemble_best"] < wape:
        choice.update({"ensemble": most, "stop_after": best["ensemble_best_epoch"],
                       "valid_wape_mean_h": best["ensemble_best"]})
    return choice


def markdown(rows: list[dict], meta: dict) -> str:
    from shopformer.evaluate.report import machine

    m = machine()
    lines = ["# Transformer forecaster: settings swept on the validation window", "",
             f"{meta['date']}; {m['processor']}, 1 thread per run, 2-core machine shared with other jobs "
             f"(load averages per run in forecast_sweep.json); {meta['cpu_s_total']:.0f} s CPU in all. "
             f"Validation targets {meta['valid_weeks'][0]} .. {meta['valid_weeks'][1]} (top 200 products, rolling "
             "origin, horizons 1..8, as benchmarks/forecast.py); the test weeks are not read. Base: "
             f"{meta['base']}, OneCycle schedule of `epochs` epochs; each epoch scored.", "",
             "| setting | overrides | schedule | seed(s) | best valid WAPE per seed (epoch) | seeds' mean forecast: "
             "best (epoch) | CPU s |", "|---|---|---:|---|---|---|---:|"]
    for r in rows:
        single = ", ".join(f"{v:.4f} ({e})" for v, e in zip(r["single_best"], r["single_best_epoch"]))
        ens = f"{r['ensemble_best']:.4f} ({r['ensemble_best_epoch']})" if "ensemble_best" in r else ""
        lines.append(f"| {r['setting']} | {r['overrides'] or '-'} | {r['epochs']} | {r['seeds']} | {single} | {ens} "
                     f"| {r['cpu_s']:.0f} |")
    c = meta["chosen"]
    lines += ["", f"Chosen (the rule in `choose`: the settings that ran the most seeds ranked by their seeds' mean "
              f"forecast; with one seed each, by seed 0): **{c['setting']}** {c['overrides']}, ensemble of {c['ensemble']}, stop after epoch "
              f"{c['stop_after']} of {c['epochs']}: validation WAPE {c['valid_wape_mean_h']:.4f}"
              f"{'' if c.get('ensemble_validated', True) else ' (seed 0 alone; the ensemble size fixed in advance)'}. benchmarks/forecast.py "
              "--from-sweep refits it on the weeks before the test window and reads the test weeks once.", "",
              "Per-epoch curves are in forecast_sweep.json.", ""] + ([meta["note"], ""] if meta.get("note") else [])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("run", "report"))
    ap.add_argument("--settings", default="base,stats")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--runs", type=Path, default=Path("/tmp/forecast_sweep"))
    ap.add_argument("--data", type=Path, help="run: an ingested data folder (default: ingest both files afresh)")
    ap.add_argument("--note", default="", help="report: a line for the Markdown (e.g. runs stopped early)")
    args = ap.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
