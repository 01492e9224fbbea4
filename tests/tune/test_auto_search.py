"""The time-budgeted search: where it starts, what it tries, that it keeps the best
validation score of everything it tried, never reads the test split, and saves a normal
run with its history."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("optuna")

from shopformer.artifact import make_model  # noqa: E402
from shopformer.features.sequences import Sequences  # noqa: E402
from shopformer.features.splits import Split, leave_one_out  # noqa: E402
from shopformer.tune import AutoConfig, AutoSearch, DataStats, starting_setting  # noqa: E402
from shopformer.tune.space import model_params, suggest  # noqa: E402

# Two groups of customers, each buying its group's six items once, in a random order:
# the held-out items are the group's items not yet bought, which a model that learns
# co-occurrence ranks first (a popularity ranking cannot tell the groups apart).
_rng = np.random.default_rng(0)
ROWS = [[int(x) + off for x in _rng.permutation(6) + 1] for off in (0, 6) for _ in range(16)]
N_ITEMS = 12


class Untouchable:
    """Stands for the test split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the search read the test split ({name})")

    def __len__(self):
        raise AssertionError("the search read the test split (len)")


def shop_split() -> Split:
    split = leave_one_out(Sequences.from_lists(ROWS))
    return Split(split.protocol, split.train, split.valid, Untouchable())


def stats(per_item: float, p90: float, interactions: int = 10_000, items: int = 1_000) -> DataStats:
    return DataStats(users=500, items=items, interactions=interactions, per_item=per_item, per_user_median=p90 / 2,
                     per_user_p90=p90)


def test_the_starting_setting_follows_the_data():
    sparse, dense = starting_setting(stats(8, 12)), starting_setting(stats(270, 400, 1_000_000, 3_400))
    assert sparse["dropout"] == 0.5 and sparse["weight_decay"] == 0.1 and sparse["max_len"] == 20
    assert dense["dropout"] == 0.2 and dense["weight_decay"] == 0.0 and dense["max_len"] == 200
    assert dense["crop"] == "all" and dense["d_model"] == 128
    assert starting_setting(stats(8, 60))["max_len"] == 100  # the smallest grid length covering 90% of histories


def test_every_point_of_the_space_builds_a_model():
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(25):
        trial = study.ask()
        params = model_params(suggest(trial, stats(8, 30)), 60, seed=3)
        model = make_model("sasrec", params)
        assert model.config.train.time_limit_s == 60 and model.config.train.seed == 3
        assert model.config.arch.attn_dropout == model.config.arch.dropout
        assert model.config.train.decay_embeddings == (model.config.train.weight_decay > 0)
        study.tell(trial, 0.0)


def test_validation_hook_sees_each_evaluation_and_can_stop_training():
    split = shop_split()
    model = make_model("sasrec", {"train.epochs": "6", "arch.d_model": "16", "train.patience": "10"})
    seen = []
    model.on_validation = seen.append
    model.fit(split.train, N_ITEMS, valid=split.valid)
    assert seen == [r.valid for r in model.history.records] and len(seen) == 6

    class Stop(Exception):
        pass

    def stop_at_second(score):
        if len(calls) == 1:
            raise Stop
        calls.append(score)

    calls: list[float] = []
    model = make_model("sasrec", {"train.epochs": "6", "arch.d_model": "16"})
    model.on_validation = stop_at_second
    with pytest.raises(Stop):
        model.fit(split.train, N_ITEMS, valid=split.valid)
    assert len(calls) == 1


def test_search_keeps_the_best_validation_score_and_never_reads_test():
    split = shop_split()
    config = AutoConfig(minutes=0.25, min_trial_s=3, trial_share=0.3, seed=0)
    seen = []
    result = AutoSearch(config).run(split, N_ITEMS, on_trial=seen.append)
    trials = result.trials
    assert seen == trials
    assert {t.model for t in trials} >= {"itemknn", "ease", "sasrec"}
    scored = [t for t in trials if t.valid_ndcg is not None]
    assert result.best.valid_ndcg == max(t.valid_ndcg for t in scored)
    assert result.best.valid_ndcg >= max(t.valid_ndcg for t in scored if t.model != "sasrec")
    assert result.best.valid_ndcg > 0.6  # the groups are learned (a group-blind ranking scores ~0.35)
    first = next(t for t in trials if t.model == "sasrec")
    assert first.choice == starting_setting(result.stats)  # the prior is tried first
    # the kept model is the winner, as trained: it scores what its trial scored
    from shopformer.tune.search import validation_ndcg

    assert validation_ndcg(result.model, split, N_ITEMS) == pytest.approx(result.best.valid_ndcg, abs=1e-6)
    assert result.seconds < 3 * result.budget_s  # stops near its budget (a trial may run past it)


