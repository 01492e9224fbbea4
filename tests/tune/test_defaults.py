"""Data-sized defaults of a plain `train --model sasrec`: the sizes follow the training
data's statistics, what the user gives wins (and the settings derived from it follow it),
and run.json records every setting with where it came from."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from shopformer.artifact import make_model
from shopformer.cli import app
from shopformer.features.sequences import Sequences
from shopformer.tune.defaults import size_model, sized_settings
from shopformer.tune.priors import DataStats

runner = CliRunner()


def stats(users: int, per_item: float, interactions: int, median: float = 4, p90: float = 12) -> DataStats:
    return DataStats(users=users, items=interactions // max(1, int(per_item)), interactions=interactions,
                     per_item=per_item, per_user_median=median, per_user_p90=p90)


def test_the_sizes_follow_the_statistics():
    sparse = sized_settings({}, stats(20_000, 10, 150_000)).params  # Beauty-like
    few = sized_settings({}, stats(1_000, 14, 50_000, 17, 120)).params  # LastFM-like: few customers, long histories
    dense = sized_settings({}, stats(6_000, 290, 1_000_000, 94, 400)).params  # ML-1M-like
    toy = sized_settings({}, stats(300, 5, 3_000)).params
    assert sparse["arch.dropout"] == "0.5" and sparse["train.weight_decay"] == "0.1" and sparse["arch.max_len"] == "20"
    assert sparse["train.decay_embeddings"] == "true" and sparse["arch.d_model"] == "256"
    assert dense["arch.dropout"] == "0.2" and dense["train.weight_decay"] == "0.0" and dense["arch.max_len"] == "200"
    assert dense["train.crop"] == "all" and dense["arch.d_model"] == "128" and dense["train.epochs"] == "100"
    # an epoch of few customers is few steps: more epochs, to about the same number of steps
    assert sparse["train.epochs"] == "20" and few["train.epochs"] == "200" and few["arch.max_len"] == "200"
    assert toy["arch.d_model"] == "128"  # too little data for the widest table
    assert sparse["train.batch_size"] == dense["train.batch_size"] == "32"


def test_given_settings_win_and_the_settings_derived_from_them_follow():
    sized = sized_settings({"arch.d_model": "16", "arch.dropout": "0.1", "train.epochs": "3", "train.threads": "1"},
                           stats(20_000, 10, 150_000))
    p, src = sized.params, sized.sources
    assert p["arch.d_model"] == "16" and p["train.epochs"] == "3" and p["train.threads"] == "1"
    assert src["arch.d_model"] == src["train.epochs"] == src["train.threads"] == "user"
    assert p["arch.attn_dropout"] == "0.1" and src["arch.attn_dropout"] == "follows arch.dropout"
    assert p["train.patience"] == "3" and p["train.eval_every"] == "1" and src["train.patience"] == "follows train.epochs"
    assert src["train.batch_size"] == src["train.weight_decay"] == src["arch.max_len"] == "data"
    assert p["train.batch_size"] == "32"  # not given: sized


def test_dp_sgd_keeps_one_example_per_customer():
    dense = stats(6_000, 290, 1_000_000, 94, 400)
    assert sized_settings({}, dense).params["train.crop"] == "all"
    assert sized_settings({"dp.epsilon": "4"}, dense, dp=True).params["train.crop"] == "random"


def test_only_sasrec_is_sized_and_bad_settings_are_named():
    train = Sequences.from_lists([[1, 2, 3]] * 10)
    ease = make_model("ease", {})
    assert size_model(ease, {}, train, 3) is None
    model = make_model("sasrec", {})
    try:
        size_model(model, {"arch.widht": "8"}, train, 3)
    except ValueError as exc:
        assert "arch.widht" in str(exc)
    else:
        raise AssertionError("an unknown setting was accepted")


def _shop(tmp_path):
    rng = np.random.default_rng(0)
    lines = [f"u{u} " + " ".join(str(int(x) + 1 + 6 * (u % 2)) for x in rng.permutation(6)) for u in range(40)]
    (tmp_path / "shop.txt").write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["ingest", str(tmp_path / "shop.txt"), "--format", "sequence", "--data",
                                 str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    return tmp_path / "data"


def test_cli_records_each_setting_and_its_source(tmp_path):
    data = _shop(tmp_path)
    small = ["--set", "arch.d_model=8", "--set", "arch.n_heads=1", "--set", "train.epochs=2", "--set", "train.threads=1"]
    result = runner.invoke(app, ["train", "--data", str(data), "--model", "sasrec", "--out", str(tmp_path / "run"),
                                 *small])
    assert result.exit_code == 0, result.output
    assert "sized from the data" in result.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    d = info["defaults"]
    settings = d["settings"]
    assert {k for k, v in settings.items() if v["source"] == "user"} == set(d["given"]) == {
        "arch.d_model", "arch.n_heads", "train.epochs", "train.threads"}
    assert {"arch.dropout", "train.batch_size", "train.weight_decay", "arch.max_len"} <= set(d["from_data"])
    assert d["data_stats"]["users"] == 40
    config = info["model_config"]  # what was trained is what the record says
    assert config["arch"]["d_model"] == 8 and config["train"]["epochs"] == 2
    assert str(config["arch"]["dropout"]) == settings["arch.dropout"]["value"]
    assert str(config["train"]["batch_size"]) == settings["train.batch_size"]["value"]
    assert config["train"]["weight_decay"] == float(settings["train.weight_decay"]["value"])

    fixed = tmp_path / "fixed"
    result = runner.invoke(app, ["train", "--data", str(data), "--model", "sasrec", "--out", str(fixed),
                                 "--fixed-defaults", *small])
    assert result.exit_code == 0, result.output
    info = json.loads((fixed / "run.json").read_text())
    assert "defaults" not in info and info["model_config"]["train"]["batch_size"] == 128


def test_cli_other_models_are_not_sized(tmp_path):
    data = _shop(tmp_path)
    result = runner.invoke(app, ["train", "--data", str(data), "--model", "itemknn", "--out", str(tmp_path / "knn")])
    assert result.exit_code == 0, result.output
    assert "defaults" not in json.loads((tmp_path / "knn" / "run.json").read_text())


SMALL = ["--set", "arch.d_model=8", "--set", "arch.n_heads=1", "--set", "train.epochs=2", "--set", "train.threads=1"]


def _evaluate(data, out, *args):
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--model", "sasrec", "--out", str(out), *SMALL, *args])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())[0], result.output


def test_cli_evaluate_sizes_as_train_does(tmp_path):
    data = _shop(tmp_path)
    result = runner.invoke(app, ["train", "--data", str(data), "--model", "sasrec", "--out", str(tmp_path / "run"),
                                 *SMALL])
    assert result.exit_code == 0, result.output
    trained = json.loads((tmp_path / "run" / "run.json").read_text())
    record, output = _evaluate(data, tmp_path / "res.json")
    assert "sized from the data" in output
    assert record["defaults"] == trained["defaults"]  # the same settings, from the same data, said the same way
    assert record["model_config"] == trained["model_config"]
    assert record["defaults"]["settings"]["train.batch_size"] == {"value": "32", "source": "data"}


def test_cli_evaluate_set_wins_and_fixed_defaults_size_nothing(tmp_path):
    data = _shop(tmp_path)
    record, _ = _evaluate(data, tmp_path / "set.json", "--set", "train.batch_size=16", "--set", "arch.dropout=0.1")
    settings = record["defaults"]["settings"]
    assert settings["train.batch_size"] == {"value": "16", "source": "user"}
    assert settings["arch.attn_dropout"] == {"value": "0.1", "source": "follows arch.dropout"}
    assert record["model_config"]["train"]["batch_size"] == 16 and record["model_config"]["arch"]["dropout"] == 0.1
    assert "train.batch_size" in record["defaults"]["given"] and "arch.max_len" in record["defaults"]["from_data"]

    record, output = _evaluate(data, tmp_path / "fixed.json", "--fixed-defaults")
    assert "defaults" not in record and "sized from the data" not in output
    assert record["model_config"]["train"]["batch_size"] == 128 and record["model_config"]["arch"]["d_model"] == 8


def test_cli_evaluate_bad_input_is_named(tmp_path):
    data = _shop(tmp_path)
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--model", "sasrec", "--set", "arch.widht=8"])
    assert result.exit_code == 2 and "arch.widht" in result.output
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--run", str(tmp_path / "run"), "--fixed-defaults"])
    assert result.exit_code == 2 and "--fixed-defaults belongs to --model" in result.output
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--fixed-defaults"])
    assert result.exit_code == 2 and "--fixed-defaults" in result.output
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--model", "ease", "--fixed-defaults",
                                 "--out", str(tmp_path / "ease.json")])  # not sized anyway: accepted, nothing recorded
    assert result.exit_code == 0, result.output
    assert "defaults" not in json.loads((tmp_path / "ease.json").read_text())[0]
