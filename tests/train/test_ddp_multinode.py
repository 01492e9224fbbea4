"""Two hosts simulated on one machine: two ``torchrun`` launchers (``--nnodes 2
--nproc-per-node 1 --node-rank 0|1 --rdzv-endpoint``, the form docs/scaling.md gives),
each in its own folder holding its own copy of the data, as two hosts without a shared
filesystem would. They must train what one host's ``torchrun --nproc-per-node 2``
trains, write one run folder (global rank 0's, on node 0), and fail together and fast
when one host cannot prepare its data (across hosts torchrun stops nothing for you)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from shopformer.artifact import load_run

from test_ddp import free_port

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch.distributed.run") is None or not dist.is_available()
    or not dist.is_gloo_available(), reason="needs torchrun (torch.distributed.run) with the gloo backend")

TRAIN = ["train", "--data", "data", "--out", "run", "--model", "sasrec", "--device", "cpu", "--set", "train.epochs=2",
         "--set", "train.batch_size=9", "--set", "train.lr=0.01", "--set", "arch.d_model=16", "--set",
         "arch.n_layers=1", "--set", "arch.max_len=8", "--set", "arch.dropout=0", "--set", "train.threads=1"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A tiny ingested shop (the one test_ddp's torchrun test trains on)."""
    root = tmp_path_factory.mktemp("shop")
    rng = np.random.default_rng(0)
    src = root / "shop.txt"
    src.write_text("".join(f"u{u} " + " ".join(str(i) for i in rng.integers(1, 20, 8)) + "\n" for u in range(41)))
    subprocess.run([sys.executable, "-m", "shopformer", "ingest", str(src), "--format", "sequence", "--data",
                    str(root / "data")], check=True, env=environment(), capture_output=True, timeout=60)
    return root / "data"


def host(tmp_path: Path, name: str, data: Path | None) -> Path:
    """A folder standing for one host's disk: its own copy of the data (or none)."""
    folder = tmp_path / name
    folder.mkdir()
    if data is not None:
        shutil.copytree(data, folder / "data")
    return folder


def two_nodes(host0: Path, host1: Path, timeout: float = 90) -> list[subprocess.CompletedProcess]:
    """Node 0 in ``host0``, node 1 in ``host1``: static rendezvous on a free loopback
    port; both killed (and the test failed) if either outlives ``timeout``."""
    port = free_port()
    procs = [subprocess.Popen([*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                               "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "shopformer", *TRAIN], cwd=cwd,
                              env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for node, cwd in enumerate((host0, host1))]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the two nodes did not finish within {timeout} s (a rank waiting on the other host?)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_two_nodes_train_the_one_node_run_and_write_one_folder(data, tmp_path):
    one = host(tmp_path, "one-host", data)
    ref = subprocess.run([*TORCHRUN, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                          str(free_port()), "-m", "shopformer", *TRAIN], cwd=one, env=environment(),
                         capture_output=True, text=True, timeout=90, check=False)
    assert ref.returncode == 0, ref.stderr[-3000:]

    host0, host1 = host(tmp_path, "host0", data), host(tmp_path, "host1", data)
    before = files(host1)
    node0, node1 = two_nodes(host0, host1)
    assert node0.returncode == 0, node0.stderr[-3000:]
    assert node1.returncode == 0, node1.stderr[-3000:]
    # global rank 0 (node 0) wrote the run folder and reported; node 1 wrote nothing on
    # its host, did not fail for the folder being absent there, and says where it is
    assert node0.stdout.count("trained sasrec") == 1 and "trained" not in node1.stdout
    assert files(host1) == before
    assert "rank 1 done: rank 0 wrote the run folder run on its host" in " ".join(node1.stdout.split())
    assert files(host0 / "run") == files(one / "run")
    run = load_run(host0 / "run")
    assert run.info["training"] == {"device": "cpu", "processes": 2, "precision": "float32"}
    assert run.info["data_dir"] == str((host0 / "data").resolve())

    # the same batches, the same steps: the same losses, scores and weights as one host
    history = [json.loads((folder / "run" / "model" / "training.json").read_text()) for folder in (one, host0)]
    assert [r["epoch"] for r in history[1]["records"]] == [1, 2]
    for key in ("loss", "valid", "step"):
        assert [r[key] for r in history[1]["records"]] == pytest.approx([r[key] for r in history[0]["records"]],
                                                                        abs=1e-6), key
    w_one = torch.load(one / "run" / "model" / "weights.pt", weights_only=True)
    w_two = torch.load(host0 / "run" / "model" / "weights.pt", weights_only=True)
    assert w_two.keys() == w_one.keys()
    for key, value in w_one.items():
        torch.testing.assert_close(w_two[key], value, atol=1e-6, rtol=1e-5, msg=key)


def test_a_host_without_the_data_stops_both_nodes_with_its_reason(data, tmp_path):
    """Before the ranks checked their data together, node 0 waited in
    init_process_group for 30 minutes after node 1 had failed."""
    host0, host1 = host(tmp_path, "host0", data), host(tmp_path, "host1", None)
    node0, node1 = two_nodes(host0, host1, timeout=60)
    assert node1.returncode != 0 and "no events in data" in node1.stdout
    assert node0.returncode != 0
    assert "rank 1 on" in node0.stdout and "could not prepare its data: FileNotFoundError: no events in data" in \
        " ".join(node0.stdout.split())
    assert not (host0 / "run").exists() and not (host1 / "run").exists()


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    """Global rank 3 of 4 on the second of two 2-GPU hosts trains on cuda:1 (its LOCAL_RANK),
    not cuda:3, which that host does not have. No GPU needed: CUDA and the group are faked."""
    from shopformer.train import distributed

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    picked = []
    monkeypatch.setattr(distributed, "resolve_device", lambda name: torch.device(name))
    monkeypatch.setattr(torch.cuda, "set_device", picked.append)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(dist, "get_rank", lambda: 3)
    ranks = distributed.start("cuda")
    assert (ranks.rank, ranks.world_size, ranks.local_rank) == (3, 4, 1)
    assert ranks.device == torch.device("cuda", 1) and picked == [torch.device("cuda", 1)]
    assert not ranks.main and not distributed.is_main_process()  # only global rank 0 writes
    assert ranks.shard(8).tolist() == [6, 7]  # its slice of the global batch follows the global rank
