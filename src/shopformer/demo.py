"""`shopformer demo`: the main job on the embedded default.

Ingests the bundled UCI Online Retail sample, fits every available model on the
training split, picks the best by validation NDCG@10, reports all of them on the test
split, saves the best as a run and prints a few customers' top-10 with product titles.
"""

from __future__ import annotations

from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from shopformer.artifact import MODELS, make_model, save_run
from shopformer.dataset import DataConfig, describe, load_events, load_products, prepare
from shopformer.evaluate.protocol import EvalConfig
from shopformer.evaluate.report import rich_table, write_results
from shopformer.experiment import evaluate_model, fit
from shopformer.models.base import recommend

#: Purchases only, one event per product per basket run, temporal split: the last 10%
#: of the year is the test period, the 10% before it validation.
DEMO_DATA = DataConfig(
    event_types=("purchase",),
    min_user_events=3,
    min_item_events=3,
    dedupe_consecutive=True,
    protocol="temporal",
)


def sample_path() -> Path:
    return Path(str(resources.files("shopformer") / "sample_data" / "online_retail_sample.csv.gz"))


def run_demo(workdir: Path, console: Console, users_to_show: int = 3) -> dict:
    from shopformer.ingest import ingest

    data_dir = Path(workdir) / "data"
    if (data_dir / "events.parquet").exists():
        console.print(f"using the data already ingested in {data_dir}")
    else:
        console.rule("ingest")
        report = ingest(sample_path(), fmt="online-retail", data_dir=data_dir)
        console.print(report.rich_table())

    console.rule("train and validate")
    data, split = prepare(load_events(data_dir), DEMO_DATA)
    console.print(f"dataset: {describe(data)}; protocol: {split.protocol}")
    eval_cfg = EvalConfig(cutoffs=(5, 10, 20))
    models, valid, test = {}, [], []
    for name in MODELS:
        model = make_model(name)
        seconds = fit(model, data, split)
        ctx = {"dataset": "online-retail sample", "fit_seconds": round(seconds, 3), "seed": 0}
        valid.append(evaluate_model(model, data, split, "valid", eval_cfg, ctx, progress=False))
        models[name] = (model, ctx)
    console.print(rich_table(valid))
    best = max(valid, key=lambda r: r["metrics"]["NDCG@10"])["model"]
    console.print(f"best on validation NDCG@10: [bold]{best}[/]")

    console.rule("test")
    for name, (model, ctx) in models.items():
        test.append(evaluate_model(model, data, split, "test", eval_cfg, ctx, progress=False))
    console.print(rich_table(test))
    results = Path(workdir) / "results" / "demo.json"
    write_results(valid + test, results, "shopformer demo (Online Retail sample)")
    console.print(f"results: {results} and {results.with_suffix('.md')}")

    model = models[best][0]
    run_dir = Path(workdir) / "runs" / best
    save_run(
        run_dir, model, data.items, data.users, DEMO_DATA,
        {"data_dir": str(data_dir.resolve()), "dataset": describe(data), "fit_on": "train",
         "fit_seconds": models[best][1]["fit_seconds"], "model_config": asdict(model.config)},
    )
    console.print(f"saved run: {run_dir}")

    console.rule(f"top-10 next purchases ({best})")
    _show_users(model, data, load_products(data_dir), console, users_to_show)
    return {"best": best, "valid": valid, "test": test}


def _show_users(model, data, products, console: Console, n: int) -> None:
    titles = dict(zip(products["item_id"].to_list(), products["title"].to_list()))
    lengths = data.sequences.lengths
    # The customers with the most purchases make the most telling examples.
    for u in np.argsort(-lengths, kind="stable")[:n]:
        hist = data.sequences.rows(np.array([u]))
        idx, scores = recommend(model, hist, 10)
        table = Table(title=f"customer {data.users.ids[u]} ({lengths[u]} purchases)")
        table.add_column("#", justify="right")
        table.add_column("item")
        table.add_column("title")
        table.add_column("score", justify="right")
        recent = data.items.decode(hist.items[-3:])
        console.print("recent purchases: " + "; ".join(titles.get(i) or i for i in recent))
        for rank, (i, s) in enumerate(zip(data.items.decode(idx[0]), scores[0]), 1):
            table.add_row(str(rank), i, titles.get(i) or "", f"{s:.3f}")
        console.print(table)