def test_baselines_only_and_ease_skipped_for_large_catalogs():
    split = shop_split()
    result = AutoSearch(AutoConfig(minutes=0.1, transformer=False, ease_max_items=4)).run(split, N_ITEMS)
    assert {t.model for t in result.trials} == {"itemknn"} and result.best.model == "itemknn"
    assert np.isfinite(result.best.valid_ndcg)


def test_cli_auto_saves_a_normal_run_with_its_history(tmp_path):
    from typer.testing import CliRunner

    from shopformer.cli import app

    src = tmp_path / "shop.txt"
    src.write_text("\n".join(f"u{n} " + " ".join(map(str, row)) for n, row in enumerate(ROWS)) + "\n")
    data, run = tmp_path / "data", tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(src), "--format", "sequence", "--data", str(data)]).exit_code == 0
    out = runner.invoke(app, ["train", "--data", str(data), "--auto", "--minutes", "0.5", "--out", str(run)])
    assert out.exit_code == 0, out.output
    info = json.loads((run / "run.json").read_text())
    history = json.loads((run / "search.json").read_text())
    assert info["auto"]["winner"]["valid_ndcg"] == max(t["valid_ndcg"] or 0 for t in history["history"])
    assert info["model"] == info["auto"]["winner"]["model"]
    assert (run / "search.png").stat().st_size > 0 and "Winner" in (run / "search.md").read_text()
    res = runner.invoke(app, ["evaluate", "--run", str(run), "--out", str(tmp_path / "eval.json")])
    assert res.exit_code == 0, res.output
    bad = runner.invoke(app, ["train", "--data", str(data), "--auto", "--full"])
    assert bad.exit_code == 2 and "--auto" in bad.output
    bad = runner.invoke(app, ["train", "--data", str(data), "--model", "sasrec", "--ensemble", "2"])
    assert bad.exit_code == 2 and "--ensemble belongs to --auto" in bad.output
    bad = runner.invoke(app, ["train", "--data", str(data), "--auto", "--ensemble", "1"])
    assert bad.exit_code == 2 and "--ensemble" in bad.output  # an ensemble has two networks or more


def test_an_ensemble_of_the_winning_setting_is_tried_and_kept_only_when_better():
    split = shop_split()
    # each trial gets at most 0.2 x 18 s, the ensemble of two needs at most 2 x 1.1 x 3.6 s < the 9 s left to it
    config = AutoConfig(minutes=0.3, min_trial_s=2, trial_share=0.2, seed=0, baselines=(), ensemble_sizes=(2,),
                        ensemble_share=0.5)
    result = AutoSearch(config).run(split, N_ITEMS)
    singles = [t for t in result.trials if t.model == "sasrec" and "members" not in t.params]
    ensembles = [t for t in result.trials if "members" in t.params]
    assert len(ensembles) == 1, [t.note for t in result.trials]
    e = ensembles[0]
    best_single = max((t for t in singles if t.valid_ndcg is not None), key=lambda t: t.valid_ndcg)
    # the winner's setting, as two networks, each given the winner's time
    assert e.params == {**best_single.params, "members": "2", "train.time_limit_s": e.params["train.time_limit_s"]}
    assert float(e.params["train.time_limit_s"]) == pytest.approx(2 * max(best_single.seconds, 1.0) * 1.1, abs=0.1)
    assert e.started_s >= 0.35 * result.budget_s  # the search stopped early to leave the ensemble its share
    assert e.state == "complete" and e.valid_ndcg is not None
    kept_ensemble = e.valid_ndcg > best_single.valid_ndcg
    assert (result.best is e) == kept_ensemble
    assert (getattr(result.model.config, "members", 1) == 2) == kept_ensemble
    from shopformer.tune.search import validation_ndcg

    assert validation_ndcg(result.model, split, N_ITEMS) == pytest.approx(result.best.valid_ndcg, abs=1e-6)


def test_ensemble_sizes_are_checked_and_skipped_without_time():
    with pytest.raises(ValueError, match="ensemble sizes"):
        AutoConfig(ensemble_sizes=(1,))
    split = shop_split()
    with pytest.raises(ValueError, match="ensemble_share"):
        AutoConfig(ensemble_sizes=(2,), ensemble_share=1.0)
    split = shop_split()
    # the winner's time three times over does not fit the share left: no ensemble is trained
    result = AutoSearch(AutoConfig(minutes=0.1, min_trial_s=2, trial_share=0.6, baselines=(), ensemble_sizes=(3,),
                                   ensemble_share=0.05)).run(split, N_ITEMS)
    assert [t.model for t in result.trials] and not [t for t in result.trials if "members" in t.params]
