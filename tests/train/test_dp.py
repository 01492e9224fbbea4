"""DP-SGD for SASRec: per-user clipping, the noise, the accountant, the run folder, and
that a privately trained model still learns a clear pattern."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from shopformer.artifact import load_run, make_model
from shopformer.cli import app
from shopformer.evaluate.protocol import EvalConfig, evaluate
from shopformer.features.sequences import Sequences
from shopformer.features.splits import leave_one_out
from shopformer.models.sasrec import SASRec, SASRecConfig
from shopformer.train.dp import DPSGD, DPConfig
from shopformer.train.per_user import UserRows, clipped_sum

N = 20


def ring_rows(users: int, seed: int = 0) -> list[list[int]]:
    """Every customer walks the ring 1..N upwards from a random start: after i comes i + 1."""
    rng = np.random.default_rng(seed)
    return [[int(s + t) % N + 1 for t in range(n)] for s, n in zip(rng.integers(0, N, users), rng.integers(5, 10, users))]


def ring_shop(users: int, seed: int = 0) -> Sequences:
    return Sequences.from_lists(ring_rows(users, seed))


def small_net(dropout: float = 0.0, event_types: bool = False) -> SASRec:
    torch.manual_seed(0)
    m = SASRec(SASRecConfig(n_items=N, max_len=8, d_model=16, n_layers=2, n_heads=2, dropout=dropout,
                            event_types=event_types))
    with torch.no_grad():  # away from the initialisation, so every gradient is sizeable
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m.train()


def three_users(types: bool = False) -> UserRows:
    items = torch.tensor([[0, 0, 0, 3, 4, 5],  # padded
                          [7, 9, 7, 2, 7, 11],  # an item repeated: the table's cross terms
                          [0, 1, 2, 3, 4, 20]])
    targets = torch.roll(items, -1, 1)
    targets[:, -1] = torch.tensor([6, 12, 1])
    targets[:, 2] = torch.where(items[:, 3] == 0, 0, targets[:, 2])
    targets[items == 0] = 0
    targets[0, 2] = 3  # a padded input position still predicts the first event, as in training
    return UserRows(items, targets, (items > 0).long() * 2 if types else None)


def by_hand(m: SASRec, rows: UserRows, max_norm: float) -> tuple[dict, list[float]]:
    """Each user's gradient by an ordinary backward, clipped, summed."""
    total = {k: torch.zeros_like(p) for k, p in m.named_parameters()}
    norms = []
    for i in range(len(rows.items)):
        m.zero_grad()
        h = m(rows.items[i : i + 1], None if rows.types is None else rows.types[i : i + 1])[0]  # (T, D)
        F.cross_entropy(h @ m.item_emb.weight[1 : N + 1].T, rows.targets[i] - 1, ignore_index=-1,
                        reduction="sum").backward()
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in m.parameters()))
        norms.append(norm)
        for k, p in m.named_parameters():
            total[k] += p.grad * min(1.0, max_norm / (norm + 1e-6))
    return total, norms


@pytest.mark.parametrize("max_norm", [1e9, 0.5])
@pytest.mark.parametrize("types", [False, True])
def test_clipped_sum_matches_one_backward_per_user(max_norm, types):
    m, rows = small_net(event_types=types), three_users(types)
    expected, norms = by_hand(m, rows, max_norm)
    # two chunks, to check they add up
    chunks = [UserRows(rows.items[:2], rows.targets[:2], None if not types else rows.types[:2]),
              UserRows(rows.items[2:], rows.targets[2:], None if not types else rows.types[2:])]
    got = clipped_sum(m, chunks, max_norm)
    assert got.norms.tolist() == pytest.approx(norms, rel=1e-4)
    assert min(norms) > 0.5  # so that 0.5 clips every user
    for k in expected:
        assert torch.allclose(got.grads[k], expected[k], atol=1e-5, rtol=1e-4), k
    assert got.users == 3 and got.positions == int((rows.targets > 0).sum())
    assert got.clipped == (3 if max_norm == 0.5 else 0)


def test_one_users_contribution_is_at_most_the_clip_norm():
    m, rows = small_net(), three_users()
    for i in range(3):
        one = clipped_sum(m, [UserRows(rows.items[i : i + 1], rows.targets[i : i + 1])], 0.25)
        norm = math.sqrt(sum(float(g.pow(2).sum()) for g in one.grads.values()))
        assert norm == pytest.approx(0.25, rel=1e-4)


def test_each_user_draws_their_own_dropout():
    m = small_net(dropout=0.5)
    items = torch.tensor([[1, 2, 3, 4]] * 4)
    targets = torch.tensor([[2, 3, 4, 5]] * 4)
    norms = clipped_sum(m, [UserRows(items, targets)], 1e9).norms
    assert len(set(norms.tolist())) == 4  # identical users, different masks


def test_noise_has_the_configured_scale():
    m = small_net()
    mech = DPSGD(DPConfig(epsilon=2.0, max_grad_norm=0.5, accountant="rdp"), users=1000, batch_size=100, steps=50, n_users=1000)
    zero = {k: torch.zeros_like(p) for k, p in m.named_parameters()}
    mech.privatize(m, zero, drawn=0, clipped=0)
    noise = torch.cat([p.grad.flatten() for p in m.parameters()]) * (mech.sample_rate * mech.users)
    assert len(noise) > 5000
    assert float(noise.std()) == pytest.approx(mech.noise_multiplier * 0.5, rel=0.05)
    assert abs(float(noise.mean())) < 0.05 * mech.noise_multiplier * 0.5
    assert mech.steps == 1 and mech.delta == pytest.approx(1e-3)
    assert 0 < mech.epsilon() < 2.0  # one of the 50 planned steps spent


