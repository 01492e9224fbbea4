"""Weekly sales forecasting on UCI Online Retail II + I (2009-12 .. 2011-12): does the
Transformer beat seasonal naive by >= 15% WAPE and match the best of statsforecast
(AutoETS, AutoARIMA) and LightGBM?

Data: both files ingested into one data folder as ``shopformer ingest`` does (the store
keeps purchases with a customer id; the overlapping days of the two files are
duplicates and kept once), weekly units per product (forecast/series.py: cancellations
netted out per week, floored at 0; the partial last week, 2011-12-05, dropped; the
shop's non-product codes such as POST and M left out).

Series: the TOP products by units before the validation window (no look-ahead), plus
the shop's total as one more series. The global models learn from the products alone
(the total, 100 times a product's size, would outweigh them in a loss weighted by
units) and forecast the total from its own scaled history like any series. Protocol (forecast/backtest.py), H = 8:
- test: the last 12 whole weeks (2011-09-12 .. 2011-11-28), rolling origin: forecasts
  for horizons 1..8 from each origin, scored where the target week exists;
- validation: the 12 weeks before (2011-06-20 .. 2011-09-05), the same protocol, models
  fitted on the weeks before it. Every hyperparameter (LightGBM's leaves and trees,
  the Transformer's epochs and learning rate) is chosen there; then the global models
  are refitted on all weeks before the test window with those settings and the test
  weeks are read once. Local models refit at every origin and have nothing to choose.

    python benchmarks/forecast.py [--top 200] [--threads 1] [--cache /tmp/fc_cache]

Writes benchmarks/results/forecast.{json,md} and forecast_wape.png,
forecast_top6.png. ``--cache`` keeps each method's test forecasts (keyed by its
settings) so a rerun that changes one method does not redo the others.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
DATA = HERE.parent.parent / "shared" / "data"

from results_file import merged, save  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.forecast.backtest import Backtest, rolling_origin, scale_for  # noqa: E402
from shopformer.forecast.base import Panel  # noqa: E402
from shopformer.forecast.baselines import SeasonalNaive, StatsConfig, StatsForecaster  # noqa: E402
from shopformer.forecast.gbt import LightGBMForecastConfig, LightGBMForecaster  # noqa: E402
from shopformer.forecast.neural import TransformerForecastConfig, TransformerForecaster  # noqa: E402
from shopformer.forecast.series import WeeklyConfig, WeeklySeries, total_series, weekly_series  # noqa: E402

H, TEST_WEEKS, VALID_WEEKS = 8, 12, 12
DATASET = "online-retail-ii+i"
NON_PRODUCTS = ("POST", "M", "C2", "D", "DOT", "PADS", "CRUK", "BANK CHARGES", "AMAZONFEE", "ADJUST", "ADJUST2",
                "TEST001", "TEST002", "SP1002", "B", "S")
LGB_GRID = [{"num_leaves": 15}, {"num_leaves": 63}]
METHODS = ("seasonal_naive", "auto_ets", "auto_arima", "lightgbm", "transformer")
#: the Transformer's served defaults before the validation sweep: this benchmark's base (its lr
#: search and its cache keys stay as they were when the served defaults move on)
EARLIER_TRANSFORMER = {"d_model": 32, "lr": 1e-3, "stop_after": 5, "static_stats": False, "ensemble": 1,
                       "median_stats": False, "input_transform": "none"}


def load_series(data_dir: Path | None) -> tuple[WeeklySeries, dict]:
    from shopformer.dataset import load_events
    from shopformer.ingest.api import ingest

    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="forecast_retail_"))
        for f in (DATA / "online-retail-ii" / "online_retail_II_2009-2010.csv.gz",
                  DATA / "online-retail" / "online_retail.csv.gz"):
            ingest(f, "online-retail", data_dir)
    events = load_events(data_dir)
    counts = {"events": events.height, "purchases": int((events["event_type"] == "purchase").sum()),
              "cancellations": int((events["event_type"] == "cancel").sum())}
    return weekly_series(events, WeeklyConfig(exclude_items=NON_PRODUCTS)), counts


def key_of(*parts: object) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached(cache: Path | None, key: str, make) -> tuple[Backtest, dict]:  # noqa: ANN001
    """(backtest, info) from ``cache`` when it holds ``key``, else made and stored."""
    path = cache / f"{key}.npz" if cache else None
    if path is not None and path.exists():
        z = np.load(path, allow_pickle=False)
        return Backtest(str(z["method"]), z["origins"], z["actual"], z["forecast"]), json.loads(str(z["info"]))
    bt, info = make()
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, method=bt.method, origins=bt.origins, actual=bt.actual, forecast=bt.forecast,
                 info=json.dumps(info))
    return bt, info


def run_local(name: str, panel: Panel, first: int, last: int) -> tuple[Backtest, dict]:
    model = SeasonalNaive() if name == "seasonal_naive" else StatsForecaster(StatsConfig(model=name))
    t0 = time.perf_counter()
    bt = rolling_origin(model, panel, first, last, H)
    return bt, {"seconds": round(time.perf_counter() - t0, 1), "fallbacks": getattr(model, "fallbacks", 0)}


def run_lightgbm(panel: Panel, with_total: Panel, valid: tuple[int, int], test: tuple[int, int],
                 scale_v: np.ndarray, threads: int, learn: Panel | None = None) -> tuple[Backtest, dict]:
    """Tuned on the products (``panel``), trained on them (or on ``learn``, more products of
    the same ranking); tested on them and the total."""
    t0 = time.perf_counter()
    learn = panel if learn is None else learn
    trials = []
    for grid in LGB_GRID:  # trees by early stopping on validation windows; leaves by validation WAPE
        config = LightGBMForecastConfig(horizon=H, n_estimators=2000, threads=threads, **grid)
        origins = np.arange(valid[0] - 1, valid[1])
        model = LightGBMForecaster(config).fit(learn.upto(valid[0] - 1), valid=(panel.upto(valid[1]), origins))
        score = rolling_origin(model, panel, *valid, H).scores(scale_v)
        trials.append({**grid, "n_estimators": model.best_iteration or config.n_estimators,
                       "valid_wape_mean_h": score["wape_mean_h"]})
    best = min(trials, key=lambda r: r["valid_wape_mean_h"])
    config = LightGBMForecastConfig(horizon=H, threads=threads, num_leaves=best["num_leaves"],
                                    n_estimators=best["n_estimators"])
    model = LightGBMForecaster(config).fit(learn.upto(test[0] - 1))
    bt = rolling_origin(model, with_total, *test, H)
    return bt, {"seconds": round(time.perf_counter() - t0, 1), "trials": trials, "chosen": asdict(config),
                "train_top": learn.n_series}


def run_transformer(panel: Panel, with_total: Panel, valid: tuple[int, int], test: tuple[int, int],
                    scale_v: np.ndarray, base: TransformerForecastConfig, lrs: list[float],
                    seeds: int) -> tuple[Backtest, dict]:
    """Per learning rate: train on the weeks before validation, score validation after
    every epoch; the (lr, epoch) with the lowest mean WAPE wins. Then ``seeds`` models
    with it are trained on the weeks before the test window (stopped at that epoch of
    the same schedule) and their forecasts averaged."""
    t0 = time.perf_counter()
    curves = {}
    for lr in lrs:
        config = replace(base, lr=lr)

        def on_epoch(epoch: int, model: TransformerForecaster) -> dict:
            score = rolling_origin(model, panel, *valid, H).scores(scale_v)
            print(f"  transformer lr={lr} epoch {epoch}: loss {model_loss(model):.4f}, valid WAPE "
                  f"{score['wape_mean_h']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
            return {"valid_wape_mean_h": score["wape_mean_h"]}

        model = TransformerForecaster(config).fit(panel.upto(valid[0] - 1), on_epoch)
        curves[lr] = [round(r["valid_wape_mean_h"], 4) for r in model.history]
    lr, epochs = min(((lr, int(np.argmin(c)) + 1) for lr, c in curves.items()), key=lambda p: curves[p[0]][p[1] - 1])
    forecasts = []
    for seed in range(seeds):
        config = replace(base, lr=lr, seed=seed)
        model = TransformerForecaster(config).fit(panel.upto(test[0] - 1), stop_after=epochs)
        forecasts.append(rolling_origin(model, with_total, *test, H))
    bt = Backtest("transformer", forecasts[0].origins, forecasts[0].actual,
                  np.mean([b.forecast for b in forecasts], axis=0))
    return bt, {"seconds": round(time.perf_counter() - t0, 1), "valid_curves": {str(k): v for k, v in curves.items()},
                "chosen": {**asdict(replace(base, lr=lr)), "stop_after_epoch": epochs, "seeds_averaged": seeds}}


def run_transformer_chosen(panel: Panel, with_total: Panel, test: tuple[int, int], base: TransformerForecastConfig,
                           choice: dict, members_dir: Path | None, only_member: int | None = None,
                           ) -> tuple[Backtest, dict] | None:
    """The setting benchmarks/forecast_sweep.py chose on the validation weeks (its
    overrides, schedule, stop epoch and ensemble size), trained on the weeks before the
    test window; the test weeks read once. Each member net (seed + k, exactly what
    ``ensemble`` trains) is kept in ``members_dir/k``, so a second process run with
    ``only_member=k`` can train one alongside (it reads no test week) and this one
    picks it up instead of training it."""
    t0 = time.perf_counter()
    config = replace(base, epochs=choice["epochs"], stop_after=choice["stop_after"], ensemble=choice["ensemble"],
                     **choice["overrides"])
    nets, member_seconds = [], {}
    for k in [only_member] if only_member is not None else range(config.ensemble):
        folder = members_dir / str(k) if members_dir is not None else None
        running = folder.with_name(f"{k}.running") if folder is not None else None
        while only_member is None and running is not None and running.exists() and not folder.exists():
            time.sleep(10)  # another process trains this member: wait for it rather than train it twice
        if folder is not None and (folder / "forecaster.pt").exists():
            nets += TransformerForecaster.load(folder).nets
            member_seconds[k] = json.loads((folder / "seconds.json").read_text())
            continue
        if running is not None:
            folder.parent.mkdir(parents=True, exist_ok=True)
            running.touch()
        started, cpu = time.perf_counter(), time.process_time()
        one = TransformerForecaster(replace(config, ensemble=1, seed=config.seed + k)).fit(
            panel.upto(test[0] - 1), lambda e, m: print(f"  transformer member {k} epoch {e}: loss {model_loss(m):.4f} "
                                                        f"({time.perf_counter() - t0:.0f} s)", flush=True) or {})
        member_seconds[k] = {"wall_s": round(time.perf_counter() - started, 1),
                             "cpu_s": round(time.process_time() - cpu, 1)}
        if folder is not None:  # written aside, then renamed: a reader never sees half a member
            tmp = folder.with_name(f"{k}.tmp{os.getpid()}")
            one.save(tmp)
            (tmp / "seconds.json").write_text(json.dumps(member_seconds[k]))
            tmp.rename(folder)
            running.unlink(missing_ok=True)
        nets += one.nets
    if only_member is not None:
        return None
    model = TransformerForecaster(config)
    model.nets = nets
    predicting = time.perf_counter()
    bt = rolling_origin(model, with_total, *test, H)
    seconds = sum(m["wall_s"] for m in member_seconds.values()) + time.perf_counter() - predicting
    return bt, {"seconds": round(seconds, 1),  # every member's training (where it ran) + the test forecasts
                "member_seconds": member_seconds, "sweep_choice": choice,
                "chosen": {**asdict(config), "stop_after_epoch": choice["stop_after"],
                           "seeds_averaged": choice["ensemble"]}}


def model_loss(model: TransformerForecaster) -> float:
    return model.history[-1]["loss"] if model.history else float("nan")


def record_for(name: str, bt: Backtest, info: dict, n_products: int, scale: np.ndarray) -> dict:
    products = Backtest(name, bt.origins, bt.actual[:n_products], bt.forecast[:n_products])
    total = Backtest(name, bt.origins, bt.actual[n_products:], bt.forecast[n_products:])
    return {"dataset": DATASET, "model": name, **products.scores(scale[:n_products]),
            "total": {k: v for k, v in total.scores(scale[n_products:]).items() if k in ("wape", "wape_mean_h", "mase", "mase_mean_h")},
            **info}


def targets(records: list[dict]) -> dict:
    by = {r["model"]: r for r in records}
    if not {"transformer", "seasonal_naive"} <= set(by):
        return {}
    tf, sn = by["transformer"]["wape_mean_h"], by["seasonal_naive"]["wape_mean_h"]
    others = [m for m in ("auto_ets", "auto_arima", "lightgbm") if m in by]
    best = min(others, key=lambda m: by[m]["wape_mean_h"]) if others else None
    out = {"transformer_wape_mean_h": tf, "seasonal_naive_wape_mean_h": sn,
           "improvement_over_seasonal_naive": round(1 - tf / sn, 4),
           "beats_seasonal_naive_by_15pct": bool(tf <= 0.85 * sn),
           "horizons_beating_seasonal_naive_by_15pct": sum(
               t <= 0.85 * s for t, s in zip(by["transformer"]["wape"], by["seasonal_naive"]["wape"]))}
    if best is not None:
        out.update({"best_other": best, "best_other_wape_mean_h": by[best]["wape_mean_h"],
                    "matches_or_beats_best_other": bool(tf <= by[best]["wape_mean_h"]),
                    "transformer_mase_mean_h": by["transformer"]["mase_mean_h"],
                    "best_other_mase_mean_h": by[best]["mase_mean_h"]})
    return out


def markdown(results: list[dict], meta: dict) -> str:
    rows = [r for m in METHODS for r in results if r["model"] == m]
    hs = range(1, H + 1)
    lines = [
        "# Weekly sales forecasting: UCI Online Retail II + I", "",
        f"{meta['date']}; {meta['machine']['processor']}, {meta['threads']} thread(s); {meta['wall_s']:.0f} s this run "
        f"+ {meta['method_seconds']:.0f} s of the methods' own work (each measured when it ran; read back from "
        f"--cache where it was there), on a 2-core machine shared with other jobs.",
        f"Series: the top {meta['top']} products by units before the validation window "
        f"({meta['top_share_of_units']:.0%} of the units sold then) and the shop's total; weeks "
        f"{meta['first_week']} .. {meta['last_week']} ({meta['weeks']} whole weeks; the partial week of 2011-12-05 "
        f"dropped). Validation targets {meta['valid_weeks'][0]} .. {meta['valid_weeks'][1]}, test targets "
        f"{meta['test_weeks'][0]} .. {meta['test_weeks'][1]}: rolling origin, horizons 1..{H} "
        f"(horizon h is scored at {TEST_WEEKS}-h+1 origins). Every setting chosen on validation; test read once.", "",
        "## WAPE per horizon (top products, pooled; lower is better)", "",
        "| method | " + " | ".join(f"h={h}" for h in hs) + " | mean | total (mean h) |",
        "|---|" + "---:|" * (H + 2)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f"{v:.3f}" for v in r["wape"])
                     + f" | **{r['wape_mean_h']:.3f}** | {r['total']['wape_mean_h']:.3f} |")
    lines += ["", "## MASE per horizon (mean over products; scale: in-sample one-step naive MAE)", "",
              "| method | " + " | ".join(f"h={h}" for h in hs) + " | mean | total (mean h) |",
              "|---|" + "---:|" * (H + 2)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f"{v:.3f}" for v in r["mase"])
                     + f" | **{r['mase_mean_h']:.3f}** | {r['total']['mase_mean_h']:.3f} |")
    t = meta.get("targets") or {}
    if t:
        lines += ["", "## Targets", "",
                  f"- Transformer vs seasonal naive, WAPE (mean over h): {t['transformer_wape_mean_h']:.3f} vs "
                  f"{t['seasonal_naive_wape_mean_h']:.3f}: {t['improvement_over_seasonal_naive']:.1%} lower "
                  f"(target >= 15%): **{'met' if t['beats_seasonal_naive_by_15pct'] else 'NOT met'}** "
                  f"({t['horizons_beating_seasonal_naive_by_15pct']}/{H} horizons by >= 15%)."]
        if "best_other" in t:
            lines.append(f"- Transformer vs the best of statsforecast and LightGBM ({t['best_other']}), WAPE: "
                         f"{t['transformer_wape_mean_h']:.3f} vs {t['best_other_wape_mean_h']:.3f}: **"
                         f"{'met' if t['matches_or_beats_best_other'] else 'NOT met'}** (MASE "
                         f"{t['transformer_mase_mean_h']:.3f} vs {t['best_other_mase_mean_h']:.3f}).")
    lines += ["", "## Settings chosen on validation", ""]
    for r in rows:
        if "trials" in r:
            lines.append(f"- lightgbm: {r['trials']} -> num_leaves {r['chosen']['num_leaves']}, "
                         f"{r['chosen']['n_estimators']} trees, trained on the top {r.get('train_top', meta['top'])} products")
        if "sweep_choice" in r:
            c, t = r["sweep_choice"], r["chosen"]
            lines.append(f"- transformer: setting **{c['setting']}** chosen on validation by "
                         f"{c.get('chosen_by', 'benchmarks/forecast_sweep.py (results/forecast_sweep.md')}; validation WAPE "
                         f"{c['valid_wape_mean_h']:.4f}): "
                         f"{c['overrides'] or 'no overrides'}; an ensemble of {t['ensemble']} net(s) (seeds "
                         f"{t['seed']}..{t['seed'] + t['ensemble'] - 1}), each stopped after epoch {t['stop_after']} "
                         f"of a {t['epochs']}-epoch schedule; d_model {t['d_model']}, {t['n_layers']} layers, context "
                         f"{t['context']} weeks, lr {t['lr']}, dropout {t['dropout']}, batch {t['batch_size']}, series "
                         f"summaries {'on' if t['static_stats'] else 'off'}, rolling medians "
                         f"{'on' if t.get('median_stats') else 'off'}, inputs {t.get('input_transform', 'none')}, "
                         f"trained on the top {c.get('train_top', meta['top'])} products")
        elif "valid_curves" in r:
            c = r["chosen"]
            lines.append(f"- transformer: validation WAPE per epoch {r['valid_curves']} -> lr {c['lr']}, stop after "
                         f"epoch {c['stop_after_epoch']}; {c['seeds_averaged']} seed(s) averaged; d_model "
                         f"{c['d_model']}, {c['n_layers']} layers, context {c['context']} weeks")
        if r.get("fallbacks"):
            lines.append(f"- {r['model']}: {r['fallbacks']} series-origin fits fell back to the naive forecast")
    earlier = meta.get("earlier_transformer")
    if earlier:
        lines += ["", f"## Earlier run of the Transformer ({earlier['date']}, before the validation sweep)", "",
                  "| metric | " + " | ".join(f"h={h}" for h in hs) + " | mean |", "|---|" + "---:|" * (H + 1),
                  "| WAPE | " + " | ".join(f"{v:.3f}" for v in earlier["wape"]) + f" | {earlier['wape_mean_h']:.3f} |",
                  "| MASE | " + " | ".join(f"{v:.3f}" for v in earlier["mase"]) + f" | {earlier['mase_mean_h']:.3f} |",
                  "", f"Its settings: validation WAPE per epoch {earlier.get('valid_curves')} -> stop after epoch "
                  f"{earlier['chosen']['stop_after_epoch']}, {earlier['chosen']['seeds_averaged']} seed(s) averaged, "
                  f"d_model {earlier['chosen']['d_model']}, {earlier['chosen']['n_layers']} layers, context "
                  f"{earlier['chosen']['context']}, lr {earlier['chosen']['lr']}, no series summaries.", "",
                  "What changed since: sweeps of the Transformer's settings on the validation weeks only "
                  "(benchmarks/forecast_sweep.py, results/forecast_sweep.md) chose the setting above (first the "
                  "series summaries LightGBM has, d_model 64 and a mean of 3 nets; later runs listed below); the "
                  "other methods' code is unchanged."]
    previous = meta.get("previous_transformers") or []
    if previous:
        lines += ["", "## Earlier test runs of the Transformer after a sweep (each setting chosen on validation by "
                  "the sweep of its day; each read the test weeks once)", "",
                  "| run | setting (validation WAPE) | " + " | ".join(f"h={h}" for h in hs) + " | WAPE mean | MASE mean |",
                  "|---|---|" + "---:|" * (H + 2)]
        for p in previous:
            c = p["sweep_choice"]
            lines.append(f"| {p['date']} | {c['setting']} {c['overrides']}, {c['ensemble']} net(s), epoch "
                         f"{c['stop_after']} of {c['epochs']} ({c['valid_wape_mean_h']:.4f}) | "
                         + " | ".join(f"{v:.3f}" for v in p["wape"]) + f" | {p['wape_mean_h']:.3f} | "
                         f"{p['mase_mean_h']:.3f} |")
    kept = [r["model"] for r in rows if r.get("run_date") != meta["date"]]
    if kept:
        lines += ["", f"Rows kept from an earlier run of this benchmark (same data, protocol and code for them): "
                  f"{', '.join(kept)}; this run ({meta['date']}) refreshed {', '.join(meta.get('methods_run', []))}."]
    lines += ["", "The total (last column): the global models learn from the products only and read the total, "
              "hundreds of times a product's size, from outside the sizes they learned; seasonal naive forecasts "
              "it best.", "", "Seconds per method: " + ", ".join(f"{r['model']} {r['seconds']:.0f}" for r in rows), "",
              f"![WAPE per horizon]({meta['png'][0]})", "", f"![Top products]({meta['png'][1]})", ""]
    return "\n".join(lines)


def plots(backtests: dict[str, Backtest], records: list[dict], series: WeeklySeries, rows: np.ndarray,
          test_first: int, stem: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in records:
        ax.plot(range(1, H + 1), r["wape"], marker="o", label=r["model"])
    ax.set(xlabel="horizon (weeks)", ylabel="WAPE (top products)", title="Test WAPE per horizon, Online Retail")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}_wape.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7), sharex=True)
    weeks = series.weeks
    lo = test_first - 40
    for k, ax in enumerate(axes.flat):
        i = rows[k]
        ax.plot(weeks[lo:], series.units[i, lo:], color="black", lw=1.5, label="actual")
        for name, bt in backtests.items():
            # the 1-week-ahead forecasts along the test weeks, and the 8-week path from the first origin
            tw = weeks[bt.origins + 1]
            line, = ax.plot(tw, bt.forecast[k, :, 0], lw=1, label=f"{name} (h=1)")
            path = weeks[bt.origins[0]] + np.arange(1, H + 1) * np.timedelta64(7, "D")
            ax.plot(path, bt.forecast[k, 0], lw=1, ls="--", color=line.get_color())
        ax.axvline(weeks[test_first], color="grey", ls=":")
        ax.set_title(f"{series.item_ids[i]}", fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Top 6 products: weekly units, test forecasts (solid: 1 week ahead; dashed: 8 weeks from the "
                 "first origin)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}_top6.png", dpi=110)
    plt.close(fig)
    return [f"{stem}_wape.png", f"{stem}_top6.png"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="an ingested data folder (default: ingest both files to a temp folder)")
    ap.add_argument("--top", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=15, help="the Transformer's schedule length (validation picks the stop)")
    ap.add_argument("--lrs", default="0.002", help="Transformer learning rates tried on validation")
    ap.add_argument("--seeds", type=int, default=1, help="Transformer models averaged on test")
    ap.add_argument("--cache", type=Path, help="folder keeping each method's test forecasts")
    ap.add_argument("--from-sweep", action="store_true",
                    help="Transformer: the setting results/forecast_sweep.json chose on validation (no lr search here)")
    ap.add_argument("--sweep-file", default="forecast_sweep.json",
                    help="with --from-sweep: the results file whose 'chosen' setting is tested (e.g. forecast_season.json)")
    ap.add_argument("--lgb-train-top", type=int, help="LightGBM learns from the top N products (default: --top, "
                    "the scored ones); tuned and scored on the top --top as before")
    ap.add_argument("--keep-from", help="a results stem whose rows this --stem starts from when it has no file yet "
                    "(the methods not rerun, e.g. statsforecast's, kept from --keep-from forecast)")
    ap.add_argument("--member", type=int, help="with --from-sweep and --cache: train that ensemble member only "
                    "(a second process sharing the work) and exit")
    ap.add_argument("--stem", default="forecast")
    ap.add_argument("--no-save", action="store_true", help="compute (and cache) only; write no results")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    t0, load_before = time.perf_counter(), os.getloadavg()
    series, counts = load_series(args.data)
    T = len(series.weeks)
    test, valid = (T - TEST_WEEKS, T - 1), (T - TEST_WEEKS - VALID_WEEKS, T - TEST_WEEKS - 1)
    rows = series.top(args.top, before=valid[0])
    share = float(series.units[rows, : valid[0]].sum() / series.units[:, : valid[0]].sum())
    panel = Panel.of(np.vstack([series.units[rows], total_series(series).units]), series.weeks)
    products = Panel.of(series.units[rows], series.weeks)  # what the global models learn and are tuned on
    scale_v, scale_t = scale_for(products, valid[0]), scale_for(panel, test[0])
    print(f"{len(rows)} products ({share:.0%} of units) + total, {T} weeks {series.weeks[0]} .. {series.weeks[-1]}",
          flush=True)
    base = TransformerForecastConfig(horizon=H, epochs=args.epochs, threads=args.threads, **EARLIER_TRANSFORMER)
    lrs = [float(x) for x in args.lrs.split(",")]
    data_key = (args.top, T, str(series.weeks[-1]), float(panel.values.sum()))
    backtests, records = {}, []
    for name in [m for m in METHODS if m in args.methods.split(",")]:
        print(f"{name} ...", flush=True)
        if name in ("seasonal_naive", "auto_ets", "auto_arima"):
            bt, info = cached(args.cache, key_of(name, data_key), lambda: run_local(name, panel, *test))
        elif name == "lightgbm":
            # the benchmark's LightGBM learns from the scored products; --lgb-train-top: from more (a check)
            lgb_learn = None if args.lgb_train_top is None else Panel.of(
                series.units[series.top(args.lgb_train_top, before=valid[0])], series.weeks)
            bt, info = cached(args.cache, key_of(name, data_key, LGB_GRID, *([args.lgb_train_top] if lgb_learn else [])),
                              lambda: run_lightgbm(products, panel, valid, test, scale_v, args.threads, lgb_learn))
        elif args.from_sweep:
            choice = json.loads((RESULTS / args.sweep_file).read_text())["chosen"]
            # the products it learns from: the top train_top (same ranking, so the scored ones among them)
            learn = Panel.of(series.units[series.top(choice.get("train_top", args.top), before=valid[0])], series.weeks)
            from forecast_sweep import BASE as SWEEP_BASE

            base_t = replace(base, **SWEEP_BASE)  # what the sweep's overrides apply to
            key = key_of(name, data_key, asdict(base_t), choice)
            members_dir = args.cache / f"{key}_members" if args.cache else None
            if args.member is not None:  # train that member only (no test week read) and stop
                run_transformer_chosen(learn, panel, test, base_t, choice, members_dir, args.member)
                return
            bt, info = cached(args.cache, key, lambda: run_transformer_chosen(learn, panel, test, base_t, choice,
                                                                              members_dir))
        else:
            settings = {k: v for k, v in asdict(base).items() if k != "stop_after"}  # validation picks it
            bt, info = cached(args.cache, key_of(name, data_key, settings, lrs, args.seeds),
                              lambda: run_transformer(products, panel, valid, test, scale_v, base, lrs, args.seeds))
        backtests[name] = bt
        records.append(record_for(name, bt, info, len(rows), scale_t))
        print(f"  {name}: WAPE {records[-1]['wape_mean_h']:.4f} (mean h), MASE {records[-1]['mase_mean_h']:.4f}",
              flush=True)
    if args.no_save:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    run_date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for r in records:
        r["run_date"] = run_date
    old_path = RESULTS / f"{args.stem}.json"
    if not old_path.exists() and args.keep_from:  # a new results file: the other methods' rows start from there
        old_path = RESULTS / f"{args.keep_from}.json"
    old = json.loads(old_path.read_text()) if old_path.exists() else {}
    earlier = old.get("earlier_transformer")  # the first kept stays: the run before the sweep
    if earlier is None and "transformer" in [r["model"] for r in records]:
        earlier = next(({"date": old["date"], **{k: r[k] for k in ("wape", "mase", "wape_mean_h", "mase_mean_h",
                                                                   "chosen", "valid_curves") if k in r}}
                        for r in old.get("results", []) if r["model"] == "transformer"), None)
    previous = list(old.get("previous_transformers", []))  # each swept choice's test run stays on record
    old_tf = next((r for r in old.get("results", []) if r["model"] == "transformer"), None)
    new_tf = next((r for r in records if r["model"] == "transformer"), None)
    if old_tf and new_tf and "sweep_choice" in old_tf and old_tf["sweep_choice"] != new_tf.get("sweep_choice"):
        previous.append({"date": old_tf.get("run_date", old.get("date")), "sweep_choice": old_tf["sweep_choice"],
                         **{k: old_tf[k] for k in ("wape", "mase", "wape_mean_h", "mase_mean_h")}})
    all_records = merged(old_path, records)
    in_order = [r for m in METHODS for r in all_records if r["model"] == m]  # the WAPE plot shows every method
    pngs = plots(backtests, in_order, series, rows, test[0], args.stem)
    meta = {"date": run_date, "machine": machine(), "load_before": load_before, "load_after": os.getloadavg(),
            "threads": args.threads, "wall_s": time.perf_counter() - t0, "png": pngs, "top": len(rows),
            "method_seconds": sum(r["seconds"] for r in records),
            "top_share_of_units": round(share, 4), "weeks": T, "first_week": str(series.weeks[0]),
            "last_week": str(series.weeks[-1]), "valid_weeks": [str(series.weeks[v]) for v in valid],
            "test_weeks": [str(series.weeks[t]) for t in test], "horizon": H, "counts": counts,
            "non_products_excluded": list(NON_PRODUCTS), "targets": targets(all_records),
            "earlier_transformer": earlier, "previous_transformers": previous,
            "methods_run": [r["model"] for r in records],
            "protocol": "rolling origin; global models fitted once before the window, local ones at every origin"}
    results = save(RESULTS, args.stem, meta, all_records, markdown)  # all: a new stem starts from --keep-from
    print((RESULTS / f"{args.stem}.md").read_text())
    del results


if __name__ == "__main__":
    main()
