"""The warm-start recipe (feedback/warmstart.py WarmStartConfig): the warm run's learning
rate, warm-up and patience are set from the lineage's first run (never compounded over
rounds); new items' rows start at the mean of their kept neighbours; "shrink and
perturb" mixes the copied weights with a fresh network's. Checked on the tensors, with a
learning rate of 0 where the starting point must survive fit unchanged."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
import torch

from shopformer.artifact import make_model
from shopformer.experiment import train_run
from shopformer.features.sequences import Sequences
from shopformer.feedback.retrain import RetrainConfig
from shopformer.feedback.warmstart import (WarmStartConfig, focus_rows, lineage_train, neighbour_rows, same_model,
                                          train_like)
from shopformer.models.sequential import SASRecRecommender
from shopformer.train.loop import lr_factor

from test_retrain import CONFIG, SASREC  # noqa: E402 - fixtures
from test_retrain_warmstart import FROZEN, folders  # noqa: F401 - the fixture

FAST = {**SASREC, "train.epochs": "1"}


def test_the_warm_runs_learning_rate_starts_from_the_lineage_and_warms_up_to_the_scaled_peak(folders, tmp_path):  # noqa: F811
    current = train_run(make_model("sasrec", FAST), folders["early"], CONFIG, tmp_path / "v0")
    recipe = WarmStartConfig(lr_scale=3.0, warmup_steps=5, patience=2)
    train = same_model(current, 4, recipe).config.train
    assert (train.lr, train.warmup_steps, train.patience, train.epochs) == pytest.approx((0.03, 5, 2, 4))
    # the first step runs at a fifth of the peak, the fifth and sixth at the peak, then it decays
    assert train.lr * lr_factor(0, 100, train) == pytest.approx(0.006)
    assert train.lr * lr_factor(4, 100, train) == pytest.approx(0.03)
    assert train.lr * lr_factor(5, 100, train) == pytest.approx(0.03)
    assert train.lr * lr_factor(6, 100, train) < 0.03
    assert same_model(current, None, None).config.train.lr == pytest.approx(0.01)  # scratch: the run's own
    # a warm run saves the lineage's settings: the next round scales the first run's lr, not its own
    info = {"retrain": {"mode": "warm"}}
    warm = train_like(current, folders["all"], tmp_path / "v1", True, 1, info, recipe).run
    assert warm.model.config.train.lr == pytest.approx(0.03)
    assert warm.info["retrain"]["lineage_train"] == {"lr": 0.01, "warmup_steps": 1, "patience": 3}
    assert lineage_train(warm) == {"lr": 0.01, "warmup_steps": 1, "patience": 3}
    assert same_model(warm, 4, recipe).config.train.lr == pytest.approx(0.03)
    assert same_model(warm).config.train.lr == pytest.approx(0.01)  # a scratch retrain of a warm run


def test_neighbour_rows_average_the_kept_items_bought_beside_a_new_one():
    rows = torch.arange(5 * 2, dtype=torch.float32).reshape(5, 2)  # padding + kept items 1..4
    # customers: 1 6 2 | 5 3 | 6 | 7 ; items 5, 6, 7 are new (n_old = 4)
    train = Sequences(np.array([0, 3, 5, 6, 7]), np.array([1, 6, 2, 5, 3, 6, 7]))
    start, found = neighbour_rows(train, 4, 7, rows)
    assert found.tolist() == [True, True, False]  # 7 was bought alone; a customer boundary is no neighbour
    assert torch.equal(start[0], rows[3])  # 5: beside 3 only
    assert torch.equal(start[1], (rows[1] + rows[2]) / 2)  # 6: between 1 and 2
    assert start.shape == (3, 2)


def test_new_rows_start_at_their_neighbours_and_the_rest_is_copied(folders, tmp_path):  # noqa: F811
    current = train_run(make_model("sasrec", FROZEN), folders["early"], CONFIG, tmp_path / "v0")
    n_old = len(current.items)
    trained = train_like(current, folders["all"], None, warm=True, recipe=WarmStartConfig(new_rows="neighbours"))
    emb0 = current.model.module.item_emb.weight.detach()
    emb1 = trained.model.module.item_emb.weight.detach()
    assert torch.equal(emb1[: n_old + 1], emb0[: n_old + 1]) and torch.equal(emb1[-1], emb0[-1])
    expected, found = neighbour_rows(trained.split.train, n_old, len(trained.data.items), emb0[: n_old + 1])
    assert found.any()  # the fifth chain's first products follow the customers' old ones
    assert torch.allclose(emb1[n_old + 1 : -1][torch.from_numpy(found)], expected[torch.from_numpy(found)])


def test_shrink_and_perturb_mixes_the_copied_weights_with_a_fresh_network(folders, tmp_path):  # noqa: F811
    current = train_run(make_model("sasrec", FROZEN), folders["early"], CONFIG, tmp_path / "v0")
    n_old = len(current.items)
    shrunk = train_like(current, folders["all"], None, warm=True, recipe=WarmStartConfig(shrink=0.5)).model.module
    before, after = dict(current.model.module.named_parameters()), dict(shrunk.named_parameters())
    for name, tensor in before.items():
        if name != "item_emb.weight":
            assert torch.allclose(after[name], 0.5 * tensor), name
    assert torch.allclose(after["item_emb.weight"][: n_old + 1], 0.5 * before["item_emb.weight"][: n_old + 1])
    mixed = train_like(current, folders["all"], None, warm=True,
                       recipe=WarmStartConfig(shrink=0.5, perturb=0.1)).model.module
    ln = dict(mixed.named_parameters())["ln_f.weight"]  # a fresh LayerNorm gain is 1
    assert torch.allclose(ln, 0.5 * before["ln_f.weight"] + 0.1)


def test_the_recipe_is_validated_and_retraining_carries_it():
    with pytest.raises(ValueError, match="new_rows"):
        WarmStartConfig(new_rows="content")
    with pytest.raises(ValueError):
        WarmStartConfig(lr_scale=0)
    assert RetrainConfig().warm_start == WarmStartConfig(new_rows="neighbours", lr_scale=3.0)  # the chosen default


def test_focus_rows_keep_every_customer_with_new_events_and_a_seeded_share_of_the_rest():
    # customers 0-9; 2, 5 and 7 have an event at or after t = 100
    lengths = np.full(10, 2)
    times = np.array([[10.0, 20.0]] * 10)
    times[[2, 5, 7], 1] = [100.0, 150.0, 100.0]
    seqs = Sequences(np.concatenate([[0], np.cumsum(lengths)]), np.arange(1, 21), times.ravel())
    rows = focus_rows(seqs, 100.0, 0.5, seed=3)
    assert {2, 5, 7} <= set(rows.tolist()) and len(rows) == 3 + 4 and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, focus_rows(seqs, 100.0, 0.5, seed=3))  # seeded
    assert focus_rows(seqs, 100.0, 0.0, seed=3).tolist() == [2, 5, 7]
    assert len(focus_rows(seqs, 100.0, 1.0, seed=3)) == 10


def test_a_warm_run_with_replay_trains_on_fewer_customers_and_validates_on_all(folders, tmp_path):  # noqa: F811
    current = train_run(make_model("sasrec", FAST), folders["early"], CONFIG, tmp_path / "v0")
    # customer u buys at T0 + 3t days + (u % 24) hours, t = 0..11: after day 33, 12 h only
    # those with u % 24 >= 12 have bought (36 of the 80)
    since = datetime(2024, 2, 3, 12, tzinfo=timezone.utc)
    seen = []
    real_fit = SASRecRecommender.fit

    def spy(self, train, n_items, valid=None):
        seen.append((len(train), len(valid)))
        return real_fit(self, train, n_items, valid)

    SASRecRecommender.fit = spy
    try:
        train_like(current, folders["all"], None, warm=True, epochs=1)
        train_like(current, folders["all"], None, warm=True, epochs=1, recipe=WarmStartConfig(replay=0.0), since=since)
        train_like(current, folders["all"], None, warm=True, epochs=1, recipe=WarmStartConfig(replay=0.5), since=since)
    finally:
        SASRecRecommender.fit = real_fit
    (n_all, valid_all), (n_new, valid_new), (n_half, valid_half) = seen
    assert (n_all, n_new, n_half) == (80, 36, 36 + 22) and valid_all == valid_new == valid_half == 80
