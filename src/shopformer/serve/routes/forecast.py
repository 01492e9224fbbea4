"""Weekly sales forecasts: ``GET /v1/forecast/items/{item_id}?horizon=8``.

The forecasts are the ones ``shopformer forecast fit`` wrote to SHOPFORMER_FORECAST_DIR
(forecast/artifact.py), read on first use. Without the setting, or with a folder that
holds no forecast: 404 / 503 saying so (this server serves no forecasts / its configured
folder is unreadable); an item with no forecast: 404; a horizon over the fitted one:
422 naming ``horizon``. Sales figures are the shop's business data, so the
route needs a read key (once keys exist).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from shopformer.forecast.artifact import ForecastStore

from ..deps import loaded_once, require_read
from ..schemas import ErrorResponse
from ..forecast_schemas import ForecastResponse, ForecastWeek, SoldWeek
from .events import READ_ERRORS

router = APIRouter(prefix="/v1/forecast", tags=["forecast"])
ERRORS = {**READ_ERRORS,
          404: {"model": ErrorResponse, "description": "no forecast for this item, or none on this server"},
          422: {"model": ErrorResponse, "description": "horizon over the fitted forecast's"},
          503: {"model": ErrorResponse, "description": "SHOPFORMER_FORECAST_DIR holds no readable forecast"}}


def get_forecasts(request: Request) -> ForecastStore:
    """The app's ForecastStore, read on first use from the settings' forecast_dir."""
    return loaded_once(request, "forecasts", request.app.state.settings.forecast_dir, ForecastStore,
                       "no sales forecast on this server: set SHOPFORMER_FORECAST_DIR to a folder "
                       "written by `shopformer forecast fit`", lambda exc: f"SHOPFORMER_FORECAST_DIR: {exc}",
                       (FileNotFoundError, OSError, ValueError, KeyError))


@router.get("/items/{item_id}", response_model=ForecastResponse, responses=ERRORS,
            dependencies=[Depends(require_read)])
def item_forecast(
    request: Request,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    horizon: Annotated[int | None, Query(ge=1, le=52, description="weeks ahead, at most the fitted forecast's "
                                                                    "(default: all of them, 8 unless fitted otherwise)")] = None,
) -> ForecastResponse:
    """The item's weekly units and revenue forecast for the next ``horizon`` weeks."""
    store = get_forecasts(request)
    if item_id not in store:
        raise HTTPException(404, f"item {item_id!r} has no forecast (unknown, or not sold in the year before "
                                 f"{store.meta['last_week']})")
    horizon = store.horizon if horizon is None else horizon
    if horizon > store.horizon:
        raise HTTPException(422, f"horizon: at most {store.horizon} weeks (the fitted forecast's), got {horizon}")
    f = store.for_item(item_id, horizon)
    return ForecastResponse(
        item_id=f.item_id, method=f.method, last_week=f.last_week,
        forecast=[ForecastWeek(week_start=w, horizon=h + 1, units=u, revenue=r)
                  for h, (w, u, r) in enumerate(zip(f.weeks, f.units, f.revenue))],
        recent=[SoldWeek(week_start=w, units=u, revenue=r)
                for w, u, r in zip(f.recent_weeks, f.recent_units, f.recent_revenue)])
