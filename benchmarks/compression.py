"""Compression (issue 23 pt 3): distil a large SASRec run into a small student, quantize
the student to int8, and measure what is kept and what is saved, on Amazon Beauty.

    python benchmarks/compression.py --teacher RUN [--alphas 0.5,0.9 --temperatures 1,2 \
        --student-set arch.d_model=64 --student-epochs 10 --jobs 3]

* teacher: ``--teacher RUN`` (trained on Beauty's training split); trained here first with
  accuracy.py's Beauty settings and ``--teacher-minutes`` when the folder does not exist;
* students (``shopformer distil``, one process per candidate, ``--jobs`` at a time): every
  (alpha, T) of the grid, and the same student with alpha 0 (no teacher: next-item
  cross-entropy only, the same training code and budget); the distilled candidate with
  the best validation NDCG@10 is kept;
* int8: the kept student through ``shopformer quantize`` with torchao and with torch.ao;
* test NDCG@10 / HR@10 read once per model (leave-one-out, full ranking, history
  excluded); parameters; in-process latency of single-user ``model.score`` calls, the
  models called in turn for each user so that load on the machine hits them alike.

Writes benchmarks/results/compression.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from results_file import save  # noqa: E402

from shopformer.artifact import load_run, make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.evaluate.protocol import EvalConfig, evaluate  # noqa: E402
from shopformer.evaluate.report import machine  # noqa: E402
from shopformer.experiment import reload_data, train_run  # noqa: E402
from shopformer.ingest import ingest  # noqa: E402
from shopformer.models.quantize import QuantizeConfig, parameter_count, quantize_run  # noqa: E402

#: accuracy.py's Beauty setting for sasrec (chosen on validation, results/tuning/beauty.md)
TEACHER = {"arch.d_model": "256", "train.batch_size": "32", "train.epochs": "10", "arch.dropout": "0.5",
           "arch.attn_dropout": "0.5", "train.patience": "10", "train.weight_decay": "0.1",
           "train.decay_embeddings": "true"}
TARGETS = {"ndcg_kept": 0.97, "fewer_params": 4.0, "p99_lower": 1.5}


def teacher_run(args) -> Path:  # noqa: ANN001
    if (args.teacher / "run.json").exists():
        return args.teacher
    source = args.data_root / "amazon-beauty" / "Beauty.txt.gz"
    data = args.work / ("beauty" if not args.users else f"beauty-u{args.users}")
    if args.users and not (data / "events.parquet").exists():  # a seeded sample of whole users, under --work
        import gzip

        lines = gzip.open(source, "rt").read().splitlines()
        keep = np.sort(np.random.default_rng(0).choice(len(lines), size=args.users, replace=False))
        source = args.work / f"beauty-u{args.users}.txt"
        source.write_text("\n".join(lines[i] for i in keep) + "\n")
    if not (data / "events.parquet").exists():
        ingest(source, fmt="sequence", data_dir=data)
    params = {**TEACHER, **dict(kv.split("=", 1) for kv in args.teacher_set or []),
              "train.time_limit_s": str(round(args.teacher_minutes * 60)), "train.threads": "2",
              "train.device": "cpu"}
    train_run(make_model("sasrec", params), data, DataConfig(protocol="leave_one_out"), args.teacher)
    return args.teacher


def distil_one(teacher: Path, out: Path, alpha: float, temperature: float, student_set: list[str]) -> Path:
    """One candidate through the CLI (its own process, one thread, niced)."""
    if (out / "run.json").exists():
        return out  # resumed
    cmd = ["nice", "-n", "10", sys.executable, "-m", "shopformer", "distil", "--teacher", str(teacher),
           "--out", str(out), "--alpha", str(alpha), "--temperature", str(temperature)]
    for s in [*student_set, "train.threads=1"]:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(out.parent / f"{out.name}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    return out


def latency(models: dict[str, object], histories: list, repeats: int) -> dict[str, dict]:
    """p50 / p99 ms of single-user ``score`` calls; for each history every model is called
    once, in an order that rotates, so that the machine's load falls on all alike."""
    names = list(models)
    for m in models.values():  # warm-up: tables built, first-call costs paid
        for h in histories[:5]:
            m.score(h)
    times = {n: [] for n in names}
    for r in range(repeats):
        for i, h in enumerate(histories):
            k = (i + r) % len(names)
            for n in names[k:] + names[:k]:
                t0 = time.perf_counter()
                models[n].score(h)
                times[n].append((time.perf_counter() - t0) * 1000)
    return {n: {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)), "calls": len(t)}
            for n, t in times.items()}


