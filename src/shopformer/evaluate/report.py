"""Evaluation results as JSON (for machines) and Markdown (for people)."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from rich.table import Table

from shopformer.evaluate.protocol import EvalResult

HEADLINE = ("HR@10", "NDCG@10", "Recall@10", "MRR", "Precision@10", "F1@10", "Coverage@10")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for benchmark records."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def result_record(result: EvalResult, context: dict) -> dict:
    """Everything needed to read (and reproduce) one evaluation."""
    return {
        **context,
        "metrics": result.metrics,
        "users_evaluated": result.n_users,
        "unreachable_targets": result.unreachable_targets,
        "eval_config": asdict(result.config),
        "eval_seconds": round(result.wall_seconds, 3),
        "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def to_markdown(records: list[dict], title: str = "Evaluation") -> str:
    cols = [c for c in HEADLINE if any(c in r["metrics"] for r in records)]
    lines = [f"# {title}", ""]
    lines.append("| model | dataset | protocol | split | users | " + " | ".join(cols) + " | fit s | eval s |")
    lines.append("|---" * (7 + len(cols)) + "|")
    for r in records:
        vals = " | ".join(f"{r['metrics'][c]:.4f}" for c in cols)
        lines.append(
            f"| {r.get('model', '')} | {r.get('dataset', '')} | {r.get('protocol', '')} | "
            f"{r.get('split', '')} | {r['users_evaluated']} | {vals} | "
            f"{r.get('fit_seconds', '')} | {r['eval_seconds']} |"
        )
    lines.append("")
    for r in records:
        lines.append(f"- **{r.get('model', '')}** config: `{json.dumps(r.get('model_config', {}))}`")
    first = records[0]
    lines += [
        "",
        f"History items excluded from ranking: {first['eval_config']['exclude_history']}. "
        f"Ranking over the full catalog. Seed: {first.get('seed', '')}. "
        f"Date: {first['date']}. Machine: {first['machine']['platform']}, "
        f"{first['machine']['cpus']} CPUs.",
        "",
    ]
    return "\n".join(lines)


def write_results(records: list[dict], json_path: Path, title: str = "Evaluation") -> Path:
    """Write ``records`` to ``json_path`` and a Markdown twin beside it; returns the .md path."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(records, indent=2, default=str))
    md_path = json_path.with_suffix(".md")
    md_path.write_text(to_markdown(records, title))
    return md_path


#: Columns that fit an 80-column terminal; the files carry every metric.
CONSOLE = ("HR@10", "NDCG@10", "Recall@10", "MRR", "Coverage@10")


def rich_table(records: list[dict]) -> Table:
    cols = [c for c in CONSOLE if any(c in r["metrics"] for r in records)]
    table = Table(title="Results (full ranking)")
    for name in ("model", "split", "users", *cols):
        right = name not in ("model", "split")
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    for r in records:
        table.add_row(
            str(r.get("model", "")),
            str(r.get("split", "")),
            str(r["users_evaluated"]),
            *(f"{r['metrics'][c]:.4f}" for c in cols),
        )
    return table
