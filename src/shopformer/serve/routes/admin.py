"""Operations: model reload, health, Prometheus metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..access import Principal, audit
from ..deps import get_metrics, get_service, require_admin
from ..metrics import Metrics
from ..recommender import RecommendationService
from ..schemas import ErrorResponse, Health, ReloadRequest, ReloadResponse
from .events import WRITE_ERRORS
from .recommend import model_info

router = APIRouter(tags=["admin"])


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses={400: {"model": ErrorResponse, "description": "the run could not be loaded"}, **WRITE_ERRORS},
)
def reload_model(
    request: Request,
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    body: Annotated[ReloadRequest | None, Body()] = None,
) -> ReloadResponse:
    """Load a run folder (default: the one served now, e.g. after retraining in place)
    and swap it in atomically. Requests in flight finish on the old model; on failure
    the old model keeps serving and this answers 400. Every other process serving from
    the same store (workers, replicas) loads it within ``SHOPFORMER_SYNC_S`` seconds (at once with ``SHOPFORMER_REDIS_URL``)."""
    try:
        served, previous = service.reload(Path(body.run) if body and body.run else None, publish=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is the caller's bad run
        metrics.reloads.labels("failed").inc()
        audit(request, principal, "reload", body.run if body and body.run else "(current run)", "failed",
              {"error": str(exc)[:500]})
        raise HTTPException(400, f"reload failed, still serving the previous model: {exc}") from None
    metrics.reloads.labels("ok").inc()
    metrics.set_model(served.name, served.version)
    audit(request, principal, "reload", str(served.run.folder), "ok",
          {"version": served.version, "previous": previous.version if previous else None})
    return ReloadResponse(model=model_info(served), previous=model_info(previous) if previous else None)


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "store unreachable"}})
def health(request: Request, service: Annotated[RecommendationService, Depends(get_service)]) -> Response | Health:
    """200 when the store answers (``status: degraded`` while no model is loaded); 503
    when the store is unreachable. ``warm_up``: see :class:`Health`."""
    warm_up = getattr(request.app.state, "warm_up", None)
    served = service.served
    model = model_info(served) if served else None
    try:
        service.store.max_position()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        body = Health(status="degraded", store="unreachable", model=model, detail=type(exc).__name__, warm_up=warm_up)
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    if served is None:
        return Health(status="degraded", store="ok", model=None, detail="no model loaded", warm_up=warm_up)
    return Health(status="ok", store="ok", model=model, warm_up=warm_up)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics_text(metrics: Annotated[Metrics, Depends(get_metrics)]) -> Response:
    """Prometheus text format: request counts and latency per route, events stored,
    reloads, the served model, history cache hits."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
