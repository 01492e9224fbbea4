"""Distillation (train/distill.py, compression.distil_run): the loss against hand-computed
values, and a tiny teacher -> student run whose folder reloads and records its origin."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shopformer.artifact import load_run, make_model, run_version
from shopformer.compression import distil_run, student_config
from shopformer.dataset import DataConfig
from shopformer.experiment import train_run
from shopformer.features.sequences import Sequences
from shopformer.ingest.api import ingest
from shopformer.models.quantize import parameter_count
from shopformer.train import losses
from shopformer.train.distill import DistillConfig, DistillGrid, check_pair, kd_loss

N_ITEMS = 30
TINY = {"arch.max_len": "8", "arch.n_layers": "1", "arch.n_heads": "1", "arch.dropout": "0",
        "train.epochs": "6", "train.batch_size": "64", "train.lr": "0.01", "train.warmup_steps": "5",
        "train.threads": "1", "train.patience": "6"}


def test_kd_loss_equals_the_hand_computed_value():
    s = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    t = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    y = torch.tensor([0, 1])
    a, T = 0.3, 2.0

    def softmax(v):
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]

    ce = -(math.log(softmax([1, 0, 0])[0]) + math.log(softmax([0, 2, 0])[1])) / 2
    kl = 0.0
    for sr, tr in zip(s.tolist(), t.tolist()):
        p, q = softmax([x / T for x in tr]), softmax([x / T for x in sr])
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    want = (1 - a) * ce + a * T * T * kl / 2
    assert kd_loss(s, t, y, DistillConfig(a, T)).item() == pytest.approx(want, rel=1e-6)


def test_alpha_zero_is_the_next_item_cross_entropy():
    g = torch.Generator().manual_seed(0)
    h, table = torch.randn(7, 5, generator=g), torch.randn(N_ITEMS + 1, 5, generator=g)
    y = torch.randint(1, N_ITEMS + 1, (7,), generator=g)
    logits = h @ table[1:].T
    want = losses.full_ce(h, table, y)  # the loss `shopformer train` uses
    assert kd_loss(logits, None, y - 1, DistillConfig(0.0, 3.0)).item() == pytest.approx(want.item(), rel=1e-5)
    # the teacher's logits change nothing at alpha 0; equal to the student's they add no KL
    assert kd_loss(logits, torch.randn(7, N_ITEMS), y - 1, DistillConfig(0.0)).item() == pytest.approx(want.item(), rel=1e-5)
    both = kd_loss(logits, logits, y - 1, DistillConfig(0.5, 2.0)).item()
    assert both == pytest.approx(0.5 * F.cross_entropy(logits, y - 1).item(), rel=1e-5)


@pytest.mark.parametrize("alpha,temperature", [(-0.1, 1.0), (1.5, 1.0), (0.5, 0.0)])
def test_bad_settings_are_refused(alpha, temperature):
    with pytest.raises(ValueError, match="distill"):
        DistillConfig(alpha, temperature)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A shop where the next item is the previous one + 1 (mod 30), 1 in 10 steps random."""
    root = tmp_path_factory.mktemp("distil")
    rng = np.random.default_rng(0)
    lines = []
    for u in range(300):
        item = int(rng.integers(N_ITEMS))
        seq = []
        for _ in range(8):
            seq.append(f"i{item}")
            item = (item + 1) % N_ITEMS if rng.random() > 0.1 else int(rng.integers(N_ITEMS))
        lines.append(f"u{u} " + " ".join(seq))
    (root / "seq.txt").write_text("\n".join(lines) + "\n")
    ingest(root / "seq.txt", "sequence", root / "data")
    run = train_run(make_model("sasrec", {**TINY, "arch.d_model": "32"}), root / "data", DataConfig(),
                    root / "teacher")
    return run


