"""Order risk (issue 24, point 2) on UCI Online Retail I + II (2009-12 .. 2011-12).

Part ``orders``: the probability that an order line is cancelled within 30 days
(cancellation invoices matched to the customer's most recent earlier line of the same
stock code; src/shopformer/risk/labels.py). Temporal split with 30-day gaps
(risk/order_risk.py): train 2010-03 .. 2011-03, validation 2011-04 .. 2011-07, test
2011-08 .. 2011-11 (read once). Models: logistic regression on RFM features (the
baseline), LightGBM on every tabular feature, the sequence network (target attention
over the customer's past lines and cancellations + the tabular features), and the blend
of LightGBM and the network (weight chosen on validation). AUC-ROC and AUC-PR on test,
with a paired bootstrap interval of each model's AUC-ROC minus the baseline's.

Part ``stream``: unusual-behaviour detection (risk/stream.py) on real event streams with
injected synthetic bot sessions (risk/bots.py): precision / recall on the injected bots
at the threshold chosen on the first half of the stream, and the false-alarm rate on the
real sessions of the second half.

    python benchmarks/risk.py                  # both parts: 35 + 3 min on 2 busy shared CPUs
    python benchmarks/risk.py --part stream    # one part (the other's records are kept)
    python benchmarks/risk.py --quick          # small sequence budget, end to end check

Writes benchmarks/results/risk.{json,md} and risk.png (ROC and PR curves on test).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import save  # noqa: E402

from shopformer.evaluate.report import machine  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parent.parent / "shared" / "data"
RETAIL = [DATA / "online-retail-ii", DATA / "online-retail"]
DATASET = "online-retail I+II"


def key(record: dict) -> tuple:
    return record["part"], record["dataset"], record["model"]


def bootstrap_diff(y: np.ndarray, p: np.ndarray, base: np.ndarray, n: int = 200, seed: int = 0) -> list[float]:
    """95% paired bootstrap interval of AUC-ROC(p) - AUC-ROC(base) over test lines."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        rows = rng.integers(0, len(y), len(y))
        if y[rows].min() == y[rows].max():
            continue
        diffs.append(roc_auc_score(y[rows], p[rows]) - roc_auc_score(y[rows], base[rows]))
    return [round(float(np.percentile(diffs, 2.5)), 4), round(float(np.percentile(diffs, 97.5)), 4)]


