"""Data-parallel SASRec training on ML-1M: one process against N processes (torchrun,
gloo on CPU; NCCL when --device cuda), same seed, same global batches, a fixed number
of epochs. Reports each run's validation NDCG@10 and its training throughput
(sequences a second, in total and per process), both measured in this run.

Usage: python benchmarks/ddp.py [--data ../shared/data] [--epochs 5] [--processes 2]
       [--device cpu] [--users 0]
Writes benchmarks/results/ddp.json and .md (one record per device and process count).

Three runs: one process with every core's thread, one process with cores / N threads,
and N processes with cores / N threads each (every core busy); the second isolates
what the extra processes add from how well one process uses several threads.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import save  # noqa: E402

from shopformer.evaluate.report import cpu_model  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
ML1M = "ml-1m/ml-1m_sequences.txt.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ingest(data: Path, folder: Path, users: int) -> Path:
    """ML-1M into a data folder; with ``users`` > 0 only the first ``users`` users."""
    src = data / ML1M
    if users:
        sliced = folder / "ml-1m-slice.txt"
        keep: list[str] = []
        with gzip.open(src, "rt") as f:
            seen: set[str] = set()
            for line in f:
                user = line.split(maxsplit=1)[0]
                if user not in seen and len(seen) == users:
                    break
                seen.add(user)
                keep.append(line)
        sliced.write_text("".join(keep))
        src = sliced
    out = folder / "data"
    subprocess.run([sys.executable, "-m", "shopformer", "ingest", str(src), "--format", "sequence", "--data", str(out)],
                   check=True, capture_output=True)
    return out


def train(data: Path, run: Path, processes: int, threads: int, args: argparse.Namespace) -> dict:
    settings = {"train.epochs": args.epochs, "train.batch_size": args.batch_size, "train.seed": 42,
                "arch.max_len": args.max_len, "arch.d_model": args.d_model, "arch.n_layers": 2,
                "arch.dropout": args.dropout, "train.patience": 1000, "train.crop": "random"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "shopformer", "train",
           "--data", str(data), "--model", "sasrec", "--device", args.device, "--out", str(run)]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={value}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"training with {processes} process(es) failed:\n{done.stderr[-4000:]}")
    info = json.loads((run / "run.json").read_text())
    history = json.loads((run / "model" / "training.json").read_text())
    records = history["records"]
    sequences = info["dataset"]["users"] * len(records)  # crop=random: one window per user and epoch
    train_s = records[-1]["seconds"]  # training wall time, evaluations excluded
    # after the first epoch (which pays one-off start-up costs: allocations, first kernels)
    later_s = train_s - records[0]["seconds"]
    steady = info["dataset"]["users"] * (len(records) - 1) / later_s if len(records) > 1 and later_s > 0 else None
    return {
        "dataset": "ml-1m" if not args.users else f"ml-1m first {args.users} users",
        "model": f"sasrec {args.device} x{processes} ({threads} threads each)",
        "device": info["training"]["device"],
        "processes": info["training"]["processes"],
        "precision": info["training"]["precision"],
        "threads_per_process": threads,
        "epochs": len(records),
        "sequences_per_epoch": info["dataset"]["users"],
        "train_seconds": train_s,
        "wall_seconds": round(wall, 2),
        "sequences_per_s": round(sequences / train_s, 1),
        "sequences_per_s_per_process": round(sequences / train_s / processes, 1),
        "steady_sequences_per_s": None if steady is None else round(steady, 1),
        "steady_sequences_per_s_per_process": None if steady is None else round(steady / processes, 1),
        "valid_ndcg10_last": records[-1]["valid"],
        "valid_ndcg10_best": history["best_valid"],
        "losses": [round(r["loss"], 5) for r in records],
        "valid_curve": [r["valid"] for r in records],
    }


def markdown(results: list[dict], meta: dict) -> str:
    m, c = meta["machine"], meta["config"]
    lines = [
        "# DDP training: one process against several (SASRec)",
        "",
        f"{meta['date']} on {m['cpu']} ({m['cpu_count']} cores), {m['platform']}, PyTorch {m['torch']}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU") + ".",
        f"Config: {c}. Same seed and same global batches in every run; `torchrun --nproc-per-node N -m shopformer "
        "train`; throughput = training sequences (one window per user and epoch) / training seconds "
        "(evaluation excluded).",
        "",
        "| data | device | processes | threads each | epochs | train s | seq/s total | seq/s per process "
        "| after epoch 1: seq/s total | per process | valid NDCG@10 (last) | losses |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r['dataset']} | {r['device']} ({r['precision']}) | {r['processes']} | "
                     f"{r['threads_per_process']} | {r['epochs']} | {r['train_seconds']:.1f} | "
                     f"{r['sequences_per_s']:.1f} | {r['sequences_per_s_per_process']:.1f} | "
                     f"{r['steady_sequences_per_s'] or '-'} | {r['steady_sequences_per_s_per_process'] or '-'} | "
                     f"{r['valid_ndcg10_last']:.4f} | {', '.join(f'{x:.4f}' for x in r['losses'])} |")
    lines += ["", meta.get("note", ""), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--users", type=int, default=0, help="only the first N users (0 = all 6,040)")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    share = max(1, cores // args.processes)
    plan = [(1, cores)] + ([(1, share)] if share != cores else []) + [(args.processes, share)]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        data = ingest(args.data, Path(tmp), args.users)
        for n, threads in plan:
            r = train(data, Path(tmp) / f"run{n}x{threads}", n, threads, args)
            print(f"{n} process(es) x {threads} thread(s): {r['sequences_per_s']:.0f} seq/s "
                  f"({r['sequences_per_s_per_process']:.0f} per process), valid NDCG@10 {r['valid_ndcg10_last']:.4f}, "
                  f"{r['train_seconds']:.1f} s training")
            records.append(r)
    one, many = records[-2], records[-1]  # same threads per process
    meta = {
        "benchmark": "ddp",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {k: v for k, v in vars(args).items() if k not in ("data", "out")},
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "note": ("Other work shared this machine's cores during the run, so throughput is noisy. "
                 f"Latest run: {args.processes} processes trained at {many['sequences_per_s'] / one['sequences_per_s']:.2f}x "
                 f"the throughput of one process with as many threads as each of them, "
                 f"{many['sequences_per_s'] / records[0]['sequences_per_s']:.2f}x that of one process with all "
                 f"{cores} threads; validation NDCG@10 {many['valid_ndcg10_last']:.4f} against "
                 f"{one['valid_ndcg10_last']:.4f} (dropout masks differ between the runs, so the curves are close, "
                 "not identical; with dropout 0 they match to float precision, tests/train/test_ddp.py)."),
    }
    save(args.out, "ddp", meta, records, markdown,
         key=lambda r: (r["dataset"], r["device"], r["processes"], r["threads_per_process"]))


if __name__ == "__main__":
    main()