def test_prv_accountant_spends_the_target_over_the_planned_steps():
    layer = torch.nn.Linear(3, 2)
    mech = DPSGD(DPConfig(epsilon=4.0), users=10_000, batch_size=500, steps=30, n_users=10_000)
    for _ in range(30):
        mech.privatize(layer, {k: torch.zeros_like(p) for k, p in layer.named_parameters()}, drawn=500, clipped=250)
    assert 0.95 * 4.0 <= mech.epsilon() <= 4.0
    report = mech.report()
    assert report.accountant == "prv" and report.steps == 30 and report.clipped_share == 0.5


def dp_model(epsilon: str = "8", **extra: str):
    return make_model("sasrec", {"dp.epsilon": epsilon, "arch.d_model": "16", "arch.max_len": "10",
                                 "arch.dropout": "0.1", "train.epochs": "8", "train.batch_size": "100",
                                 "train.lr": "0.01", "train.warmup_steps": "5", "train.threads": "1", **extra})


@pytest.fixture(scope="module")
def fitted():
    split = leave_one_out(ring_shop(400))
    # RDP: Opacus's PRV search takes ~10 s at this sampling rate (PRV: the noise test)
    model = dp_model(**{"dp.accountant": "rdp"}).fit(split.train, N, split.valid)
    return model, split


def test_accountant_spends_the_target_and_no_more(fitted):
    model, split = fitted
    p = model.privacy
    assert p.steps == 8 * round(400 / 100)
    assert p.target_epsilon == 8.0
    assert 0.95 * 8.0 <= p.epsilon <= 8.0
    assert p.delta == pytest.approx(1 / 400)
    assert p.sample_rate == pytest.approx(100 / 400) and p.noise_multiplier > 0.3
    assert p.unit.startswith("user")
    assert model.history.best_epoch == 8 and all(r.valid is None for r in model.history.records)


def test_private_training_still_learns_the_ring(fitted):
    model, split = fitted
    res = evaluate(model, split.test, N, EvalConfig(cutoffs=(1, 10)), progress=False)
    # random: 1 of the ~13 items not in the history
    assert res.metrics["HR@1"] > 0.5, res.metrics


def test_run_folder_records_the_guarantee_and_reloads(tmp_path):
    src = tmp_path / "shop.txt"
    src.write_text("\n".join(f"u{u} " + " ".join(map(str, row))
                             for u, row in enumerate(ring_rows(200, seed=1))) + "\n")
    runner = CliRunner()
    data, out = tmp_path / "data", tmp_path / "run"
    for args in (["ingest", src, "--format", "sequence", "--data", data],
                 ["train", "--data", data, "--model", "sasrec", "--out", out, "--set", "dp.epsilon=4",
                  "--set", "dp.accountant=rdp", "--set", "train.epochs=2", "--set", "train.batch_size=50",
                  "--set", "arch.d_model=16", "--set", "train.threads=1"]):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    assert "differential privacy: epsilon" in result.output
    info = json.loads((out / "run.json").read_text())
    assert info["model_config"]["dp"]["epsilon"] == 4.0
    spent = info["privacy"]
    assert spent["accountant"] == "rdp" and spent["steps"] == 8 and 0 < spent["epsilon"] <= 4.0
    run = load_run(out)
    assert run.model.config.dp == DPConfig(epsilon=4.0, accountant="rdp")
    assert run.model.privacy.to_dict() == spent
    training = json.loads((out / "model" / "training.json").read_text())
    assert training["privacy"] == spent
    assert [r["loss"] for r in training["records"]] == [None, None]  # not a private statistic
    assert not (out / "model" / "training.png").exists()
    assert run.model.score(Sequences.from_lists([[1, 2, 3]])).shape == (1, N + 1)


@pytest.mark.parametrize("key,value", [("dp.epsilon", "0"), ("dp.epsilon", "-1"), ("dp.epsilon", "inf"),
                                       ("dp.delta", "1.5"), ("dp.delta", "0"), ("dp.max_grad_norm", "0"),
                                       ("dp.accountant", "moments"), ("dp.chunk", "0")])
def test_bad_settings_name_the_field(key, value):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make_model("sasrec", {"dp.epsilon": "1", key: value})


@pytest.mark.parametrize("name,extra,why", [("sasrec", {"train.crop": "all"}, "crop"),
                                            ("sasrec", {"members": "2"}, "members"),
                                            ("sasrec", {"train.loss": "gbce"}, "loss"),
                                            ("bert4rec", {}, "bert4rec")])
def test_unsupported_combinations_are_refused(name, extra, why):
    model = make_model(name, {"dp.epsilon": "1", **extra})
    with pytest.raises(ValueError, match=rf"dp\.epsilon.*{why}"):
        model.fit(ring_shop(20), N)


def test_non_private_training_is_unchanged_by_default():
    model = make_model("sasrec", {"arch.d_model": "16", "train.epochs": "1", "train.threads": "1"})
    assert not model.config.dp.enabled
    model.fit(ring_shop(50), N)
    assert model.privacy is None
