"""Request dependencies: the service objects on ``app.state`` and the API-key check.

They are ``async``: none of them blocks, and FastAPI runs a plain ``def`` dependency in
its thread pool, a thread hand-off per dependency per request that costs more than the
work (the routes that do I/O stay plain functions)."""

from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from shopformer.store import EventStore

from .metrics import Metrics
from .recommender import RecommendationService
from .settings import ServeSettings
from .writes import WriteLimits

#: declared once so OpenAPI shows the scheme on every write route
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="required by write routes")


async def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


async def get_service(request: Request) -> RecommendationService:
    return request.app.state.service


async def get_store(request: Request) -> EventStore:
    return request.app.state.service.store


async def get_write_limits(request: Request) -> WriteLimits:
    return request.app.state.write_limits


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def require_api_key(
    key: str | None = Security(api_key_header),
    settings: ServeSettings = Depends(get_settings),
) -> None:
    """401 without ``X-API-Key``, 403 with a wrong one (constant-time comparison).
    With no key configured, writes are refused (503) unless
    ``SHOPFORMER_ALLOW_UNAUTHENTICATED_WRITES=1``."""
    if settings.api_key is None:
        if settings.allow_unauthenticated_writes:
            return
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "writes are disabled: this server has no API key; set SHOPFORMER_API_KEY "
            "(or SHOPFORMER_ALLOW_UNAUTHENTICATED_WRITES=1 for a local demo)",
        )
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    if not hmac.compare_digest(key.encode("utf-8"), settings.api_key.encode("utf-8")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
