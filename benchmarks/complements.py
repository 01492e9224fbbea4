"""Complements: basket completion on UCI Online Retail (issue 20, point 1).

Baskets are invoices (purchase lines with a customer, as the store holds them). Invoices
are split by time: the last 10% are test, the 10% before validation, the rest train
every model. For each validation / test invoice with >= 2 distinct items, one item
(drawn with a fixed seed) is held out and ranked given the rest over the FULL catalog
(every item sold in the training period; the cart's own items excluded; a held-out item
never sold before is a miss for every method). Ties are broken by basket popularity for
every method alike.

Methods: basket popularity; plain co-occurrence counts; co-purchase with shrinkage
(measure, shrink, exponents chosen on validation); similar items (cosine of the
sequence model's item vectors, the vectors of GET /v1/items/{id}/similar); the sequence
model (SASRec trained on customers' purchase histories) reading the cart as a history;
and complements = the co-purchase / sequence blend with near-substitutes removed
(weight, similarity and title thresholds chosen on validation). Test is read once,
after every choice.

    nice python benchmarks/complements.py --quick     # end to end on a few hundred cases
    nice python benchmarks/complements.py

Writes benchmarks/results/complements.{json,md,png}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _lib.basket_completion import Cases, batched, load_purchases, metrics, ranks, split  # noqa: E402
from results_file import save  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig, prepare  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.models.copurchase import CoPurchase, CoPurchaseConfig  # noqa: E402
from shopformer.models.sequential import SASRecRecommender  # noqa: E402
from shopformer.rank.complements import Complements, ComplementsConfig, title_tokens  # noqa: E402

RESULTS = HERE / "results"
DATA = "online-retail/online_retail.csv.gz"
#: counts as they come: every basket, no weighting, no normalization
PLAIN = CoPurchaseConfig(measure="count", basket_exponent=0.0, max_basket=10**9)
GRID = {"shrink": (0.0, 5.0, 20.0, 100.0), "popularity_exponent": (0.0, 0.25, 0.5, 0.75, 1.0),
        "basket_exponent": (0.0, 0.5, 1.0)}
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
SIMILARITY = (None, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
OVERLAP = (None, 1.0, 0.75, 0.5)
#: the substitute filter kept: the most exclusion whose validation Recall@10 is within
#: this share of the best setting's (a rule fixed before looking at any result)
EXCLUSION_TOLERANCE = 0.02
#: SASRec as in results/accuracy.md for Online Retail, with 50 positions (carts are short)
#: and one thread: the shared 2-CPU machine trains it within --sasrec-time
SASREC = {"arch.d_model": "64", "arch.max_len": "50", "arch.dropout": "0.5", "arch.attn_dropout": "0.5",
          "train.batch_size": "64", "train.epochs": "30", "train.patience": "30", "train.threads": "1"}


def evaluate(score_fn, cases: Cases, tie: np.ndarray) -> dict:
    """Metrics of ``score_fn(start, carts) -> (B, n + 1)`` over ``cases`` in batches."""
    out = []
    for start, carts in batched(cases.carts):
        s = np.asarray(score_fn(start, carts), dtype=np.float64) + 1e-9 * tie[None, :]
        s[:, 0] = -np.inf
        s[np.repeat(np.arange(len(carts)), carts.lengths), carts.items] = -np.inf
        out.append(ranks(s, cases.target[start : start + len(carts)]))
    return metrics(np.concatenate(out))


def key(m: dict) -> tuple:
    return m["Recall@10"], m["NDCG@10"]


def fit_sasrec(sp, n_items: int, time_limit: float, epochs: int, cache: Path) -> tuple[SASRecRecommender, dict]:
    """SASRec on the customers' purchase sequences of the training period (cached), and
    how long it trained."""
    if (cache / "fit.json").exists():
        return SASRecRecommender.load(cache), json.loads((cache / "fit.json").read_text())
    data, _ = prepare(sp.train_events, DataConfig(event_types=("purchase",), dedupe_consecutive=True), sp.items)
    model = make_model("sasrec", {**SASREC, "train.epochs": str(epochs), "train.time_limit_s": str(time_limit)})
    t0 = time.perf_counter()
    model.fit(data.sequences, n_items)
    fit = {"seconds": round(time.perf_counter() - t0, 1), "epochs": len(model.history.records)}
    cache.mkdir(parents=True, exist_ok=True)
    model.save(cache)
    (cache / "fit.json").write_text(json.dumps(fit))
    return model, fit


def logits(model, cases: Cases) -> np.ndarray:
    return np.concatenate([model.score(c) for _, c in batched(cases.carts, 256)]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="300 cases per slice, a 1-epoch SASRec, a small grid")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-complements"))
    ap.add_argument("--sasrec-time", type=float, default=900.0, help="SASRec training time limit (s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.data_root / DATA).exists():
        sys.exit(f"{args.data_root / DATA} not found: needs ../shared/data/online-retail")
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()
    events, products = load_purchases(args.data_root / DATA)
    sp = split(events, 0.1, 0.1, args.seed, 300 if args.quick else None)
    n = len(sp.items)
    print(f"{n} items, {len(sp.train_baskets)} training invoices, {len(sp.valid)} validation / {len(sp.test)} "
          f"test cases; {sp.cuts}", flush=True)
    grid = GRID if not args.quick else {"shrink": (0.0, 20.0), "popularity_exponent": (0.0, 0.5),
                                        "basket_exponent": (0.0, 0.5)}
    plain = CoPurchase(PLAIN).fit(sp.train_baskets, n)
    tie = plain.popularity()  # basket popularity: the tie-break of every method

    # -- co-purchase with shrinkage: settings on validation
    tried, best = [], None
    combos = list(itertools.product(*grid.values()))
    with Progress() as bar:
        task = bar.add_task("co-purchase grid", total=len(combos))
        for values in combos:
            cfg = CoPurchaseConfig(**dict(zip(grid, values)))
            model = CoPurchase(cfg).fit(sp.train_baskets, n)
            m = evaluate(lambda s, c: model.scores(c), sp.valid, tie)
            tried.append({"settings": asdict(cfg), "valid": m})
            if best is None or key(m) > key(best[1]):
                best = (cfg, m, model)
            bar.advance(task)
    co_cfg, co_valid, copurchase = best
    print(f"co-purchase: {co_cfg} valid Recall@10 {co_valid['Recall@10']:.4f}", flush=True)

    # -- the sequence model and its item vectors
    tag = "quick" if args.quick else f"full-{int(args.sasrec_time)}-{args.seed}"
    sasrec, fit = fit_sasrec(sp, n, 30 if args.quick else args.sasrec_time, 1 if args.quick else 30,
                             args.work / f"sasrec-{tag}")
    with torch.no_grad():
        unit = torch.nn.functional.normalize(sasrec.similarity_table().float(), dim=-1).numpy()
    seq_valid, seq_test = logits(sasrec, sp.valid), logits(sasrec, sp.test)

    def similar(agg: str):
        def fn(start, carts):
            out = np.zeros((len(carts), n + 1))
            for r in range(len(carts)):
                row = carts.row(r)
                if len(row):
                    cos = unit[row] @ unit.T
                    out[r] = cos.max(axis=0) if agg == "max" else cos.mean(axis=0)
            return out
        return fn

    sim_valid = {agg: evaluate(similar(agg), sp.valid, tie) for agg in ("max", "mean")}
    sim_agg = max(sim_valid, key=lambda a: key(sim_valid[a]))

    # -- blend weight, then substitute filters, on validation
    title = dict(zip(products["item_id"].to_list(), products["title"].to_list()))
    tokens = title_tokens([None] + [title.get(i) for i in sp.items.ids])

    # closeness of every item to each cart, computed once per slice (thresholds only compare)
    probe = Complements(ComplementsConfig(substitute_similarity=1.0, title_overlap=1.0), copurchase, unit, tokens)
    near = {id(cases): probe.closeness(cases.carts) for cases in (sp.valid, sp.test)}

    def complements(cfg: ComplementsConfig, seq: np.ndarray, cases: Cases):
        comp = Complements(cfg, copurchase, unit, tokens)
        cos, jac = near[id(cases)]
        return lambda s, c: comp.scores(c, seq[s : s + len(c)], (cos[s : s + len(c)], jac[s : s + len(c)]))

    blend = [{"sequence_weight": w, "valid": evaluate(complements(ComplementsConfig(sequence_weight=w), seq_valid,
                                                                  sp.valid), sp.valid, tie)} for w in WEIGHTS]
    weight = max(blend, key=lambda b: key(b["valid"]))["sequence_weight"]
    exclusion = []
    with Progress() as bar:
        task = bar.add_task("substitute filters", total=len(SIMILARITY) * len(OVERLAP))
        for sim, ov in itertools.product(SIMILARITY, OVERLAP):
            cfg = ComplementsConfig(sequence_weight=weight, substitute_similarity=sim, title_overlap=ov)
            comp = Complements(cfg, copurchase, unit, tokens)
            # beyond the cart's own items (always excluded)
            mask = comp.substitutes(sp.valid.carts, near[id(sp.valid)])
            mask[np.repeat(np.arange(len(sp.valid)), sp.valid.carts.lengths), sp.valid.carts.items] = False
            dropped = float(mask.sum(axis=1).mean())
            exclusion.append({"substitute_similarity": sim, "title_overlap": ov, "excluded_per_cart": dropped,
                              "valid": evaluate(complements(cfg, seq_valid, sp.valid), sp.valid, tie)})
            bar.advance(task)
    top = max(e["valid"]["Recall@10"] for e in exclusion)
    fine = [e for e in exclusion if e["valid"]["Recall@10"] >= (1 - EXCLUSION_TOLERANCE) * top]
    chosen = max(fine, key=lambda e: (e["excluded_per_cart"], e["valid"]["Recall@10"]))
    final = ComplementsConfig(sequence_weight=weight, substitute_similarity=chosen["substitute_similarity"],
                              title_overlap=chosen["title_overlap"])
    print(f"complements: {final}", flush=True)

    # -- test, read once
    test = {
        "popular": evaluate(lambda s, c: np.zeros((len(c), n + 1)), sp.test, tie),
        "co-occurrence counts": evaluate(lambda s, c: plain.scores(c), sp.test, tie),
        "co-purchase (shrinkage)": evaluate(lambda s, c: copurchase.scores(c), sp.test, tie),
        "similar items": evaluate(similar(sim_agg), sp.test, tie),
        "sequence model (cart)": evaluate(lambda s, c: seq_test[s : s + len(c)], sp.test, tie),
        "complements": evaluate(complements(final, seq_test, sp.test), sp.test, tie),
    }
    settings = {"co-purchase (shrinkage)": asdict(co_cfg), "similar items": {"aggregate": sim_agg},
                "sequence model (cart)": SASREC, "complements": {**asdict(final), "copurchase": asdict(co_cfg)}}
    records = [{"dataset": "online-retail" + ("-quick" if args.quick else ""), "model": name, "test": m,
                "settings": settings.get(name, {})} for name, m in test.items()]
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "protocol": {"valid_fraction": 0.1, "test_fraction": 0.1, "seed": args.seed, **sp.cuts,
                         "catalog": n, "train_invoices": len(sp.train_baskets), "quick": args.quick,
                         "unknown_targets_test": int((sp.test.target == 0).sum())},
            "validation": {"copurchase_grid": tried, "similar": sim_valid, "blend": blend, "exclusion": exclusion,
                           "exclusion_tolerance": EXCLUSION_TOLERANCE, "plain_counts": evaluate(
                               lambda s, c: plain.scores(c), sp.valid, tie)},
            "sasrec_fit_seconds": fit["seconds"], "sasrec_epochs": fit["epochs"], "seconds": round(time.perf_counter() - t_start, 1)}
    results = save(RESULTS, "complements", meta, records, markdown)
    plot(results, RESULTS / "complements.png")
    print(markdown(results, meta))


def markdown(results: list[dict], meta: dict) -> str:
    p = meta["protocol"]
    lines = [
        "# Complements: basket completion on UCI Online Retail", "",
        f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs. Updated {meta['date']}.",
        f"Invoices split by time: validation from {p['valid_from']}, test from {p['test_from']}; "
        f"{p['train_invoices']} training invoices, catalog {p['catalog']} items (full ranking, cart excluded). "
        "One held-out item per invoice with >= 2 distinct items, ranked given the rest. "
        "Settings chosen on validation; test read once. "
        f"SASRec (sequence model, and the item vectors of similar items and of the substitute filter): "
        f"{meta.get('sasrec_epochs', '?')} epochs in {meta.get('sasrec_fit_seconds', '?')} s on the shared CPUs.", "",
        "| data | method | Recall@10 | NDCG@10 | MRR | cases | settings |", "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r["test"]
        lines.append(f"| {r['dataset']} | {r['model']} | {t['Recall@10']:.4f} | {t['NDCG@10']:.4f} | {t['MRR']:.4f} | "
                     f"{t['cases']} | `{json.dumps(r['settings'])}` |")
    for data in dict.fromkeys(r["dataset"] for r in results):
        by = {r["model"]: r["test"]["Recall@10"] for r in results if r["dataset"] == data}
        if "complements" in by and by.get("co-occurrence counts"):
            lift = by["complements"] / by["co-occurrence counts"] - 1
            lines += ["", f"{data}: complements vs co-occurrence counts, Recall@10 {lift:+.1%} "
                      f"(target +10%: {'met' if lift >= 0.10 else 'not met'})."]
    v = meta["validation"]
    lines += ["", "Validation, substitute filters (blend weight fixed); kept: the most exclusion within "
              f"{v['exclusion_tolerance']:.0%} of the best Recall@10:", "",
              "| cosine >= | title overlap >= | excluded items per cart | Recall@10 | NDCG@10 |", "|---|---|---|---|---|"]
    for e in v["exclusion"]:
        lines.append(f"| {e['substitute_similarity']} | {e['title_overlap']} | {e['excluded_per_cart']:.1f} | "
                     f"{e['valid']['Recall@10']:.4f} | {e['valid']['NDCG@10']:.4f} |")
    lines += ["", "Validation, blend weight of the sequence model: " + ", ".join(
        f"{b['sequence_weight']}: {b['valid']['Recall@10']:.4f}" for b in v["blend"])]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if not r["dataset"].endswith("-quick")] or results
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [r["model"] for r in rows]
    ax.barh(names, [r["test"]["Recall@10"] for r in rows], color="tab:blue")
    for i, r in enumerate(rows):
        ax.text(r["test"]["Recall@10"], i, f" {r['test']['Recall@10']:.3f}", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("Recall@10 (test invoices, one held-out item)")
    ax.set_title("Basket completion, UCI Online Retail")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
