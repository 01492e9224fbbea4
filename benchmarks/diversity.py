"""Diversity re-ranking: NDCG@10 against intra-list diversity and catalog coverage.

On Amazon Beauty and UCI Online Retail (benchmarks/accuracy.py's loading, leave-one-out
split and SASRec settings, under a shorter training: see _lib/rerank_eval.py), each
evaluated user's full catalog is scored once; the re-ranking of
:mod:`shopformer.rank.diversity` (MMR with weight ``diversity`` = 1 - lambda, and on
Beauty a per-category cap) then picks the top 10 from the best 50, as serving does.

- ILD@10: mean pairwise 1 - cosine of the SASRec output item embeddings (the vectors
  MMR uses, and what similar items compare) in each top 10, averaged over users.
- Coverage@10: the share of the catalog shown in anyone's top 10.
- Categories (Beauty only; Online Retail has none): the item's last S3-Rec attribute id.
  The file does not name its attributes; they read as an optional rare id first (the
  brand) and then the category path from broad (~2,600 items) to narrow, so the last
  id is the leaf category.

The whole sweep runs on the validation cases; the setting is chosen there (the most
ILD with at most 3% NDCG@10 loss against no re-ranking), then the test cases are
scored once, for no re-ranking and the chosen setting.

    python benchmarks/diversity.py --dataset online-retail [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from _lib.rerank_eval import candidates, list_metrics, trained, unit_item_vectors

from results_file import save
from shopformer.dataset import load_products
from shopformer.evaluate.report import machine
from shopformer.rank.diversity import DiversityConfig, diversify_batch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DIVERSITY = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CAPS = (None, 3, 2, 1)
FETCH = 50
MAX_LOSS = 0.03


def beauty_categories(data_root: Path, work: Path, items) -> np.ndarray:  # noqa: ANN001 - a Vocabulary
    """(n_items + 1,) category codes (-1: none) aligned with the vocabulary ``items``."""
    from shopformer.ingest import ingest

    folder = work / "beauty-catalog"
    if not (folder / "products.parquet").exists():
        ingest(data_root / "amazon-beauty/Beauty_item2attributes.json.gz", fmt="item2attributes", data_dir=folder)
    products = load_products(folder)
    key = {i: t[-1] if t else None for i, t in zip(products["item_id"], products["tags"].to_list())}
    codes: dict[str, int] = {}
    out = np.full(len(items) + 1, -1, dtype=np.int64)
    for n, item in enumerate(items.ids, start=1):
        k = key.get(item)
        if k:
            out[n] = codes.setdefault(k, len(codes))
    return out


def rerank(cands, cfg: DiversityConfig, vectors: np.ndarray, cats: np.ndarray | None, batch: int = 1024) -> np.ndarray:  # noqa: ANN001
    """(U, 10) item indexes (0: no item) after re-ranking each user's candidates."""
    out = np.zeros((len(cands.idx), 10), dtype=np.int64)
    for s in range(0, len(out), batch):
        idx, sc = cands.idx[s: s + batch], cands.scores[s: s + batch]
        order = diversify_batch(cfg, sc, vectors[idx] if cfg.diversity > 0 else None,
                                cats[idx] if cfg.max_per_category is not None else None, 10)
        out[s: s + batch] = np.where(order >= 0, np.take_along_axis(idx, np.maximum(order, 0), axis=1), 0)
    return out


