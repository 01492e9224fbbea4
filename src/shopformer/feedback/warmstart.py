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
  content, so that each new item starts exactly where its content places it; with
  ``WarmStartConfig.new_rows="neighbours"`` an ID-only model's new rows start at the mean
  of the kept items bought right before or after them instead.
- ``WarmStartConfig.shrink`` / ``perturb`` ("shrink and perturb", Ash & Adams 2020): every
  weight may start at ``shrink`` x the copied one + ``perturb`` x a fresh network's, a
  remedy for a warm start settling below what training from scratch reaches.
- Then the network is fine-tuned on the new data with the current run's settings (fewer
  epochs, early stopping on validation as usual; a fresh optimizer, its warm-up and its
  decay over the warm plan; ``WarmStartConfig`` may change the peak learning rate, the
  warm-up and the patience), and calibrated again where the model calibrates.

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
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from shopformer.artifact import Run, load_run, save_run
from shopformer.dataset import describe, load_events, prepare
from shopformer.experiment import attach_content
from shopformer.features.content import ContentConfig
from shopformer.features.sequences import SequenceData, Sequences
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


@dataclass(frozen=True)
class WarmStartConfig:
    """How a warm-started run starts and is fine-tuned (the recipe was chosen on
    validation: benchmarks/retrain_warm.py).

    new_rows: the ID rows of items the current run lacks (ID-only models; a model that
        fuses content starts them at 0): "random", a new network's initialisation;
        "neighbours", the mean of the current rows of the kept items bought right before
        or after the new item in the new training sequences (random when none is).
    shrink / perturb: every parameter starts at ``shrink`` x its warm value + ``perturb``
        x a freshly initialised network's ("shrink and perturb"); 1 and 0 copy exactly.
    lr_scale: the warm run's peak learning rate as a multiple of the current run's.
    warmup_steps / patience: the warm run's warm-up steps and early-stopping patience
        (None: the current run's).
    replay: the share of the customers with no event since the current run's data that
        the warm run still trains on (a seeded sample; every customer with a new event is
        trained on): below 1 an epoch costs less and is mostly what is new, the rest
        replayed against forgetting. Validation reads every customer either way."""

    new_rows: Literal["random", "neighbours"] = "random"
    shrink: float = 1.0
    perturb: float = 0.0
    lr_scale: float = 1.0
    warmup_steps: int | None = None
    patience: int | None = None
    replay: float = 1.0

    def __post_init__(self) -> None:
        if self.new_rows not in ("random", "neighbours"):
            raise ValueError(f"new_rows {self.new_rows!r}: use random or neighbours")
        if self.shrink <= 0 or self.perturb < 0 or self.lr_scale <= 0:
            raise ValueError("shrink and lr_scale must be positive, perturb at least 0")
        if not 0.0 <= self.replay <= 1.0:
            raise ValueError(f"replay {self.replay}: a share between 0 and 1")


def focus_rows(everything: Sequences, since: float, replay: float, seed: int) -> np.ndarray:
    """Rows (customers) of ``everything`` (their whole sequences, timestamps in epoch
    seconds) to train a warm run on: each with an event at or after ``since``, and a
    seeded ``replay`` share of the others, in row order."""
    if everything.timestamps is None:
        raise ValueError("replay < 1 needs event timestamps to tell which customers have new events")
    user = np.repeat(np.arange(len(everything)), everything.lengths)
    fresh = np.zeros(len(everything), dtype=bool)
    fresh[user[everything.timestamps >= since]] = True
    old = np.flatnonzero(~fresh)
    rng = np.random.default_rng(seed)
    kept = rng.choice(old, size=round(replay * len(old)), replace=False) if len(old) else old
    return np.sort(np.concatenate([np.flatnonzero(fresh), kept]))