def rank01(p: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(p) / len(p)


def run_orders(args, meta: dict) -> list[dict]:
    import polars as pl
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from shopformer.risk.order_risk import OrderRiskConfig, prepare
    from shopformer.risk.sequence import SequenceRisk, SequenceRiskConfig
    from shopformer.risk.tabular import LightGbmRisk, RfmLogistic, scores

    torch.set_num_threads(2)
    config = OrderRiskConfig()
    started = time.perf_counter()
    prep = prepare(RETAIL, config)
    train, val, test = prep.parts["train"], prep.parts["val"], prep.parts["test"]
    print(f"prepared in {time.perf_counter() - started:.0f} s: train {train.height:,} val {val.height:,} "
          f"test {test.height:,} lines; matching {prep.log.matching}", flush=True)
    yv, yt = val["cancelled"].to_numpy(), test["cancelled"].to_numpy()
    preds_v, preds_t, chosen, seconds = {}, {}, {}, {}
    t0 = time.perf_counter()
    lr = RfmLogistic().fit(train, val)
    preds_v["rfm_logistic"], preds_t["rfm_logistic"], chosen["rfm_logistic"] = lr.predict(val), lr.predict(test), lr.chosen
    seconds["rfm_logistic"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gbm = LightGbmRisk(config.lightgbm).fit(train, val)
    preds_v["lightgbm"], preds_t["lightgbm"], chosen["lightgbm"] = gbm.predict(val), gbm.predict(test), gbm.chosen
    seconds["lightgbm"] = time.perf_counter() - t0
    print(f"LR {chosen['rfm_logistic']}  LightGBM {chosen['lightgbm']}", flush=True)
    seq_config = SequenceRiskConfig(max_epochs=1 if args.quick else 6, negative_fraction=0.05 if args.quick else 0.35,
                                    max_minutes=args.seq_minutes)
    t0 = time.perf_counter()
    expected = int((train["cancelled"].sum() + seq_config.negative_fraction * train.height) * seq_config.max_epochs)
    with Progress(TextColumn("sequence net"), BarColumn(), MofNCompleteColumn(), TextColumn("lines"),
                  TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("fit", total=expected)
        seq = SequenceRisk(seq_config).fit(train, val, prep.history, lambda n: bar.advance(task, n))
    preds_v["sequence_net"], preds_t["sequence_net"] = seq.predict(val, prep.history), seq.predict(test, prep.history)
    chosen["sequence_net"] = seq.chosen
    seconds["sequence_net"] = time.perf_counter() - t0
    print(f"sequence {seq.chosen}", flush=True)
    from sklearn.metrics import roc_auc_score

    best_w = max((0.0, 0.25, 0.5, 0.75, 1.0), key=lambda w: roc_auc_score(
        yv, w * rank01(preds_v["lightgbm"]) + (1 - w) * rank01(preds_v["sequence_net"])))
    blend = lambda p: best_w * rank01(p["lightgbm"]) + (1 - best_w) * rank01(p["sequence_net"])  # noqa: E731
    preds_v["lightgbm+sequence_net"], preds_t["lightgbm+sequence_net"] = blend(preds_v), blend(preds_t)
    chosen["lightgbm+sequence_net"] = {"lightgbm_weight": best_w, "of": "ranks within each scored set; weight chosen on validation"}
    seconds["lightgbm+sequence_net"] = seconds["lightgbm"] + seconds["sequence_net"]
    import tempfile

    np.savez(Path(tempfile.gettempdir()) / "shopformer_risk_predictions.npz", y_val=yv, y_test=yt,  # to redo the plot
             **{f"val__{k}": v for k, v in preds_v.items()}, **{f"test__{k}": v for k, v in preds_t.items()})
    base_t = preds_t["rfm_logistic"]
    records = []
    for name in preds_t:
        test_scores = scores(yt, preds_t[name])
        rec = {"part": "orders", "dataset": DATASET, "model": name, "test": test_scores,
               "val": scores(yv, preds_v[name]), "chosen": chosen[name], "fit_seconds": round(seconds[name], 1)}
        if name != "rfm_logistic":
            rec["auc_roc_minus_rfm_logistic"] = round(test_scores["auc_roc"] - scores(yt, base_t)["auc_roc"], 4)
            rec["auc_roc_minus_rfm_logistic_ci95"] = bootstrap_diff(yt, preds_t[name], base_t,
                                                                    n=50 if args.quick else 200)
        records.append(rec)
    plot(yt, preds_t, RESULTS / "risk.png")
    test_pos = int(yt.sum())
    meta["orders"] = {
        "config": {"split": asdict(config.split), "lightgbm": {k: v for k, v in asdict(config.lightgbm).items()},
                   "sequence": asdict(seq_config), "prior_rate": config.prior_rate},
        "bounds": {k: str(v) for k, v in prep.bounds.items()}, "matching": prep.log.matching,
        "rejected": prep.log.rejected, "lines": {"train": train.height, "val": val.height, "test": test.height},
        "positive_rate": {"train": round(float(train["cancelled"].mean()), 5),
                          "val": round(float(yv.mean()), 5), "test": round(test_pos / len(yt), 5)},
        "wall_seconds": round(time.perf_counter() - started, 1), "quick": args.quick,
        "customers": prep.log.lines["customer_id"].n_unique(),
        "cancel_delay_days_median": round(float(prep.log.lines.drop_nulls("cancel_time").select(
            ((pl.col("cancel_time") - pl.col("time")).dt.total_seconds() / 86400).median()).item()), 2),
    }
    return records


def plot(y: np.ndarray, preds: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, p in preds.items():
        fpr, tpr, _ = roc_curve(y, p)
        prec, rec, _ = precision_recall_curve(y, p)
        a.plot(fpr, tpr, label=name)
        b.plot(rec, prec, label=name)
    a.plot([0, 1], [0, 1], "k:", lw=0.8)
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test (2011-08 .. 2011-11)")
    b.axhline(y.mean(), color="k", ls=":", lw=0.8, label=f"base rate {y.mean():.3f}")
    b.set(xlabel="recall", ylabel="precision", title="Precision-recall, test")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    fig.suptitle("Order-line cancellation within 30 days, UCI Online Retail")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: list[dict], meta: dict) -> str:
    m = meta["machine"]
    out = ["# Order risk (issue 24, point 2)", "",
           f"Machine: {m['platform']}, {m['cpus']} CPUs (shared). Updated {meta['date']}.", ""]
    o = meta.get("orders")
    orders = [r for r in results if r["part"] == "orders"]
    if o and orders:
        mt = o["matching"]
        out += ["## Order-line cancellation", "",
                f"Data: UCI Online Retail II (2009-12 .. 2010-11) + Online Retail (2010-12 .. 2011-12), product lines "
                f"with a customer ({o['customers']:,} customers). Cancellation lines: {mt['cancellation_lines']:,}; "
                f"matched to an earlier original line of the same customer and stock code: {mt['matched']:,} "
                f"({mt['matched'] / mt['cancellation_lines']:.1%}), unmatched {mt['unmatched']:,}; original lines "
                f"{mt['original_lines']:,}, of which cancelled {mt['original_lines_cancelled']:,}. Median delay "
                f"{o['cancel_delay_days_median']} days. Label: cancelled within "
                f"{o['config']['split']['horizon_days']:.0f} days.", "",
                f"Split: {', '.join(f'{k} {v[:10]}' for k, v in o['bounds'].items())}; lines train "
                f"{o['lines']['train']:,}, validation {o['lines']['val']:,}, test {o['lines']['test']:,}; positive "
                f"rate {o['positive_rate']}. Hyperparameters on validation; test read once. Wall time "
                f"{o['wall_seconds']:.0f} s{' (--quick)' if o['quick'] else ''}.", "",
                "| model | test AUC-ROC | test AUC-PR | val AUC-ROC | AUC-ROC - LR(RFM) [95% CI] | fit s | chosen |",
                "|---|---|---|---|---|---|---|"]
        for r in orders:
            d = r.get("auc_roc_minus_rfm_logistic")
            ci = r.get("auc_roc_minus_rfm_logistic_ci95")
            diff = f"{d:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]" if d is not None else "-"
            chosen = {k: v for k, v in r["chosen"].items() if k != "val_auc_by_epoch"}
            out.append(f"| {r['model']} | {r['test']['auc_roc']:.4f} | {r['test']['auc_pr']:.4f} | "
                       f"{r['val']['auc_roc']:.4f} | {diff} | {r['fit_seconds']} | `{chosen}` |")
        best = max((r for r in orders if r["model"] != "rfm_logistic"), key=lambda r: r["val"]["auc_roc"])
        d = best["auc_roc_minus_rfm_logistic"]
        out += ["", f"Target (AUC-ROC at least 0.05 above logistic regression on RFM): the model chosen on validation, "
                f"{best['model']}, is {d:+.4f} on test: **{'met' if d >= 0.05 else 'not met'}**.",
                "", "![ROC and PR curves](risk.png)", ""]
    streams = [r for r in results if r["part"] == "stream"]
    if streams:
        s = meta.get("stream", {})
        out += ["## Unusual behaviour on the event stream", "", s.get("protocol", ""), "",
                "| stream | threshold (chosen on 1st half) | bot sessions | precision | recall | real sessions | "
                "false-alarm rate | recall by bot kind | real alarms' top reasons |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in streams:
            t = r["test"]
            out.append(f"| {r['dataset']} | {r['threshold']:.2f} | {t['bot_sessions']} | {t['precision']:.3f} | "
                       f"{t['recall']:.3f} | {t['real_sessions']:,} | {t['false_alarm_rate']:.4f} | "
                       f"{', '.join(f'{k} {v:.2f}' for k, v in t['recall_by_kind'].items())} | "
                       f"{', '.join(f'{k} {v}' for k, v in t['real_alarm_reasons'].items()) or '-'} |")
        out += ["", s.get("notes", "")]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("orders", "stream", "both"), default="both")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seq-minutes", type=float, default=20.0, help="training budget of the sequence network")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if not all(p.exists() for p in RETAIL):
        sys.exit(f"needs {RETAIL}")
    import json

    meta = {"benchmark": "risk", "machine": machine()}
    records: list[dict] = []
    if args.part in ("orders", "both"):
        records += run_orders(args, meta)
    if args.part in ("stream", "both"):
        from _lib.risk_stream import evaluate_streams

        recs, meta["stream"] = evaluate_streams(DATA, quick=args.quick)
        records += recs
    # the other part's description, as the file has it now (read last: the parts may run side by side)
    old = json.loads((RESULTS / "risk.json").read_text()) if (RESULTS / "risk.json").exists() else {}
    meta = {**{k: old[k] for k in ("orders", "stream") if k in old}, **meta,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    results = save(RESULTS, "risk", meta, records, markdown, key=key)
    print(markdown(results, meta))


if __name__ == "__main__":
    main()
