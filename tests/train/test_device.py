"""Training on a named device: ``train.device`` / ``shopformer train --device``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shopformer.cli import app
from shopformer.features.sequences import Sequences
from shopformer.features.splits import leave_one_out
from shopformer.models.sasrec import SASRecConfig
from shopformer.models.sequential import SASRecRecommender, TransformerConfig
from shopformer.train.device import amp_dtype, resolve_device
from shopformer.train.loop import TrainConfig

runner = CliRunner()
HAS_CUDA = torch.cuda.is_available()
TINY = ["--set", "train.epochs=2", "--set", "arch.d_model=16", "--set", "arch.n_layers=1",
        "--set", "arch.max_len=8", "--set", "train.threads=1"]


def test_device_names():
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"train.device \(--device\): unknown device 'tpu'"):
        resolve_device("tpu")
    # float32 on the CPU even when asked for mixed precision
    assert amp_dtype(torch.device("cpu"), True) is None


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "shop.txt"
    src.write_text("".join(f"u{u} " + " ".join(str(i) for i in rng.integers(1, 20, 8)) + "\n" for u in range(40)))
    out = tmp_path / "data"
    result = runner.invoke(app, ["ingest", str(src), "--format", "sequence", "--data", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_cli_device_is_recorded_in_the_run_folder(data, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(data), "--model", "sasrec", "--device", "cpu", "--out", str(run),
                                 *TINY])
    assert result.exit_code == 0, result.output
    info = json.loads((run / "run.json").read_text())
    assert info["training"] == {"device": "cpu", "processes": 1, "precision": "float32"}
    assert json.loads((run / "model" / "config.json").read_text())["train"]["device"] == "cpu"


def test_cli_device_errors(data, tmp_path):
    bad = runner.invoke(app, ["train", "--data", str(data), "--model", "ease", "--device", "cuda"])
    assert bad.exit_code != 0 and "--device: ease fits on the CPU" in bad.output
    bad = runner.invoke(app, ["train", "--data", str(data), "--model", "sasrec", "--device", "gpu0"])
    assert bad.exit_code != 0 and "unknown device 'gpu0'" in bad.output


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "shopformer", "train", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--device" in out.stdout


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (PyTorch sees none here)")
def test_trains_on_cuda_with_mixed_precision_and_loads_on_cpu(tmp_path):
    rng = np.random.default_rng(1)
    split = leave_one_out(Sequences.from_lists([list(rng.integers(1, 31, 12)) for _ in range(200)]))
    m = SASRecRecommender(TransformerConfig(
        arch=SASRecConfig(max_len=10, d_model=32, n_layers=1, dropout=0.0),
        train=TrainConfig(epochs=3, batch_size=32, warmup_steps=2, device="cuda")))
    m.fit(split.train, 30, split.valid)
    assert m.training_setup["device"].startswith("cuda")
    assert m.training_setup["precision"] in ("bfloat16", "float16")
    assert next(m.module.parameters()).device.type == "cpu"  # moved back for serving
    assert all(np.isfinite(r.loss) for r in m.history.records)
    m.save(tmp_path)
    loaded = SASRecRecommender.load(tmp_path)
    np.testing.assert_allclose(loaded.score(split.valid.history), m.score(split.valid.history), atol=1e-5)
