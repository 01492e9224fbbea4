"""A search's history as the run folder keeps it: ``search.json`` (every trial), a
Markdown table (``search.md``) and a plot of validation NDCG@10 against time
(``search.png``)."""

from __future__ import annotations

import json
from pathlib import Path

from .search import AutoResult, TrialRecord, fused


def summary(result: AutoResult) -> dict:
    """What ``run.json`` records under ``"auto"``."""
    b = result.best
    return {"budget_s": result.budget_s, "seconds": result.seconds, "trials": len(result.trials),
            "pruned": sum(t.state == "pruned" for t in result.trials),
            "winner": {"trial": b.number, "model": b.model, "params": b.params, "valid_ndcg": b.valid_ndcg,
                       "content": fused(b.choice)},
            "best_baseline": _best_of(result.trials, baseline=True), "data_stats": result.stats.to_dict(),
            "content": _content(result)}


def _content(result: AutoResult) -> dict | None:
    """The item content the search could fuse (None: none given, so not searched)."""
    c = result.content
    if c is None:
        return None
    return {"fields": list(c.config.fields), "tokens": c.n_tokens - 1, "vector_dim": c.vector_dim,
            "trials_fused": sum(fused(t.choice) for t in result.trials)}


def _best_of(trials: list[TrialRecord], baseline: bool) -> dict | None:
    pool = [t for t in trials if (t.model != "sasrec") == baseline and t.valid_ndcg is not None]
    if not pool:
        return None
    t = max(pool, key=lambda t: t.valid_ndcg)
    return {"trial": t.number, "model": t.model, "params": t.params, "valid_ndcg": t.valid_ndcg}


def _setting(t: TrialRecord) -> str:
    if t.choice:
        return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in t.choice.items())
    return ", ".join(f"{k} {v}" for k, v in t.params.items()) or "defaults"


def markdown(result: AutoResult) -> str:
    b = result.best
    lines = [
        "# Search history", "",
        f"Budget {result.budget_s / 60:.1f} min, used {result.seconds / 60:.1f} min; {len(result.trials)} trials "
        f"({sum(t.state == 'pruned' for t in result.trials)} pruned). Scored on validation NDCG@10 only (full "
        "catalog); the test split was not read.", "",
        f"Winner: trial {b.number}, **{b.model}** ({_setting(b)}), validation NDCG@10 **{b.valid_ndcg:.4f}**.", "",
        "Data: " + ", ".join(f"{k} {v}" for k, v in result.stats.to_dict().items()) + ".", "",
        "| trial | model | setting | valid NDCG@10 | state | started (s) | seconds | epochs (best) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in result.trials:
        score = "-" if t.valid_ndcg is None else f"{t.valid_ndcg:.4f}" + (" **best**" if t.number == b.number else "")
        epochs = "" if t.epochs is None else f"{t.epochs}" + ("" if t.best_epoch is None else f" ({t.best_epoch})")
        lines.append(f"| {t.number} | {t.model} | {_setting(t)} | {score} | {t.state} | {t.started_s:.0f} | "
                     f"{t.seconds:.0f} | {epochs} |")
    return "\n".join(lines) + "\n"


def plot(result: AutoResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = {"complete": "tab:blue", "pruned": "tab:gray", "failed": "tab:red"}
    for name in sorted({t.model for t in result.trials if t.model != "sasrec"}):
        best = max((t.valid_ndcg for t in result.trials if t.model == name and t.valid_ndcg is not None), default=None)
        if best is not None:
            ax.axhline(best, linestyle="--", linewidth=1, color="tab:green" if name == "ease" else "tab:olive",
                       label=f"{name} (best setting)")
    for state, colour in colours.items():
        pts = [((t.started_s + t.seconds) / 60, t.valid_ndcg) for t in result.trials
               if t.model == "sasrec" and t.state == state and t.valid_ndcg is not None]
        if pts:
            ax.scatter(*zip(*pts), color=colour, s=24, label=f"Transformer trial ({state})", zorder=3)
    done = sorted(((t.started_s + t.seconds) / 60, t.valid_ndcg) for t in result.trials if t.valid_ndcg is not None)
    best_so_far, xs, ys = float("-inf"), [], []
    for x, y in done:
        best_so_far = max(best_so_far, y)
        xs.append(x)
        ys.append(best_so_far)
    if xs:
        ax.step(xs, ys, where="post", color="black", linewidth=1.2, label="best so far")
    ax.set_xlabel("minutes into the search")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(f"time-budgeted search ({result.budget_s / 60:g} min budget)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(result: AutoResult, folder: Path) -> None:
    folder = Path(folder)
    (folder / "search.json").write_text(json.dumps({**summary(result), "history": [t.to_dict() for t in result.trials]},
                                                   indent=2))
    (folder / "search.md").write_text(markdown(result))
    plot(result, folder / "search.png")
