"""Sales forecasting: weekly units (and revenue) per product and in total, from the
event store's purchases.

- series.py     events -> weekly series (cancellations netted, partial last week dropped);
                per category where the catalog has categories
- calendar.py   week-of-year, weeks to Christmas, public holidays (``holidays`` package)
- base.py       Panel (N series x T weeks) and the Forecaster interface: fit(panel),
                predict(panel, horizon) -> [N, horizon]
- baselines.py  seasonal naive (52 weeks), statsforecast AutoETS / AutoARIMA
- gbt.py        LightGBM global model with lags, direct multi-horizon
- transformer.py / neural.py   the Transformer forecaster (nn.Module / its trainer)
- windows.py    the scaled windows the global models read
- metrics.py    WAPE, MASE; backtest.py: rolling-origin evaluation
- artifact.py   fit, save and serve forecasts (``shopformer forecast``,
                ``GET /v1/forecast/items/{id}``)

Promotions are not features yet: the merchandising rules (rank/rules.py, boosts and pins
with time windows) could become one per week, but Online Retail has no history of any
promotion to learn their effect from.
"""

from .base import Forecaster, Panel
from .metrics import mase_per_horizon, mase_scale, wape, wape_per_horizon
from .series import WeeklyConfig, WeeklySeries, category_series, total_series, weekly_series

__all__ = ["Forecaster", "Panel", "WeeklyConfig", "WeeklySeries", "category_series", "mase_per_horizon",
           "mase_scale", "total_series", "wape", "wape_per_horizon", "weekly_series"]
