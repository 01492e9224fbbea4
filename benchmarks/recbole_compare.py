"""Speed comparison with RecBole's SASRec on Beauty: validation NDCG@10 against wall time.

Both models: causal SASRec, full-softmax cross-entropy, hidden size 64, 2 layers, 2 heads,
dropout 0.5, 50 positions, batch 256, learning rate 0.001, validation NDCG@10 (full
ranking, leave-one-out, training-history items excluded) after every epoch, the same
wall-clock cap, the same machine, 2 torch threads each. Wall time counts from the start of
each trainer's fit (data loading and model construction are recorded apart).

RecBole runs in a throwaway venv (it is never a dependency of shopformer):

    python benchmarks/recbole_compare.py setup         # /tmp/recbole-venv: torch (local CPU wheel) + recbole
    python benchmarks/recbole_compare.py convert       # Beauty -> /tmp/recbole-data/beauty/beauty.inter
    python benchmarks/recbole_compare.py run-recbole --minutes 45
    python benchmarks/recbole_compare.py run-ours --minutes 45
    python benchmarks/recbole_compare.py report        # benchmarks/results/recbole_compare.{json,md,png}

Run the two training phases one after the other, never side by side, on an otherwise idle
machine: they share the CPU, and each run records the load average at its start and end.
Each writes its curve under /tmp/recbole-data (RecBole's after every validation, so a run
that is stopped keeps what it had). ``run-recbole --smoke-batches 20 --minutes 2`` checks
the driver quickly (epochs cut to 20 batches: the curve is then not a result, and the
report says SMOKE TEST).

Evaluation parity: RecBole's full-sort evaluation of *sequential* models does not remove
the user's history items (``FullSortEvalDataLoader`` passes ``history_index=None`` for
them), while shopformer's protocol does. The driver therefore masks each user's training
items (everything before the validation item, not only the last 50 the model reads) in
RecBole's validation scores, by subclassing its ``Trainer`` in the driver, not by editing
RecBole. ``run-recbole --keep-history`` gives RecBole's stock behaviour instead.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BEAUTY = HERE.parent.parent / "shared" / "data" / "amazon-beauty" / "Beauty.txt.gz"
VENV = Path("/tmp/recbole-venv")
WORK = Path("/tmp/recbole-data")
TARGET_MINUTES = 15.0  # the target: reach RecBole's 45-minute value in this long

TORCH_VERSION = "2.13.0"
RECBOLE_VERSION = "1.2.1"
#: What importing recbole (including recbole.quick_start) needs, with the pins that keep
#: RecBole 1.2.1 working on Python 3.11 with torch 2.13:
#:   numpy<2        Config.compatibility_settings() sets np.float = np.float_ etc.; np.float_ is gone in numpy 2
#:   setuptools<81  ray 2.6.3 (imported at the top of recbole.quick_start) imports pkg_resources
#:   ray<=2.6.3     RecBole's own requirement
#:   colorlog/colorama pinned as RecBole pins them
#: plotly, tabulate and hyperopt are left out: only RecBole's hyper-parameter tools import them.
RECBOLE_DEPS = [
    "numpy<2",
    "setuptools<81",
    "scipy",
    "pandas>=1.3,<2.3",
    "scikit-learn",
    "tqdm",
    "colorlog==4.7.2",
    "colorama==0.4.4",
    "pyyaml",
    "tensorboard",
    "texttable",
    "thop",
    "psutil",
    "ray==2.6.3",
]
WHEEL_DIRS = ["/opt/wheels"]

#: The shared architecture / optimisation settings.
HIDDEN, INNER, LAYERS, HEADS, DROPOUT, MAX_LEN, BATCH, LR = 64, 256, 2, 2, 0.5, 50, 256, 0.001


def recbole_config(work: Path, threads: int) -> dict:
    return {
        # data: the atomic file written by `convert`; already 5-core, so no filtering
        "data_path": str(work),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "filter_inter_by_user_or_item": False,
        "rm_dup_inter": None,
        "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        # model
        "loss_type": "CE",
        "hidden_size": HIDDEN,
        "inner_size": INNER,
        "n_layers": LAYERS,
        "n_heads": HEADS,
        "hidden_dropout_prob": DROPOUT,
        "attn_dropout_prob": DROPOUT,
        # training
        "train_batch_size": BATCH,
        "learning_rate": LR,
        "epochs": 100000,
        "stopping_step": 100000,
        "eval_step": 1,
        "train_neg_sample_args": None,
        # evaluation: leave-one-out by time, full ranking
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Hit", "NDCG"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 6,
        # machine
        "use_gpu": False,
        "gpu_id": "",
        "worker": 0,
        "show_progress": False,
        "checkpoint_dir": str(work / "saved"),
        "seed": 2020,
        "_threads": threads,  # read by the driver (torch.set_num_threads), not by RecBole
    }


def ours_settings(minutes: float, threads: int, batch: int = BATCH) -> dict[str, str]:
    """SASRecRecommender settings matching RecBole's; the rest are shopformer's defaults.

    ``batch`` counts users' windows, each holding every target of that user (8.9 on
    Beauty on average), while RecBole's batch counts (prefix, target) rows: 256 RecBole
    rows carry about as many targets as 29 shopformer windows."""
    return {
        "arch.d_model": str(HIDDEN),
        "arch.n_layers": str(LAYERS),
        "arch.n_heads": str(HEADS),
        "arch.dropout": str(DROPOUT),
        "arch.attn_dropout": str(DROPOUT),  # RecBole's attn_dropout_prob
        "arch.max_len": str(MAX_LEN),
        "train.batch_size": str(batch),
        "train.lr": str(LR),
        "train.loss": "ce",
        "train.eval_every": "1",
        "train.patience": "100000",
        "train.time_limit_s": str(minutes * 60),
        "train.threads": str(threads),
    }


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


# -- setup ------------------------------------------------------------------------------
def cmd_setup(args) -> None:
    venv = args.venv
    py, pip = venv / "bin" / "python", [str(venv / "bin" / "python"), "-m", "pip"]
    if not py.exists():
        run([args.python, "-m", "venv", str(venv)])
    tag = subprocess.run([str(py), "-c", "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"],
                         check=True, capture_output=True, text=True).stdout.strip()
    have = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    if have.returncode == 0 and have.stdout.strip().startswith(TORCH_VERSION):
        print(f"torch {have.stdout.strip()} already in {venv}")
    else:
        # torch first, and only a CPU build from this machine's disk: never a multi-GB download.
        wheels = sorted(w for d in WHEEL_DIRS for w in glob.glob(f"{d}/torch-{TORCH_VERSION}*-{tag}-*.whl"))
        if wheels:
            run(pip + ["install", wheels[0]])
        else:  # "+cpu" only resolves from the local find-links / cache
            run(pip + ["install", f"torch=={TORCH_VERSION}+cpu"])
    torch_version = subprocess.run([str(py), "-c", "import torch; print(torch.__version__)"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    constraints = venv / "recbole-constraints.txt"
    constraints.write_text(f"torch=={torch_version}\nnumpy<2\nsetuptools<81\n")
    c = ["-c", str(constraints)]
    # recbole without its declared deps (they would bring plotly, tabulate and more), then
    # the deps that importing it needs, with torch held at the installed build.
    run(pip + ["install", *c, "--no-deps", f"recbole=={RECBOLE_VERSION}"])
    run(pip + ["install", *c, *RECBOLE_DEPS])
    check = (
        "import warnings; warnings.simplefilter('ignore');"
        "import recbole; from recbole.quick_start import run_recbole;"
        "from recbole.model.sequential_recommender import SASRec; from recbole.trainer import Trainer;"
        "import torch, numpy, pandas, scipy;"
        "print('recbole', recbole.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__,"
        " 'pandas', pandas.__version__, 'scipy', scipy.__version__)"
    )
    run([str(py), "-c", check])
    print(f"ok: {venv} ready")


# -- convert ----------------------------------------------------------------------------
def cmd_convert(args) -> None:
    out = args.work / "beauty"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "beauty.inter"
    users = rows = 0
    with gzip.open(args.source, "rt") as src, open(path.with_suffix(".tmp"), "w") as dst:
        dst.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in src:
            parts = line.split()
            if len(parts) < 2:
                continue
            user, items = parts[0], parts[1:]
            # timestamp = position in the user's sequence, so RecBole's time order is the file's
            dst.writelines(f"{user}\t{item}\t{pos}\n" for pos, item in enumerate(items))
            users += 1
            rows += len(items)
    path.with_suffix(".tmp").replace(path)
    print(f"wrote {path}: {users} users, {rows} interactions")


# -- run-recbole --------------------------------------------------------------------------
DRIVER = r'''
"""RecBole SASRec under a wall-clock cap (written by benchmarks/recbole_compare.py)."""
import itertools, json, os, sys, threading, time, warnings
warnings.simplefilter("ignore")
T_PROCESS = time.perf_counter()
cfg = json.loads(open(sys.argv[1]).read())
out_path, cap_s, exclude_history = sys.argv[2], float(sys.argv[3]), sys.argv[4] == "exclude"
smoke_batches = int(sys.argv[5])  # >0: train only this many batches an epoch (a smoke test of the loop)
threads = cfg.pop("_threads")

import numpy as np
import torch
torch.set_num_threads(threads)
import recbole
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed

state = {
    "tool": "recbole", "recbole_version": recbole.__version__, "torch_version": torch.__version__,
    "numpy_version": np.__version__, "torch_threads": torch.get_num_threads(),
    "cap_seconds": cap_s, "history_items_excluded": exclude_history, "smoke_batches": smoke_batches,
    "loadavg_start": list(os.getloadavg()), "config": cfg,
    "curve": [], "epochs": [], "stopped": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
}
lock = threading.Lock()
fit_start = None
clock = {}

def write():
    state["loadavg_now"] = list(os.getloadavg())
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, out_path)

def watchdog():
    while True:
        time.sleep(0.5)
        if fit_start is not None and time.perf_counter() - fit_start >= cap_s:
            with lock:
                state["stopped"] = f"wall-clock cap {cap_s:.0f} s"
                state["stopped_at_s"] = round(time.perf_counter() - fit_start, 3)
                write()
            print(f"[driver] wall-clock cap {cap_s:.0f} s reached: stopping", flush=True)
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(0)

with lock:
    write()
config = Config(model="SASRec", dataset="beauty", config_dict=cfg)
init_seed(config["seed"], config["reproducibility"])
init_logger(config)
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
model = SASRec(config, train_data._dataset).to(config["device"])

# Each user's training items (all but the last two by time, as RecBole's LS valid_and_test
# splits), from the atomic file itself (RecBole's dataset rows are already augmented
# prefixes, where a user's first item is never a row), as CSR over RecBole's internal
# user ids, to mask them in the validation scores.
uid_f, iid_f = dataset.uid_field, dataset.iid_field
by_user = {}
with open(os.path.join(cfg["data_path"], "beauty", "beauty.inter")) as f:
    next(f)
    for line in f:
        user, item, ts = line.rstrip("\n").split("\t")
        by_user.setdefault(user, []).append((float(ts), item))
hist = [np.zeros(0, dtype=np.int64)] * dataset.user_num
for user, events in by_user.items():
    events.sort(key=lambda e: e[0])
    train_items = [item for _, item in events[:-2]]
    hist[dataset.token2id(uid_f, user)] = np.asarray(dataset.token2id(iid_f, train_items), dtype=np.int64).reshape(-1)
hist_ptr = np.concatenate([[0], np.cumsum([len(h) for h in hist])])
hist_items = np.concatenate(hist)
n_interactions = sum(len(v) for v in by_user.values())
del by_user, hist

state.update({
    "data_seconds": round(time.perf_counter() - T_PROCESS, 3),
    "users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1), "interactions": n_interactions,
    "train_sequences": len(train_data.dataset), "batches_per_epoch": len(train_data),
    "valid_users": len(valid_data.dataset), "device": str(config["device"]),
})


class Truncated:
    """The first ``smoke_batches`` batches of a RecBole train loader (smoke tests only)."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        return itertools.islice(iter(self.loader), smoke_batches)

    def __len__(self):
        return min(smoke_batches, len(self.loader))

    def __getattr__(self, name):
        return getattr(self.loader, name)


