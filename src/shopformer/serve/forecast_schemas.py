"""Response schema of the forecast route (serve/routes/forecast.py)."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from .schemas import _Out


class ForecastWeek(_Out):
    week_start: date = Field(description="Monday of the week forecast")
    horizon: int = Field(description="weeks after the last week of history (1 = next week)")
    units: float = Field(description="forecast units sold (net of cancellations)")
    revenue: float = Field(description="units x the product's recent average price")


class SoldWeek(_Out):
    week_start: date
    units: float
    revenue: float


class ForecastResponse(_Out):
    item_id: str
    method: str = Field(description="the forecaster (shopformer forecast fit --method)")
    last_week: date = Field(description="Monday of the last whole week of history: the forecast origin")
    forecast: list[ForecastWeek]
    recent: list[SoldWeek] = Field(description="the last weeks actually sold, for context")
