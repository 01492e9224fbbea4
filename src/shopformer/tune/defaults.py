"""Data-sized defaults for a plain ``shopformer train --model sasrec``: every model setting
the user did not give comes from the setting ``train --auto`` starts its search at
(:func:`shopformer.tune.priors.starting_setting`, sized from the training split's
statistics); what the user gave (``--set``, ``--device``, ``--pretrained``) always wins.

The fixed config defaults (d_model 64, batch 128, 200 epochs, dropout 0.2, no weight
decay) were one setting for every shop, below EASE on LastFM and Amazon Scientific
(``benchmarks/results/default_settings.md``, old against new). Settings derived from
another one follow the user's value when the user gave that one and not them: attention
dropout follows ``arch.dropout``, ``train.decay_embeddings`` follows
``train.weight_decay``, patience and evaluation interval follow ``train.epochs``.

Catalog content is fused only when asked for (``--content``, ``--text``, ``--vectors``),
as before: ``--auto`` searches fusing it. See docs/training-defaults.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from shopformer.features.sequences import Sequences

from .priors import DataStats, starting_setting
from .space import setting_params

#: models whose settings are sized from the data (the priors were found for SASRec)
SIZED_MODELS = ("sasrec",)

#: a starting-setting key -> the make_model parameter that carries it unchanged
DIRECT = {"d_model": "arch.d_model", "n_layers": "arch.n_layers", "dropout": "arch.dropout",
          "max_len": "arch.max_len", "weight_decay": "train.weight_decay", "lr": "train.lr",
          "batch_size": "train.batch_size", "epochs": "train.epochs", "crop": "train.crop"}

#: a derived parameter -> the parameter it is derived from (space.setting_params)
FOLLOWS = {"arch.attn_dropout": "arch.dropout", "train.decay_embeddings": "train.weight_decay",
           "train.patience": "train.epochs", "train.eval_every": "train.epochs"}


@dataclass(frozen=True)
class SizedSettings:
    """params: every setting the run uses that was given or sized (make_model strings).
    sources: per key of ``params``, "user" (given), "data" (sized from ``stats``) or
    "follows <key>" (derived from the user's value of that key).
    stats: the training split's statistics the sizes come from."""

    params: dict[str, str]
    sources: dict[str, str]
    stats: DataStats

    def to_dict(self) -> dict:
        return {"rule": "data-sized (shopformer.tune.defaults)", "data_stats": self.stats.to_dict(),
                "settings": {k: {"value": v, "source": self.sources[k]} for k, v in self.params.items()},
                "from_data": sorted(k for k, s in self.sources.items() if s == "data"),
                "given": sorted(k for k, s in self.sources.items() if s == "user")}


def sized_settings(given: dict[str, str], stats: DataStats, dp: bool = False) -> SizedSettings:
    """The data-sized setting for ``stats`` with ``given`` (the user's make_model
    parameters) on top. Under DP-SGD (``dp``) a sized ``crop=all`` becomes ``random``:
    there a customer must be one example."""
    choice = dict(starting_setting(stats))
    for key, param in DIRECT.items():
        if param in given:  # so that the derived settings follow the user's value
            choice[key] = given[param]
    if dp and "train.crop" not in given and choice["crop"] == "all":
        choice["crop"] = "random"
    sized = setting_params(choice)
    params = {**sized, **given}
    sources = {k: "user" if k in given else f"follows {FOLLOWS[k]}" if FOLLOWS.get(k) in given else "data"
               for k in params}
    return SizedSettings(params, sources, stats)


def size_model(model, given: dict[str, str], train: Sequences, n_items: int) -> SizedSettings | None:  # noqa: ANN001
    """Give ``model`` (built, not yet fitted) the data-sized settings for ``train`` with
    ``given`` on top, in place; None (unchanged) for models that are not sized."""
    from shopformer.artifact import with_settings

    if model.name not in SIZED_MODELS:
        return None
    with_settings(type(model.config)(), given, model.name)  # a bad key or value is named as the user gave it
    sized = sized_settings(given, DataStats.of(train, n_items), dp=model.config.dp.enabled)
    model.config = with_settings(type(model.config)(), sized.params, model.name)
    return sized


def to_record(sized: SizedSettings | None) -> dict:
    """What run.json keeps under ``defaults``."""
    return sized.to_dict() if sized is not None else {"rule": "fixed (the model's config defaults)"}

