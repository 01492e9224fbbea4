"""``shopformer report online``: the online metrics of :mod:`.online` over a store, as a
Rich table, JSON and a Matplotlib plot (daily click-through rate per group, and the
rates by position)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
from rich.table import Table

from shopformer.store import EventStore

from .online import GROUPS, answer_outcomes, by_position, daily, load, per_answer, with_rates

BY = (*GROUPS, "position")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RATES = (("ctr", "CTR"), ("atc_rate", "add-to-cart rate"), ("purchase_rate", "purchase rate"))


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d`` / ``12h`` / ``30m`` / ``2w`` before ``now``, or an ISO date or time (naive = UTC)."""
    now = now or datetime.now(timezone.utc)
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text)
    if found:
        return now - timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give an age such as 7d, 12h, 30m, 2w, or a date such as 2024-05-01") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class OnlineReport:
    """The report's frames: ``groups`` (:func:`.online.with_rates` per ``by`` group, or
    :func:`.online.by_position`), ``total`` (all answers), ``daily`` (per day and
    ``trend_by``) and ``positions``."""

    since: datetime
    by: str
    groups: pl.DataFrame
    total: pl.DataFrame
    daily: pl.DataFrame
    positions: pl.DataFrame
    trend_by: str

    def to_dict(self) -> dict[str, Any]:
        def rows(df: pl.DataFrame) -> list[dict[str, Any]]:
            return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in df.to_dicts()]

        return {"since": self.since.isoformat(), "by": self.by, "groups": rows(self.groups), "total": rows(self.total)[0],
                "daily": rows(self.daily), "positions": rows(self.positions)}


def online_report(store: EventStore, since: datetime, by: str = "model_version") -> OnlineReport:
    if by not in BY:
        raise ValueError(f"--by {by!r}: choose one of {', '.join(BY)}")
    impressions, attributed = load(store, since=since)
    answers = per_answer(impressions, attributed)
    positions = by_position(impressions, attributed)
    trend_by = by if by != "position" else "model_version"
    groups = positions if by == "position" else with_rates(answer_outcomes(answers, [by]))
    return OnlineReport(since, by, groups, with_rates(answer_outcomes(answers)), daily(answers, trend_by), positions,
                        trend_by)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def rich_table(report: OnlineReport) -> Table:
    table = Table(title=f"online metrics since {report.since:%Y-%m-%d %H:%M} UTC, by {report.by}")
    if report.by == "position":
        for col in ("position", "items shown", "clicks", *(name for _, name in _RATES), "revenue", "revenue / shown"):
            table.add_column(col, justify="left" if col == "position" else "right")
        for r in report.groups.iter_rows(named=True):
            table.add_row(r["bucket"], "-" if r["shown"] is None else f"{r['shown']:,}", f"{r['clicks']:,}",
                          *(_pct(r[k]) for k, _ in _RATES), _money(r["revenue"]), _money(r["revenue_per_shown"]))
        return table
    for col in (report.by, "answers", "clicked", *(name for _, name in _RATES), "revenue", "revenue / answer"):
        table.add_column(col, justify="left" if col == report.by else "right")

    def add(label: str, r: dict[str, Any], style: str | None = None) -> None:
        table.add_row(label, f"{r['answers']:,}", f"{r['answers_clicked']:,}", *(_pct(r[k]) for k, _ in _RATES),
                      _money(r["revenue"]), _money(r["revenue_per_answer"]), style=style)

    for r in report.groups.iter_rows(named=True):
        add("(none)" if r[report.by] is None else str(r[report.by]), r)
    add("all", report.total.row(0, named=True), style="bold")
    return table


def plot(report: OnlineReport, path: Path) -> Path:
    """Daily click-through rate per ``trend_by`` group (left) and the click, add-to-cart and
    purchase rates per position bucket (right), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, part in report.daily.partition_by(report.trend_by, as_dict=True, maintain_order=True).items():
        label = key[0] if key[0] is not None else "(none)"
        days = [datetime.combine(d, time()) for d in part["day"].to_list()]
        left.plot(days, part["ctr"].to_list(), marker="o", label=str(label)[:40])
    left.set_title(f"click-through rate per day, by {report.trend_by}")
    left.yaxis.set_major_formatter(PercentFormatter(1.0))
    left.set_ylim(bottom=0)
    if report.daily.height:
        left.legend(fontsize=7)
        first, last = (datetime.combine(d, time()) for d in (report.daily["day"].min(), report.daily["day"].max()))
        left.set_xlim(first - timedelta(hours=12), last + timedelta(hours=12))  # one day alone: not years of axis
        locator = mdates.AutoDateLocator(maxticks=8)
        left.xaxis.set_major_locator(locator)
        left.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    shown = report.positions.filter(pl.col("shown").is_not_null())
    width = 0.27
    for i, (key, name) in enumerate(_RATES):
        xs = [j + (i - 1) * width for j in range(shown.height)]
        right.bar(xs, shown[key].fill_null(0.0).to_list(), width=width, label=name)
    right.set_xticks(range(shown.height), shown["bucket"].to_list())
    right.set_xlabel("position in the answer")
    right.set_title("rates by position (per item shown)")
    right.yaxis.set_major_formatter(PercentFormatter(1.0))
    right.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["BY", "OnlineReport", "online_report", "parse_since", "plot", "rich_table"]
