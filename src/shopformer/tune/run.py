"""``shopformer train --auto``: search within the budget, save the winner as a normal run
folder (it reloads, evaluates and serves like any other) with its search history. When
the data folder has a catalog with attributes (brand, categories, tags, price: what
``train --content brand,categories,tags`` fuses), fusing them is searched too."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shopformer.artifact import Run, load_run, save_run
from shopformer.dataset import DataConfig, describe, load_events, load_products, prepare
from shopformer.features.content import ContentConfig, ItemContent
from shopformer.features.vocab import Vocabulary
from shopformer.train.loop import progress_into

from . import report
from .search import AutoConfig, AutoSearch, TrialRecord


def train_auto(data_dir: Path, data_config: DataConfig, out: Path, config: AutoConfig,
               console: Console | None = None) -> Run:
    console = console or Console()
    data, split = prepare(load_events(data_dir), data_config)
    budget = config.minutes * 60.0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        overall = bar.add_task("search", total=budget, status="baselines first")
        trial_task = bar.add_task("trial", total=1, status="")
        best = [float("-inf")]

        def on_trial(t: TrialRecord) -> None:
            if t.valid_ndcg is not None and t.valid_ndcg > best[0]:
                best[0] = t.valid_ndcg
            bar.update(overall, completed=min(budget, t.started_s + t.seconds),
                       status=f"{len(search.trials)} trials, best valid NDCG@10 {best[0]:.4f}")
            score = "-" if t.valid_ndcg is None else f"{t.valid_ndcg:.4f}"
            bar.console.print(f"trial {t.number}: {t.model} {t.state}, valid NDCG@10 {score}, {t.seconds:.0f} s"
                              + (f" ({t.note})" if t.note else ""))

        search = AutoSearch(config)
        with progress_into(bar, trial_task):  # each Transformer trial draws its epochs on the trial bar
            result = search.run(split, data.n_items, on_trial, catalog_attributes(data_dir, data.items)
                                if config.content else None)
        bar.update(overall, completed=budget)
    info = {"data_dir": str(Path(data_dir).resolve()), "dataset": describe(data), "fit_on": "train",
            "fit_seconds": result.seconds, "model_config": asdict(result.model.config),
            "auto": {**report.summary(result), "config": asdict(config)}}
    save_run(out, result.model, data.items, data.users, data_config, info)
    report.write(result, out)
    return load_run(out)


def catalog_attributes(data_dir: Path, items: Vocabulary) -> ItemContent | None:
    """The catalog's attribute tokens as ``train --content brand,categories,tags`` fuses
    them (``experiment.catalog_content``), or None without a catalog or when no value
    is shared by two products (nothing a model could generalise from)."""
    from shopformer.experiment import catalog_content

    products = load_products(data_dir)
    if products.height == 0:
        return None
    content = catalog_content(data_dir, items, ContentConfig(), text=False, products=products)
    return content if content.n_tokens > 1 else None
