"""Train, evaluate and export: the steps the CLI (and benchmarks) compose.

Models are fitted on the split's training sequences only, so that any later evaluation
of a saved run is honest. ``fit_on="all"`` is for the model a shop serves; such a run
refuses offline evaluation, since its training data contains the test items.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from shopformer.artifact import Run, load_run, save_run
from shopformer.dataset import DataConfig, describe, load_products, prepare_folder
from shopformer.evaluate.protocol import EvalConfig, EvalResult, evaluate
from shopformer.evaluate.report import result_record
from shopformer.features.content import ContentConfig, ItemContent, build_content
from shopformer.features.sequences import SequenceData, Sequences
from shopformer.features.splits import EvalCases, Split
from shopformer.features.vocab import Vocabulary
from shopformer.models.base import Recommender, recommend
from shopformer.train import distributed
from shopformer.train.distributed import is_main_process

SplitName = Literal["valid", "test"]


def fit(model: Recommender, data: SequenceData, split: Split, fit_on: str = "train") -> float:
    """Fit ``model``; returns wall seconds."""
    t0 = time.perf_counter()
    if fit_on == "train":
        model.fit(split.train, data.n_items, valid=split.valid)
    else:  # the validation targets are inside the data: they cannot pick a stopping point
        model.fit(data.sequences, data.n_items, valid=None)
    return time.perf_counter() - t0


def size_defaults(model: Recommender, given: dict[str, str] | None, data: SequenceData, split: Split) -> dict | None:
    """Size ``model``'s settings from ``split``'s training part, in place, with ``given``
    (the settings the user built it with) on top (``tune/defaults.py``, sasrec only); returns
    the record of which setting came from where (run.json's and a results record's
    ``defaults``). ``given`` None: the model keeps its config as built, and None is returned."""
    if given is None:
        return None
    from shopformer.tune.defaults import size_model, to_record

    return to_record(size_model(model, given, split.train, data.n_items))


def attach_content(
    model: Recommender, data_dir: Path, items: Vocabulary, content: ContentConfig, text: bool,
    vectors_file: Path | None = None,
) -> None:
    """Give ``model`` the catalog's content (tokens from ``content.fields``; product text
    embeddings when ``text``; precomputed vectors such as image features from
    ``vectors_file``, placed after the text block), rows aligned with ``items``."""
    if not hasattr(model, "content"):
        raise ValueError(f"{model.name} does not use product content; use sasrec, bert4rec or content_knn")
    model.content = catalog_content(data_dir, items, content, text, vectors_file)


def catalog_content(
    data_dir: Path, items: Vocabulary, content: ContentConfig, text: bool, vectors_file: Path | None = None,
    products: pl.DataFrame | None = None,
) -> ItemContent:
    """The catalog's content as :func:`attach_content` gives it (``train --auto`` builds it
    once for all its trials); ``products``: the catalog when the caller has read it."""
    products = load_products(data_dir) if products is None else products
    if products.height == 0:
        raise ValueError(f"{data_dir} has no catalog (products.parquet): ingest one with --catalog")
    blocks = []
    if text:
        from shopformer.features.text import TextEncoder, TextEncoderConfig, product_text

        encoder = TextEncoder(TextEncoderConfig(cache_dir=Path(data_dir) / "cache"))
        blocks.append(encoder.encode(product_text(products)))
        content = replace(content, text_model=encoder.config.model)
    if vectors_file is not None:
        from shopformer.features.vectors import align_vectors, load_item_vectors

        ids, raw = load_item_vectors(vectors_file)
        aligned, found = align_vectors(products["item_id"].to_list(), ids, raw)
        if found == 0:
            raise ValueError(f"{vectors_file}: none of its {len(ids)} item ids is in the catalog of {data_dir}")
        blocks.append(aligned)
        content = replace(content, image_dim=aligned.shape[1])
    vectors = np.hstack(blocks).astype(np.float32) if blocks else None
    return build_content(products, items, content, vectors)


def train_run(
    model: Recommender,
    data_dir: Path,
    data_config: DataConfig,
    out: Path,
    fit_on: Literal["train", "all"] = "train",
    content: ContentConfig | None = None,
    text: bool = False,
    vectors_file: Path | None = None,
    stream: bool | None = None,
    sized: dict[str, str] | None = None,
) -> Run | None:
    """Prepare data, fit and save a run folder; with ``content`` (or ``text``, or
    ``vectors_file``) the model fuses the catalog's product content with its item IDs.
    Under torchrun only rank 0 writes the folder; the other ranks get None. ``stream``:
    prepare in bounded memory (None: when the folder is marked large; dataset.prepare_folder).
    ``sized``: the settings the user gave ``model``; the others are then sized from the
    training split (``tune/defaults.py``, sasrec only) and run.json's ``defaults`` says
    which came from where (None: the model's config as built)."""
    from shopformer.ingest.streaming import is_large_folder

    large = is_large_folder(data_dir) if stream is None else stream

    def prepare() -> tuple[SequenceData, Split]:
        prepared = prepare_folder(data_dir, data_config, stream=large)
        if content is not None or text or vectors_file is not None:
            attach_content(model, data_dir, prepared[0].items, content or ContentConfig(fields=()), text, vectors_file)
        return prepared

    # under torchrun every rank prepares from its own host's copy; the ranks check together
    device = getattr(getattr(model.config, "train", None), "device", "cpu")
    data, split = distributed.prepare_on_every_rank(device, prepare, lambda p: data_fingerprint(p[0]), large)
    # every rank sizes from the same training split: the same settings
    defaults = size_defaults(model, sized, data, split)
    seconds = fit(model, data, split, fit_on)
    info = {
        "data_dir": str(Path(data_dir).resolve()),
        "dataset": describe(data),
        "fit_on": fit_on,
        "fit_seconds": round(seconds, 3),
        "model_config": asdict(model.config),
    }
    if defaults is not None:  # the settings used and which were sized from the data
        info["defaults"] = defaults
    if large:  # reload_data prepares it the same way (and evaluates the same sampled users)
        info["bounded_memory"] = True
    privacy = getattr(model, "privacy", None)
    if privacy is not None:  # DP-SGD: the guarantee the weights have (train/dp.py)
        info["privacy"] = privacy.to_dict()
    setup = getattr(model, "training_setup", None)
    if setup is not None:  # device, processes, precision (sequence models)
        info["training"] = setup
    source = getattr(model, "transferred_from", None)
    if source is not None:  # cross-domain transfer (models/transfer.py): the run it started from
        info["transferred_from"] = source
    if not is_main_process():  # every rank holds the same weights; one writes them
        return None
    save_run(out, model, data.items, data.users, data_config, info)
    return load_run(out)


def data_fingerprint(data: SequenceData) -> str:
    """Counts and a digest of the prepared sequences and vocabularies: equal on two hosts
    only when they would build the same batches (``train/distributed.py``)."""
    h = hashlib.blake2b(digest_size=8)
    for ids in (data.users.ids, data.items.ids):
        h.update("\n".join(ids).encode("utf-8"))
        h.update(b"\0")
    for array in (data.sequences.offsets, data.sequences.items):
        h.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    d = describe(data)
    return f"{d['users']} users, {d['items']} items, {d['interactions']} events, digest {h.hexdigest()}"


def cases_for(split: Split, name: SplitName) -> EvalCases:
    if name not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', not {name!r}")
    return split.valid if name == "valid" else split.test


def evaluate_model(
    model: Recommender,
    data: SequenceData,
    split: Split,
    split_name: SplitName,
    eval_config: EvalConfig,
    context: dict,
    progress: bool = True,
) -> dict:
    """Evaluate and return a result record (see ``evaluate.report``)."""
    result: EvalResult = evaluate(
        model, cases_for(split, split_name), data.n_items, eval_config, progress=progress
    )
    return result_record(
        result,
        {
            "model": model.name,
            "model_config": asdict(model.config),
            "protocol": split.protocol,
            "split": split_name,
            "dataset_counts": describe(data),
            **context,
        },
    )


def reload_data(run: Run, data_dir: Path | None = None) -> tuple[SequenceData, Split]:
    """Rebuild the exact data and split a run was trained on, checking the vocabulary."""
    source = Path(data_dir or run.info["data_dir"])
    # a warm-started run's items keep its parent's indexes, not the order of first appearance
    data, split = prepare_folder(source, run.data_config, run.items if run.info.get("fixed_items") else None,
                                 stream=bool(run.info.get("bounded_memory")))
    if data.items != run.items or data.users != run.users:
        raise ValueError(
            f"the data in {source} no longer matches run {run.folder} (its users or items "
            "changed since training); retrain, or pass the data folder it was trained on"
        )
    return data, split


def export_recommendations(
    model: Recommender,
    data: SequenceData,
    cases: EvalCases | None,
    out: Path,
    k: int = 10,
    exclude_history: bool = True,
    batch_size: int = 1024,
) -> int:
    """Write top-``k`` per user as JSONL ({"user_id", "items", "scores"}). With ``cases``
    the histories are the split's; without, each user's full sequence (next-item recs)."""
    if cases is None:
        users = np.arange(len(data.sequences))
        history: Sequences = data.sequences
    else:
        users, history = cases.users, cases.history
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    user_ids = data.users.ids
    n = 0
    with out.open("w") as f:
        for start in range(0, len(users), batch_size):
            rows = np.arange(start, min(start + batch_size, len(users)))
            idx, scores = recommend(model, history.rows(rows), k, exclude_history)
            for r, u in enumerate(users[rows]):
                keep = np.isfinite(scores[r])
                line = {
                    "user_id": user_ids[u],
                    "items": data.items.decode(idx[r][keep]),
                    "scores": [round(float(s), 6) for s in scores[r][keep]],
                }
                f.write(json.dumps(line) + "\n")
                n += 1
    return n
