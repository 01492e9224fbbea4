"""Audience targeting on UCI Online Retail: of the top-k customers named for an item, how
many bought it in the following 30 days?

Protocol: purchases only, repeated invoice lines of a product merged (as accuracy.py). At a
cut date T, models see every purchase before T; the candidates are the customers with a
purchase before T; the items evaluated are those with at least 5 candidate buyers in the
30 days after T (and a purchase before T, so that every method can know them); the truth
for an item is who of the candidates bought it in those 30 days. Every method names the
top-k candidates per item (k = 10, 100, 1000); precision@k and recall@k are averaged over
the items.

Methods: ``active`` (the most purchases before T, the same list for every item),
``past_buyers`` (the item's past buyers, most purchases of it first, then the most
active), ``cooccurrence`` (past buyers' look-alikes: each customer's item-kNN score of the
item, cosine co-occurrence over the purchase histories) and ``sasrec`` (the served
audience: :class:`shopformer.rank.audience.AudienceIndex` over SASRec's user vectors).

Settings (item-kNN neighbours and shrinkage, the audience's score, activity and repeat weights, the repeat half-life,
leaving out past buyers for every method) are chosen on a validation cut T' = T - 30 days
(models fitted on purchases before T', truth in [T', T)); the test cut T = the last
purchase - 30 days is read once. The baselines are refitted on everything before T; SASRec
is fitted once, before T', and at T reads each customer's history up to T without
retraining, as a served model reads events posted after its training (one fit: the
Transformer's training is the cost on 2 shared CPUs; refitting could only help it).

    python benchmarks/audience.py [--fit-minutes 25]   # about 35 min on 2 shared CPUs
    python benchmarks/audience.py --quick    # small model, end to end check
    python benchmarks/audience.py --with-ii  # a year more history: Online Retail II (2009-12 .. 2010-12) first

``--with-ii`` puts UCI Online Retail II's first year (the same shop's purchases from
2009-12) before Online Retail I (II's lines of invoices that I also holds are dropped), so
every cut has the same season a year earlier (the ranker's seasonal features and
candidates); the cuts and the windows stay those of Online Retail I. It writes
``audience_two_years.*``: candidates, the most active customers and every other method
see the longer history too, so its rows compare with each other, not with ``audience.*``.

Writes benchmarks/results/audience.{json,md} and audience.png (precision@k curves).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from _lib.audience_eval import DAY_S, Cut, fit_split, make_cut, past_buyers, precision_recall, rank_column
from _lib.audience_ranker_eval import GRID as RANKER_GRID
from _lib.audience_ranker_eval import ROUNDS as RANKER_ROUNDS
from _lib.audience_ranker_eval import ceiling
from _lib.audience_ranker_eval import test as ranker_test
from _lib.audience_ranker_eval import validate as ranker_validate
from _lib.audience_ranker_eval import with_history
from results_file import save

from shopformer.artifact import make_model
from shopformer.dataset import DataConfig, load_events, prepare
from shopformer.evaluate.report import machine
from shopformer.ingest import ingest
from shopformer.rank.audience import AudienceConfig, AudienceIndex

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATASET = "online-retail"
FILE = "online-retail/online_retail.csv.gz"
FILE_II = "online-retail-ii/online_retail_II_2009-2010.csv.gz"
DATA_CONFIG = DataConfig(event_types=("purchase",), dedupe_consecutive=True)
KS = (10, 100, 1000)
CURVE_KS = (10, 20, 50, 100, 200, 500, 1000)
WINDOW_DAYS = 30.0
MIN_BUYERS = 5
#: accuracy.py's Online Retail setting (chosen there on validation), with a time cap
#: (50 positions instead of 100: twice the epochs in the time; the audience reads the latest state)
SASREC = {"arch.d_model": "64", "arch.max_len": "50", "train.batch_size": "32", "train.epochs": "30",
          "arch.dropout": "0.5", "arch.attn_dropout": "0.5", "train.patience": "5"}
QUICK_SASREC = {**SASREC, "arch.d_model": "32", "train.epochs": "2"}
EXCLUDE = (False, True)  # leave out the item's past buyers (all time)
#: the most active customers counted over all the purchases before the cut, or over the
#: last year's only (with a longer history, customers who have since left lead the first)
ACTIVE_DAYS = (None, 365.0)
COOC_GRID = [{"neighbors": str(n), "shrink": str(s)} for n in (100, 500) for s in (0, 50)]
AUDIENCE_GRID = [AudienceConfig(score=s, activity_weight=w, repeat_weight=r, repeat_half_life_days=h,
                                exclude_buyers_days=x)
                 for s in ("probability", "logit") for w in (0.0, 0.5, 1.0) for r in (0.0, 2.0, 4.0, 8.0)
                 for h in ((None,) if r == 0 else (None, 60.0))
                 for x in ((None, 30.0, 0.0) if r == 0 else (None,))]  # past buyers left out: no repeat term


class FixedVectors:
    """A fitted model with its user vectors computed once (the audience grid only
    changes how they are scored)."""

    def __init__(self, model, history):  # noqa: ANN001
        self._table = model.output_table()
        self._vectors = model.user_vectors(history)

    def output_table(self):  # noqa: ANN201
        return self._table

    def user_vectors(self, history):  # noqa: ANN001, ANN201
        return self._vectors


def progress() -> Progress:
    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def evaluate(ranked: list[np.ndarray], cut: Cut) -> dict:
    return {**precision_recall(ranked, cut.buyers, CURVE_KS), "items": len(cut.items)}


def rank_all(column, cut: Cut, exclude: bool, past: list[np.ndarray], label: str) -> list[np.ndarray]:  # noqa: ANN001
    out = []
    with progress() as bar:
        task = bar.add_task(label, total=len(cut.items))
        for n, item in enumerate(cut.items):
            out.append(rank_column(column(n, int(item)), max(KS), past[n] if exclude else None))
            bar.advance(task)
    return out


def baselines(cut: Cut, n_items: int, settings: dict | None = None) -> dict[str, tuple[dict, list]]:
    """Every baseline setting's ranked lists at ``cut`` (or only ``settings``'s)."""
    activity = cut.history.lengths.astype(np.float64)
    past = past_buyers(cut.history, cut.items, n_items)
    out: dict[str, list] = {"active": [], "past_buyers": [], "cooccurrence": []}
    row = np.repeat(np.arange(len(cut.history)), cut.history.lengths)
    for days in ACTIVE_DAYS:
        recent = activity if days is None else np.bincount(
            row[cut.history.timestamps >= cut.t - days * DAY_S], minlength=len(cut.history)).astype(np.float64)
        for ex in EXCLUDE:
            s = {"exclude_past_buyers": ex, "days": days}
            if settings is None or settings["active"] == s:
                out["active"].append((s, rank_all(lambda n, i: recent, cut, ex, past, f"active days={days} ex={ex}")))
    counts = cut.history.to_csr(n_items + 1, binary=False).tocsc()

    def repeat(n: int, i: int) -> np.ndarray:
        return counts[:, i].toarray()[:, 0] * 1e6 + activity

    out["past_buyers"].append(({"exclude_past_buyers": False}, rank_all(repeat, cut, False, past, "past buyers")))
    for params in COOC_GRID:
        for_params = settings is None or settings["cooccurrence"]["params"] == params
        if not for_params:
            continue
        model = make_model("itemknn", params).fit(cut.history, n_items)
        scores = model.score(cut.history)
        for ex in EXCLUDE:
            if settings is None or settings["cooccurrence"]["exclude_past_buyers"] == ex:
                ranked = rank_all(lambda n, i: scores[:, i], cut, ex, past, f"cooccurrence {params} ex={ex}")
                out["cooccurrence"].append(({"params": params, "exclude_past_buyers": ex}, ranked))
    return out


def fit_sasrec(cut: Cut, n_items: int, params: dict[str, str], folder: Path, reuse: bool):  # noqa: ANN201
    """SASRec fitted at ``cut`` (or, with ``reuse``, the one an earlier run saved in
    ``folder`` with the same settings) and what its training did."""
    from shopformer.models.sequential import SASRecRecommender

    info_path = folder / "fit.json"
    if reuse and info_path.exists() and json.loads(info_path.read_text())["settings"] == params:
        return SASRecRecommender.load(folder), json.loads(info_path.read_text())
    train, valid = fit_split(cut.history)
    t0 = time.perf_counter()
    model = make_model("sasrec", params).fit(train, n_items, valid=valid)
    h = model.history
    info = {"settings": params, "fit_s": round(time.perf_counter() - t0, 1), "epochs": len(h.records),
            "best_epoch": h.best_epoch, "valid_NDCG@10": h.best_valid, "stopped": h.stopped}
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder)
    info_path.write_text(json.dumps(info))
    return model, info


def audiences(model, cut: Cut, configs: list[AudienceConfig]) -> list[tuple[AudienceConfig, list]]:  # noqa: ANN001
    fixed = FixedVectors(model, cut.history)
    users = [str(r) for r in range(len(cut.history))]
    out = []
    for config in configs:
        aud = AudienceIndex(config, fixed, users, cut.history, now=cut.t)
        with progress() as bar:
            task = bar.add_task(f"sasrec {config.score[:5]} a={config.activity_weight} r={config.repeat_weight} "
                                f"h={config.repeat_half_life_days} x={config.exclude_buyers_days}",
                                total=len(cut.items))
            ranked = []
            for item in cut.items:
                ranked.append(aud.for_item(int(item), max(KS)).rows)
                bar.advance(task)
        out.append((config, ranked))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a small SASRec (2 epochs): checks the script end to end")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-audience"))
    ap.add_argument("--fit-minutes", type=float, default=25.0, help="SASRec's training time cap")
    ap.add_argument("--no-sasrec", action="store_true",
                    help="no SASRec (fit, grid, ranker features and candidates): its record from the last run is kept")
    ap.add_argument("--reuse-model", action="store_true", help="take the SASRec an earlier run saved (same settings)")
    ap.add_argument("--with-ii", action="store_true",
                    help="Online Retail II's 2009-12 .. 2010-12 purchases before Online Retail I (audience_two_years.*)")
    ap.add_argument("--threads", type=int, default=0,
                    help="SASRec's torch threads (0: PyTorch's default, every core; on a CPU shared with other jobs "
                         "one thread avoids the intra-op pool waiting on descheduled threads)")
    args = ap.parse_args()
    started = time.perf_counter()
    if not (args.data_root / FILE).exists():
        sys.exit(f"{args.data_root / FILE} not found: needs ../shared/data")
    folder = args.work / DATASET
    if not (folder / "events.parquet").exists():
        ingest(args.data_root / FILE, fmt="online-retail", data_dir=folder)
    events = load_events(folder)
    if args.with_ii:
        events = with_online_retail_ii(events, args.data_root, args.work)
    data, _ = prepare(events, DATA_CONFIG)
    seqs, n_items = data.sequences, data.n_items
    # the ranker counts purchases as stored (an item re-bought in the next order is not a
    # consecutive duplicate to it), as serving does; customers and truth as the others'
    raw, _ = prepare(events, replace(DATA_CONFIG, dedupe_consecutive=False), data.items)
    if raw.users.ids != data.users.ids or raw.n_items != n_items:
        sys.exit("the purchases with and without consecutive repeats index customers differently")
    end = float(np.nanmax(seqs.timestamps))
    t_test = end - WINDOW_DAYS * DAY_S
    t_valid = t_test - WINDOW_DAYS * DAY_S
    sasrec = {**(QUICK_SASREC if args.quick else SASREC),
              "train.time_limit_s": str(60 if args.quick else int(args.fit_minutes * 60)),
              **({"train.threads": str(args.threads)} if args.threads else {})}
    when = {name: datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="minutes")
            for name, t in (("valid_cut", t_valid), ("test_cut", t_test))}
    print(f"{DATASET}: {len(seqs)} customers, {n_items} items; cuts {when}", flush=True)

    # -- validation: every setting, models fitted before T'
    valid_cut = make_cut(seqs, t_valid, WINDOW_DAYS, MIN_BUYERS)
    print(f"validation: {len(valid_cut.history)} candidates, {len(valid_cut.items)} items", flush=True)
    chosen, grids = {}, {}
    for name, options in baselines(valid_cut, n_items).items():
        scored = [(s, evaluate(r, valid_cut)) for s, r in options]
        grids[name] = [{"settings": s, "valid_P@100": m["P@100"]} for s, m in scored]
        chosen[name] = max(scored, key=lambda x: x[1]["P@100"])
    stem = ("audience_quick" if args.quick else "audience") + ("_two_years" if args.with_ii else "")
    model = early_model = early_fit = None
    if args.no_sasrec:  # the last run's SASRec record (and fit) stay as they are
        old = json.loads((RESULTS / f"{stem}.json").read_text())
        fit = {**old["sasrec"], "kept_from_run_of": old["sasrec"].get("kept_from_run_of", old["date"])}
    else:
        model, fit = fit_sasrec(valid_cut, n_items, sasrec, args.work / ("sasrec_quick" if args.quick else "sasrec"),
                                args.reuse_model)
        scored = [(c, evaluate(r, valid_cut)) for c, r in audiences(model, valid_cut, AUDIENCE_GRID)]
        grids["sasrec"] = [{"settings": asdict(c), "valid_P@100": m["P@100"]} for c, m in scored]
        best_config, best_valid = max(scored, key=lambda x: x[1]["P@100"])
        chosen["sasrec"] = (best_config, best_valid)
    for name, (s, m) in chosen.items():
        print(f"chosen {name}: {s if not isinstance(s, AudienceConfig) else asdict(s)} valid P@100 {m['P@100']:.4f}")

    # -- the learned ranker: fitted at T' - 30 and T' - 60 days (labels: the next 30 days
    # of each; SASRec features from a SASRec fitted before the earlier), its settings
    # chosen at T'; for the test refitted at T' and T' - 30 days (labels up to T)
    early_cuts = [make_cut(seqs, t_valid - n * WINDOW_DAYS * DAY_S, WINDOW_DAYS, MIN_BUYERS) for n in (1, 2)]
    if model is not None:
        early_model, early_fit = fit_sasrec(early_cuts[-1], n_items, sasrec, args.work / (
            "sasrec_early_quick" if args.quick else "sasrec_early"), args.reuse_model)
    grid = RANKER_GRID[:1] if args.quick else RANKER_GRID
    r_config, r_valid, grids["ranker"], r_states, r_info = ranker_validate(
        [(with_history(c, raw.sequences), early_model) for c in early_cuts], with_history(valid_cut, raw.sequences),
        model, n_items, KS, evaluate, grid, (50,) if args.quick else RANKER_ROUNDS)
    chosen["ranker"] = (r_config, r_valid)
    print(f"chosen ranker: {asdict(r_config)} valid P@100 {r_valid['P@100']:.4f}", flush=True)

    # -- test: the chosen settings, models refitted before T, read once
    test_cut = make_cut(seqs, t_test, WINDOW_DAYS, MIN_BUYERS)
    print(f"test: {len(test_cut.history)} candidates, {len(test_cut.items)} items", flush=True)
    picked = {name: s for name, (s, _) in chosen.items() if name != "sasrec"}
    test = {name: evaluate(opts[0][1], test_cut) for name, opts in baselines(test_cut, n_items, picked).items()}
    if model is not None:
        test["sasrec"] = evaluate(audiences(model, test_cut, [best_config])[0][1], test_cut)
    test["ranker"], r_test_info = ranker_test(r_config, r_states[:2], with_history(test_cut, raw.sequences), model,
                                              n_items, KS, evaluate)
    test["ceiling"], chosen["ceiling"] = ceiling(test_cut, CURVE_KS), ({}, ceiling(valid_cut, CURVE_KS))

    records = []
    for name in [m for m in ("active", "past_buyers", "cooccurrence", "sasrec", "ranker", "ceiling") if m in test]:
        settings, valid = chosen[name]
        settings = settings if isinstance(settings, dict) else asdict(settings)
        if name == "ranker":
            settings = {**settings, "sasrec_features": model is not None}
        records.append({"dataset": DATASET + (" (quick)" if args.quick else ""), "model": name,
                        "settings": settings, "valid": valid, "test": test[name], "validation_grid": grids.get(name, [])})
    base = test["active"]["P@100"]
    for r in records:
        r["test_P@100_vs_active"] = r["test"]["P@100"] / base if base else None
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "wall_s": round(time.perf_counter() - started), "no_sasrec": args.no_sasrec,
            "data": "UCI Online Retail II (2009-12 .. 2010-12) + I" if args.with_ii else "UCI Online Retail I",
            "first_purchase": datetime.fromtimestamp(float(np.nanmin(seqs.timestamps)), timezone.utc).isoformat(
                timespec="minutes"),
            "protocol": {"window_days": WINDOW_DAYS, "min_buyers": MIN_BUYERS, **when,
                         "valid_candidates": len(valid_cut.history), "valid_items": len(valid_cut.items),
                         "test_candidates": len(test_cut.history), "test_items": len(test_cut.items),
                         "test_buyer_pairs_all": test_cut.window_buyers_all,
                         "test_buyer_pairs_candidates": int(sum(len(b) for b in test_cut.buyers))},
            "sasrec": {**fit, "fitted_before": when["valid_cut"]},
            "ranker": {**r_info, "test": r_test_info, "train_cuts": [datetime.fromtimestamp(c.t, timezone.utc).isoformat(
                timespec="minutes") for c in early_cuts], "train_items": [len(c.items) for c in early_cuts],
                       "sasrec_early": early_fit}}
    results = save(RESULTS, stem, meta, records, markdown)
    plot(results, RESULTS / f"{stem}.png")
    print(markdown(results, meta))


def with_online_retail_ii(events, data_root: Path, work: Path):  # noqa: ANN001, ANN201 - polars frames
    """Online Retail II's first year before ``events`` (Online Retail I): II's sheet ends on
    2010-12-09 and I starts on 2010-12-01 with the same invoices, so II's lines of an
    invoice that I holds are dropped; I's positions follow II's."""
    import polars as pl

    if not (data_root / FILE_II).exists():
        sys.exit(f"{data_root / FILE_II} not found: --with-ii needs ../shared/data/online-retail-ii")
    folder = work / "online-retail-ii"
    if not (folder / "events.parquet").exists():
        ingest(data_root / FILE_II, fmt="online-retail", data_dir=folder)
    ii = load_events(folder)
    ii = ii.filter(~pl.col("session_id").is_in(events["session_id"].unique().implode()))
    shift = int(ii["position"].max()) + 1 if ii.height else 0
    return pl.concat([ii, events.with_columns(pl.col("position") + shift)])


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in records:
        for ax, metric in zip(axes, ("P", "R")):
            ax.plot(CURVE_KS, [r["test"][f"{metric}@{k}"] for k in CURVE_KS], marker="o", label=r["model"],
                    linestyle="--" if r["model"] == "ceiling" else "-")
    for ax, title in zip(axes, ("precision@k", "recall@k")):
        ax.set_xscale("log")
        ax.set_xlabel("k (customers named per item)")
        ax.set_title(f"Online Retail test cut: {title}")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: list[dict], meta: dict) -> str:
    p = meta["protocol"]
    lines = [
        "# Audience targeting: who buys this item in the next 30 days?", "",
        f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs (shared). Updated {meta['date']}"
        + (f", wall time {meta['wall_s']} s" if meta.get("wall_s") else "") + ".", "",
        f"{meta.get('data', 'UCI Online Retail')}, purchases"
        + (f" from {meta['first_purchase']}" if meta.get("first_purchase") else "") + f". Test cut {p['test_cut']}, truth: "
        f"the candidates who bought the item in the {p['window_days']:.0f} days after. {p['test_items']} items "
        f"(>= {p['min_buyers']} candidate buyers in the window and sold before the cut), {p['test_candidates']} "
        f"candidates (customers with a purchase before the cut); {p['test_buyer_pairs_candidates']} of the "
        f"{p['test_buyer_pairs_all']} (item, buyer) pairs in the window are candidates (new customers cannot be "
        f"named). Settings chosen on the validation cut {p['valid_cut']} ({p['valid_items']} items); test read once. "
        f"Baselines refitted before the test cut; SASRec fitted once, on purchases before the validation cut "
        f"({meta['sasrec']['fit_s']} s, {meta['sasrec']['epochs']} epochs, best {meta['sasrec']['best_epoch']}, "
        f"{meta['sasrec']['stopped'] or 'ran its epochs'}; next-purchase NDCG@10 on its held-out last purchases "
        f"{meta['sasrec']['valid_NDCG@10']:.4f}), reading histories up to the test cut without retraining"
        + (f"; its row is the run of {meta['sasrec']['kept_from_run_of']} (not refitted since)"
           if meta["sasrec"].get("kept_from_run_of") else "") + ". "
        f"Settings: `{json.dumps(meta['sasrec']['settings'])}`.", "",
        *ranker_text(results, meta), "",
        "| method | P@10 | P@100 | P@1000 | R@10 | R@100 | R@1000 | P@100 vs active | valid P@100 | settings |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = ("active", "past_buyers", "cooccurrence", "sasrec", "ranker", "ceiling")
    for r in sorted(results, key=lambda r: order.index(r["model"]) if r["model"] in order else len(order)):
        t = r["test"]
        ratio = r.get("test_P@100_vs_active")
        lines.append(f"| {r['model']} | {t['P@10']:.4f} | {t['P@100']:.4f} | {t['P@1000']:.4f} | {t['R@10']:.4f} | "
                     f"{t['R@100']:.4f} | {t['R@1000']:.4f} | {'' if ratio is None else f'{ratio:.2f}x'} | "
                     f"{r['valid']['P@100']:.4f} | `{json.dumps(r['settings'])}` |")
    return "\n".join(lines + verdict(results)) + "\n"


def ranker_text(results: list[dict], meta: dict) -> list[str]:
    r = meta.get("ranker")
    if not r:
        return []
    t = r["test"]
    sasrec = bool(r["sasrec_early"])
    ranker = next((x["settings"] for x in results if x["model"] == "ranker"), {})
    season = bool(ranker.get("season_window_days"))  # runs before the seasonal features have no such key
    return [
        "**ranker**: LightGBM over (customer, item) features (rank/audience_ranker.py: the customer's past purchases "
        "of the item, how recent and how overdue by their own rhythm, its co-occurrence score, "
        + ("SASRec's logit, log-softmax and ranks, " if sasrec else "")
        + "the customer's activity and order rhythm, the item's popularity trend"
        + (", the same 30 days a year before the cut: the customer's orders, the item's buyers and the customer's "
           "purchases of it" if season else "") + "), all computed from the events "
        "before the cut. Candidates per item: the union of the top 300 of the simple audiences ("
        + ", ".join(["most active", "past buyers"] + (["the item's buyers a year before"] if season else [])
                    + ["co-occurrence"] + (["SASRec with the default activity and repeat weights"] if sasrec else []))
        + ")"
        + f", ranked by the model, then the other customers by activity; "
        f"they hold {r['valid_candidates']['buyer_recall']:.1%} of the window's candidate buyers at validation, "
        f"{t['test_candidates']['buyer_recall']:.1%} at test (mean {t['test_candidates']['mean_candidates']:.0f} "
        f"candidates per item). Validation: fitted at {' and '.join(r['train_cuts'])} (labels: the next 30 days of "
        f"each; {' + '.join(map(str, r['train_items']))} items, {r['train_rows']} candidate rows, {r['train_positives']} "
        f"buyers; features read the purchases as stored, an item re-bought in the next order included; "
        + (f"SASRec features from a SASRec fitted before that cut, {r['sasrec_early']['fit_s']} s" if r["sasrec_early"]
           else "no SASRec features or candidates in this run") +
        f"), leaves x rounds chosen at the validation cut (binary log loss; lambdarank took over 10 min a fit here). "
        f"Test: the chosen setting refitted at the validation cut and 30 days before it (labels: the next 30 days "
        f"of each, all before the test cut; "
        f"{t['train_rows']} rows, {t['train_positives']} buyers, {t['fit_s']} s)"
        f"{', SASRec features from the SASRec above' if sasrec else ''}, read once at the test cut. Largest gains: "
        f"`{json.dumps(dict(list(t['importance'].items())[:6]))}`.", "",
        "**ceiling**: the best any ranking could do: per item min(buyers in the window, k) / k (most items have few "
        "candidate buyers in 30 days, so P@100 cannot approach 1).",
    ]


def verdict(results: list[dict]) -> list[str]:
    by = {r["model"]: r["test"] for r in results}
    if not {"active", "ranker", "ceiling"} <= by.keys():
        return []
    target = 2 * by["active"]["P@100"]
    best = max((m for m in by if m not in ("active", "ceiling")), key=lambda m: by[m]["P@100"])
    met = by[best]["P@100"] >= target
    return ["", f"Target: P@100 >= 2x the most active customers = {target:.4f} (the ceiling is "
            f"{by['ceiling']['P@100']:.4f}). Best method: {best}, {by[best]['P@100']:.4f} = "
            f"{by[best]['P@100'] / by['active']['P@100']:.2f}x: **{'met' if met else 'not met'}**."]


if __name__ == "__main__":
    main()
