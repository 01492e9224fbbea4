"""The results files the benchmarks keep: one JSON record per key (dataset, model ...),
replaced when that benchmark is run again, the others kept."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def by_dataset_and_model(record: dict) -> tuple:
    return record["dataset"], record["model"]


def merged(path: Path, records: list[dict], key: Callable[[dict], tuple] = by_dataset_and_model) -> list[dict]:
    """The records already in ``path`` (``{"results": [...]}``) whose key none of
    ``records`` has, then ``records``."""
    old = json.loads(Path(path).read_text())["results"] if Path(path).exists() else []
    new = {key(r) for r in records}
    return [r for r in old if key(r) not in new] + records


def save(results_dir: Path, stem: str, meta: dict, records: list[dict],
         markdown: Callable[[list[dict], dict], str], key: Callable[[dict], tuple] = by_dataset_and_model) -> list[dict]:
    """Merge ``records`` into ``<stem>.json`` (with ``meta``) and rewrite ``<stem>.md``
    from every record; returns them all."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{stem}.json"
    results = merged(path, records, key)
    path.write_text(json.dumps({**meta, "results": results}, indent=2))
    (results_dir / f"{stem}.md").write_text(markdown(results, meta))
    return results