def test_a_tiny_student_learns_from_the_teacher_alone_and_its_folder_reloads(teacher, tmp_path):
    # alpha 1: no next-item labels at all, only the teacher's soft targets
    run = distil_run(teacher.folder, tmp_path / "student", {"arch.d_model": "8"},
                     [DistillConfig(1.0, 1.0), DistillConfig(1.0, 2.0)])
    assert run.info["distilled_from"] == {"run": str(teacher.folder.resolve()), "version": run_version(teacher.folder)}
    grid = run.info["distill_grid"]
    assert len(grid) == 2 and run.info["alpha"] == 1.0
    best = max(grid, key=lambda g: g["valid_NDCG@10"])
    assert run.info["temperature"] == best["temperature"]  # chosen on validation
    assert run.model.config.arch.d_model == 8 and run.model.config.train.lr == teacher.model.config.train.lr
    assert parameter_count(run.model.module) * 2 < parameter_count(teacher.model.module)
    # the pattern is learnt from soft targets alone: far above the 10/30 of a random top-10
    assert best["valid_NDCG@10"] > 0.6
    saved = json.loads((tmp_path / "student" / "run.json").read_text())
    assert saved["alpha"] == run.info["alpha"] and saved["temperature"] == run.info["temperature"]
    again = load_run(tmp_path / "student")
    hist = Sequences.from_lists([[1, 2, 3], [5, 6]])
    assert np.allclose(again.model.score(hist)[:, 1:], run.model.score(hist)[:, 1:], atol=1e-5)


def test_student_settings_start_from_the_teacher(teacher):
    cfg = student_config(teacher.model.config, {"arch.d_model": "16", "train.epochs": "2"})
    assert cfg.arch.d_model == 16 and cfg.train.epochs == 2 and cfg.members == 1
    assert cfg.arch.max_len == teacher.model.config.arch.max_len
    with pytest.raises(ValueError, match="no setting"):
        student_config(teacher.model.config, {"arch.width": "3"})
    with pytest.raises(ValueError, match="max_len"):
        check_pair(teacher.model, student_config(teacher.model.config, {"arch.max_len": "50"}))


def test_grid_candidates():
    assert [(c.alpha, c.temperature) for c in DistillGrid((0.5,), (1.0, 4.0)).candidates()] == [(0.5, 1.0), (0.5, 4.0)]


def test_distil_command_with_quantize(teacher, tmp_path):
    pytest.importorskip("torchao")
    from typer.testing import CliRunner

    from shopformer.cli import app

    out = tmp_path / "small"
    res = CliRunner().invoke(app, ["distil", "--teacher", str(teacher.folder), "--out", str(out), "--alpha", "0.5",
                                   "--temperature", "2", "--set", "arch.d_model=8", "--set", "train.epochs=1",
                                   "--quantize"])
    assert res.exit_code == 0, res.output
    assert "alpha 0.5, T 2, validation NDCG@10 0." in res.output and "fewer than the teacher" in res.output
    q = load_run(tmp_path / "small-int8")
    assert q.info["quantized"] == "int8-dynamic" and q.info["distilled_from"]["run"] == str(teacher.folder.resolve())
    bad = CliRunner().invoke(app, ["distil", "--teacher", str(teacher.folder), "--out", str(tmp_path / "x"),
                                   "--alpha", "2"])
    assert bad.exit_code == 2 and "alpha" in bad.output


def test_an_ensemble_teacher_is_distilled(teacher, tmp_path):
    # the teacher is an ensemble (members=2): its mean score is what the student matches
    data = teacher.info["data_dir"]
    ensemble = train_run(make_model("sasrec", {**TINY, "arch.d_model": "16", "members": "2", "train.epochs": "2"}),
                         data, DataConfig(), tmp_path / "ensemble")
    run = distil_run(ensemble.folder, tmp_path / "from-ensemble", {"arch.d_model": "8", "train.epochs": "1"},
                     [DistillConfig(0.9, 2.0)])
    assert run.model.config.members == 1 and run.info["alpha"] == 0.9
    assert run.info["distilled_from"]["version"] == run_version(ensemble.folder)