def markdown(results: list[dict], meta: dict) -> str:
    r = results[-1]
    rows = r["models"]
    t = rows["teacher"]
    lines = [
        "# Compression: distillation and int8 quantization (Beauty, leave-one-out, full ranking)", "",
        f"Machine: {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs, shared with other benchmarks "
        f"(load average {r['load_average']}). Updated {meta['date']}. Wall time {r['wall_seconds'] / 60:.1f} min.", "",
        f"Configuration actually run: {r['configuration']}", "",
        "Settings (alpha, T) chosen on validation NDCG@10; test read once per model. Latency: single-user "
        f"`model.score` in process, {r['latency_threads']} torch thread(s), models called in turn per user.", "",
        "| model | params | x fewer | test NDCG@10 | of teacher | test HR@10 | valid NDCG@10 | p50 ms | p99 ms "
        "| p50 x lower | p99 x lower |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        lat = r["latency"].get(name, {})
        lines.append(
            f"| {name} | {m['params']:,} | {t['params'] / m['params']:.1f} | {m['test']['NDCG@10']:.4f} | "
            f"{m['test']['NDCG@10'] / t['test']['NDCG@10']:.1%} | {m['test']['HR@10']:.4f} | "
            f"{'' if m['valid_ndcg'] is None else format(m['valid_ndcg'], '.4f')} | "
            f"{lat.get('p50_ms', float('nan')):.2f} | {lat.get('p99_ms', float('nan')):.2f} | "
            f"{r['latency']['teacher']['p50_ms'] / lat['p50_ms'] if lat else float('nan'):.2f} | "
            f"{r['latency']['teacher']['p99_ms'] / lat['p99_ms'] if lat else float('nan'):.2f} |")
    lines += ["", "## Validation grid (students)", "", "| alpha | T | valid NDCG@10 | epochs | stopped |", "|---|---|---|---|---|"]
    for g in r["grid"]:
        lines.append(f"| {g['alpha']:g} | {g['temperature']:g} | {g['valid_NDCG@10']:.4f} | {g['epochs']} | {g['stopped']} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for name, (value, goal, ok) in r["targets"].items():
        lines.append(f"| {name} | {value:.3f} (target {goal}) | {'yes' if ok else 'NO'} |")
    lines += ["", r["notes"], ""]
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(record["models"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].bar(names, [record["models"][n]["test"]["NDCG@10"] for n in names], color="tab:blue")
    axes[0].set_title("test NDCG@10")
    axes[1].bar(names, [record["models"][n]["params"] / 1e6 for n in names], color="tab:green")
    axes[1].set_title("parameters (M)")
    x = np.arange(len(names))
    axes[2].bar(x - 0.2, [record["latency"][n]["p50_ms"] for n in names], 0.4, label="p50")
    axes[2].bar(x + 0.2, [record["latency"][n]["p99_ms"] for n in names], 0.4, label="p99")
    axes[2].set_xticks(x, names)
    axes[2].set_title("single-user score (ms)")
    axes[2].legend()
    for ax in axes:
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--teacher-minutes", type=float, default=45.0)
    ap.add_argument("--teacher-set", action="append", default=None, help="teacher settings over accuracy.py's")
    ap.add_argument("--users", type=int, default=0,
                    help="train the teacher on a seeded sample of this many Beauty users (0: all)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/shopformer-compression"))
    ap.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--alphas", default="0.5,0.9")
    ap.add_argument("--temperatures", default="1,2")
    ap.add_argument("--student-set", action="append", default=None,
                    help="student settings KEY=VALUE on top of the teacher's (default arch.d_model=64)")
    ap.add_argument("--jobs", type=int, default=2, help="students trained at once (one process each)")
    ap.add_argument("--latency-users", type=int, default=300)
    ap.add_argument("--latency-repeats", type=int, default=2)
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the result files go")
    ap.add_argument("--tag", default="", help="suffix of the result stem (compression<tag>)")
    ap.add_argument("--configuration", default="", help="what was affordable, in words (goes in the report)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    teacher = teacher_run(args)
    student_set = args.student_set or ["arch.d_model=64"]
    grid = [(float(a), float(t)) for a in args.alphas.split(",") for t in args.temperatures.split(",")]
    students = args.work / "students"
    students.mkdir(exist_ok=True)
    jobs = {f"a{a:g}-T{t:g}": (a, t) for a, t in grid}
    jobs["alpha0"] = (0.0, 1.0)  # the same student, no teacher
    with ThreadPoolExecutor(args.jobs) as pool:
        done = dict(zip(jobs, pool.map(lambda k: distil_one(teacher, students / k, *jobs[k], student_set), jobs)))
    runs = {k: load_run(v) for k, v in done.items()}
    grid_rows = [{**runs[k].info["distill_grid"][0]} for k in jobs]
    best = max((k for k in jobs if k != "alpha0"), key=lambda k: runs[k].info["distill_grid"][0]["valid_NDCG@10"])
    print(f"kept {best} (validation)", flush=True)
    int8 = {}
    for library in ("torchao", "torch.ao"):
        out = args.work / f"student-int8-{library}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        int8[library] = quantize_run(done[best], out, QuantizeConfig(library=library))
    t_run = load_run(teacher)
    models = {"teacher": t_run, f"student {best}": runs[best], "student alpha0": runs["alpha0"],
              "student int8 torchao": int8["torchao"], "student int8 torch.ao": int8["torch.ao"]}
    data, split = reload_data(t_run)
    teacher_valid = json.loads((teacher / "model" / "training.json").read_text()).get("best_valid")
    rows = {}
    for name, run in models.items():
        res = evaluate(run.model, split.test, data.n_items, EvalConfig(cutoffs=(10,)), progress=False)
        valid = teacher_valid if name == "teacher" else (
            run.info["distill_grid"][0]["valid_NDCG@10"] if "distill_grid" in run.info else None)
        rows[name] = {"run": str(run.folder), "params": parameter_count(run.model.module),
                      "test": {k: float(v) for k, v in res.metrics.items()},
                      "valid_ndcg": None if valid is None or "int8" in name else valid,
                      "alpha": run.info.get("alpha"), "temperature": run.info.get("temperature"),
                      "library": run.info.get("library")}
        print(f"{name}: test NDCG@10 {rows[name]['test']['NDCG@10']:.4f}", flush=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(split.test), size=min(args.latency_users, len(split.test)), replace=False)
    histories = [split.test.history.rows(np.array([i])) for i in pick]
    lat = latency({n: r.model for n, r in models.items()}, histories, args.latency_repeats)
    t, s, q = rows["teacher"], rows[f"student {best}"], rows["student int8 torchao"]
    targets = {
        "distilled student NDCG@10 / teacher": (s["test"]["NDCG@10"] / t["test"]["NDCG@10"], TARGETS["ndcg_kept"]),
        "int8 (torchao) student NDCG@10 / teacher": (q["test"]["NDCG@10"] / t["test"]["NDCG@10"], TARGETS["ndcg_kept"]),
        "teacher params / student params": (t["params"] / s["params"], TARGETS["fewer_params"]),
        "teacher p99 / float student p99": (lat["teacher"]["p99_ms"] / lat[f"student {best}"]["p99_ms"], TARGETS["p99_lower"]),
        "teacher p99 / int8 (torchao) student p99": (lat["teacher"]["p99_ms"] / lat["student int8 torchao"]["p99_ms"],
                                                    TARGETS["p99_lower"]),
        "teacher p99 / int8 (torch.ao) student p99": (lat["teacher"]["p99_ms"] / lat["student int8 torch.ao"]["p99_ms"],
                                                     TARGETS["p99_lower"]),
    }
    record = {
        "dataset": "beauty", "model": "compression" + args.tag,
        "configuration": args.configuration or f"teacher {teacher}; students {student_set}",
        "teacher_config": t_run.info.get("model_config"), "student_set": student_set,
        "kept": best, "grid": grid_rows, "models": rows, "latency": lat, "latency_threads": 1,
        "targets": {k: (float(v), g, bool(v >= g)) for k, (v, g) in targets.items()},
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "notes": ("The item table (ID embeddings) stays float32 in the int8 runs: it is most of a "
                  "small model's parameters and is what serving's vector index is built from; only the "
                  "Transformer blocks' linear layers are int8. torchao's int8 path runs eagerly here (no "
                  "torch.compile), torch.ao's through fused CPU kernels. Not run: the HTTP serving "
                  "benchmark (benchmarks/serve_latency.py) on these runs, on a quiet machine."),
    }
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
    stem = "compression" + args.tag
    save(args.results, stem, meta, [record], markdown)
    plot(record, args.results / f"{stem}.png")
    print((args.results / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
