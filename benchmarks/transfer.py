"""Cross-domain transfer (issue 23 pt 2): a text-based SASRec pretrained on another
shop's sequences, then fine-tuned on Amazon Industrial & Scientific, against training
on Scientific alone, with 10%, 30% and 100% of Scientific's users.

Methods (the same d64 network and training settings everywhere, ``BASE``):
- ``sasrec_id``: plain SASRec over item IDs, target only.
- ``text_scratch``: items from their text (frozen all-MiniLM-L6-v2 vectors through
  UniSRec's MoE whitening adaptor, ``arch.text_adapter``), target only.
- ``text_transfer``: the same model started from the source run
  (``transfer.from_run``: adaptor, positions and Transformer blocks), then fine-tuned.
The text methods represent items by text alone (``arch.item_ids=false``, UniSRec's
inductive setting; a candidate list per method is chosen among on validation, one
candidate each in the run recorded, for lack of CPU). Epochs: early stopping on
validation NDCG@10 within the budget; the learning rate is the default (not tuned).

Source: UCI Online Retail I + II (one gift retailer, 2009-2011; customers' purchase
sequences, product descriptions as text). Amazon Beauty has sequences but no item text
(its attributes are integer ids without names: README), so it cannot be a text source.

Target subsets: users drawn once (seed 0) in a fixed random order; the 10% subset is the
first 10% of that order, inside the 30% one. Each subset keeps the full catalog (4,385
items: every item can be ranked), leave-one-out on its own users, full ranking,
history items excluded (the project's ``evaluate``). Each fine-tune trains under the same
CPU-second budget (one torch thread; the source's pretraining is spent once, apart).
Test NDCG@10 is read once, for the setting validation chose.

    nice -n 10 python benchmarks/transfer.py --stage pretrain
    nice -n 10 python benchmarks/transfer.py --shares 0.1,0.3 [--methods ...]
    python benchmarks/transfer.py --rebuild     # results from the per-run files

Results: benchmarks/results/transfer.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

from results_file import save  # noqa: E402

from shopformer.artifact import make_model, save_run  # noqa: E402
from shopformer.dataset import DataConfig, describe, load_events, load_products, prepare  # noqa: E402
from shopformer.evaluate.protocol import EvalConfig  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.experiment import evaluate_model, fit  # noqa: E402
from shopformer.features.content import ContentConfig, build_content  # noqa: E402
from shopformer.ingest import ingest  # noqa: E402

#: Sized for a 2-core machine shared by several people's jobs (each process got 5-15% of a
#: core when this ran): a short warmup (a 10% subset is 7 steps an epoch), no calibration
#: grid after fit (its 72 validation passes cost more than a small fit), lr at its default.
BASE = {"arch.d_model": "64", "arch.max_len": "50", "arch.n_heads": "2", "arch.dropout": "0.5",
        "train.batch_size": "128", "train.epochs": "200", "train.patience": "5", "train.threads": "1",
        "train.warmup_steps": "20", "calibration.enabled": "false"}
TEXT = {"arch.text_adapter": "4"}
#: per method: the candidates validation chooses among
METHODS = {
    "sasrec_id": [{}],
    "text_scratch": [{**TEXT, "arch.item_ids": "false"}],
    "text_transfer": [{"arch.item_ids": "false"}],  # sizes: the source run's
}
#: candidates added to a method already measured (``--add``): fitted, compared on
#: validation with the record's choice; the test is read only if one of them wins
ADDED = {"text_scratch": [{**TEXT, "arch.item_ids": "true"}], "text_transfer": [{"arch.item_ids": "true"}]}
SHARES = (0.1, 0.3, 1.0)
TARGET_EVENTS, TARGET_ITEMS = "amazon-scientific/Scientific.txt.gz", "amazon-scientific/items.tsv.gz"
SOURCE_FILES = ("online-retail/online_retail.csv.gz", "online-retail-ii/online_retail_II_2009-2010.csv.gz")
SOURCE_CONFIG = DataConfig(event_types=("purchase",), dedupe_consecutive=True, protocol="leave_one_out")
TEXT_ONLY = ContentConfig(fields=(), price_bands=0)


def use_cpu_clock() -> None:
    """The trainer's budget reads this process's CPU time (as benchmarks/self_supervised.py)."""
    import shopformer.train.loop as loop

    loop.time = SimpleNamespace(perf_counter=time.process_time)


def text_content(folder: Path, items, work: Path):
    from shopformer.features.text import TextEncoder, TextEncoderConfig, product_text

    products = load_products(folder)
    encoder = TextEncoder(TextEncoderConfig(cache_dir=work / "text-cache"))
    vectors = encoder.encode(product_text(products))
    return build_content(products, items, replace(TEXT_ONLY, text_model=encoder.config.model), vectors)


def target(root: Path, work: Path, share: float):
    """Scientific restricted to the first ``share`` of its users (fixed order), full catalog."""
    events_dir, catalog_dir = work / "scientific", work / "scientific-catalog"
    if not (events_dir / "events.parquet").exists():
        ingest(root / TARGET_EVENTS, fmt="sequence", data_dir=events_dir)
    if not (catalog_dir / "products.parquet").exists():
        ingest(root / TARGET_ITEMS, fmt="items-tsv", data_dir=catalog_dir)
    events = load_events(events_dir)
    full, _ = prepare(events, DataConfig())
    order = np.random.default_rng(0).permutation(len(full.users))
    keep = [full.users.ids[i] for i in order[: round(share * len(full.users))]]
    data, split = prepare(events.filter(pl.col("user_id").is_in(keep)), DataConfig(), full.items)
    return data, split, text_content(catalog_dir, data.items, work)


def pretrain(root: Path, work: Path, seconds: float) -> dict:
    folder = work / "retail"
    if not (folder / "events.parquet").exists():
        for f in SOURCE_FILES:  # the second file appends to the first (same retailer, one year earlier)
            ingest(root / f, fmt="online-retail", data_dir=folder)
    data, split = prepare(load_events(folder), SOURCE_CONFIG)
    model = make_model("sasrec", {**BASE, **TEXT, "arch.item_ids": "false", "train.time_limit_s": str(seconds),
                                  "train.warmup_steps": "100", "calibration.enabled": "true"})  # as it ran
    model.content = text_content(folder, data.items, work)
    print(f"source: {describe(data)}", flush=True)
    cpu0 = time.process_time()
    fit(model, data, split)
    save_run(work / "source-run", model, data.items, data.users, SOURCE_CONFIG, {"data_dir": str(folder)})
    info = {"dataset": describe(data), "fit_cpu_seconds": round(time.process_time() - cpu0, 1),
            "best_valid_ndcg10": model.history.best_valid, "epochs": len(model.history.records),
            "stopped": model.history.stopped, "settings": asdict(model.config)}
    (work / "source-run" / "benchmark.json").write_text(json.dumps(info, indent=2, default=str))
    return info


def run_method(method: str, share: float, budget: float, data, split, content, work: Path,
               previous: dict | None = None) -> dict:
    """Fit every candidate of ``method`` (with ``previous``, the record of earlier
    candidates: the ADDED ones), keep the best on validation, read its test once."""
    best, tried = None, []
    for extra in (ADDED[method] if previous else METHODS[method]):
        params = {**BASE, **extra, "train.time_limit_s": str(budget)}
        if method == "text_transfer":
            params["transfer.from_run"] = str(work / "source-run")
        model = make_model("sasrec", params)
        if method != "sasrec_id":
            model.content = content
        load0, cpu0 = os.getloadavg(), time.process_time()
        wall = fit(model, data, split)
        cpu = time.process_time() - cpu0
        valid = evaluate_model(model, data, split, "valid", EvalConfig(cutoffs=(10,)), {}, progress=False)
        h = model.history
        row = {"settings": extra, "valid_ndcg10": valid["metrics"]["NDCG@10"], "fit_cpu_seconds": round(cpu, 1),
               "fit_wall_seconds": round(wall, 1), "epochs": len(h.records), "best_epoch": h.best_epoch,
               "stopped": h.stopped, "load_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)]}
        tried.append(row)
        print(f"  {method} {share:.0%} {extra}: valid {row['valid_ndcg10']:.4f} ({row['epochs']} epochs, "
              f"{cpu:.0f} CPU-s)", flush=True)
        if best is None or row["valid_ndcg10"] > best[1]["valid_ndcg10"]:
            best = model, row
    model, row = best
    if previous and row["valid_ndcg10"] <= previous["valid_ndcg10"]:  # the earlier choice stands
        return {**previous, "candidates": previous["candidates"] + tried}
    test = evaluate_model(model, data, split, "test", EvalConfig(cutoffs=(10, 20)), {}, progress=False)
    return {"dataset": "scientific", "share": share, "model": method, "chosen": row["settings"],
            "valid_ndcg10": row["valid_ndcg10"], "test": test["metrics"], "users": test["users_evaluated"],
            "budget_cpu_s": budget, "candidates": (previous or {}).get("candidates", []) + tried, "model_config": asdict(model.config),
            "transferred_from": getattr(model, "transferred_from", None) and {
                k: v for k, v in model.transferred_from.items() if k != "layers"}}


def key(r: dict) -> tuple:
    return r["share"], r["model"]


def table(results: list[dict]) -> tuple[list[str], dict]:
    by = {key(r): r for r in results}
    lines = ["| share of users | users | " + " | ".join(METHODS) + " | transfer vs sasrec_id | vs text_scratch | "
             "vs best target-only |", "|---|---|" + "---|" * (len(METHODS) + 3)]
    gains = {}
    for s in sorted({r["share"] for r in results}):
        cells = [by.get((s, m)) for m in METHODS]
        row = f"| {s:.0%} | {next((c['users'] for c in cells if c), '')} | " + " | ".join(
            f"{c['test']['NDCG@10']:.4f}" if c else "-" for c in cells)
        own = [c["test"]["NDCG@10"] for m, c in zip(METHODS, cells) if c and m != "text_transfer"]
        tr = by.get((s, "text_transfer"))
        for m in ("sasrec_id", "text_scratch"):
            c = by.get((s, m))
            row += f" | {tr['test']['NDCG@10'] / c['test']['NDCG@10'] - 1:+.1%}" if tr and c else " | -"
        if tr and own:
            gains[s] = tr["test"]["NDCG@10"] / max(own) - 1
        row += f" | {gains[s]:+.1%} |" if s in gains else " | - |"
        lines.append(row)
    return lines, gains


#: How the recorded run went (2026-12-05): the methods first ran with the text-only
#: candidate alone, and those test numbers were read then; the ID candidates were added
#: with ``--add`` and won on validation everywhere, so the table shows theirs.
FIRST_PASS = ("Order of the recorded run: each method first ran with its text-only candidate "
              "(`arch.item_ids=false`) alone, and its test was read then (text_scratch / text_transfer test NDCG@10: "
              "10% 0.0434 / 0.0298, 30% 0.0255 / 0.0302, 100% 0.0264 / 0.0318); the `arch.item_ids=true` candidates "
              "were added afterwards (`--add`), chosen by validation alone, and won everywhere, so the table shows "
              "theirs. At 10% the text-only model from scratch had the best test score of all (0.0434) but not the "
              "best validation score, so it is not the one reported.")


def markdown(results: list[dict], meta: dict) -> str:
    lines, gains = table(results)
    met = gains.get(0.1)
    verdict = ("not measured yet" if met is None else
               f"{'MET' if met >= 0.15 else 'NOT MET'}: {met:+.1%} at 10% of users over the best target-only "
               "method (target >= +15%; the gain over each method is in the table)")
    src = meta.get("source", {})
    out = [
        "# Cross-domain transfer to Amazon Scientific (issue 23 pt 2)", "",
        f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs shared with other work (niced, "
        f"1 torch thread). Updated {meta['date']}. Load average when written: {meta.get('load')} (each fit's before / after: last column below).", "",
        "Test NDCG@10, leave-one-out, full ranking over all 4,385 items, history excluded; each subset's test "
        "users are its own users' last items. Every fine-tune has the same CPU-second budget "
        f"({meta.get('budget_cpu_s')} s, early stopping on validation); the text methods choose on validation "
        "among their candidates (see below); test read once for the chosen setting.", "",
        f"Source: UCI Online Retail I + II ({src.get('dataset', '?')}), pretrained once "
        f"({src.get('fit_cpu_seconds', '?')} CPU-s, {src.get('epochs', '?')} epochs, source validation NDCG@10 "
        f"{src.get('best_valid_ndcg10', float('nan')):.4f}). Amazon Beauty has no item text (attribute ids "
        "without names), so it could not be a source.", "",
        f"**Target (+15% NDCG@10 at 10% of users over target-only training): {verdict}.**", "",
        *lines, "",
        "Test users per subset: 844 / 2,533 / 8,442; at 10% a difference of a few thousandths of NDCG@10 is within "
        "the noise of one seed. `fit CPU s` counts the validation passes and the epoch that crosses the budget; "
        "at 30% and 100% the budget binds (an ID-only epoch is cheaper than a text one, whose adaptor maps all "
        "4,385 vectors each step), at 10% most fits stop early.", "", FIRST_PASS, "", "## Every fit", "",
        "| share | method | setting | valid NDCG@10 | fit CPU s | wall s | epochs (best) | stopped | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=key):
        for c in r["candidates"]:
            out.append(f"| {r['share']:.0%} | {r['model']} | `{json.dumps(c['settings'])}` | {c['valid_ndcg10']:.4f} | "
                       f"{c['fit_cpu_seconds']} | {c['fit_wall_seconds']} | {c['epochs']} ({c['best_epoch']}) | "
                       f"{c['stopped']} | {c['load_before_after']} |")
    out += ["", f"Network: `{json.dumps(BASE)}`; text: `{json.dumps(TEXT)}`.", ""]
    return "\n".join(out) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for m in METHODS:
        pts = sorted((r["share"] * 100, r["test"]["NDCG@10"]) for r in results if r["model"] == m)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=m)
    ax.set_xscale("log")
    ax.set_xticks([10, 30, 100], ["10%", "30%", "100%"])
    ax.set_xlabel("share of Scientific's users in training")
    ax.set_ylabel("test NDCG@10")
    ax.set_title("Transfer from Online Retail to Scientific")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(work: Path, budget: float) -> None:
    records = [json.loads(f.read_text()) for f in sorted((work / "records").glob("*.json"))]
    source = work / "source-run" / "benchmark.json"
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "budget_cpu_s": budget, "load": [round(x, 2) for x in os.getloadavg()],
            "source": json.loads(source.read_text()) if source.exists() else {}}
    plot(save(RESULTS, "transfer", meta, records, markdown, key), RESULTS / "transfer.png")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", choices=("pretrain", "target"), default="target")
    ap.add_argument("--shares", default=",".join(map(str, SHARES)))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--budget", type=float, default=60.0, help="CPU seconds per fine-tune")
    ap.add_argument("--pretrain-budget", type=float, default=420.0, help="CPU seconds of the source pretraining")
    ap.add_argument("--add", action="store_true", help="fit the ADDED candidates of already measured methods")
    ap.add_argument("--rebuild", action="store_true", help="only rewrite the results from WORK/records")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-transfer"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    use_cpu_clock()
    if args.rebuild:
        return write(args.work, args.budget)
    if args.stage == "pretrain":
        print(json.dumps(pretrain(args.data_root, args.work, args.pretrain_budget), default=str)[:600])
        return
    from rich.progress import track

    jobs = [(float(s), m) for s in args.shares.split(",") for m in args.methods.split(",")]
    loaded = {}
    for share, method in track(jobs, description="fits"):
        if share not in loaded:
            loaded = {share: target(args.data_root, args.work, share)}
        done = args.work / "records" / f"{share}-{method}.json"
        previous = json.loads(done.read_text()) if args.add and done.exists() else None
        if args.add and previous is None:
            raise SystemExit(f"--add: {method} at {share} has no record yet")
        rec = run_method(method, share, args.budget, *loaded[share], args.work, previous)
        print(f"{method} {share:.0%}: test NDCG@10 {rec['test']['NDCG@10']:.4f}", flush=True)
        (args.work / "records").mkdir(parents=True, exist_ok=True)
        (args.work / "records" / f"{share}-{method}.json").write_text(json.dumps(rec, default=str))
        write(args.work, args.budget)


if __name__ == "__main__":
    main()
