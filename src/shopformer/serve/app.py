"""The app factory. Nothing is created at import time: :func:`create_app` builds the
app, and its lifespan opens the store and loads the run (and closes the store)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shopformer.explain import ExplainConfig, OcclusionConfig
from shopformer.privacy.pseudonym import ENV_VAR as PSEUDONYM_ENV
from shopformer.privacy.pseudonym import Pseudonymizer
from shopformer.risk.stream import StreamRiskConfig
from shopformer.store import EventStore, StoreConfig
from shopformer.store import pseudonyms as store_pseudonyms

from . import errors
from .explanations import ExplainerCache
from .feedback import start_feedback
from .access import AccessControl, KeyRing, RateLimits
from .limits import BodyLimit
from .metrics import Metrics, MetricsMiddleware
from .pseudonyms import UserIdPseudonyms, install_access_log_filter, remove_access_log_filter
from .recommender import RecommendationService
from .retention import start_retention, sync_purges
from .routes import access, admin, catalog, events, experiments, privacy, recommend, rules, search
from .routes import audience as audience_routes
from .routes import answers as answers_routes
from .routes import complements as complements_routes
from .routes import impressions as impressions_routes
from .search import SearchService
from .settings import ServeSettings
from .stream_watch import StreamWatch
from .shared_state import NoticeCollector, RedisSharedState, SharedState, service_listeners, shared_state
from .writes import WriteLimits

log = logging.getLogger("shopformer.serve")

DESCRIPTION = """\
Recommendations, product search, similar items, event ingestion and catalog updates for a shop.

* Every recommending answer carries scores and the model's `{name, version}`; every
  recommending or search answer a `request_id` (also `X-Request-ID`): events that send it
  back (`request_id`) are attributed to the answer, its position and model (`/metrics`).
* Keys go in the `X-API-Key` header and carry scopes: `read` (customers' data: their
  events, recommendations, personalized search), `write` (events, catalog), `admin`
  (reload, erasure, export, keys, audit log; includes the other two). 401 without a
  key, 403 with a wrong one or one without the scope; 429 with `Retry-After` over the
  key's rate limit. Admin actions are written to an audit log (`GET /v1/admin/audit`).
* Bad input gets a 4xx naming the field (batches: the row index); nothing is
  half-written. Bodies over the size limit get 413 before they are read;
  an `event_id` already stored with a different payload gets 409 with the stored
  version's fingerprint (the same payload again is a harmless duplicate).
* An event posted now changes the user's next recommendation (no retraining).
* `DELETE /v1/users/{id}` erases a customer and answers a receipt; `GET
  /v1/users/{id}/export` gives everything stored about them (both need an admin key).