def neighbour_rows(train: Sequences, n_old: int, n_items: int, rows: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """(the mean of ``rows`` (the current run's item rows, indexes 0..n_old) over the kept
    items bought right before or after each new item n_old+1..n_items in ``train``, shape
    (n_items - n_old, D); whether a new item has such a neighbour). A basket's neighbours
    are what customers buy beside it, so its row starts near theirs."""
    items, lengths = train.items, train.lengths
    last = np.zeros(len(items), dtype=bool)
    last[train.offsets[1:][lengths > 0] - 1] = True
    follows = ~last[:-1]  # items[i + 1] is the same customer's next purchase
    a, b = items[:-1][follows], items[1:][follows]
    pairs = np.concatenate([np.stack([a, b], 1), np.stack([b, a], 1)])  # (new item, neighbour) both ways
    pairs = pairs[(pairs[:, 0] > n_old) & (pairs[:, 1] >= 1) & (pairs[:, 1] <= n_old)]
    n_new = n_items - n_old
    sums = torch.zeros(n_new, rows.shape[1], dtype=rows.dtype)
    sums.index_add_(0, torch.from_numpy(pairs[:, 0] - n_old - 1), rows[torch.from_numpy(pairs[:, 1])])
    counts = np.bincount(pairs[:, 0] - n_old - 1, minlength=n_new)
    found = counts > 0
    return sums / torch.from_numpy(np.maximum(counts, 1)).to(rows.dtype)[:, None], found


@dataclass
class WarmStart:
    """Copies ``source``'s parameters into a freshly built network over a grown catalog
    (see the module docstring); called by ``SASRecRecommender.fit`` before training."""

    source: SASRec
    n_old: int  # items 1..n_old keep their index
    #: new content token id -> the current one of the same name (-1: a token the catalog added)
    token_map: np.ndarray | None = None
    recipe: WarmStartConfig = WarmStartConfig()
    #: ("neighbours") start rows of the new items n_old+1.. and which of them to use
    new_item_rows: tuple[torch.Tensor, np.ndarray] | None = None

    def __call__(self, module: SASRec) -> None:
        old = self.source.state_dict()
        shrink, perturb = self.recipe.shrink, self.recipe.perturb
        with torch.no_grad():
            for name, param in module.named_parameters():
                src = old.get(name)
                if src is None:  # a part the current network lacks: it starts fresh
                    continue
                fresh = param.detach().clone()  # the new network's own initialisation
                if name == "item_emb.weight":
                    n = self.n_old
                    if n + 2 > len(param):
                        raise ValueError(f"the new catalog has {len(param) - 2} items, fewer than the current {n}")
                    param[: n + 1] = src[: n + 1]  # padding and the kept items
                    param[-1] = src[-1]  # [MASK] moves to the end
                    if module.content is not None:  # new items start at their content's place
                        param[n + 1 : -1] = 0
                    elif self.new_item_rows is not None:
                        start, found = self.new_item_rows
                        new = param[n + 1 : -1]
                        new[torch.from_numpy(found)] = start[torch.from_numpy(found)].to(param.dtype)
                elif name == "content.token_emb.weight" and self.token_map is not None:
                    kept = self.token_map >= 0
                    param[torch.from_numpy(kept)] = src[torch.from_numpy(self.token_map[kept])]
                elif src.shape == param.shape:
                    param.copy_(src)
                else:
                    raise ValueError(f"cannot warm-start {name}: the current network's is {tuple(src.shape)}, "
                                     f"the new one's {tuple(param.shape)}")
                if shrink != 1.0 or perturb:
                    param.mul_(shrink).add_(fresh, alpha=perturb)


#: the settings a warm start's recipe changes, carried from run to run in ``run.json``
LINEAGE_TRAIN = ("lr", "warmup_steps", "patience")


def lineage_train(current: Run) -> dict:
    """The first run of ``current``'s chain of retrains: its lr, warm-up and patience."""
    carried = (current.info.get("retrain") or {}).get("lineage_train")
    train = getattr(getattr(current.model, "config", None), "train", None)
    if carried:
        return dict(carried)
    return {} if train is None else {k: getattr(train, k) for k in LINEAGE_TRAIN}


def same_model(current: Run, epochs: int | None = None, recipe: WarmStartConfig | None = None) -> Recommender:
    """An untrained model of ``current``'s class and settings (``epochs`` overriding the
    planned epochs; ``recipe``, for a warm start, the learning rate, warm-up and
    patience). Scores chosen on validation after training (a fused model's calibration)
    are reset: they are chosen again for the new weights."""
    model = current.model
    config = model.config
    if isinstance(model, SASRecRecommender):
        arch = replace(config.arch, id_output_scale=1.0, new_item_bias=0.0)
        # a warm run's own lr, warm-up and patience are its recipe's: a chain of retrains
        # starts from the first run's (else the learning rate would scale again each round)
        train = replace(config.train, **lineage_train(current))
        train = train if epochs is None else replace(train, epochs=epochs)
        if recipe is not None:
            train = replace(train, lr=train.lr * recipe.lr_scale,
                            warmup_steps=train.warmup_steps if recipe.warmup_steps is None else recipe.warmup_steps,
                            patience=train.patience if recipe.patience is None else recipe.patience)
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
               epochs: int | None = None, info: dict | None = None,
               recipe: WarmStartConfig = WarmStartConfig(), since: datetime | None = None) -> Trained:
    """Fit a model like ``current`` on the events of ``data_dir`` (its DataConfig, content
    settings and fit_on), warm-started from it with ``recipe`` when ``warm``; save it to
    ``out`` (with ``info`` in run.json) when given. ``since``: where the current run's
    data ended (for ``recipe.replay``; default: ``retrain.trained_until(current)``)."""
    if warm and (why := can_warm_start(current)) is not None:
        raise ValueError(f"cannot warm-start from {current.folder}: {why}")
    events = load_events(data_dir)
    model = same_model(current, epochs, recipe if warm else None)
    data, split = prepare(events, current.data_config)
    n_old = 0
    if warm:
        items = extended_items(current.items, data)
        data, split = prepare(events, current.data_config, items)
        n_old = len(current.items)
    fit_on = current.info.get("fit_on", "train")
    train = split.train if fit_on == "train" else data.sequences  # what the new run fits on
    content = _content_settings(current)
    if content is not None:
        attach_content(model, data_dir, data.items, content[0], content[1])
    if warm:
        token_map = None
        if content is not None:
            old = {name: i for i, name in enumerate(current.model.content.token_names)}
            token_map = np.array([old.get(name, -1) for name in model.content.token_names], dtype=np.int64)
        new_item_rows = None
        if recipe.new_rows == "neighbours" and content is None:
            new_item_rows = neighbour_rows(train, n_old, len(data.items),
                                           current.model.module.item_emb.weight.detach()[: n_old + 1])
        model.warm_start = WarmStart(current.model.module, n_old, token_map, recipe, new_item_rows)
    if warm and recipe.replay < 1.0:  # every customer with new events, a share of the others
        if since is None:
            from shopformer.feedback.retrain import trained_until  # retrain imports this module

            since = trained_until(current)
        train = train.rows(focus_rows(data.sequences, since.timestamp(), recipe.replay, model.config.train.seed))
    t0 = time.perf_counter()
    if fit_on == "train":
        model.fit(train, data.n_items, valid=split.valid)
    else:  # fitted on all data: no validation to stop on, the planned epochs run
        model.fit(train, data.n_items, valid=None)
    seconds = time.perf_counter() - t0
    if warm:
        model.warm_start = None  # the current network is not part of the new model
    trained = Trained(model, data, split, seconds, warm, n_old, len(data.items) - n_old)
    if out is not None:
        meta = {"data_dir": str(Path(data_dir).resolve()), "dataset": describe(data), "fit_on": fit_on,
                "fit_seconds": round(seconds, 3), "model_config": asdict(model.config), **(info or {})}
        if "retrain" in meta:
            meta["retrain"] = {**meta["retrain"], "lineage_train": lineage_train(current)}
        if warm:
            meta["fixed_items"] = True  # items.json is not in order of first appearance (experiment.reload_data)
        save_run(out, model, data.items, data.users, current.data_config, meta)
        trained.run = load_run(out)
    return trained
