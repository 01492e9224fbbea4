"""Event logs larger than memory: peak RSS and time of each stage against the log's size.

For each size (events), synthetic events are written as Parquet (Zipf-like popularity
over ``--items`` items, users with about ``--events-per-user`` events each, string ids),
then each stage runs in its own process, so its peak RSS (``VmHWM`` of that process,
read by itself at the end) is its own:

- ``ingest``: ``shopformer ingest --stream`` (ingest/streaming.py), row groups of 512k;
- ``prepare``: vocabularies and memory-mapped sequences + leave-one-out split
  (features/sharded.py via dataset.prepare_folder);
- ``train``: ONE epoch of SASRec with sampled softmax (logQ) on the memory-mapped
  training sequences (no validation), reporting training sequences per second.

Baseline, in the same run, at the smallest size only: the eager ingest
(``ingest_to_folder``) and the eager ``prepare(load_events(...))`` on the same file.
File-backed pages of memory-mapped arrays that a stage touches count in its RSS.

    python benchmarks/large_events.py --sizes 10000000,30000000,100000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STEM = "large_events"


def generate(path: Path, n_events: int, n_items: int, per_user: int, seed: int = 0) -> dict:
    """Write ``n_events`` synthetic events to ``path`` in chunks (bounded memory)."""
    import polars as pl
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9  # Zipf-like, exponent 0.9
    cdf = np.cumsum(popularity / popularity.sum())
    item_of_rank = rng.permutation(n_items)  # ids do not follow popularity
    writer, written, user0 = None, 0, 0
    chunk = 2_000_000
    t0 = time.perf_counter()
    while written < n_events:
        n = min(chunk, n_events - written)
        lengths = np.maximum(5, rng.poisson(per_user, size=n // per_user + 2))  # 5+ events per user
        lengths = lengths[np.cumsum(lengths) <= n]
        lengths = np.append(lengths, n - lengths.sum()) if lengths.sum() < n else lengths
        users = np.repeat(np.arange(user0, user0 + len(lengths)), lengths)
        user0 += len(lengths)
        items = item_of_rank[np.minimum(np.searchsorted(cdf, rng.random(n)), n_items - 1)]
        ts = rng.integers(1_672_531_200, 1_704_067_200, n) * 1_000_000  # 2023, microseconds
        types = np.where(rng.random(n) < 0.9, "view", np.where(rng.random(n) < 0.5, "add_to_cart", "purchase"))
        order = rng.permutation(n)  # a log interleaves users
        frame = pl.DataFrame({
            "user_id": pl.Series(users[order]).cast(pl.String).str.pad_start(8, "0"),
            "item_id": pl.Series(items[order]).cast(pl.String).str.pad_start(7, "0"),
            "event_type": types[order],
            "timestamp": pl.Series(ts[order]).cast(pl.Datetime("us", "UTC")),
        }).with_columns(pl.concat_str(pl.lit("u"), "user_id").alias("user_id"),
                        pl.concat_str(pl.lit("p"), "item_id").alias("item_id"))
        table = frame.to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=512 * 1024)
        written += n
    writer.close()
    return {"events": n_events, "users": int(user0), "file_bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - t0, 1)}


# -- stages (each runs in a child process: `large_events.py --stage NAME ...`) ----------

def stage_ingest(src: Path, data: Path) -> dict:
    from shopformer.ingest.streaming import stream_events_to_folder

    report = stream_events_to_folder(data, src)
    return {"rows_read": report.rows_read, "rows_accepted": report.rows_accepted, "rejected": report.rejected}


def stage_prepare(data: Path, eval_users: int) -> dict:
    from shopformer.dataset import DataConfig, describe, prepare_folder
    from shopformer.features.sharded import ShardConfig

    d, split = prepare_folder(data, DataConfig(), stream=True, shard=ShardConfig(eval_users=eval_users))
    return {**describe(d), "train_interactions": split.train.n_interactions, "eval_users": len(split.valid)}


def stage_train(data: Path, eval_users: int, d_model: int, max_len: int, negatives: int, batch: int,
                limit_s: float, out: Path) -> dict:
    """One epoch; with ``limit_s`` > 0 the process reports after that long and exits
    (a partial epoch: the sequences trained so far, their rate, the peak RSS so far,
    which the epoch's set-up, windows of every user, has already reached)."""
    import threading

    import torch

    from shopformer.artifact import make_model
    from shopformer.dataset import DataConfig, prepare_folder
    from shopformer.features.sharded import ShardConfig

    t_start = time.perf_counter()
    trained = {"sequences": 0, "first_step": None}

    def count(module, inputs, output):  # the network's forward, once per training step
        if type(module).__name__ == "SASRec" and module.training:
            trained["first_step"] = trained["first_step"] or time.perf_counter()
            trained["sequences"] += int(inputs[0].shape[0])

    torch.nn.modules.module.register_module_forward_hook(count)
    if limit_s > 0:
        def stop() -> None:
            steps_s = time.perf_counter() - (trained["first_step"] or time.perf_counter())
            out.write_text(json.dumps({
                "peak_rss_gib": round(_hwm_gib(), 3), "partial_epoch": True, "limit_s": limit_s,
                "sequences_trained": trained["sequences"], "train_sequences": rows_total.get("n"),
                "setup_seconds": round((trained["first_step"] or time.perf_counter()) - t_start, 1),
                "sequences_per_s": round(trained["sequences"] / steps_s, 1) if steps_s else None}))
            os._exit(0)

        timer = threading.Timer(limit_s, stop)
        timer.daemon = True
        timer.start()
    rows_total: dict = {}
    d, split = prepare_folder(data, DataConfig(), stream=True, shard=ShardConfig(eval_users=eval_users))  # cached
    rows_total["n"] = int((split.train.lengths >= 2).sum())
    model = make_model("sasrec", {"train.epochs": "1", "train.loss": "sampled", "train.n_negatives": str(negatives),
                                  "train.batch_size": str(batch), "arch.d_model": str(d_model),
                                  "arch.max_len": str(max_len), "train.device": "cpu"})
    t0 = time.perf_counter()
    model.fit(split.train, d.n_items, valid=None)
    seconds = time.perf_counter() - t0
    if limit_s > 0:
        timer.cancel()
    rec = model.history.records[0]
    rows = int((split.train.lengths >= 2).sum())
    return {"train_sequences": rows, "epoch_seconds": round(rec.seconds, 1), "fit_seconds": round(seconds, 1),
            "sequences_per_s": round(rows / rec.seconds, 1), "loss": round(rec.loss, 4), "steps": rec.step}


def stage_eager_ingest(src: Path, data: Path) -> dict:
    from shopformer.ingest import ingest_to_folder

    report = ingest_to_folder(data, src)
    return {"rows_accepted": report.rows_accepted}


def stage_eager_prepare(data: Path) -> dict:
    from shopformer.dataset import DataConfig, describe, load_events, prepare

    d, _ = prepare(load_events(data), DataConfig())
    return describe(d)


def _hwm_gib() -> float:
    """VmHWM: this process's own peak RSS (``ru_maxrss`` of a child also keeps the RSS
    its parent had when it forked, through exec)."""
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 2**20


def run_stage(name: str, args: list[str]) -> dict:
    """Run one stage in a child; its wall time, peak RSS (GiB) and what it returned."""
    out = Path(f"/tmp/large_events_{name}_{os.getpid()}.json")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--stage-out", str(out), *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.kill()
        raise
    seconds = time.perf_counter() - t0
    rec = {"stage": name, "seconds": round(seconds, 1), "ru_maxrss_gib": round(usage.ru_maxrss / 2**20, 3),
           "peak_rss_gib": None, "exit": os.waitstatus_to_exitcode(status)}
    if out.exists():
        rec.update(json.loads(out.read_text()))
        out.unlink()
    print(json.dumps(rec), flush=True)
    return rec


def machine() -> dict:
    import polars as pl
    import torch

    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "memory_gib": round(mem / 2**20, 1),
            "python": platform.python_version(), "polars": pl.__version__, "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def markdown(meta: dict, records: list[dict]) -> str:
    lines = [
        "# Event logs larger than memory: peak RSS per stage", "",
        f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs (shared with other jobs: timings "
        f"are noisy), {meta['machine']['memory_gib']} GiB RAM; polars {meta['machine']['polars']}, torch "
        f"{meta['machine']['torch']}; {meta['machine']['date']}.", "",
        f"Config: {json.dumps(meta['config'])}", "",
        "Each stage runs in its own process; peak RSS is that process's `VmHWM` (file-backed pages of the "
        "memory-mapped arrays it touched included; a stage that failed has none). `eager_*` rows are the in-memory path on the same file "
        "(baseline, smallest size only).", "",
        "| events | stage | seconds | peak RSS (GiB) | notes |", "|---:|---|---:|---:|---|",
    ]
    for r in records:
        hidden = ("events", "stage", "seconds", "peak_rss_gib", "exit", "ru_maxrss_gib", "users", "source_bytes")
        notes = {k: v for k, v in r.items() if k not in hidden}
        if r.get("exit"):
            notes["exit"] = r["exit"]
        rss = "-" if r["peak_rss_gib"] is None else f"{r['peak_rss_gib']:.2f}"
        lines.append(f"| {r['events']:,} | {r['stage']} | {r['seconds']} | {rss} | {json.dumps(notes)} |")
    fit = meta.get("growth")
    if fit:
        lines += ["", "Growth (least squares on the streaming stages, peak RSS GiB = a + b x events):", ""]
        lines += [f"- {s}: a = {g['a_gib']:.2f} GiB, b = {g['b_gib_per_100m']:.2f} GiB per 100M events; "
                  f"at 100M: {g['at_100m_gib']:.2f} GiB{' (extrapolated)' if g['extrapolated'] else ''}"
                  for s, g in fit.items()]
    return "\n".join(lines) + "\n"


def growth(records: list[dict]) -> dict:
    out = {}
    for stage in ("ingest", "prepare", "train"):
        pts = sorted((r["events"], r["peak_rss_gib"]) for r in records
                     if r["stage"] == stage and r["peak_rss_gib"] is not None)
        if len(pts) < 2:
            continue
        x, y = np.array(pts, dtype=float).T
        b, a = np.polyfit(x, y, 1)
        out[stage] = {"a_gib": float(a), "b_gib_per_100m": float(b * 1e8), "at_100m_gib": float(a + b * 1e8),
                      "extrapolated": bool(x.max() < 1e8)}
    return out


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for stage, marker in (("ingest", "o"), ("prepare", "s"), ("train", "^"), ("train_gather_copy", "v"),
                          ("eager_ingest", "x"), ("eager_prepare", "+")):
        pts = sorted((r["events"] / 1e6, r["peak_rss_gib"]) for r in records
                     if r["stage"] == stage and r["peak_rss_gib"] is not None)
        if pts:
            ax.plot(*zip(*pts), marker=marker, linestyle="none" if stage.startswith("eager") or stage.endswith("copy") else "-",
                    markersize=9 if stage.startswith("eager") else 6, label=stage)
    ax.axhline(8e9 / 2**30, color="grey", linestyle=":", label="8 GB target (7.45 GiB)")
    ax.set_xlabel("events (millions)")
    ax.set_ylabel("peak RSS (GiB)")
    ax.set_title("Peak RSS per stage vs events (streaming path; eager baseline)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000000,30000000,100000000")
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--events-per-user", type=int, default=50)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/shopformer_large_events"))
    p.add_argument("--eval-users", type=int, default=1000)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--train-limit-s", type=float, default=0.0,
                   help="sizes above --full-epoch-max: stop the epoch after this long (partial epoch, reported)")
    p.add_argument("--full-epoch-max", type=int, default=30_000_000)
    p.add_argument("--no-baseline", action="store_true", help="skip the eager baseline at the smallest size")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--stages", default="ingest,prepare,train", help="which stages to run per size")
    p.add_argument("--results-stem", default=STEM)
    p.add_argument("--merge", metavar="STEM", help="only merge results/STEM.json into --results-stem (the same "
                   "events and stage replaced) and rewrite its Markdown and plot")
    p.add_argument("--keep-as", metavar="SUFFIX", help="--merge: keep the replaced records, stage + SUFFIX")
    p.add_argument("--stage")
    p.add_argument("--stage-out", type=Path)
    p.add_argument("--src", type=Path)
    p.add_argument("--data", type=Path)
    a = p.parse_args()

    if a.stage:  # a child: one stage, its result as JSON
        fn = {
            "ingest": lambda: stage_ingest(a.src, a.data),
            "prepare": lambda: stage_prepare(a.data, a.eval_users),
            "train": lambda: stage_train(a.data, a.eval_users, a.d_model, a.max_len, a.negatives, a.batch,
                                         a.train_limit_s, a.stage_out),
            "eager_ingest": lambda: stage_eager_ingest(a.src, a.data),
            "eager_prepare": lambda: stage_eager_prepare(a.data),
        }[a.stage]
        result = fn()
        a.stage_out.write_text(json.dumps({"peak_rss_gib": round(_hwm_gib(), 3), **result}))
        return

    if a.merge:
        target = json.loads((RESULTS / f"{a.results_stem}.json").read_text())
        extra = json.loads((RESULTS / f"{a.merge}.json").read_text())["results"]
        keys = {(r["events"], r["stage"]) for r in extra}
        old = target.pop("results")
        records = [r for r in old if (r["events"], r["stage"]) not in keys] + extra
        if a.keep_as:  # the replaced records stay, renamed (a before/after comparison)
            records += [{**r, "stage": r["stage"] + a.keep_as} for r in old if (r["events"], r["stage"]) in keys]
        records.sort(key=lambda r: (r["events"], r["stage"].startswith("eager"), r["stage"]))
        done = set(target.setdefault("config", {}).get("remeasured", []))
        target["config"]["remeasured"] = sorted(done | {f"{e}:{s}" for e, s in keys})
        target["growth"] = growth(records)
        _write(target, records, a.results_stem)
        return
    sizes = [int(s) for s in a.sizes.split(",")]
    config = {"items": a.items, "events_per_user": a.events_per_user, "eval_users": a.eval_users,
              "sasrec": {"d_model": a.d_model, "max_len": a.max_len, "loss": "sampled", "n_negatives": a.negatives,
                         "batch_size": a.batch, "epochs": 1}, "sizes": sizes,
              "train_limit_s_above": {"events": a.full_epoch_max, "seconds": a.train_limit_s}}
    meta = {"machine": machine(), "config": config}
    records: list[dict] = []
    a.workdir.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(sizes):
        src, data = a.workdir / f"events_{n}.parquet", a.workdir / f"data_{n}"
        shutil.rmtree(data, ignore_errors=True)
        gen = generate(src, n, a.items, a.events_per_user)
        print(json.dumps({"generated": gen}), flush=True)
        common = ["--eval-users", str(a.eval_users), "--d-model", str(a.d_model), "--max-len", str(a.max_len),
                  "--negatives", str(a.negatives), "--batch", str(a.batch)]
        limit = a.train_limit_s if n > a.full_epoch_max else 0.0
        stages = [("ingest", ["--src", str(src), "--data", str(data)]), ("prepare", ["--data", str(data)]),
                  ("train", ["--data", str(data), "--train-limit-s", str(limit)])]
        stages = [st for st in stages if st[0] in a.stages.split(",")]
        if i == 0 and not a.no_baseline:
            eager = a.workdir / f"eager_{n}"
            shutil.rmtree(eager, ignore_errors=True)
            stages += [("eager_ingest", ["--src", str(src), "--data", str(eager)]),
                       ("eager_prepare", ["--data", str(eager)])]
        for name, args in stages:
            rec = run_stage(name, [*args, *common])
            records.append({"events": n, "users": gen["users"], "source_bytes": gen["file_bytes"], **rec})
            meta["growth"] = growth(records)
            _write(meta, records, a.results_stem)
            if rec["exit"] and name in ("ingest", "prepare"):
                break
        if not a.keep:
            src.unlink(missing_ok=True)
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(a.workdir / f"eager_{n}", ignore_errors=True)
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)


def _write(meta: dict, records: list[dict], stem: str = STEM) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({**meta, "results": records}, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(meta, records))
    plot(records, RESULTS / f"{stem}.png")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