def sweep(dataset: str, cands, n_items: int, vectors: np.ndarray, cats: np.ndarray | None) -> list[dict]:
    rows = []
    for cap in CAPS if cats is not None else (None,):
        for d in DIVERSITY:
            cfg = DiversityConfig(diversity=d, max_per_category=cap, fetch_factor=FETCH // 10)
            lists = rerank(cands, cfg, vectors, cats)
            rows.append({"diversity": d, "max_per_category": cap, **list_metrics(lists, cands.target, n_items, vectors)})
            print(f"  {dataset} valid diversity={d} cap={cap}: {rows[-1]}", flush=True)
    return rows


def choose(rows: list[dict]) -> dict:
    """The most ILD@10 within MAX_LOSS relative NDCG@10 of no re-ranking (validation)."""
    base = next(r for r in rows if r["diversity"] == 0 and r["max_per_category"] is None)
    ok = [r for r in rows if r["NDCG@10"] >= (1 - MAX_LOSS) * base["NDCG@10"]]
    return max(ok, key=lambda r: (r["ILD@10"], r["NDCG@10"]))


def plot(record: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for cap in dict.fromkeys(r["max_per_category"] for r in record["valid_curve"]):
        rows = [r for r in record["valid_curve"] if r["max_per_category"] == cap]
        label = "MMR" if cap is None else f"MMR + cap {cap}/category"
        for ax, metric in zip(axes, ("ILD@10", "Coverage@10")):
            ax.plot([r[metric] for r in rows], [r["NDCG@10"] for r in rows], "o-", label=label, ms=4)
            if cap is None:
                for r in rows:
                    ax.annotate(f"{r['diversity']:g}", (r[metric], r["NDCG@10"]), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
    for ax, metric in zip(axes, ("ILD@10", "Coverage@10")):
        for name, marker in (("test_base", "s"), ("test_chosen", "*")):
            r = record[name]
            ax.plot(r[metric], r["NDCG@10"], marker, color="black", ms=9 if marker == "*" else 6,
                    label="test: " + ("no re-ranking" if name == "test_base" else "chosen setting"))
        ax.set_xlabel(metric + (" (1 - cos, SASRec item vectors)" if metric.startswith("ILD") else ""))
        ax.set_ylabel("NDCG@10")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{record['dataset']}: diversity re-ranking (validation curve, labels = MMR weight; test points)")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Diversity re-ranking: NDCG@10 against intra-list diversity and coverage", "",
             f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs. Updated {meta['date']}.",
             "Leave-one-out, full catalog ranking, history excluded; top 10 re-ranked from the best 50. ILD@10: mean",
             "pairwise 1 - cosine of the SASRec output item embeddings. Setting chosen on validation (most ILD@10",
             f"with <= {MAX_LOSS:.0%} NDCG@10 loss); test scored once for no re-ranking and the chosen setting.", ""]
    for r in results:
        b, c = r["test_base"], r["test_chosen"]
        gain, loss = c["ILD@10"] / b["ILD@10"] - 1, 1 - c["NDCG@10"] / b["NDCG@10"]
        met = gain >= 0.20 and loss <= MAX_LOSS
        lines += [f"## {r['dataset']}", "",
                  f"SASRec `{json.dumps(r['settings'])}`, fit {r['fit_seconds']} s; {r['n_valid']} validation and "
                  f"{r['n_test']} test users; plot `{r['plot']}`.", "",
                  f"Chosen on validation: diversity={r['chosen']['diversity']}, "
                  f"max_per_category={r['chosen']['max_per_category']}.", "",
                  "| test | NDCG@10 | HR@10 | ILD@10 | Coverage@10 |", "|---|---|---|---|---|"]
        for name, m in (("no re-ranking", b), ("chosen", c)):
            lines.append(f"| {name} | {m['NDCG@10']:.4f} | {m['HR@10']:.4f} | {m['ILD@10']:.4f} | "
                         f"{m['Coverage@10']:.4f} |")
        lines += ["", f"Test: ILD@10 {gain:+.1%}, NDCG@10 {-loss:+.1%}, coverage@10 "
                  f"{c['Coverage@10'] / b['Coverage@10'] - 1:+.1%}. Target (ILD +20% for <= 3% NDCG loss): "
                  f"**{'met' if met else 'not met'}**.", "", "Validation curve:", "",
                  "| diversity | cap | NDCG@10 | change | ILD@10 | change | Coverage@10 |", "|---|---|---|---|---|---|---|"]
        vb = r["valid_curve"][0]
        for v in r["valid_curve"]:
            lines.append(f"| {v['diversity']} | {v['max_per_category'] or '-'} | {v['NDCG@10']:.4f} | "
                         f"{v['NDCG@10'] / vb['NDCG@10'] - 1:+.1%} | {v['ILD@10']:.4f} | "
                         f"{v['ILD@10'] / vb['ILD@10'] - 1:+.1%} | {v['Coverage@10']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=("beauty", "online-retail"), required=True)
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-rerank"))
    ap.add_argument("--minutes", type=float, default=8.0, help="SASRec training cap")
    ap.add_argument("--quick", action="store_true", help="tiny model, 2000 users: checks the script end to end")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data, split, model, params, fit_s = trained(args.dataset, args.data_root, args.work, args.minutes, args.quick)
    vectors = unit_item_vectors(model)
    cats = beauty_categories(args.data_root, args.work, data.items) if args.dataset == "beauty" else None
    valid, test = split.valid, split.test
    if args.quick:
        from shopformer.features.splits import EvalCases

        valid, test = (EvalCases(c.users[:2000], c.history.rows(np.arange(2000)), c.targets.rows(np.arange(2000)))
                       for c in (valid, test))
    curve = sweep(args.dataset, candidates(model, valid, FETCH, label="valid"), data.n_items, vectors, cats)
    chosen = choose(curve)
    cands = candidates(model, test, FETCH, label="test")  # the test cases, read once
    base = list_metrics(rerank(cands, DiversityConfig(), vectors, cats), cands.target, data.n_items, vectors)
    cfg = DiversityConfig(chosen["diversity"], chosen["max_per_category"], FETCH // 10)
    best = list_metrics(rerank(cands, cfg, vectors, cats), cands.target, data.n_items, vectors)
    name = args.dataset + ("-quick" if args.quick else "")
    png = RESULTS / f"diversity_{name}.png"
    record = {"dataset": name, "model": "sasrec", "settings": params, "fit_seconds": fit_s,
              "n_valid": len(valid), "n_test": len(test), "fetch": FETCH,
              "chosen": {"diversity": chosen["diversity"], "max_per_category": chosen["max_per_category"]},
              "valid_curve": curve, "test_base": base, "test_chosen": best, "plot": png.name,
              "wall_seconds": round(time.perf_counter() - t0, 1)}
    RESULTS.mkdir(exist_ok=True)
    plot(record, png)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "config": {"diversity_grid": DIVERSITY, "caps": CAPS, "fetch": FETCH, "max_loss": MAX_LOSS}}
    stem = "diversity_quick" if args.quick else "diversity"  # a --quick check never mixes with real results
    print(markdown(save(RESULTS, stem, meta, [record], markdown), meta))


if __name__ == "__main__":
    main()
