"""Accuracy benchmark: baselines and Transformers on Beauty, LastFM, MovieLens-1M, Amazon
Scientific and UCI Online Retail, each Transformer also with the dataset's item content
fused into its item embeddings (attributes, product text) against IDs alone.

Leave-one-out, full ranking over every item, training-history items excluded. Every
model is fitted on the training split; settings are chosen on the validation split
(the grids below, searched here on validation; a Transformer with a single candidate
was chosen in earlier validation-only runs recorded in benchmarks/results/tuning/); the
test split is scored once per final run.

    python benchmarks/accuracy.py --dataset beauty [--models popular,itemknn,ease,sasrec,sasrec_content]

Results merge into benchmarks/results/accuracy.{json,md} (one record per dataset and
model, replaced when re-run), with a training-curve PNG per Transformer run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

from results_file import save  # noqa: E402

from shopformer.artifact import make_model, save_run  # noqa: E402
from shopformer.dataset import DataConfig, describe, load_events, load_products, prepare  # noqa: E402
from shopformer.evaluate.protocol import EvalConfig  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.experiment import evaluate_model, fit  # noqa: E402
from shopformer.features.content import ContentConfig, ItemContent, build_content  # noqa: E402
from shopformer.ingest import ingest  # noqa: E402
from shopformer.train.loop import plot_history  # noqa: E402

#: Events file, its ingest format and which events become sequences. Online Retail:
#: each customer's purchases in time order, repeated invoice lines of one product merged.
_SEQUENCES = DataConfig(protocol="leave_one_out")
DATASETS = {
    "beauty": ("amazon-beauty/Beauty.txt.gz", "sequence", _SEQUENCES),
    "lastfm": ("lastfm/LastFM.txt.gz", "sequence", _SEQUENCES),
    "ml-1m": ("ml-1m/ml-1m_sequences.txt.gz", "sequence", _SEQUENCES),
    "scientific": ("amazon-scientific/Scientific.txt.gz", "sequence", _SEQUENCES),
    "online-retail": ("online-retail/online_retail.csv.gz", "online-retail",
                      DataConfig(event_types=("purchase",), dedupe_consecutive=True, protocol="leave_one_out")),
}
#: Item content a Transformer may fuse with its IDs (catalog file, or None for the
#: catalog the events file itself carries; ingest format; token fields; whether to embed
#: the product text with all-MiniLM-L6-v2): the S3-Rec attributes (Beauty: brand and
#: category ids; LastFM: artist tags), ingested as tags; Scientific: UniSRec's product
#: text (title, categories, brand); MovieLens-1M: MeLU's title, genres, director, actors
#: and plot; Online Retail: the invoice lines' product descriptions and price bands.
CATALOGS = {
    "beauty": ("amazon-beauty/Beauty_item2attributes.json.gz", "item2attributes", ("tags",), False),
    "lastfm": ("lastfm/LastFM_item2attributes.json.gz", "item2attributes", ("tags",), False),
    "scientific": ("amazon-scientific/items.tsv.gz", "items-tsv", (), True),
    "ml-1m": ("ml-1m/movies_extrainfos.dat.gz", "movielens-plots", ("brand", "categories", "tags"), True),
    "online-retail": (None, "online-retail", (), True),
}

#: Best published full-ranking leave-one-out results we know (HR@10, NDCG@10).
PUBLISHED = {
    "beauty": [("BSARec (AAAI 2024)", 0.1008, 0.0611), ("SASRec, as first published", 0.0605, 0.0318)],
    "lastfm": [("BSARec (AAAI 2024)", 0.0807, 0.0435)],
    "ml-1m": [("LRURec", 0.3264, 0.1930), ("SASRec + full CE (Klenitskiy & Vasilev 2023)", 0.3152, 0.1821)],
    "scientific": [],  # the target here is fused text over IDs alone, measured in the same run
    "online-retail": [],
}

BASELINE_GRIDS: dict[str, list[dict[str, str]]] = {
    "popular": [{}],
    "itemknn": [{"neighbors": str(n), "shrink": str(s)} for n in (100, 500) for s in (0, 50)],
    "ease": [{"l2": str(v)} for v in (50, 200, 500, 2000)],
}

#: Transformer candidates per dataset and benchmark entry. With one candidate it is the
#: setting chosen in earlier validation-only runs (recorded in results/tuning/); with
#: several, this script fits each on the training split, scores validation only, and
#: keeps the best. ``sasrec_content`` is SASRec with the dataset's item content (CATALOGS)
#: fused into its item embeddings; ``sasrec`` reads item IDs only.
_SMALL_BATCHES = {"arch.dropout": "0.5", "arch.attn_dropout": "0.5", "train.patience": "10"}
_SCIENTIFIC = {"arch.d_model": "128", "arch.dropout": "0.5", "train.batch_size": "256", "train.epochs": "30",
               "train.eval_every": "2", "train.patience": "4"}
TRANSFORMER_GRID: dict[str, dict[str, list[dict[str, str]]]] = {
    # results/tuning/beauty.md: batches of 32 users' windows (~285 targets a step), a
    # 10-epoch cosine and weight decay 0.1 on every matrix, item tables too; d256. The same
    # settings with and without the attributes, and an ensemble of two such networks.
    "beauty": {
        name: [{"arch.d_model": "256", "train.batch_size": "32", "train.epochs": "10", **_SMALL_BATCHES,
                "train.weight_decay": "0.1", "train.decay_embeddings": "true", **extra}]
        for name, extra in (("sasrec", {}), ("sasrec_content", {}), ("sasrec_content_x2", {"members": "2"}))
    },
    # results/tuning/lastfm.md: batches of 16 windows; the best size for each entry.
    "lastfm": {
        "sasrec": [{"arch.d_model": "128", "arch.max_len": "200", "train.batch_size": "16", "train.epochs": "100",
                    **_SMALL_BATCHES, "train.patience": "15"}],
        "sasrec_content": [{"arch.d_model": "256", "arch.max_len": "200", "train.batch_size": "16",
                            "train.epochs": "100", **_SMALL_BATCHES, "train.patience": "15"}],
    },
    # results/tuning/ml-1m.md: the SASRec+CE paper's sizes but d_model 128 (validation
    # 0.1988 in a 30-min one-thread run against 0.1941 for d256 and the 45-min d64 final
    # run's 0.1962), batches of 32 windows, every window of long histories each epoch;
    # 200 epochs whose cosine decay follows the 45-min clock.
    # sasrec_content: the same setting with MeLU's movie text and tokens (not tuned).
    "ml-1m": {
        name: [{"arch.max_len": "200", "arch.d_model": "128", "arch.dropout": "0.2", "train.batch_size": "32",
                "train.crop": "all", "train.eval_every": "2", "train.patience": "10"}]
        for name in ("sasrec", "sasrec_content")
    },
    # The setting new_visitors.py chose on Online Retail's validation visitors (d64, the
    # small-batch recipe, 30 epochs); 100 positions (p90 history 202, median 41).
    "online-retail": {
        name: [{"arch.d_model": "64", "arch.max_len": "100", "train.batch_size": "32", "train.epochs": "30",
                **_SMALL_BATCHES, "train.patience": "5"}]
        for name in ("sasrec", "sasrec_content")
    },
    # Not tuned here: cold_start.py's setting (chosen on Beauty's tuning records) for IDs
    # alone, IDs + text, and IDs + text with the text channel (arch.text_channel).
    "scientific": {
        "sasrec": [_SCIENTIFIC],
        "sasrec_content": [_SCIENTIFIC],
        "sasrec_content_text": [{**_SCIENTIFIC, "arch.text_channel": "true"}],
    },
}
#: Benchmark entries that are a model plus the dataset's item content.
CONTENT_MODELS = {"sasrec_content": "sasrec", "sasrec_content_x2": "sasrec", "sasrec_content_text": "sasrec"}
#: Each final Transformer run trains at most this long (the issue's cap).
TIME_LIMIT_S = 45 * 60


def load(dataset: str, data_root: Path, work: Path):
    file, fmt, config = DATASETS[dataset]
    folder = work / dataset
    if not (folder / "events.parquet").exists():
        ingest(data_root / file, fmt=fmt, data_dir=folder)
    return prepare(load_events(folder), config)


def load_content(dataset: str, data_root: Path, work: Path, items) -> ItemContent:
    """The dataset's item content (CATALOGS), rows aligned with the vocabulary ``items``."""
    if dataset not in CATALOGS:
        raise ValueError(f"{dataset} has no item content here; datasets with content: {', '.join(CATALOGS)}")
    file, fmt, fields, text = CATALOGS[dataset]
    folder = work / (dataset if file is None else f"{dataset}-catalog")
    if not (folder / "products.parquet").exists():
        ingest(data_root / (file or DATASETS[dataset][0]), fmt=fmt, data_dir=folder)
    products = load_products(folder)
    if not text:
        return build_content(products, items, ContentConfig(fields=fields))
    from shopformer.features.text import TextEncoder, TextEncoderConfig, product_text

    encoder = TextEncoderConfig(cache_dir=work / "text-cache")
    vectors = TextEncoder(encoder).encode(product_text(products))
    return build_content(products, items, ContentConfig(fields=fields, text_model=encoder.model), vectors)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(name: str, params: dict[str, str], content: ItemContent | None):
    """The model of benchmark entry ``name``; CONTENT_MODELS entries get ``content``."""
    model = make_model(CONTENT_MODELS.get(name, name), params)
    if name in CONTENT_MODELS:
        model.content = content
    return model


