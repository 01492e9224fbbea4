"""Content fusion in the time-budgeted search: searched only when the catalog has
attributes (the space is otherwise unchanged), a fused trial's model is given the
content, and a fused winner saves and reloads as a normal run."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("optuna")

from shopformer.features.content import NONE_TOKEN, ContentConfig, ItemContent  # noqa: E402
from shopformer.features.sequences import Sequences  # noqa: E402
from shopformer.features.splits import leave_one_out  # noqa: E402
from shopformer.tune import AutoConfig, AutoSearch, DataStats, starting_setting  # noqa: E402
from shopformer.tune import search as search_module  # noqa: E402
from shopformer.tune.search import fused  # noqa: E402
from shopformer.tune.space import suggest  # noqa: E402

# Two groups of customers, each buying its group's six items once in a random order;
# the catalog's one attribute is the group (items 1-6 "a", 7-12 "b").
_rng = np.random.default_rng(0)
ROWS = [[int(x) + off for x in _rng.permutation(6) + 1] for off in (0, 6) for _ in range(16)]
N_ITEMS = 12
STATS = DataStats(users=500, items=1_000, interactions=10_000, per_item=8, per_user_median=6, per_user_p90=12)
#: the draws of the IDs-only space, in order (what keeps a seed's trials as they were)
IDS_SPACE = ["d_model", "n_layers", "dropout", "weight_decay", "lr", "batch_size", "epochs", "max_len", "crop"]


def group_content() -> ItemContent:
    tokens = np.array([[0]] + [[1]] * 6 + [[2]] * 6, dtype=np.int64)
    return ItemContent(tokens, [NONE_TOKEN, "brand=a", "brand=b"], None, np.zeros(0), ContentConfig(fields=("brand",)))


class Recorder:
    """An Optuna trial that answers every draw with its first option and records the names."""

    def __init__(self):
        self.names = []

    def suggest_categorical(self, name, options):
        self.names.append(name)
        return options[0]

    def suggest_int(self, name, low, high):
        self.names.append(name)
        return low

    def suggest_float(self, name, low, high, step=None, log=False):
        self.names.append(name)
        return low


def test_content_is_a_choice_only_when_there_is_content():
    without, with_ = Recorder(), Recorder()
    assert "content" not in suggest(without, STATS) and without.names == IDS_SPACE
    assert suggest(with_, STATS, content=True)["content"] == "on" and with_.names == [*IDS_SPACE, "content"]
    assert "content" not in starting_setting(STATS)
    assert starting_setting(STATS, content=True) == {**starting_setting(STATS), "content": "on"}
    with pytest.raises(ValueError, match="content has 5 rows"):
        bad = ItemContent(np.zeros((5, 1), dtype=np.int64), [NONE_TOKEN], None, np.zeros(0))
        AutoSearch(AutoConfig(minutes=0.1, baselines=())).run(leave_one_out(Sequences.from_lists(ROWS)), N_ITEMS,
                                                             content=bad)


def test_a_fused_trial_trains_a_model_with_the_content(monkeypatch):
    models = []

    def recording_make_model(name, params):
        models.append(real(name, params))
        return models[-1]

    real = search_module.make_model
    monkeypatch.setattr(search_module, "make_model", recording_make_model)
    content, split = group_content(), leave_one_out(Sequences.from_lists(ROWS))
    config = AutoConfig(minutes=0.2, min_trial_s=1.5, trial_share=0.15, seed=0, baselines=())
    search = AutoSearch(config)
    result = search.run(split, N_ITEMS, content=content)
    trials = [t for t in result.trials if t.model == "sasrec"]
    assert len(trials) == len(models) >= 2
    # the time limit counts training only: what follows it (validation, a fused model's
    # calibration) is measured on finished trials and kept from later trials' clocks
    assert trials[0].reserved_s == 0.0 and trials[0].state == "complete" and search._overhead[True] > 0
    for k, t in enumerate(trials):
        same_kind_done = [p for p in trials[:k] if p.state == "complete" and fused(p.choice) == fused(t.choice)]
        assert (t.reserved_s > 0) == bool(same_kind_done)
        limit = float(t.params["train.time_limit_s"])
        assert limit == 1.0 or limit + t.reserved_s <= config.minutes * 60 - t.started_s + 0.5
    assert trials[0].choice["content"] == "on"  # the prior fuses the catalog's attributes
    for trial, model in zip(trials, models):
        assert (model.content is content) == fused(trial.choice)
        if trial.state == "complete":  # the network was built with an encoder of the attribute tokens
            assert (model.module.content is not None) == fused(trial.choice)
    assert (result.model.content is content) == fused(result.best.choice)
    assert result.content is content
    # a fused winner was calibrated after training: it scores what its trial recorded
    assert search_module.validation_ndcg(result.model, split, N_ITEMS) == pytest.approx(result.best.valid_ndcg,
                                                                                          abs=1e-6)


def test_no_content_without_a_catalog_with_attributes(tmp_path):
    from shopformer.dataset import load_events, prepare, DataConfig
    from shopformer.tune.run import catalog_attributes

    data = ingest(tmp_path, None)
    items = prepare(load_events(data), DataConfig())[0].items
    assert catalog_attributes(data, items) is None  # no catalog
    data = ingest(tmp_path / "unique", "item_id,brand\n" + "".join(f"{i},b{i}\n" for i in range(1, 13)))
    assert catalog_attributes(data, items) is None  # no value two products share
    data = ingest(tmp_path / "groups", "item_id,brand\n" + "".join(f"{i},{'ab'[i > 6]}\n" for i in range(1, 13)))
    content = catalog_attributes(data, items)
    assert {"brand=a", "brand=b"} <= set(content.token_names) and len(content.tokens) == N_ITEMS + 1


def test_a_fused_winner_saves_and_reloads_with_its_content(tmp_path, monkeypatch):
    from shopformer.dataset import DataConfig
    from shopformer.tune.run import train_auto

    data = ingest(tmp_path, "item_id,brand\n" + "".join(f"{i},{'ab'[i > 6]}\n" for i in range(1, 13)))
    # every trial fuses (however many fit the budget on this machine), so the winner does
    drawn = search_module.suggest
    monkeypatch.setattr(search_module, "suggest", lambda *a, **k: {**drawn(*a, **k), "content": "on"})
    config = AutoConfig(minutes=0.1, min_trial_s=2.0, trial_share=0.5, baselines=(), seed=0)
    run = train_auto(data, DataConfig(protocol="leave_one_out"), tmp_path / "run", config)
    auto = run.info["auto"]
    assert auto["trials"] >= 1 and auto["winner"]["content"] is True
    assert auto["content"]["fields"] == ["brand", "categories", "tags"]
    assert auto["content"]["trials_fused"] == auto["trials"]
    assert run.model.content is not None and run.model.module.content is not None
    names = json.loads((tmp_path / "run" / "model" / "content.json").read_text())["token_names"]
    assert {"brand=a", "brand=b"} <= set(names) and set(run.model.content.token_names) == set(names)
    history = json.loads((tmp_path / "run" / "search.json").read_text())["history"]
    assert history[0]["choice"]["content"] == "on" and "content on" in (tmp_path / "run" / "search.md").read_text()


def ingest(folder, catalog_csv: str | None):
    from typer.testing import CliRunner

    from shopformer.cli import app

    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "shop.txt"
    src.write_text("\n".join(f"u{n} " + " ".join(map(str, row)) for n, row in enumerate(ROWS)) + "\n")
    args = ["ingest", str(src), "--format", "sequence", "--data", str(folder / "data")]
    if catalog_csv is not None:
        (folder / "catalog.csv").write_text(catalog_csv)
        args += ["--catalog", str(folder / "catalog.csv")]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    return folder / "data"


def test_a_short_budget_calibrates_on_a_sample_sized_to_it():
    from shopformer.artifact import make_model
    from shopformer.tune.search import calibration_params

    ten = calibration_params(AutoConfig(minutes=10, seed=3), n_valid=22_363)  # Amazon Beauty's validation
    assert ten == {"calibration.max_cases": "5000", "calibration.sample_seed": "3"}
    assert calibration_params(AutoConfig(minutes=45), n_valid=22_363) == {}  # every case, as before
    assert calibration_params(AutoConfig(minutes=10), n_valid=1_090) == {}  # LastFM: all of it
    assert calibration_params(AutoConfig(minutes=10, calibration_cases_per_minute=None), n_valid=22_363) == {}
    calibration = make_model("sasrec", ten).config.calibration
    assert (calibration.max_cases, calibration.sample_seed) == (5000, 3)