class CappedTrainer(Trainer):
    """RecBole's Trainer, recording a curve after every validation; training-history
    items are masked in full-sort validation scores (as shopformer's protocol does)."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        base = loss_func or self.model.calculate_loss
        state["batches_done_in_epoch"] = 0
        clock["epoch_started"] = time.perf_counter()

        def counted(interaction):
            state["batches_done_in_epoch"] += 1
            return base(interaction)

        t0 = time.perf_counter()
        total = super()._train_epoch(Truncated(train_data) if smoke_batches else train_data,
                                     epoch_idx, counted, show_progress)
        secs = time.perf_counter() - t0
        with lock:
            n_batches = min(smoke_batches, len(train_data)) if smoke_batches else len(train_data)
            state["epochs"].append({"epoch": epoch_idx + 1, "train_seconds": round(secs, 3),
                                    "batches": n_batches, "loss": float(total) / max(n_batches, 1),
                                    "wall_seconds": round(time.perf_counter() - fit_start, 3)})
            state.pop("partial_epoch", None)
            clock.pop("epoch_started", None)
            write()
        return total

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if exclude_history:
            users = interaction[uid_f].cpu().numpy()
            a, b = hist_ptr[users], hist_ptr[users + 1]
            lens = b - a
            idx = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(a, lens)
            rows = np.repeat(np.arange(len(users)), lens)
            scores[torch.from_numpy(rows), torch.from_numpy(hist_items[idx])] = -np.inf
            # every item the model read (the latest <= 50 of the history) must now be masked
            seq = interaction[self.model.ITEM_SEQ]
            read = seq > 0
            r = torch.arange(len(seq)).unsqueeze(1).expand_as(seq)[read]
            if not torch.isneginf(scores[r, seq[read]]).all():
                raise RuntimeError("history mask misses items of the input sequence")
        return interaction, scores, positive_u, positive_i

    def _valid_epoch(self, valid_data, show_progress=False):
        t0 = time.perf_counter()
        score, result = super()._valid_epoch(valid_data, show_progress)
        with lock:
            state["curve"].append({
                "epoch": len(state["epochs"]),
                "wall_seconds": round(time.perf_counter() - fit_start, 3),
                "valid_ndcg10": float(result["ndcg@10"]), "valid_hr10": float(result["hit@10"]),
                "eval_seconds": round(time.perf_counter() - t0, 3),
            })
            write()
        print(f"[driver] epoch {len(state['epochs'])}: valid NDCG@10 {result['ndcg@10']:.4f} "
              f"at {time.perf_counter() - fit_start:.0f} s", flush=True)
        return score, result


trainer = CappedTrainer(config, model)
print(f"[driver] data + model ready in {state['data_seconds']:.0f} s; "
      f"{state['batches_per_epoch']} batches an epoch; cap {cap_s:.0f} s", flush=True)
threading.Thread(target=watchdog, daemon=True).start()
fit_start = time.perf_counter()
with lock:
    state["stopped"] = "training"
    write()
# Progress inside an epoch, so a cap that ends mid-epoch still gives a time per batch.
def progress():
    while True:
        time.sleep(10)
        with lock:
            if "epoch_started" in clock:
                state["partial_epoch"] = {"batches_done": state["batches_done_in_epoch"],
                                          "seconds": round(time.perf_counter() - clock["epoch_started"], 3)}
                write()
threading.Thread(target=progress, daemon=True).start()
trainer.fit(train_data, valid_data, verbose=True, saved=False, show_progress=False)
with lock:
    state["stopped"] = "fit returned"
    write()
'''


def cmd_run_recbole(args) -> None:
    py = args.venv / "bin" / "python"
    if not py.exists():
        sys.exit(f"{py} not found: run `setup` first")
    if not (args.work / "beauty" / "beauty.inter").exists():
        sys.exit(f"{args.work}/beauty/beauty.inter not found: run `convert` first")
    driver = args.work / "recbole_driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    cfg_path = args.work / "recbole_config.json"
    cfg_path.write_text(json.dumps(recbole_config(args.work, args.threads), indent=2))
    out = args.work / "recbole_curve.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONUNBUFFERED": "1"}
    cap = args.minutes * 60
    cmd = [str(py), str(driver), str(cfg_path), str(out), str(cap), "keep" if args.keep_history else "exclude",
           str(args.smoke_batches)]
    print("+", " ".join(cmd), flush=True)
    # The driver stops itself at the cap (counted from the start of fit); this outer limit
    # only guards against a hang in data preparation.
    try:
        proc = subprocess.run(cmd, cwd=args.work, env=env, timeout=cap + 1800)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "killed by the outer time limit"
    print(f"driver exit: {rc}")
    if not out.exists():
        sys.exit("no curve written")
    state = json.loads(out.read_text())
    print(f"{out}: {len(state['curve'])} validations, {len(state['epochs'])} epochs, stopped: {state['stopped']}")


# -- run-ours -----------------------------------------------------------------------------
def cmd_run_ours(args) -> None:
    import numpy as np
    import torch

    from shopformer.artifact import make_model
    from shopformer.dataset import DataConfig, describe, load_events, prepare
    from shopformer.ingest import ingest

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    folder = args.work / "shopformer-beauty"
    if not (folder / "events.parquet").exists():
        ingest(args.source, fmt="sequence", data_dir=folder)
    data, split = prepare(load_events(folder), DataConfig(protocol="leave_one_out"))
    params = {**ours_settings(args.minutes, args.threads, args.batch), **dict(kv.split("=", 1) for kv in args.set)}
    model = make_model("sasrec", params)
    data_s = time.perf_counter() - t0
    load_start = list(os.getloadavg())
    model.fit(split.train, data.n_items, valid=split.valid)
    from dataclasses import asdict

    h = model.history
    state = {
        "tool": "shopformer", "torch_version": torch.__version__, "numpy_version": np.__version__,
        "torch_threads": torch.get_num_threads(), "cap_seconds": args.minutes * 60,
        "history_items_excluded": True, "data_seconds": round(data_s, 3), **describe(data),
        "valid_users": len(split.valid), "loadavg_start": load_start, "loadavg_now": list(os.getloadavg()),
        "settings": params, "config": asdict(model.config), "stopped": h.stopped,
        "best_epoch": h.best_epoch, "best_valid": h.best_valid,
        "curve": [{"epoch": r.epoch, "wall_seconds": r.wall_seconds, "valid_ndcg10": r.valid}
                  for r in h.records if r.valid is not None],
        "epochs": [{"epoch": r.epoch, "train_seconds_total": r.seconds, "wall_seconds": r.wall_seconds,
                    "loss": r.loss, "step": r.step} for r in h.records],
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = args.work / "ours_curve.json"
    out.write_text(json.dumps(state, indent=1))
    print(f"{out}: {len(state['curve'])} validations, stopped: {h.stopped}")


# -- report -------------------------------------------------------------------------------
def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _epoch_seconds(run: dict | None) -> float | None:
    """Mean training seconds per full epoch (validation excluded); for RecBole runs with
    truncated (smoke) epochs or no finished epoch, extrapolated from the time per batch."""
    if not run:
        return None
    if run["tool"] == "recbole":
        full = run["batches_per_epoch"]
        per_batch = [e["train_seconds"] / e.get("batches", full) for e in run["epochs"]]
        if not per_batch and (run.get("partial_epoch") or {}).get("batches_done"):
            per_batch = [run["partial_epoch"]["seconds"] / run["partial_epoch"]["batches_done"]]
        return sum(per_batch) / len(per_batch) * full if per_batch else None
    tot = [e["train_seconds_total"] for e in run["epochs"]]
    return tot[-1] / len(tot) if tot else None


def _each_epoch(run: dict) -> list[float]:
    """Training seconds of every finished epoch (shows when the machine was shared)."""
    if run["tool"] == "recbole":
        return [e["train_seconds"] for e in run["epochs"]]
    tot = [0.0] + [e["train_seconds_total"] for e in run["epochs"]]
    return [b - a for a, b in zip(tot, tot[1:])]


def _eval_seconds(run: dict | None) -> float | None:
    """Mean seconds per validation."""
    if not run or not run["curve"]:
        return None
    if run["tool"] == "recbole":
        return sum(p["eval_seconds"] for p in run["curve"]) / len(run["curve"])
    last = run["epochs"][-1]
    return (last["wall_seconds"] - last["train_seconds_total"]) / len(run["curve"])


def cmd_report(args) -> None:
    rb, ours = _load(args.work / "recbole_curve.json"), _load(args.work / "ours_curve.json")
    if rb is None and ours is None:
        sys.exit(f"no curves in {args.work}: run run-recbole / run-ours first")
    cap_s = (rb or ours)["cap_seconds"]
    rb_pts = [p for p in (rb or {}).get("curve", []) if p["wall_seconds"] <= cap_s]
    rb_value = max((p["valid_ndcg10"] for p in rb_pts), default=None)  # best so far at the cap
    reach = None
    if rb_value is not None and ours:
        reach = next((p for p in ours["curve"] if p["valid_ndcg10"] >= rb_value), None)
    target_s = TARGET_MINUTES * 60
    verdict = ("no RecBole value yet" if rb_value is None else "no shopformer run yet" if ours is None
               else "not reached" if reach is None
               else "met" if reach["wall_seconds"] <= target_s else "not met")
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "smoke_test": bool((rb or {}).get("smoke_batches")) or (rb or ours)["cap_seconds"] < 45 * 60,
        "cap_minutes": cap_s / 60,
        "target_minutes": TARGET_MINUTES,
        "recbole_valid_ndcg10_at_cap": rb_value,
        "recbole_last_valid_ndcg10": rb_pts[-1]["valid_ndcg10"] if rb_pts else None,
        "ours_first_reaches_it": ({"minutes": round(reach["wall_seconds"] / 60, 2), "epoch": reach["epoch"],
                                   "valid_ndcg10": reach["valid_ndcg10"]} if reach
                                  else "not reached" if rb_value is not None and ours else "n/a"),
        "verdict": verdict,
        "recbole_seconds_per_epoch": _epoch_seconds(rb),
        "ours_seconds_per_epoch": _epoch_seconds(ours),
        "recbole_seconds_per_validation": _eval_seconds(rb),
        "ours_seconds_per_validation": _eval_seconds(ours),
        "recbole": rb,
        "ours": ours,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "recbole_compare.json").write_text(json.dumps(summary, indent=1))
    _plot(rb, ours, rb_value, reach, cap_s, RESULTS / "recbole_compare.png", summary["smoke_test"])
    summary["note"] = args.note
    md = _markdown(summary) + (f"\n## Conditions\n\n{args.note}\n" if args.note else "")
    (RESULTS / "recbole_compare.md").write_text(md)
    print(md)


def _plot(rb, ours, rb_value, reach, cap_s, path: Path, smoke: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run, label, color in ((rb, "RecBole SASRec", "tab:orange"), (ours, "shopformer SASRec", "tab:blue")):
        if run and run["curve"]:
            xs = [p["wall_seconds"] / 60 for p in run["curve"]]
            ys = [p["valid_ndcg10"] for p in run["curve"]]
            ax.plot(xs, ys, marker=".", color=color, label=f"{label} ({len(run['curve'])} validations)")
        elif run:
            ax.plot([], [], color=color, label=f"{label} (no validation within the cap)")
    if rb_value is not None:
        ax.axhline(rb_value, color="tab:orange", ls="--", lw=0.8, label=f"RecBole at the cap: {rb_value:.4f}")
    if reach is not None:
        ax.plot([reach["wall_seconds"] / 60], [reach["valid_ndcg10"]], "o", ms=9, mfc="none", color="tab:blue",
                label=f"shopformer reaches it: {reach['wall_seconds'] / 60:.1f} min")
    ax.axvline(TARGET_MINUTES, color="grey", ls=":", lw=1, label=f"target {TARGET_MINUTES:.0f} min")
    ax.axvline(cap_s / 60, color="black", ls=":", lw=1, label=f"cap {cap_s / 60:.0f} min")
    ax.set_xlim(0, max(cap_s / 60, TARGET_MINUTES) * 1.05)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("wall-clock minutes since the start of training")
    ax.set_ylabel("validation NDCG@10 (full ranking)")
    ax.set_title(("SMOKE TEST, not a result: " if smoke else "")
                 + f"SASRec on Beauty: shopformer vs RecBole, same machine ({os.cpu_count()} CPUs)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(s: dict) -> str:
    rb, ours = s["recbole"], s["ours"]
    f = lambda v, d=4: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    reach = s["ours_first_reaches_it"]
    lines = [
        "# SASRec on Beauty: shopformer vs RecBole, validation NDCG@10 against wall time", "",
        *(["**SMOKE TEST (short cap or truncated epochs): not a result.**", ""] if s["smoke_test"] else []),
        f"Machine: {s['machine']['platform']}, {s['machine']['cpus']} CPUs. Report written {s['date']}.",
        f"Both: cross-entropy over the full catalog, hidden {HIDDEN}, {LAYERS} layers, {HEADS} heads, dropout "
        f"{DROPOUT}, {MAX_LEN} positions, lr {LR}, batch {BATCH} RecBole rows / "
        f"{(ours or {}).get('settings', {}).get('train.batch_size', '–')} shopformer windows; validation NDCG@10 after every epoch, full "
        "ranking, leave-one-out, training-history items excluded; wall time from the start of each trainer's "
        f"fit; cap {s['cap_minutes']:.0f} min. Plot: `recbole_compare.png`.", "",
        f"- RecBole's validation NDCG@10 at the cap (best so far): **{f(s['recbole_valid_ndcg10_at_cap'])}**",
        "- shopformer first reaches it: **"
        + (f"{reach['minutes']:.1f} min (epoch {reach['epoch']}, {reach['valid_ndcg10']:.4f})"
           if isinstance(reach, dict) else reach) + "**",
        f"- target: at most {s['target_minutes']:.0f} min: **{s['verdict']}**", "",
        "| | RecBole SASRec | shopformer SASRec |", "|---|---|---|",
    ]

    def row(name, fn):
        lines.append(f"| {name} | {fn(rb) if rb else '–'} | {fn(ours) if ours else '–'} |")

    row("version", lambda r: f"{r['tool']} {r.get('recbole_version', '')} torch {r['torch_version']}".replace("  ", " "))
    row("torch threads", lambda r: str(r["torch_threads"]))
    row("data loading + model (s)", lambda r: f(r.get("data_seconds"), 0))
    row("epochs finished", lambda r: str(len(r["epochs"])))
    row("validations within the cap", lambda r: str(sum(p["wall_seconds"] <= r["cap_seconds"] for p in r["curve"])))
    row("train seconds / epoch", lambda r: f(_epoch_seconds(r), 1)
        + (" (extrapolated from the time per batch)" if r["tool"] == "recbole" and _epoch_seconds(r)
           and (not r["epochs"] or r.get("smoke_batches")) else ""))
    row("train seconds of each epoch", lambda r: ", ".join(f"{x:.0f}" for x in _each_epoch(r)))
    row("seconds / validation", lambda r: f(_eval_seconds(r), 1))
    row("best validation NDCG@10", lambda r: f(max((p["valid_ndcg10"] for p in r["curve"]), default=None)))
    row("stopped", lambda r: r["stopped"])
    row("load average at start / end", lambda r: f"{r['loadavg_start'][0]:.2f} / {r['loadavg_now'][0]:.2f}")
    lines += ["", "## Curves (minutes, validation NDCG@10)", ""]
    for run, name in ((rb, "RecBole"), (ours, "shopformer")):
        if run:
            pts = ", ".join(f"{p['wall_seconds'] / 60:.1f}: {p['valid_ndcg10']:.4f}" for p in run["curve"]) or "none"
            lines.append(f"- {name}: {pts}")
    lines += ["", "## Configurations", ""]
    if rb:
        lines += ["RecBole (config_dict; the rest are RecBole's SASRec defaults):", "",
                  "```json", json.dumps(rb["config"], indent=1), "```", ""]
    if ours:
        lines += ["shopformer (settings; the rest are shopformer's defaults):", "",
                  "```json", json.dumps(ours["settings"], indent=1), "```", ""]
    lines += [
        "Notes: RecBole's own full-sort evaluation keeps history items for sequential models; the driver masks "
        "each user's training items in its validation scores so both numbers follow the same protocol"
        + ("" if not rb or rb.get("history_items_excluded", True) else " (NOT in this run: --keep-history)")
        + ". RecBole trains on every prefix of each sequence (one target per row); shopformer on every "
        "position of a window. Both runs used the same machine, one after the other.", "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("setup", "convert", "run-recbole", "run-ours", "report"):
        p = sub.add_parser(name)
        p.add_argument("--work", type=Path, default=WORK)
        p.add_argument("--venv", type=Path, default=VENV)
        if name == "setup":
            p.add_argument("--python", default="python3", help="interpreter for the venv (3.11 for the local torch wheel)")
        if name in ("convert", "run-ours"):
            p.add_argument("--source", type=Path, default=BEAUTY)
        if name == "run-ours":
            p.add_argument("--batch", type=int, default=BATCH, help="users' windows per batch (see ours_settings)")
            p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="another SASRec setting (chosen on validation), e.g. arch.pre_norm=false")
        if name in ("run-recbole", "run-ours"):
            p.add_argument("--minutes", type=float, default=45.0)
            p.add_argument("--threads", type=int, default=2)
        if name == "run-recbole":
            p.add_argument("--keep-history", action="store_true",
                           help="RecBole's stock evaluation (history items not masked)")
            p.add_argument("--smoke-batches", type=int, default=0,
                           help="smoke test: train only this many batches an epoch (the curve is then not a result)")
        if name == "report":
            p.add_argument("--note", default="", help="what else ran on the machine during the runs, etc.")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    {"setup": cmd_setup, "convert": cmd_convert, "run-recbole": cmd_run_recbole,
     "run-ours": cmd_run_ours, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