def run_model(name: str, params: dict[str, str], data, split, dataset: str, content: ItemContent | None = None,
              runs: Path | None = None, tag: str = "") -> dict:
    model = build(name, params, content)
    fit_s = fit(model, data, split)
    if runs is not None and getattr(model, "history", None) is not None:
        # A run folder the serving and explanation benchmarks can load (trained on the
        # training split: it can be evaluated, and it is what the numbers below describe).
        save_run(runs / f"{dataset}-{name}{tag}", model, data.items, data.users, DATASETS[dataset][2],
                 {"dataset": describe(data), "fit_on": "train", "fit_seconds": round(fit_s, 1),
                  "data_dir": str((runs.parent / dataset).resolve())})
    ctx = {"dataset": dataset, "fit_seconds": round(fit_s, 1), "seed": 42, "settings": params}
    cfg = EvalConfig(cutoffs=(5, 10, 20))
    valid = evaluate_model(model, data, split, "valid", cfg, ctx, progress=False)
    test = evaluate_model(model, data, split, "test", cfg, ctx, progress=False)
    rec = {
        "dataset": dataset,
        "model": name + tag,
        "settings": params,
        "threads": torch.get_num_threads(),
        "content": ([*content.config.fields] + ([f"text: {content.config.text_model}"] if content.vector_dim else [])
                    if name in CONTENT_MODELS else None),
        "model_config": asdict(model.config),
        "valid": valid["metrics"],
        "test": test["metrics"],
        "fit_seconds": round(fit_s, 1),
        "users": test["users_evaluated"],
        "peak_rss_mb": round(peak_rss_mb()),
    }
    cal = getattr(model, "calibration", None)
    if cal is not None:  # scoring weights chosen on validation (models/calibration.py)
        rec["calibration"] = asdict(cal)
    history = getattr(model, "history", None)
    if history is not None and history.records:
        rec["training"] = {
            "best_epoch": history.best_epoch,
            "epochs_run": len(history.records),
            "stopped": history.stopped,
            "curve": [(r.epoch, r.wall_seconds, round(r.loss, 4), r.valid) for r in history.records],
        }
        png = RESULTS / f"accuracy_{dataset}_{name}{tag}_training.png"
        plot_history(history, png, f"{name}{tag} on {dataset}")
        rec["training"]["plot"] = png.name
    return rec


