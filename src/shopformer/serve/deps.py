"""Request dependencies: the service objects on ``app.state`` and the API-key scope checks.

They are ``async``: none of them blocks, and FastAPI runs a plain ``def`` dependency in
its thread pool, a thread hand-off per dependency per request that costs more than the
work (the routes that do I/O stay plain functions)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from shopformer.store import EventStore
from shopformer.store.access import ADMIN, READ, WRITE

from .access import Principal, authorize
from .metrics import Metrics
from .recommender import RecommendationService
from .settings import ServeSettings
from .writes import WriteLimits

#: declared once so OpenAPI shows the scheme on every write route
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key: read (customers' data), write (events, catalog) or admin scope")


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


def _scope_check(scope: str):  # noqa: ANN202 - a FastAPI dependency
    async def check(request: Request, key: str | None = Security(api_key_header)) -> Principal:
        return authorize(request, scope)

    check.__name__ = f"require_{scope}"
    return check


#: route dependencies: 401 without ``X-API-Key`` (once any key exists), 403 with a wrong
#: key or one without the scope, 503 for writes when no key exists and unauthenticated
#: writes are not allowed (see :mod:`shopformer.serve.access`)
require_read = _scope_check(READ)
require_write = _scope_check(WRITE)
require_admin = _scope_check(ADMIN)


#: one lock per lazily loaded folder (app.state attribute), so two first requests load it once
_folder_locks: dict[str, threading.Lock] = {}


def loaded_once(request: Request, attr: str, folder: Path | None, load: Callable[[Path], Any], missing: str,
                broken: Callable[[Exception], str], errors: tuple[type[Exception], ...]) -> Any:
    """``app.state.<attr>``, loaded from ``folder`` by ``load`` on first use (answers,
    forecasts, order risk: folders named by a setting). No folder configured: 404 with
    ``missing`` (this server does not serve it); a load failing with one of ``errors``:
    503 with ``broken(exc)``, tried again by the next request."""
    found = getattr(request.app.state, attr, None)
    if found is not None:
        return found
    if folder is None:
        raise HTTPException(404, missing)
    with _folder_locks.setdefault(attr, threading.Lock()):
        found = getattr(request.app.state, attr, None)
        if found is None:
            try:
                found = load(Path(folder))
            except errors as exc:
                raise HTTPException(503, broken(exc)) from None
            setattr(request.app.state, attr, found)
    return found
