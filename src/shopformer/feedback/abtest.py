"""The statistics of an A/B report: per variant, the share of exposed customers who
clicked, added to cart and bought, and the revenue per customer, each compared with the
control variant (the first one).

The unit is the customer (what was randomized), not the answer: one customer's answers
are not independent draws, and counting them as such makes any test look surer than it
is. Proportions get Wilson intervals, differences Newcombe's interval and a two-sided
two-proportion z-test (statsmodels); revenue per customer a bootstrap interval of the
difference of means (SciPy). With several variants the p-values are Holm-adjusted.

"Too small to decide" is said when a result is not significant and the sample is below
what a two-proportion test needs to detect a lift of ``mde`` (relative) on the control's
rate with the configured power; then the report says how many customers per variant
that would take.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

#: the proportions compared: the customer had at least one such attributed event
RATES: tuple[str, ...] = ("click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class ABConfig:
    """How an experiment report decides.

    metric: the rate the decision is about (one of :data:`RATES`); the others are shown.
    alpha: the significance level (two-sided), after Holm's adjustment across variants.
    power: the power a sample must have to call a non-significant result "no difference".
    mde: the smallest relative lift worth detecting (0.10 = a 10% change of the control's rate).
    min_events: below this many customers with the event in a variant, the normal
        approximation is not trusted and the sample is too small whatever its size.
    bootstrap: resamples for the revenue interval (0 = no interval).
    seed: of the bootstrap.
    """

    metric: str = "click"
    alpha: float = 0.05
    power: float = 0.8
    mde: float = 0.10
    min_events: int = 10
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in RATES:
            raise ValueError(f"metric must be one of {RATES}, got {self.metric!r}")
        if not 0 < self.alpha < 1 or not 0 < self.power < 1 or self.mde <= 0:
            raise ValueError("alpha and power must lie in (0, 1) and mde must be > 0")


@dataclass(frozen=True)
class Rate:
    """One proportion: ``events`` of ``units`` customers, with its Wilson interval; for a
    variant other than the control, the difference to the control with Newcombe's
    interval and the (Holm-adjusted) p-value of the two-proportion z-test."""

    events: int
    units: int
    rate: float
    low: float
    high: float
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    p_value: float | None = None


@dataclass(frozen=True)
class VariantResult:
    variant: str
    units: int  # customers exposed
    answers: int  # answers shown to them
    rates: dict[str, Rate]
    revenue_per_unit: float
    revenue_diff: float | None = None
    revenue_diff_low: float | None = None
    revenue_diff_high: float | None = None


@dataclass(frozen=True)
class ABReport:
    control: str
    metric: str
    variants: list[VariantResult]
    #: "significant", "no_difference" or "too_small", one line saying it, and for
    #: "too_small" the customers per variant the configured power needs
    decision: str
    verdict: str
    needed_per_variant: int | None = None
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def per_unit(answers: pl.DataFrame) -> pl.DataFrame:
    """One row per (variant, unit) from one row per answer: ``variant``, ``unit`` (the
    customer), ``clicks``, ``add_to_carts``, ``purchases`` (attributed event counts) and
    ``revenue``. Returns ``variant, unit, answers, click, add_to_cart, purchase, revenue``
    with the rates as 0/1 (at least one such event)."""
    return answers.group_by("variant", "unit").agg(
        pl.len().alias("answers"),
        (pl.col("clicks").sum() > 0).cast(pl.Int64).alias("click"),
        (pl.col("add_to_carts").sum() > 0).cast(pl.Int64).alias("add_to_cart"),
        (pl.col("purchases").sum() > 0).cast(pl.Int64).alias("purchase"),
        pl.col("revenue").sum().cast(pl.Float64).alias("revenue"),
    )


def _wilson(events: int, units: int) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    if units == 0:
        return float("nan"), float("nan")
    low, high = proportion_confint(events, units, alpha=0.05, method="wilson")
    return float(low), float(high)


def _compare(a: tuple[int, int], b: tuple[int, int]) -> tuple[float, float, float, float]:
    """(diff b - a, Newcombe low, high, raw two-sided p) of two proportions (events, units)."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    (ea, na), (eb, nb) = a, b
    diff = eb / nb - ea / na
    if ea + eb in (0, na + nb):  # both all-0 or all-1: no variance, nothing to test
        return diff, diff, diff, 1.0
    low, high = confint_proportions_2indep(eb, nb, ea, na, method="newcomb", compare="diff")
    _, p = proportions_ztest([eb, ea], [nb, na], alternative="two-sided")
    return diff, float(low), float(high), float(p)


def needed_units(control_rate: float, config: ABConfig) -> int | None:
    """Customers per variant a two-sided two-proportion test needs to detect a relative
    lift of ``config.mde`` on ``control_rate`` at ``config.alpha`` with ``config.power``
    (Cohen's h; statsmodels' power solver). None when the rate is 0 or 1 (no lift to
    size: the sample is too small by the ``min_events`` rule anyway)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if not 0 < control_rate < 1:
        return None
    lifted = min(control_rate * (1 + config.mde), 0.999999)
    h = abs(float(proportion_effectsize(lifted, control_rate)))
    n = NormalIndPower().solve_power(effect_size=h, alpha=config.alpha, power=config.power, ratio=1.0,
                                     alternative="two-sided")
    return int(np.ceil(n))


def _revenue_interval(control: np.ndarray, other: np.ndarray, config: ABConfig) -> tuple[float, float] | None:
    from scipy.stats import bootstrap

    if config.bootstrap <= 0 or len(control) < 2 or len(other) < 2 or (control.std() == 0 and other.std() == 0):
        return None
    res = bootstrap((other, control), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
                    n_resamples=config.bootstrap, vectorized=True, method="percentile",
                    random_state=np.random.default_rng(config.seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def report(units: pl.DataFrame, variants: list[str], config: ABConfig | None = None) -> ABReport:
    """The A/B report of ``units`` (:func:`per_unit`'s frame) for ``variants`` in order,
    the first being the control. Variants with no exposed customer count as 0."""
    from statsmodels.stats.multitest import multipletests

    config = config or ABConfig()
    if len(variants) < 2:
        raise ValueError("an experiment report needs at least two variants")
    control = variants[0]
    rows = {v: units.filter(pl.col("variant") == v) for v in variants}
    counts = {v: {m: int(rows[v][m].sum()) for m in RATES} for v in variants}
    n = {v: rows[v].height for v in variants}

    # raw p-values of each variant vs control, per rate; Holm across variants per rate
    raw: dict[str, dict[str, tuple[float, float, float, float]]] = {m: {} for m in RATES}
    for m in RATES:
        for v in variants[1:]:
            if n[v] and n[control]:
                raw[m][v] = _compare((counts[control][m], n[control]), (counts[v][m], n[v]))
    adjusted: dict[str, dict[str, float]] = {}
    for m in RATES:
        names = list(raw[m])
        if names:
            adjusted[m] = dict(zip(names, multipletests([raw[m][v][3] for v in names], method="holm")[1].tolist()))
        else:
            adjusted[m] = {}

    results = []
    base_revenue = rows[control]["revenue"].to_numpy() if n[control] else np.zeros(0)
    for v in variants:
        rates = {}
        for m in RATES:
            low, high = _wilson(counts[v][m], n[v])
            rate = counts[v][m] / n[v] if n[v] else float("nan")
            if v in raw[m]:
                d, dl, dh, _ = raw[m][v]
                rates[m] = Rate(counts[v][m], n[v], rate, low, high, d, dl, dh, adjusted[m][v])
            else:
                rates[m] = Rate(counts[v][m], n[v], rate, low, high)
        revenue = rows[v]["revenue"].to_numpy() if n[v] else np.zeros(0)
        per = float(revenue.mean()) if len(revenue) else float("nan")
        rd = rl = rh = None
        if v != control and len(revenue) and len(base_revenue):
            rd = per - float(base_revenue.mean())
            interval = _revenue_interval(base_revenue, revenue, config)
            if interval is not None:
                rl, rh = interval
        results.append(VariantResult(v, n[v], int(rows[v]["answers"].sum()) if n[v] else 0, rates, per, rd, rl, rh))

    decision, verdict, needed = _decide(results, control, config)
    return ABReport(control, config.metric, results, decision, verdict, needed, asdict(config))


def _decide(results: list[VariantResult], control: str, config: ABConfig) -> tuple[str, str, int | None]:
    m = config.metric
    base = results[0].rates[m]
    needed = needed_units(base.rate, config) if base.units else None
    few = [r.variant for r in results if r.rates[m].events < config.min_events]
    winners = [r for r in results[1:] if r.rates[m].p_value is not None and r.rates[m].p_value < config.alpha]
    if winners and not few:
        parts = [f"{r.variant} {'beats' if r.rates[m].diff > 0 else 'is worse than'} {control} on {m} rate "
                 f"({r.rates[m].rate:.2%} vs {base.rate:.2%}, p={r.rates[m].p_value:.3g})" for r in winners]
        return "significant", "; ".join(parts), None
    smallest = min(r.units for r in results)
    if few or needed is None or smallest < needed:
        why = (f"{', '.join(few)} had fewer than {config.min_events} customers with a {m}" if few
               else f"{smallest} customers in the smallest variant")
        more = f"; about {needed} customers per variant would detect a {config.mde:.0%} change of the {m} rate" \
            if needed else ""
        return "too_small", f"too small to decide: {why}{more}", needed
    return ("no_difference",
            f"no significant difference in {m} rate (alpha {config.alpha}); with {smallest} customers per variant "
            f"a {config.mde:.0%} change would have been detected with power {config.power:.0%}", needed)