def tune(name: str, grid: list[dict[str, str]], data, split, content: ItemContent | None = None) -> tuple[dict[str, str], list]:
    """Fit every candidate on the training split; keep the best validation NDCG@10."""
    if len(grid) == 1:
        return grid[0], []
    scores = []
    for params in grid:
        model = build(name, params, content)
        fit(model, data, split)
        rec = evaluate_model(model, data, split, "valid", EvalConfig(cutoffs=(10,)), {}, progress=False)
        scores.append({"settings": params, "valid_NDCG@10": rec["metrics"]["NDCG@10"]})
        print(f"  {name} {params}: valid NDCG@10 {scores[-1]['valid_NDCG@10']:.4f}", flush=True)
    best = max(scores, key=lambda s: s["valid_NDCG@10"])["settings"]
    return best, scores


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# Accuracy: leave-one-out, full ranking, history items excluded", "",
        f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs. Updated {meta['date']}.",
        "Settings chosen on validation; test scored once per final run.", "",
        "| dataset | model | test HR@10 | test NDCG@10 | valid NDCG@10 | fit (s) | epochs | peak RSS (MB) | settings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ds in DATASETS:
        rows = [r for r in results if r["dataset"] == ds]
        for r in rows:
            epochs = r.get("training", {}).get("epochs_run", "")
            lines.append(
                f"| {ds} | {r['model']} | {r['test']['HR@10']:.4f} | {r['test']['NDCG@10']:.4f} | "
                f"{r['valid']['NDCG@10']:.4f} | {r['fit_seconds']} | {epochs} | {r['peak_rss_mb']} | "
                f"`{json.dumps(r['settings'])}` |"
            )
        for name, hr, ndcg in PUBLISHED[ds] if rows else []:
            lines.append(f"| {ds} | *published: {name}* | {hr:.4f} | {ndcg:.4f} | | | | | |")
    pairs = content_pairs(results)
    if pairs:
        lines += ["", "## Item content against IDs alone (each content entry beside its ID-only twin)", "",
                  "| dataset | IDs only | with content | content | test NDCG@10 IDs | with content | change |",
                  "|---|---|---|---|---|---|---|"]
        for ids, fused in pairs:
            a, b = ids["test"]["NDCG@10"], fused["test"]["NDCG@10"]
            lines.append(f"| {ids['dataset']} | {ids['model']} | {fused['model']} | {', '.join(fused['content'])} | "
                         f"{a:.4f} | {b:.4f} | {b / a - 1:+.1%} |")
    return "\n".join(lines) + "\n"


