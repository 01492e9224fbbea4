"""Two CPU processes (gloo) train the same weights as one process on the same global
batches: the DDP path of ``train/distributed.py`` through ``SASRecRecommender.fit``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from shopformer.features.sequences import Sequences
from shopformer.features.splits import leave_one_out
from shopformer.models.sasrec import SASRecConfig
from shopformer.models.sequential import (
    BERT4RecConfig,
    BERT4RecRecommender,
    SASRecRecommender,
    TransformerConfig,
)
from shopformer.train import distributed
from shopformer.train.distributed import Ranks, shard_weight
from shopformer.train.loop import TrainConfig

N_ITEMS = 30
# 61 users with >= 3 events in batches of 15: the last global batch has one row, so
# rank 1 gets none there and must still join the step (with zero weight)
N_USERS, BATCH = 61, 15


def shop() -> Sequences:
    rng = np.random.default_rng(3)
    return Sequences.from_lists([list(rng.integers(1, N_ITEMS + 1, rng.integers(4, 14))) for _ in range(N_USERS)])


def model(kind: str):
    train = TrainConfig(epochs=3, batch_size=BATCH, lr=5e-3, warmup_steps=2, patience=1, threads=1,
                        device="cpu", grad_clip=1.0)
    if kind == "sasrec":
        return SASRecRecommender(TransformerConfig(
            arch=SASRecConfig(max_len=8, d_model=16, n_layers=1, n_heads=2, dropout=0.0), train=train))
    return BERT4RecRecommender(BERT4RecConfig(
        arch=SASRecConfig(max_len=8, d_model=16, n_layers=1, n_heads=2, dropout=0.0, causal=False), train=train))


def fit_and_report(kind: str) -> dict:
    split = leave_one_out(shop())
    m = model(kind).fit(split.train, N_ITEMS, split.valid)
    return {"state": {k: v.clone() for k, v in m.module.state_dict().items()},
            "losses": [r.loss for r in m.history.records], "valid": [r.valid for r in m.history.records],
            "best_epoch": m.history.best_epoch, "setup": m.training_setup}


def _worker(rank: int, world: int, port: int, kind: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        report = fit_and_report(kind)
        report["rank"] = rank
        torch.save(report, f"{out}.{rank}")
    finally:
        distributed.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(kind: str, tmp_path: Path) -> list[dict]:
    return spawn_two(_worker, tmp_path, kind)


def spawn_two(worker, tmp_path: Path, *args, timeout_s: float = 120.0) -> list[dict]:  # noqa: ANN001
    """Run ``worker(rank, 2, port, *args, out)`` in two spawned processes (gloo on a free
    port) and return what each saved to ``out.<rank>``; fails after ``timeout_s``."""
    out = str(tmp_path / "report")
    ctx = mp.start_processes(worker, args=(2, free_port(), *args, out), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"the two processes did not finish within {timeout_s:.0f} s (a rank waiting on another?)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]


@pytest.fixture(autouse=True)
def single_process_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_two_gloo_processes_train_the_single_process_weights(kind, tmp_path):
    single = fit_and_report(kind)
    ranks = run_two_processes(kind, tmp_path)
    assert single["setup"] == {"device": "cpu", "processes": 1, "precision": "float32"}
    for r in ranks:
        assert r["setup"] == {"device": "cpu", "processes": 2, "precision": "float32"}
        # the same epochs ran (rank 0's stop decision reached rank 1), with the same scores
        assert r["best_epoch"] == single["best_epoch"]
        assert r["valid"] == pytest.approx(single["valid"], abs=1e-6)
        assert r["losses"] == pytest.approx(single["losses"], abs=1e-5)
        assert r["state"].keys() == single["state"].keys()
        for key, value in single["state"].items():
            torch.testing.assert_close(r["state"][key], value, atol=1e-5, rtol=1e-4, msg=key)
    assert len(single["losses"]) >= 2  # more than one epoch of updates was compared


def test_shards_cover_the_batch_once_and_weights_restore_the_global_mean():
    n = 7
    shards = [Ranks(rank=r, world_size=3).shard(n) for r in range(3)]
    assert [s.tolist() for s in shards] == [[0, 1, 2], [3, 4], [5, 6]]
    assert Ranks(rank=1, world_size=2).shard(1).tolist() == []
    # per-row losses; each rank's mean times its weight, averaged over ranks = global mean
    losses = np.array([0.5, 2.0, 1.0, 4.0, 3.0, 0.25, 1.5])
    averaged = sum(losses[s].mean() * shard_weight(len(s), n, 3) for s in shards) / 3
    assert averaged == pytest.approx(losses.mean())
    assert shard_weight(0, n, 3) == 0.0
    with pytest.raises(ValueError, match="targets"):
        shard_weight(0, 0, 2)


def test_environment_is_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        distributed.ranks_from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2"):
        distributed.ranks_from_env()
    monkeypatch.setenv("RANK", "1")
    assert distributed.ranks_from_env() == (1, 2, 0)
    assert not distributed.is_main_process()  # rank 1 writes no run folder


def test_torchrun_writes_the_single_process_run_folder(tmp_path):
    """``torchrun --nproc-per-node 2 -m shopformer train``: one run folder, written by
    rank 0, with the weights a single process trains."""
    rng = np.random.default_rng(0)
    src = tmp_path / "shop.txt"
    src.write_text("".join(f"u{u} " + " ".join(str(i) for i in rng.integers(1, 20, 8)) + "\n" for u in range(41)))
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cli = [sys.executable, "-m", "shopformer"]
    subprocess.run([*cli, "ingest", str(src), "--format", "sequence", "--data", str(data)], check=True, env=env,
                   capture_output=True, timeout=60)
    train = ["train", "--data", str(data), "--model", "sasrec", "--device", "cpu", "--set", "train.epochs=2",
             "--set", "train.batch_size=9", "--set", "arch.d_model=16", "--set", "arch.n_layers=1",
             "--set", "arch.max_len=8", "--set", "arch.dropout=0", "--set", "train.threads=1"]
    one = subprocess.run([*cli, *train, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "shopformer",
                          *train, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=120)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("trained sasrec") == 1  # rank 0 reports, rank 1 stays quiet
    files = lambda run: sorted(str(p.relative_to(run)) for p in run.rglob("*"))  # noqa: E731
    assert files(tmp_path / "two") == files(tmp_path / "one")
    info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert info["training"] == {"device": "cpu", "processes": 2, "precision": "float32"}
    w1 = torch.load(tmp_path / "one" / "model" / "weights.pt", weights_only=True)
    w2 = torch.load(tmp_path / "two" / "model" / "weights.pt", weights_only=True)
    for key, value in w1.items():
        torch.testing.assert_close(w2[key], value, atol=1e-5, rtol=1e-4, msg=key)
