"""Repeat purchases (issue 21 point 4): accuracy with and without the customer's past
items allowed, on the datasets where people buy the same product again.

For each base model (EASE with its penalty chosen on validation, SASRec with
accuracy.py's setting for the dataset), three rankings of the same test cases (leave one
out, full catalog):

* ``excluded``: the usual protocol, history left out (a repeat is a certain miss);
* ``included``: the model's own scores with the history let in, nothing learned;
* ``repeat-aware``: :class:`shopformer.models.repeat.RepeatAware`, its settings chosen on
  validation (:func:`shopformer.evaluate.repeats.choose_repeat_config`).

    python benchmarks/repeats.py --dataset online-retail [--models ease,sasrec] [--time-limit 900]

Writes benchmarks/results/repeats.{json,md} and repeats_<dataset>.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from accuracy import BASELINE_GRIDS, DATASETS, TRANSFORMER_GRID, load  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.evaluate.repeats import choose_repeat_config, ndcg10, repeat_share, top10_hits  # noqa: E402
from shopformer.models.repeat import RepeatAware  # noqa: E402


def hr10(scores: np.ndarray, targets) -> float:
    return float(top10_hits(scores, targets).any(axis=1).mean())


def excluded(scores: np.ndarray, history) -> np.ndarray:
    out = np.array(scores, dtype=np.float32, copy=True)
    out[np.repeat(np.arange(len(history)), history.lengths), history.items] = -np.inf
    return out


def fitted(name: str, dataset: str, data, split, time_limit: float):
    """The base model, its setting chosen on validation (EASE) or taken from accuracy.py (SASRec)."""
    if name == "ease":
        best = None
        for params in BASELINE_GRIDS["ease"]:
            model = make_model("ease", params).fit(split.train, data.n_items)
            score = ndcg10(excluded(model.score(split.valid.history), split.valid.history), split.valid.targets)
            if best is None or score > best[0]:
                best = (score, model, params)
        return best[1], best[2]
    params = dict(TRANSFORMER_GRID[dataset]["sasrec"][0])
    if time_limit:
        params["train.time_limit_s"] = str(time_limit)
    return make_model("sasrec", params).fit(split.train, data.n_items, valid=split.valid), params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=list(DATASETS), default="online-retail")
    ap.add_argument("--models", default="ease,sasrec")
    ap.add_argument("--time-limit", type=float, default=0.0, help="SASRec's training limit in seconds (0: none)")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "shopformer-accuracy")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    data, split = load(args.dataset, args.data_root, args.work)
    share = {"valid": round(repeat_share(split.valid), 4), "test": round(repeat_share(split.test), 4)}
    print(f"{args.dataset}: repeats are {share['valid']:.1%} of validation and {share['test']:.1%} of test cases")
    records = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        base, params = fitted(name, args.dataset, data, split, args.time_limit)
        fit_s = time.perf_counter() - t0
        config, stats, valid_best, tried = choose_repeat_config(base, split.train, split.valid, data.n_items,
                                                                softmax_model=name == "sasrec")
        valid_excluded = ndcg10(excluded(base.score(split.valid.history), split.valid.history), split.valid.targets)
        # test, read once per ranking
        scores = base.score(split.test.history)
        t = split.test.targets
        rows = {"excluded": excluded(scores, split.test.history), "included": scores,
                "repeat-aware": RepeatAware(config, base, stats).score(split.test.history)}
        test = {k: {"NDCG@10": round(ndcg10(v, t), 4), "HR@10": round(hr10(v, t), 4)} for k, v in rows.items()}
        records.append({
            "dataset": args.dataset, "model": name, "base_settings": params, "fit_seconds": round(fit_s, 1),
            "repeat_share": share, "repeat_config": asdict(config), "repeat_stats_overall": round(stats.overall, 4),
            "valid": {"excluded": round(valid_excluded, 4), "repeat-aware": round(valid_best, 4)},
            "test": test, "grid_points": len(tried),
            "lift": round(test["repeat-aware"]["NDCG@10"] / test["excluded"]["NDCG@10"] - 1, 4),
        })
        print(records[-1]["test"])
    meta = {"benchmark": "repeats", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "config": {k: str(v) for k, v in vars(args).items()}}
    results = save(args.out, "repeats", meta, records, markdown)
    plot([r for r in results if r["dataset"] == args.dataset], args.out / f"repeats_{args.dataset}.png")
    print(markdown(results, meta))


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ("excluded", "included", "repeat-aware")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    width = 0.8 / len(kinds)
    for n, kind in enumerate(kinds):
        xs = np.arange(len(records)) + n * width
        ys = [r["test"][kind]["NDCG@10"] for r in records]
        ax.bar(xs, ys, width, label=kind)
        for x, y in zip(xs, ys):
            ax.text(x, y, f"{y:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(records)) + width, [r["model"] for r in records])
    ax.set_ylabel("test NDCG@10")
    share = records[0]["repeat_share"]["test"] if records else 0
    ax.set_title(f"{records[0]['dataset'] if records else ''}: history excluded, let in, or repeat-aware "
                 f"({share:.0%} of test cases are repeats)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Repeat purchases: history excluded, let in, or repeat-aware", "",
             f"{meta['date']} · {meta['machine']}", "",
             "Leave one out, full catalog. Repeat-aware settings chosen on validation NDCG@10; test read once per "
             "ranking.", "",
             "| dataset | model | repeats (valid / test) | test NDCG@10 excluded | included | repeat-aware | lift | "
             "test HR@10 excluded / repeat-aware | chosen setting |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t, c = r["test"], r["repeat_config"]
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['repeat_share']['valid']:.1%} / {r['repeat_share']['test']:.1%} | "
            f"{t['excluded']['NDCG@10']:.4f} | {t['included']['NDCG@10']:.4f} | **{t['repeat-aware']['NDCG@10']:.4f}** | "
            f"{r['lift']:+.1%} | {t['excluded']['HR@10']:.4f} / {t['repeat-aware']['HR@10']:.4f} | "
            + ", ".join(f"{k} {v:g}" for k, v in c.items()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
