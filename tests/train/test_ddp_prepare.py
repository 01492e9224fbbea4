"""``distributed.prepare_on_every_rank``: the ranks prepare their data, then agree on it
(or all fail with the reason) before training; a cache-writing preparation runs rank 0
first. Two gloo processes standing for two hosts (LOCAL_RANK 0 on both)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from shopformer.train import distributed

from test_ddp import spawn_two


def _outcome(call) -> str:
    try:
        return f"ok {call()}"
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return f"{type(exc).__name__}: {exc}"


def _worker(rank: int, world: int, port: int, log: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)

    def logged() -> int:
        with open(log, "a") as f:
            f.write(f"start {rank}\n")
        time.sleep(0.3)  # long enough for an unordered rank 1 to start meanwhile
        with open(log, "a") as f:
            f.write(f"end {rank}\n")
        return rank

    def missing() -> int:
        if rank == 1:
            raise FileNotFoundError("no events in data")
        return 7

    prepare = distributed.prepare_on_every_rank
    try:
        report = {
            "cache": _outcome(lambda: prepare("cpu", logged, lambda r: "same", writes_cache=True)),
            "differ": _outcome(lambda: prepare("cpu", lambda: rank, lambda r: f"digest {r}")),
            "missing": _outcome(lambda: prepare("cpu", missing, lambda r: "same")),
            "agree": _outcome(lambda: prepare("cpu", lambda: 5, lambda r: "same")),
        }
        torch.save(report, f"{out}.{rank}")
    finally:
        distributed.stop()


def test_ranks_agree_on_their_data_or_fail_together(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.prepare_on_every_rank("cpu", lambda: 3, lambda r: "x") == 3  # one process: just prepare
    log = tmp_path / "log"
    r0, r1 = spawn_two(_worker, tmp_path, str(log), timeout_s=90)
    # a cache-writing preparation: rank 0 finished before rank 1 began
    assert Path(log).read_text().split("\n")[:4] == ["start 0", "end 0", "start 1", "end 1"]
    assert (r0["cache"], r1["cache"]) == ("ok 0", "ok 1")
    for r in (r0, r1):
        assert r["differ"].startswith("RanksDisagree: the ranks prepared different data (rank 0 on ")
        assert "digest 0; rank 1 on" in r["differ"] and r["differ"].endswith("at the --data path")
        assert r["agree"] == "ok 5"
    assert r1["missing"] == "FileNotFoundError: no events in data"  # its own error, as in one process
    assert r0["missing"].startswith("RanksDisagree: rank 1 on ")
    assert r0["missing"].endswith("could not prepare its data: FileNotFoundError: no events in data")
