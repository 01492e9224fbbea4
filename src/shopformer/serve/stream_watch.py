"""Unusual behaviour watched as events arrive at this API process.

Every event stored through ``POST /v1/events`` or ``/v1/events:batch`` is scored by
:class:`shopformer.risk.stream.StreamRiskScorer` (bursts, inhuman speed, the same event
repeated, session volume, purchases of items never viewed): a flagged event counts in
``shopformer_unusual_events_total{rule}`` and joins the latest flagged events that
``GET /v1/admin/risk/unusual`` lists. Nothing is refused: the watch reports, a shop
decides. The state is this process's (bounded: users idle for an hour are forgotten, at
most ``max_users`` kept). ``SHOPFORMER_STREAM_WATCH=0`` turns it off.

Users are keyed as the store keys them: on a pseudonymous server (``SHOPFORMER_PSEUDONYM_KEY``)
the user and session ids are mapped to their pseudonyms before scoring, so the list and
the wire below name pseudonyms, never raw customer ids.

Several replicas (``SHOPFORMER_REDIS_URL``): a bot whose requests a load balancer spreads
over replicas would be seen in part by each and slip under every per-replica limit. So
each replica publishes what the scorer needs of every event it stored, as an ``events``
notice on the replicas' Redis channel (serve/shared_state.py), and feeds the other
replicas' events into its own scorer: every scorer sees the whole stream. Counting stays
single: a replica counts (metric and list) only the flags raised by events it stored
itself; another's events update its state and are counted by their own replica, so the
metric summed over replicas counts each flagged event once. They arrive about a
millisecond late, so perhaps after a later event stored here: the scorer places each by
its timestamp (risk/stream.py). A notice lost (Redis down, a subscription broken) leaves
a gap in the others' view, nothing more; a malformed one is logged and dropped. Turn the
watch on or off on all replicas alike: one with it off publishes nothing.

The wire form of an event is ``[user_id, type, timestamp, item_id, session_id, checkout_id]``
(:data:`WIRE_FIELDS`; timestamp in UTC epoch seconds, the last three may be null); more
fields from a newer replica are ignored.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter

from shopformer.privacy.pseudonym import Pseudonymizer
from shopformer.risk.stream import StreamEvent, StreamRiskConfig, StreamRiskScorer

from .shared_state import SharedState

log = logging.getLogger("shopformer.serve")

#: an event's ``context`` key naming the order its line belongs to (lines of one order are one action)
CHECKOUT = "checkout_id"
#: the positions of an event's fields on the wire between replicas
WIRE_FIELDS = ("user_id", "type", "timestamp", "item_id", "session_id", "checkout_id")


def encode_events(events: Sequence[StreamEvent]) -> list[list]:
    """The ``events`` notice's payload: one short JSON array per event (:data:`WIRE_FIELDS`)."""
    return [[e.user_id, e.type, e.timestamp, e.item_id, e.session_id, e.checkout_id] for e in events]


def decode_events(payload: object) -> list[StreamEvent]:
    """The events of another replica's notice. ``ValueError`` naming the record and field
    when anything is off (the whole notice is dropped then: a sound replica never sends
    half a good one)."""
    if not isinstance(payload, list):
        raise ValueError(f"events must be a list, got {type(payload).__name__}")
    out = []
    for i, record in enumerate(payload):
        if not isinstance(record, list) or len(record) < len(WIRE_FIELDS):
            raise ValueError(f"events[{i}] must be a list of {len(WIRE_FIELDS)} fields {WIRE_FIELDS}")
        user, kind, t, item, session, checkout = record[:len(WIRE_FIELDS)]
        for name, value in (("user_id", user), ("type", kind)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"events[{i}].{name} must be a non-empty string, got {type(value).__name__}")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"events[{i}].timestamp must be a finite number of seconds, got {t!r:.40}")
        for name, value in (("item_id", item), ("session_id", session), ("checkout_id", checkout)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"events[{i}].{name} must be a string or null, got {type(value).__name__}")
        out.append(StreamEvent(user, kind, float(t), item, session, checkout))
    return out


class StreamWatch:
    """The process's scorer, its counter and the latest ``keep`` flagged events.
    ``pseudonyms``: the server's (ids are scored as the store keeps them). The app's
    lifespan sets :attr:`shared` to the replicas' channel and hands :meth:`peer` to it."""

    def __init__(self, config: StreamRiskConfig, registry: CollectorRegistry, keep: int = 1000,
                 pseudonyms: Pseudonymizer | None = None) -> None:
        self.scorer = StreamRiskScorer(config)
        self.flagged: deque[dict] = deque(maxlen=keep)
        self.pseudonyms = pseudonyms
        self.shared: SharedState = SharedState()  # no channel until the lifespan opens one
        self.counter = Counter("shopformer_unusual_events", "stored events the stream watch flagged, by rule",
                               ["rule"], registry=registry)
        self.peers = Counter("shopformer_stream_watch_peer_events",
                             "other replicas' events fed to this process's stream watch (scored, never counted "
                             "as flagged here) or dropped as malformed", ["outcome"], registry=registry)
        # the single-event route runs on the event loop, batches in the thread pool, peers' on the subscriber
        self._lock = threading.Lock()

    def observe(self, events: Sequence) -> None:
        """Score stored events (``EventIn``), in the order given, and tell the other replicas."""
        now = datetime.now(timezone.utc)
        scored = [self._stream_event(e, now) for e in events]
        with self._lock:
            for e, event in zip(events, scored):
                found = self.scorer.score(event)
                if not found.flagged:
                    continue
                for reason in found.reasons:
                    self.counter.labels(reason["rule"]).inc()
                self.flagged.append({"user_id": event.user_id, "session": found.session, "type": e.type,
                                     "item_id": e.item_id, "at": (e.timestamp or now).isoformat(),
                                     "score": round(found.score, 4), "reasons": found.reasons})
        if self.shared.enabled and scored:
            self.shared.publish_events(encode_events(scored))

    def peer(self, payload: object) -> None:
        """Another replica's ``events`` notice (its payload): update the scorer, count nothing."""
        try:
            events = decode_events(payload)
        except ValueError as exc:
            self.peers.labels("dropped").inc()
            log.warning("dropped a malformed events notice from another replica: %s", exc)
            return
        with self._lock:
            for event in events:
                self.scorer.score(event)
        self.peers.labels("scored").inc(len(events))

    def _stream_event(self, e, now: datetime) -> StreamEvent:  # noqa: ANN001 - an EventIn
        """What the scorer needs of a stored event, with the ids the store holds."""
        user, session = e.user_id, e.session_id
        if self.pseudonyms is not None:  # mapping is idempotent: a pseudonym posted stays itself
            user = self.pseudonyms.user(user)
            session = self.pseudonyms.session(session) if session is not None else None
        checkout = (e.context or {}).get(CHECKOUT)
        return StreamEvent(user, e.type, (e.timestamp or now).timestamp(), e.item_id, session,
                           checkout if isinstance(checkout, str) else None)

    def latest(self, limit: int) -> list[dict]:
        """The newest ``limit`` flagged events, newest first."""
        with self._lock:
            return list(self.flagged)[::-1][:limit]

    @property
    def users_tracked(self) -> int:
        return len(self.scorer.users)
