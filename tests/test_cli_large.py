"""`shopformer ingest --stream` then `shopformer train` on the bounded-memory path."""

import json

import numpy as np
import polars as pl
from typer.testing import CliRunner

from shopformer.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_stream_ingest_then_train_sasrec_sampled(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    pl.DataFrame({
        "user_id": [f"u{x}" for x in np.repeat(np.arange(100), 30)],
        "item_id": [f"i{x}" for x in rng.zipf(1.4, n) % 200],
        "event_type": ["view"] * (n - 1) + ["teleport"],
        "timestamp": np.arange(n) + 1_600_000_000,
    }).write_parquet(tmp_path / "e.parquet")
    data = tmp_path / "data"
    out = invoke("ingest", tmp_path / "e.parquet", "--data", data, "--stream")
    assert "no duplicate check" in out
    report = json.loads((data / "ingest_report.json").read_text())
    assert report["rows_accepted"] == n - 1 and report["rejected"] == {"unknown_event_type": 1}

    run = tmp_path / "run"
    invoke("train", "--data", data, "--model", "sasrec", "--out", run, "--set", "train.epochs=1",
           "--set", "train.loss=sampled", "--set", "train.n_negatives=16", "--set", "arch.d_model=16",
           "--set", "arch.max_len=10", "--device", "cpu")
    info = json.loads((run / "run.json").read_text())
    assert info["bounded_memory"] is True
    assert info["dataset"] == {"users": 100, "items": len(json.loads((run / "items.json").read_text())),
                               "interactions": n - 1}
    assert (data / "prepared" / "train_items.npy").exists()
    # evaluating the run prepares it the same way (from the cache)
    invoke("evaluate", "--run", run, "--out", tmp_path / "res.json", "--k", "10")
    assert json.loads((tmp_path / "res.json").read_text())