"""


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """Build the API. ``settings`` default: :meth:`ServeSettings.from_env`."""
    settings = settings or ServeSettings.from_env()
    metrics = Metrics()
    pseudonyms = Pseudonymizer(settings.pseudonyms) if settings.pseudonyms is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = EventStore(StoreConfig(url=settings.store_url))
        follower = None
        searching = None
        purger = None
        log_filter = None
        feedback = None
        shared = None
        try:
            # before anything reads or writes: raw ids and pseudonyms (or two keys) never mix
            store_pseudonyms.bind(store, pseudonyms.fingerprint if pseudonyms else None,
                                  pseudonyms.is_pseudonym if pseudonyms else None)
            if pseudonyms is not None:
                log_filter = install_access_log_filter(pseudonyms)
            keyring.attach(store)
            service = RecommendationService(settings, store)
            # the Redis channel to the other replicas (none without SHOPFORMER_REDIS_URL): set
            # before the first load so that load is announced too
            service.shared = shared = shared_state(settings.shared_state)
            if isinstance(shared, RedisSharedState):
                metrics.registry.register(NoticeCollector(shared))
            if settings.search:  # built in the background; search routes answer 503 until ready
                searching = SearchService(settings, store)
                searching.start()
                if settings.search_in_history:
                    service.search = searching
            app.state.search = searching
            if settings.run is not None:  # the configured run wins at start-up
                served, _ = service.reload(settings.run, publish=True)
                metrics.set_model(served.name, served.version)
                log.info("serving %s (%s)", served.name, served.version)
            elif service.sync():
                log.info("serving %s, the run the store names", service.served.version)
            else:
                log.warning("no SHOPFORMER_RUN: recommendation routes answer 503 until a reload")
            try:  # an A/B experiment running on the store: load its variants' runs too
                service.sync_experiment()
            except Exception:  # noqa: BLE001 - serve the main run; the sync thread tries again
                log.exception("could not load the running experiment's runs")
            try:  # the stored business rules (also loaded on first use if this fails)
                service.rules.sync()
            except Exception:  # noqa: BLE001 - the sync thread tries again
                log.exception("could not load the business rules")
            metrics.watch_cache(service)
            app.state.service = service
            # impressions and attribution (serve/feedback.py): every answer gets a request_id
            app.state.feedback = feedback = start_feedback(settings, store, metrics.feedback)
            stop = threading.Event()
            if settings.sync_s > 0:
                follower = threading.Thread(target=_follow, args=(service, metrics, settings.sync_s, stop, searching,
                                                                  keyring),
                                            name="shopformer-sync", daemon=True)
                follower.start()
            purger = start_retention(settings, service, searching, stop)  # scheduled purges (serve/retention.py)
            watch = app.state.stream_watch
            if watch is not None:  # the stream watch tells the others its events and scores theirs
                watch.shared = shared
            shared.start(service_listeners(service, metrics, searching, watch))  # the others' notices, as they come
            yield
        finally:
            if shared is not None:
                if app.state.stream_watch is not None:
                    app.state.stream_watch.shared = SharedState()  # closed: nothing more to tell
                shared.close()
            if follower is not None:
                stop.set()
                follower.join(timeout=10)
            if purger is not None:
                stop.set()  # a purge under way stops after its batch
                purger.join(timeout=30)
            if searching is not None:
                searching.close()
            if log_filter is not None:
                remove_access_log_filter(log_filter)
            if feedback is not None:
                feedback.close()  # a clean shutdown writes every impression queued
            store.close()

    app = FastAPI(
        title="shopformer",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.write_limits = WriteLimits.from_settings(settings)
    app.state.metrics = metrics
    # unusual behaviour scored as events arrive (serve/stream_watch.py)
    app.state.stream_watch = (StreamWatch(StreamRiskConfig(), metrics.registry, pseudonyms=pseudonyms)
                              if settings.stream_watch else None)
    # explain=true: one Explainer per served run
    app.state.explainers = ExplainerCache(ExplainConfig(occlusion=OcclusionConfig(precision=settings.explain_precision)))
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, batch_limit=settings.max_batch_body_bytes)
    keyring = KeyRing(settings.api_key)
    app.state.keyring = keyring
    # always: a key may carry its own limit where the server sets none
    limits = RateLimits(settings.rate_limit, settings.anon_rate_limit, settings.rate_limit_storage)
    app.add_middleware(AccessControl, keyring=keyring, limits=limits)
    if settings.cors_origins:  # outside the key check and limits, so their 401/429s carry CORS headers too
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PUT", "DELETE"], allow_headers=["X-API-Key", "Content-Type"],
                           expose_headers=["Retry-After", "X-Request-ID"], max_age=600)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost, counts the 413s too
    app.state.pseudonyms = pseudonyms
    if pseudonyms is not None:  # outermost of all: no layer (audit, metrics, errors) ever sees a raw id
        app.add_middleware(UserIdPseudonyms, pseudonyms=pseudonyms)
    app.state.search = None
    for router in (recommend.router, search.router, events.router, privacy.router, catalog.router, admin.router,
                   access.router, experiments.router, rules.router):
        app.include_router(router)
    app.include_router(impressions_routes.router)  # pause impression logging (serve/routes/impressions.py)
    app.include_router(audience_routes.router)  # audiences for campaigns (serve/routes/audience.py)
    app.include_router(complements_routes.router)  # bought together (serve/routes/complements.py)
    app.include_router(answers_routes.router)  # customer-service answers (serve/routes/answers.py)
    from .routes import forecast as forecast_routes

    app.include_router(forecast_routes.router)  # weekly sales forecasts (serve/routes/forecast.py)
    from .routes import risk as risk_routes

    app.include_router(risk_routes.router)  # order risk (serve/routes/risk.py)
    from shopformer import web  # the pages (storefront, console) sit on top of the API

    web.mount(app, settings)
    errors.install(app)
    return app


def _follow(service: RecommendationService, metrics: Metrics, every_s: float, stop: threading.Event,
            searching: SearchService | None = None, keyring: KeyRing | None = None) -> None:
    """Load the run the store names whenever another process published a new one, bring
    the search index up to the catalog writes of every process, drop cached state of
    users another process erased, and reload the API keys when another process changed them."""
    while not stop.wait(every_s):
        if keyring is not None:
            try:
                keyring.refresh()
            except Exception:  # noqa: BLE001 - keep the keys this process has, try again later
                log.exception("could not reload the API keys")
        try:  # another process erased a user: drop what this one keeps of them
            latest = service.store.last_erasure_id()
            service.sync_erasures(latest)
            if searching is not None:
                searching.sync_erasures(latest)
        except Exception:  # noqa: BLE001 - keep serving, try again later
            log.exception("could not apply the latest erasures to this process's caches")
        try:  # a retention purge (any process) deleted events: drop what this one cached of them
            sync_purges(service, searching)
        except Exception:  # noqa: BLE001 - keep serving, try again later
            log.exception("could not apply the latest retention purge to this process's caches")
        if searching is not None:
            try:
                if searching.sync():
                    service.invalidate_catalog(publish=False)  # another process's change: it announced it
            except Exception:  # noqa: BLE001 - keep serving, try again later
                log.exception("could not apply the latest catalog changes to the search index")
        try:  # business rules another process added or removed
            if service.rules.sync():
                log.info("business rules now at version %s", service.rules.rules.version)
        except Exception:  # noqa: BLE001 - keep applying the rules this process has, try again later
            log.exception("could not reload the business rules")
        try:
            if service.sync_experiment():
                experiment = service.experiment
                log.info("experiment %s", f"{experiment.name} started" if experiment else "stopped")
        except Exception:  # noqa: BLE001 - keep the arms this process has, try again later
            log.exception("could not load the running experiment's runs")
        try:
            if service.sync():
                served = service.served
                metrics.reloads.labels("ok").inc()
                metrics.set_model(served.name, served.version)
                log.info("now serving %s (published by another process)", served.version)
        except Exception:  # noqa: BLE001 - keep serving the current model, try again later
            metrics.reloads.labels("failed").inc()
            log.exception("could not load the run the store names; still serving the current one")


def serve(
    settings: ServeSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = True,
    workers: int = 1,
) -> None:
    """Run the API with uvicorn. ``workers`` > 1 starts that many processes on the same
    port (each loads the model; they share the store, follow the run it names and
    check cached histories against it, or with ``SHOPFORMER_REDIS_URL`` tell each other
    at once, see :mod:`shopformer.serve.shared_state`); scale
    further with replicas behind a load balancer. ``access_log=False`` drops uvicorn's
    line per request (Prometheus ``/metrics`` still counts and times every request, per
    process). uvicorn uses uvloop and httptools when they are installed
    (``uvicorn[standard]``, a dependency)."""
    import uvicorn

    common = dict(host=host, port=port, log_level=log_level, access_log=access_log, loop="auto", http="auto")
    if workers <= 1:
        uvicorn.run(create_app(settings), **common)
        return
    # Worker processes build the app from the environment: hand them these settings.
    settings = settings or ServeSettings.from_env()
    os.environ["SHOPFORMER_STORE_URL"] = settings.store_url
    if settings.run is not None:
        os.environ["SHOPFORMER_RUN"] = str(settings.run.resolve())
    if settings.redis_url is not None:  # the workers tell each other which cached histories to drop
        os.environ["SHOPFORMER_REDIS_URL"] = settings.redis_url
        os.environ["SHOPFORMER_REDIS_CHANNEL"] = settings.redis_channel
        os.environ["SHOPFORMER_CACHE_CHECK"] = "1" if settings.cache_check else "0"
    else:  # no channel: each cached history is checked against the store
        os.environ["SHOPFORMER_CACHE_CHECK"] = "1"
    if settings.pseudonyms is not None and not os.environ.get(PSEUDONYM_ENV):
        os.environ[PSEUDONYM_ENV] = settings.pseudonyms.key.decode("utf-8")  # workers must map ids alike
    uvicorn.run("shopformer.serve.app:create_app", factory=True, workers=workers, **common)