def content_pairs(results: list[dict]) -> list[tuple[dict, dict]]:
    """(IDs-only record, content record) for every content entry whose ID-only twin ran:
    ``sasrec_content_text<tag>`` pairs with ``sasrec<tag>`` (a ``_calibrated`` record of
    calibrate_run.py with the twin of the run it came from)."""
    by = {(r["dataset"], r["model"]): r for r in results}
    pairs = []
    for (ds, name), r in by.items():
        entry = max((e for e in CONTENT_MODELS if name.startswith(e)), key=len, default=None)
        tag = name[len(entry):].removesuffix("_calibrated") if entry else ""
        twin = by.get((ds, CONTENT_MODELS[entry] + tag)) if entry and r.get("content") else None
        if twin is not None:
            pairs.append((twin, r))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=list(DATASETS), required=True)
    ap.add_argument("--models", default="popular,itemknn,ease,sasrec")
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-accuracy"))
    ap.add_argument("--no-save-runs", action="store_true",
                    help="do not keep the Transformers as run folders under WORK/runs")
    ap.add_argument("--minutes", type=float, default=TIME_LIMIT_S / 60, help="training cap of each Transformer run")
    ap.add_argument("--tag", default="", help="suffix of the entry names (paired runs under other conditions, "
                    "e.g. two runs side by side with OMP_NUM_THREADS=1 each)")
    args = ap.parse_args()
    if not (args.data_root / DATASETS[args.dataset][0]).exists():
        sys.exit(f"{args.data_root / DATASETS[args.dataset][0]} not found: needs ../shared/data")
    RESULTS.mkdir(exist_ok=True)
    data, split = load(args.dataset, args.data_root, args.work)
    print(f"{args.dataset}: {describe(data)}", flush=True)
    names = args.models.split(",")
    grids = TRANSFORMER_GRID[args.dataset]
    unknown = [n for n in names if n not in BASELINE_GRIDS and n not in grids]
    if unknown:
        sys.exit(f"no settings for {', '.join(unknown)} on {args.dataset}: choose from "
                 f"{', '.join([*BASELINE_GRIDS, *grids])}")
    content = None
    if any(n in CONTENT_MODELS for n in names):
        content = load_content(args.dataset, args.data_root, args.work, data.items)
    records = []
    for name in names:
        if name in BASELINE_GRIDS:
            params, grid = tune(name, BASELINE_GRIDS[name], data, split)
        else:
            cap = {"train.time_limit_s": str(round(args.minutes * 60))}
            params, grid = tune(name, [{**p, **cap} for p in grids[name]], data, split, content)
        runs = None if args.no_save_runs else args.work / "runs"
        rec = run_model(name, params, data, split, args.dataset, content, runs, args.tag)
        rec["validation_grid"] = grid
        records.append(rec)
        print(f"{name}: test HR@10 {rec['test']['HR@10']:.4f} NDCG@10 {rec['test']['NDCG@10']:.4f} "
              f"(fit {rec['fit_seconds']} s)", flush=True)
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
    results = save(RESULTS, "accuracy", meta, records, markdown)
    print(markdown(results, meta))


if __name__ == "__main__":
    main()
