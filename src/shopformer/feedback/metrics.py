"""Online metrics on ``/metrics`` (Prometheus), in the registry of one app.

``shopformer_impressions_total{model_version, variant, placement}``
    answers shown.
``shopformer_attributed_events_total{event_type, model_version, variant, placement, position}``
    events that named an answer, by the answer's model, variant and placement and the
    event item's position bucket (``1, 2, 3, 4-5, 6-10, 11+, not_shown``).
``shopformer_attributed_revenue_total{model_version, variant, placement}``
    purchases' quantity x the price paid, else the catalog price (see :mod:`.online`).
``shopformer_unattributed_events_total{event_type}``
    events naming an answer this process could not find (yet).
``shopformer_impressions_dropped_total{reason}``, ``shopformer_impressions_written_total``,
``shopformer_impressions_queued``, ``shopformer_impressions_skipped_total``, ``shopformer_impressions_paused``
    the impression log: rows dropped (``queue_full``: the bounded queue was full;
    ``write_failed``: the store refused them at shutdown), handed to the store, waiting;
    answers not logged because logging was paused, and 1 while it is paused.

Counters are per process (each worker has its own; Prometheus sums them). An empty
label value means none (no experiment, no model). ``placement`` is the caller's own
label: past ``max_placements`` distinct values, new ones are counted as ``other``, so a
client cannot grow the label set without bound.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .attribution import Attribution, Shown
from .impressions import ImpressionLog
from .writer_process import ProcessImpressionLog

OTHER = "other"


class FeedbackMetrics:
    def __init__(self, registry: CollectorRegistry, max_placements: int = 64) -> None:
        self.registry = registry
        self.max_placements = max_placements
        self._placements: set[str] = set()
        self._lock = threading.Lock()
        self._watched: _LogCollector | None = None
        self.impressions = Counter("shopformer_impressions", "answers shown (impressions)",
                                   ["model_version", "variant", "placement"], registry=registry)
        self.attributed = Counter(
            "shopformer_attributed_events", "events attributed to the answer they came from",
            ["event_type", "model_version", "variant", "placement", "position"], registry=registry)
        self.revenue = Counter("shopformer_attributed_revenue",
                               "attributed purchases: quantity x price paid (else catalog price)",
                               ["model_version", "variant", "placement"], registry=registry)
        self.unattributed = Counter("shopformer_unattributed_events", "events naming an answer not found",
                                    ["event_type"], registry=registry)

    def placement(self, value: str) -> str:
        """The label for ``value``: itself while fewer than ``max_placements`` are known."""
        if value in self._placements:
            return value
        with self._lock:
            if len(self._placements) < self.max_placements:
                self._placements.add(value)
                return value
        return OTHER

    def _labels(self, shown: Shown) -> tuple[str, str, str]:
        return shown.model_version or "", shown.variant or "", self.placement(shown.placement)

    def shown(self, shown: Shown) -> None:
        self.impressions.labels(*self._labels(shown)).inc()

    def attributed_event(self, found: Attribution) -> None:
        version, variant, placement = self._labels(found.shown)
        self.attributed.labels(found.event_type, version, variant, placement, found.bucket).inc()
        if found.revenue:
            self.revenue.labels(version, variant, placement).inc(found.revenue)

    def watch(self, impression_log: ImpressionLog | ProcessImpressionLog) -> None:
        """Expose the log's written / dropped / queued rows at scrape time (the log of the
        app's latest start: a test may start the same app twice)."""
        if self._watched is not None:
            self.registry.unregister(self._watched)
        self._watched = _LogCollector(impression_log)
        self.registry.register(self._watched)


class _LogCollector:
    def __init__(self, impression_log: ImpressionLog | ProcessImpressionLog) -> None:
        self.log = impression_log

    def describe(self) -> list:
        return []

    def collect(self):  # noqa: ANN201
        dropped = CounterMetricFamily("shopformer_impressions_dropped", "impressions not written", labels=["reason"])
        dropped.add_metric(["queue_full"], self.log.dropped)
        dropped.add_metric(["write_failed"], self.log.failed)
        yield dropped
        yield CounterMetricFamily("shopformer_impressions_written", "impressions handed to the store",
                                  value=self.log.written)
        yield GaugeMetricFamily("shopformer_impressions_queued", "impressions waiting to be written",
                                value=self.log.queued)
        yield CounterMetricFamily("shopformer_impressions_skipped", "answers not logged: impression logging paused",
                                  value=self.log.skipped)
        yield GaugeMetricFamily("shopformer_impressions_paused", "1 while impression logging is paused",
                                value=int(self.log.paused))


__all__ = ["FeedbackMetrics"]
