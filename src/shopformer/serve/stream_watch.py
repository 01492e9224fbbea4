"""Unusual behaviour watched as events arrive at this API process.

Every event stored through ``POST /v1/events`` or ``/v1/events:batch`` is scored by
:class:`shopformer.risk.stream.StreamRiskScorer` (bursts, inhuman speed, the same event
repeated, session volume, purchases of items never viewed): a flagged event counts in
``shopformer_unusual_events_total{rule}`` and joins the latest flagged events that
``GET /v1/admin/risk/unusual`` lists. Nothing is refused: the watch reports, a shop
decides. The state is this process's (bounded: users idle for an hour are forgotten, at
most ``max_users`` kept); replicas each watch the events they receive, so a bot spread
over replicas by a load balancer is seen in part by each. ``SHOPFORMER_STREAM_WATCH=0``
turns it off.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter

from shopformer.risk.stream import StreamEvent, StreamRiskConfig, StreamRiskScorer

#: an event's ``context`` key naming the order its line belongs to (lines of one order are one action)
CHECKOUT = "checkout_id"


class StreamWatch:
    """The process's scorer, its counter and the latest ``keep`` flagged events."""

    def __init__(self, config: StreamRiskConfig, registry: CollectorRegistry, keep: int = 1000) -> None:
        self.scorer = StreamRiskScorer(config)
        self.flagged: deque[dict] = deque(maxlen=keep)
        self.counter = Counter("shopformer_unusual_events", "stored events the stream watch flagged, by rule",
                               ["rule"], registry=registry)
        # the single-event route runs on the event loop, batches in the thread pool
        self._lock = threading.Lock()

    def observe(self, events: Sequence) -> None:
        """Score stored events (``EventIn``), in the order given."""
        now = datetime.now(timezone.utc)
        with self._lock:
            for e in events:
                at = e.timestamp or now
                checkout = (e.context or {}).get(CHECKOUT)
                found = self.scorer.score(StreamEvent(
                    e.user_id, e.type, at.timestamp(), e.item_id, e.session_id,
                    checkout if isinstance(checkout, str) else None))
                if not found.flagged:
                    continue
                for reason in found.reasons:
                    self.counter.labels(reason["rule"]).inc()
                self.flagged.append({"user_id": e.user_id, "session": found.session, "type": e.type,
                                     "item_id": e.item_id, "at": at.isoformat(), "score": round(found.score, 4),
                                     "reasons": found.reasons})

    def latest(self, limit: int) -> list[dict]:
        """The newest ``limit`` flagged events, newest first."""
        with self._lock:
            return list(self.flagged)[::-1][:limit]

    @property
    def users_tracked(self) -> int:
        return len(self.scorer.users)
