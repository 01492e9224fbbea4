"""Train a new run of the same model and settings as a current one, warm-started from it.

Warm start (the Transformers, ``sasrec`` and ``bert4rec``):

- Items keep their indexes: the new item vocabulary is the current one, in its order,
  followed by the items the new data adds (in order of first appearance). Items of the
  current run that the new data no longer has keep their rows (their products may come
  back; a row costs nothing).
- Every parameter is copied from the current network: the kept items' ID embeddings
  (rows 1..n_old), padding and [MASK], positions, event types, time gaps, the blocks, the
  final norm, the content encoder (its token embeddings mapped by token name: tokens the
  new catalog adds start fresh) and the text weight. New items' ID rows start fresh
  (random, as in a new network) for an ID-only model, and at zero for a model that fuses
  content, so that each new item starts exactly where its content places it.
- Then the network is fine-tuned on the new data with the current run's settings (fewer
  epochs, early stopping on validation as usual), and calibrated again where the model
  calibrates.

Users keep no indexes: no model here has per-user parameters (a user is the encoder's
reading of their history), and the user vocabulary is rebuilt from the new data, so a
customer erased from the store leaves the new run's ``users.json`` (which completes their
erasure receipt once it is published).

``warm=False`` trains the same model and settings from scratch on the same data, for
comparison; the other models (baselines, content kNN) are always refitted from scratch,
as they have no iterative training to continue.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from shopformer.artifact import Run, load_run, save_run
from shopformer.dataset import describe, load_events, prepare
from shopformer.experiment import attach_content
from shopformer.features.content import ContentConfig
from shopformer.features.sequences import SequenceData
from shopformer.features.splits import Split
from shopformer.features.vocab import Vocabulary
from shopformer.models.base import Recommender
from shopformer.models.sasrec import SASRec
from shopformer.models.sequential import SASRecRecommender


def can_warm_start(run: Run) -> str | None:
    """None when ``run`` can be warm-started, else why not."""
    model = run.model
    if not isinstance(model, SASRecRecommender):
        return f"{model.name} has no iterative training to continue (warm start is for sasrec and bert4rec)"
    if model.config.members > 1:
        return "an ensemble (members > 1) is refitted member by member; use --from-scratch"
    if model.config.dp.enabled:
        return "a DP-SGD run's privacy guarantee covers one training: continuing it would spend the budget again"
    return None


def extended_items(current: Vocabulary, data: SequenceData) -> Vocabulary:
    """``current``'s ids at their indexes, then the ids of ``data`` it lacks, in ``data``'s order."""
    return Vocabulary([*current.ids, *(i for i in data.items.ids if i not in current)])


@dataclass
class WarmStart:
    """Copies ``source``'s parameters into a freshly built network over a grown catalog
    (see the module docstring); called by ``SASRecRecommender.fit`` before training."""

    source: SASRec
    n_old: int  # items 1..n_old keep their index
    #: new content token id -> the current one of the same name (-1: a token the catalog added)
    token_map: np.ndarray | None = None

    def __call__(self, module: SASRec) -> None:
        old = self.source.state_dict()
        with torch.no_grad():
            for name, param in module.named_parameters():
                src = old.get(name)
                if src is None:  # a part the current network lacks: it starts fresh
                    continue
                if name == "item_emb.weight":
                    n = self.n_old
                    if n + 2 > len(param):
                        raise ValueError(f"the new catalog has {len(param) - 2} items, fewer than the current {n}")
                    param[: n + 1] = src[: n + 1]  # padding and the kept items
                    param[-1] = src[-1]  # [MASK] moves to the end
                    if module.content is not None:  # new items start at their content's place
                        param[n + 1 : -1] = 0
                elif name == "content.token_emb.weight" and self.token_map is not None:
                    kept = self.token_map >= 0
                    param[torch.from_numpy(kept)] = src[torch.from_numpy(self.token_map[kept])]
                elif src.shape == param.shape:
                    param.copy_(src)
                else:
                    raise ValueError(f"cannot warm-start {name}: the current network's is {tuple(src.shape)}, "
                                     f"the new one's {tuple(param.shape)}")


def same_model(current: Run, epochs: int | None = None) -> Recommender:
    """An untrained model of ``current``'s class and settings (``epochs`` overriding the
    planned epochs). Scores chosen on validation after training (a fused model's
    calibration) are reset: they are chosen again for the new weights."""
    model = current.model
    config = model.config
    if isinstance(model, SASRecRecommender):
        arch = replace(config.arch, id_output_scale=1.0, new_item_bias=0.0)
        train = config.train if epochs is None else replace(config.train, epochs=epochs)
        # the retraining machine decides where to train (a run trained on a GPU retrains on a CPU host)
        train = replace(train, device="auto") if hasattr(train, "device") else train
        config = replace(config, arch=arch, train=train)
    return type(model)(config)


def _content_settings(current: Run) -> tuple[ContentConfig, bool] | None:
    """The content settings ``current`` was trained with: (token settings, whether product
    text was embedded); None for a model without content."""
    content = getattr(current.model, "content", None)
    if content is None:
        return None
    if content.config.image_dim:
        raise ValueError(f"{current.folder} fuses precomputed vectors (image features) that retraining cannot "
                         "rebuild from the store; retrain it with `shopformer train --vectors`")
    return replace(content.config, text_model="", image_dim=0), bool(content.config.text_model)


@dataclass
class Trained:
    model: Recommender
    data: SequenceData
    split: Split
    seconds: float  # fit wall time
    warm: bool
    items_kept: int  # items at the current run's indexes (warm start)
    items_added: int
    run: Run | None = None  # the saved folder, reloaded (when ``out`` was given)


def train_like(current: Run, data_dir: Path, out: Path | None = None, warm: bool = True,
               epochs: int | None = None, info: dict | None = None) -> Trained:
    """Fit a model like ``current`` on the events of ``data_dir`` (its DataConfig, content
    settings and fit_on), warm-started from it when ``warm``; save it to ``out`` (with
    ``info`` in run.json) when given."""
    if warm and (why := can_warm_start(current)) is not None:
        raise ValueError(f"cannot warm-start from {current.folder}: {why}")
    events = load_events(data_dir)
    model = same_model(current, epochs)
    data, split = prepare(events, current.data_config)
    n_old = 0
    if warm:
        items = extended_items(current.items, data)
        data, split = prepare(events, current.data_config, items)
        n_old = len(current.items)
    content = _content_settings(current)
    if content is not None:
        attach_content(model, data_dir, data.items, content[0], content[1])
    if warm:
        token_map = None
        if content is not None:
            old = {name: i for i, name in enumerate(current.model.content.token_names)}
            token_map = np.array([old.get(name, -1) for name in model.content.token_names], dtype=np.int64)
        model.warm_start = WarmStart(current.model.module, n_old, token_map)
    fit_on = current.info.get("fit_on", "train")
    t0 = time.perf_counter()
    if fit_on == "train":
        model.fit(split.train, data.n_items, valid=split.valid)
    else:  # fitted on all data: no validation to stop on, the planned epochs run
        model.fit(data.sequences, data.n_items, valid=None)
    seconds = time.perf_counter() - t0
    if warm:
        model.warm_start = None  # the current network is not part of the new model
    trained = Trained(model, data, split, seconds, warm, n_old, len(data.items) - n_old)
    if out is not None:
        meta = {"data_dir": str(Path(data_dir).resolve()), "dataset": describe(data), "fit_on": fit_on,
                "fit_seconds": round(seconds, 3), "model_config": asdict(model.config), **(info or {})}
        if warm:
            meta["fixed_items"] = True  # items.json is not in order of first appearance (experiment.reload_data)
        save_run(out, model, data.items, data.users, current.data_config, meta)
        trained.run = load_run(out)
    return trained
