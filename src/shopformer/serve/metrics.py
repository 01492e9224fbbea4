"""Prometheus metrics, in a registry owned by one app (nothing global, nothing at
import time). Requests are labelled by route TEMPLATE (``/v1/items/{item_id}``), never
by raw path, so label cardinality stays bounded."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopformer.feedback.metrics import FeedbackMetrics

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "shopformer_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "shopformer_http_request_duration_seconds", "HTTP request latency",
            ["method", "route"], buckets=_BUCKETS, registry=r,
        )
        self.events = Counter("shopformer_events_ingested", "events stored", ["outcome"], registry=r)
        self.products = Counter("shopformer_products_upserted", "products written", registry=r)
        self.reloads = Counter("shopformer_model_reloads", "model reloads", ["outcome"], registry=r)
        self.model = Gauge("shopformer_model_info", "the model being served (value 1)", ["name", "version"], registry=r)
        #: impressions, attributed events and revenue (feedback/metrics.py)
        self.feedback = FeedbackMetrics(r)

    def watch_cache(self, service: object) -> None:
        """Expose ``service.cache_hits`` / ``cache_misses`` at scrape time."""
        self.registry.register(_CacheCollector(service))

    def set_model(self, name: str, version: str) -> None:
        self.model.clear()
        self.model.labels(name=name, version=version).set(1)


class _CacheCollector:
    def __init__(self, service: object) -> None:
        self.service = service

    def describe(self) -> list:
        return []

    def collect(self):  # noqa: ANN201
        c = CounterMetricFamily("shopformer_history_cache", "user history cache lookups", labels=["result"])
        c.add_metric(["hit"], getattr(self.service, "cache_hits", 0))
        c.add_metric(["miss"], getattr(self.service, "cache_misses", 0))
        yield c


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(method=method, route=path, status=str(code)).inc()
            self.metrics.latency.labels(method=method, route=path).observe(time.perf_counter() - start)
