"""A trained run as a folder that reloads alone: model weights + config, vocabularies,
and the data config it was trained with.

    run/
      run.json      model name, data folder, DataConfig, dataset counts, timings
      items.json    item vocabulary (index i+1 = items[i])
      users.json    user vocabulary
      model/        whatever the model's save() writes (its config.json + weights)
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path

from shopformer.dataset import DataConfig
from shopformer.features.vocab import Vocabulary
from shopformer.models import BASELINES
from shopformer.models.base import Recommender
from shopformer.models.content_knn import ContentKNN
from shopformer.models.repeat import RepeatAware
from shopformer.models.sequential import BERT4RecRecommender, SASRecRecommender

#: Every model class the CLI can build or load, by its stable name. Explicit on purpose.
MODELS: dict[str, type] = {
    **BASELINES,
    SASRecRecommender.name: SASRecRecommender,
    BERT4RecRecommender.name: BERT4RecRecommender,
    ContentKNN.name: ContentKNN,
}


def config_class(model_cls: type) -> type:
    """The typed config a model takes as its first constructor argument."""
    return typing.get_type_hints(model_cls.__init__)["config"]


def _coerce(value: str, annotation: object) -> object:
    """Turn a command-line string into the type a config field declares."""
    base = typing.get_origin(annotation) or annotation
    if base in (bool,):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if base is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(f"expected one of {typing.get_args(annotation)}, got {value!r}")
        return value
    if base in (int, float, str):
        return base(value)
    if base in (tuple, list):
        item = next((a for a in typing.get_args(annotation) if a is not Ellipsis), str)
        return tuple(_coerce(v.strip(), item) for v in value.split(",") if v.strip())
    if base in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value.lower() == "none":
            return None
        return _coerce(value, args[0])
    return value


def _settings(cfg_cls: type, prefix: str = "") -> dict[str, object]:
    """Every settable key of a (possibly nested) config dataclass -> its annotation."""
    out: dict[str, object] = {}
    hints = typing.get_type_hints(cfg_cls)
    for f in fields(cfg_cls):
        ann = hints[f.name]
        if is_dataclass(ann):
            out.update(_settings(ann, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = ann
    return out


def _with(config: object, key: str, value: object) -> object:
    head, _, rest = key.partition(".")
    if rest:
        return replace(config, **{head: _with(getattr(config, head), rest, value)})
    return replace(config, **{head: value})


def make_model(name: str, params: dict[str, str] | None = None) -> Recommender:
    """Build model ``name`` with its default config, overriding ``params`` (strings from
    the command line, converted to each field's declared type; nested configs take
    dotted keys such as ``train.lr``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    return cls(with_settings(config_class(cls)(), params, name, f"{name}.{{key}}"))


def with_settings(config, params: dict[str, str] | None, owner: str, value_label: str = "{key}"):  # noqa: ANN001, ANN201
    """``config`` (a config dataclass) with ``params`` (``--set`` strings under dotted
    keys such as ``train.lr``) applied; an unknown key or a bad value raises ValueError
    naming ``owner`` and the key (``value_label``, formatted with ``key``)."""
    known = _settings(type(config))
    for key, raw in (params or {}).items():
        if key not in known:
            raise ValueError(f"{owner} has no setting {key!r}; settings: {', '.join(sorted(known))}")
        try:
            config = _with(config, key, _coerce(raw, known[key]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad value for {value_label.format(key=key)}: {exc}") from None
    return config


@dataclass
class Run:
    folder: Path
    model: Recommender
    items: Vocabulary
    users: Vocabulary
    data_config: DataConfig
    info: dict
    #: past items let back in (``RUN/repeats``, written by ``shopformer repeats``): the
    #: answers' default when a request does not say whether to exclude the history
    repeats: RepeatAware | None = None


def save_run(
    folder: Path,
    model: Recommender,
    items: Vocabulary,
    users: Vocabulary,
    data_config: DataConfig,
    info: dict,
) -> None:
    folder = Path(folder)
    (folder / "model").mkdir(parents=True, exist_ok=True)
    model.save(folder / "model")
    items.save(folder / "items.json")
    users.save(folder / "users.json")
    meta = {"model": model.name, "data_config": data_config.to_dict(), **info}
    (folder / "run.json").write_text(json.dumps(meta, indent=2, default=str))


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    meta_path = folder / "run.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{folder} is not a trained run (no run.json)")
    meta = json.loads(meta_path.read_text())
    name = meta["model"]
    if name not in MODELS:
        raise ValueError(f"{folder} holds model {name!r}, which this version does not know")
    model = MODELS[name].load(folder / "model")
    repeats = RepeatAware.load(folder / REPEATS, model) if (folder / REPEATS / "config.json").exists() else None
    return Run(
        folder=folder,
        model=model,
        items=Vocabulary.load(folder / "items.json"),
        users=Vocabulary.load(folder / "users.json"),
        data_config=DataConfig.from_dict(meta["data_config"]),
        info=meta,
        repeats=repeats,
    )


#: a run's repeat-purchase settings (models/repeat.py), beside its model
REPEATS = "repeats"


def run_version(folder: Path) -> str:
    """``<run folder name>-<first 12 hex of sha256(run.json)>``: changes whenever the
    run is retrained in place or another run is loaded (the version every answer names)."""
    import hashlib

    digest = hashlib.sha256((Path(folder) / "run.json").read_bytes()).hexdigest()[:12]
    return f"{Path(folder).name}-{digest}"
