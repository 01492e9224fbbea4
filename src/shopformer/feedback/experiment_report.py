"""An experiment's report from the store: its answers (impressions) joined to what the
customers did with them (attributed events), per customer, through :mod:`.abtest`; as a
Rich table and a Matplotlib plot."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from rich.table import Table

from shopformer.store import EventStore
from shopformer.store import experiments as rows

from .abtest import RATES, ABConfig, ABReport, per_unit, report
from .experiments import ExperimentError


def experiment_answers(store: EventStore, name: str) -> pl.DataFrame:
    """One row per answer of experiment ``name``: ``variant``, ``unit`` (the customer),
    ``clicks``, ``add_to_carts``, ``purchases``, ``revenue`` (its attributed events)."""
    from .online import answers_frame

    answers = answers_frame(store, experiment=name)
    return answers.select(
        "variant", pl.col("user_id").alias("unit"), "clicks", "add_to_carts", "purchases", "revenue"
    ).filter(pl.col("unit").is_not_null() & pl.col("variant").is_not_null())


def experiment_report(store: EventStore, name: str, config: ABConfig | None = None) -> ABReport:
    found = rows.get(store, name)
    if found is None:
        raise ExperimentError(f"no experiment named {name!r}")
    variants = [v["name"] for v in found.variants]
    return report(per_unit(experiment_answers(store, name)), variants, config)


def _pct(x: float | None) -> str:
    return "" if x is None or x != x else f"{x:.2%}"


def rich_report(result: ABReport, name: str) -> Table:
    table = Table(title=f"experiment {name}: control {result.control}, decided on {result.metric} rate")
    for col in ("variant", "customers", "answers", *(f"{m} rate [95% CI]" for m in RATES), f"{result.metric} diff",
                "p (Holm)", "revenue / customer", "revenue diff [95% CI]"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for v in result.variants:
        m = v.rates[result.metric]
        cells = [f"{_pct(v.rates[r].rate)} [{_pct(v.rates[r].low)}, {_pct(v.rates[r].high)}]" for r in RATES]
        diff = "" if m.diff is None else f"{m.diff:+.2%} [{m.diff_low:+.2%}, {m.diff_high:+.2%}]"
        rev = "" if v.revenue_diff is None else f"{v.revenue_diff:+.2f}" + (
            f" [{v.revenue_diff_low:+.2f}, {v.revenue_diff_high:+.2f}]" if v.revenue_diff_low is not None else "")
        table.add_row(v.variant, str(v.units), str(v.answers), *cells, diff,
                      "" if m.p_value is None else f"{m.p_value:.3g}", f"{v.revenue_per_unit:.2f}", rev)
    return table


def plot_report(result: ABReport, path: Path) -> Path:
    """Each rate per variant with its 95% interval, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(RATES), figsize=(4 * len(RATES), 3.4))
    for ax, r in zip(axes, RATES):
        names = [v.variant for v in result.variants]
        rates = [v.rates[r].rate for v in result.variants]
        err = [[max(v.rates[r].rate - v.rates[r].low, 0) for v in result.variants],
               [max(v.rates[r].high - v.rates[r].rate, 0) for v in result.variants]]
        ax.bar(names, rates, yerr=err, capsize=6, color=["#888888"] + ["#2b7bba"] * (len(names) - 1))
        ax.set_title(f"{r} rate (customers)")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    fig.suptitle(result.verdict if len(result.verdict) < 110 else result.verdict[:107] + "...", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
