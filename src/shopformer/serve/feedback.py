"""Impressions and attribution at the API's edge (issue 19; the parts live in
:mod:`shopformer.feedback`).

Every recommending or search answer goes through ONE function, :func:`answered`: it
gives the answer a random ``request_id`` (uuid4 hex, also sent as ``X-Request-ID``),
counts the impression on ``/metrics``, remembers what was shown for attribution in this
process, and queues the impression for the store (when ``SHOPFORMER_IMPRESSIONS`` is on).
Its ``experiment`` / ``variant`` arguments are what the A/B routes fill in. The id is
always made here, never taken from the caller: attribution needs it to name one answer.

An event posted with that ``request_id`` is attributed as it is stored
(:func:`attribute_events`): the answer is found in this process's memory, else in the
store, and the attributed-events and revenue counters move. Only events stored now count
(a duplicate re-post does not; a batch counts when it was stored whole), so a client's
retries do not inflate the counters; the report (``shopformer report online``) counts
from the store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from fastapi import Request, Response

from shopformer.feedback.attribution import Attributor, Shown
from shopformer.feedback.impressions import ImpressionLog, ImpressionLogConfig
from shopformer.feedback.writer_process import ProcessImpressionLog
from shopformer.feedback.metrics import FeedbackMetrics
from shopformer.feedback.online import PAID
from shopformer.privacy.pseudonym import ForeignPseudonym
from shopformer.store import EventStore
from shopformer.store.engine import normalize_url
from shopformer.store.impressions import refused

from .settings import ServeSettings

if TYPE_CHECKING:
    from .recommender import Served
    from .schemas import EventIn

log = logging.getLogger("shopformer.serve")

HEADER = "X-Request-ID"


@dataclass
class Feedback:
    """This process's impression log (None when SHOPFORMER_IMPRESSIONS is off), its
    memory of recent answers and the counters (``app.state.feedback``)."""

    store: EventStore
    metrics: FeedbackMetrics
    attributor: Attributor
    log: ImpressionLog | ProcessImpressionLog | None = None

    def flush(self) -> None:
        """Write what is queued now (an erasure first does, so its receipt counts it)."""
        if self.log is not None:
            self.log.flush()

    def close(self) -> None:
        """Write everything queued and stop (the lifespan's exit, before the store closes)."""
        if self.log is not None:
            self.log.close()


def start_feedback(settings: ServeSettings, store: EventStore, metrics: FeedbackMetrics) -> Feedback:
    config = settings.impressions
    recent = (config or ImpressionLogConfig()).recent  # off: this process still attributes to its own answers
    found = Feedback(store, metrics, Attributor(recent, store.impression))
    if config is not None:
        if config.writer == "process" and not _in_memory(store):
            found.log = ProcessImpressionLog(config, store.config, store.add_impressions, refused).start()
        else:
            found.log = ImpressionLog(config, store.add_impressions, refused).start()
        metrics.watch(found.log)
    return found


def _in_memory(store: EventStore) -> bool:
    """An in-memory SQLite store: another process cannot see it (its writer is a thread)."""
    return store.dialect == "sqlite" and normalize_url(store.config.url).database in (None, "", ":memory:")


def _storable(text: str | None) -> str | None:
    """An id as an impression keeps it; None for text no event could carry either (NUL,
    lone surrogates: a path or query parameter is not checked as event fields are)."""
    if text is None or "\x00" in text:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def _session(request: Request, session_id: str | None) -> str | None:
    """The session id as the store keeps it: its pseudonym on a pseudonymous server (as
    events' session ids are); None for an id shaped like another key's pseudonym."""
    pseudonyms = request.app.state.pseudonyms
    session_id = _storable(session_id)
    if session_id is None or pseudonyms is None:
        return session_id
    try:
        return pseudonyms.session(session_id)
    except ForeignPseudonym:
        return None


def answered(request: Request, response: Response | None, *, route: str, items: Sequence[str], placement: str | None = None,
             served: Served | None = None, strategy: str | None = None, user_id: str | None = None,
             session_id: str | None = None, experiment: str | None = None, variant: str | None = None) -> str:
    """Log that this answer showed ``items`` (best first) and return its request id (set
    as the ``X-Request-ID`` header of ``response`` too; a route that builds its own
    response passes None and sets :data:`HEADER` itself). ``route`` names the kind of answer
    and is the default ``placement``; ``served`` the run that ranked it (None: none did);
    ``user_id`` as the store knows the customer (already a pseudonym where ids are)."""
    request_id = uuid.uuid4().hex
    if response is not None:
        response.headers[HEADER] = request_id
    feedback: Feedback = request.app.state.feedback
    shown = Shown(tuple(items), placement or route, route, served.version if served is not None else None,
                  experiment, variant)
    feedback.metrics.shown(shown)
    feedback.attributor.remember(request_id, shown)
    if feedback.log is not None and feedback.log.paused:  # paused at runtime: as cheap as logging off
        feedback.log.skip()
    elif feedback.log is not None:
        feedback.log.record({
            "request_id": request_id, "shown_at": datetime.now(timezone.utc), "user_id": _storable(user_id),
            "session_id": _session(request, session_id), "placement": shown.placement, "route": route,
            "model_name": served.name if served is not None else None, "model_version": shown.model_version,
            "experiment": experiment, "variant": variant, "strategy": strategy, "item_ids": list(items),
        })
    return request_id


def _price(store: EventStore, item_id: str) -> float | None:
    found = store.products([item_id], columns=["price"])
    return found["price"][0] if found.height else None


def attribute_events(request: Request, events: Sequence[EventIn]) -> None:
    """Count the events that name an answer (call it only for events stored now)."""
    feedback: Feedback = request.app.state.feedback
    for e in events:
        if e.request_id is None:
            continue
        try:
            found = feedback.attributor.attribute(e.request_id, e.type, e.item_id, e.value,
                                                  lambda item: _price(feedback.store, item),
                                                  paid=(e.context or {}).get(PAID))
        except Exception:  # noqa: BLE001 - the event is stored; only the live counter misses it
            log.warning("could not attribute an event to answer %s", e.request_id, exc_info=True)
            found = None
        if found is None:
            feedback.metrics.unattributed.labels(e.type).inc()
        else:
            feedback.metrics.attributed_event(found)


__all__ = ["HEADER", "Feedback", "answered", "attribute_events", "start_feedback"]
