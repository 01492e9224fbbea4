"""Web pages on top of the API: the storefront at ``/`` (:mod:`.storefront`) and the
operator console. Server-rendered Jinja2 templates (``templates/``) with a little plain
JavaScript (``static/``), no build step. The pages call the app's service objects
directly (never the HTTP API of their own process) and decide access with the app's
:class:`~shopformer.serve.access.KeyRing` (see :mod:`.access`).

:func:`mount` is the one place the app factory calls: it includes every page router
and serves ``static/`` at ``/static``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from shopformer.serve.settings import ServeSettings

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


def mount(app: FastAPI, settings: ServeSettings) -> None:
    """Include the page routers that ``settings`` turns on and the static files."""
    from fastapi.staticfiles import StaticFiles

    from . import console, storefront

    pages = [
        (settings.storefront, storefront.router),
        (settings.console, console.router),  # the operator console at /console (web/console.py)
    ]
    routers = [router for on, router in pages if on]
    if not routers:
        return
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if settings.storefront:
        _warm_on_start(app, storefront.warm)


def _warm_on_start(app: FastAPI, warm: Callable[[FastAPI], None]) -> None:
    """Run ``warm(app)`` in a thread once the app's lifespan has started (model loaded),
    so the first visitor does not pay for compiling templates and building caches."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with inner(app) as state:
            app.state.warm_up = "running"  # reported by /health (a readiness probe may wait for it)

            def run() -> None:
                try:
                    warm(app)
                finally:
                    app.state.warm_up = "done"

            warming = threading.Thread(target=run, name="shopformer-web-warm", daemon=True)
            warming.start()
            try:
                yield state
            finally:  # before the store closes under it
                warming.join(timeout=30)

    app.router.lifespan_context = lifespan
