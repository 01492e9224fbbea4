"""The served audiences: every customer's current state under the served run, and the
index over them (:class:`shopformer.rank.audience.AudienceIndex`), kept fresh enough.

Freshness: the states are built from the store's events on the first audience request
for a served version (after start-up or a reload), and rebuilt on the first request
after any of these:

- they are older than ``settings.audience_refresh_s`` (``SHOPFORMER_AUDIENCE_REFRESH_S``,
  default 900 s): events stored since the build (by any process) are not in an answer
  until then, so a customer's new purchases move them in or out of audiences at most
  that late (each answer says when its states were built: ``states_built_at``);
- a customer was erased or a retention purge ran (the store's last erasure receipt or
  purge id moved): an erased customer is never named again, by any process, however
  fresh the states are;
- another run is served (the states are per model version).

A build reads every stored event once and runs the model over every customer (on
Online Retail's 4,300 customers, a few seconds on one CPU); one build at a time, other
audience requests wait for it. Only dot-product models (the Transformers) have user
vectors: for the baselines the routes answer 409. When the run folder holds a fitted
audience ranker (``shopformer audience-fit``, rank/audience_learned.py), item audiences
are ranked by it (built with the states, from the same events).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from shopformer.rank.audience import AudienceConfig, AudienceIndex, audience_from_events
from shopformer.rank.audience_learned import LearnedAudience, load_ranker
from shopformer.store import EventStore

from .recommender import Served
from .retrieval import is_vector_model


class NoUserVectors(ValueError):
    """The served model has no user vectors (answered with 409)."""


@dataclass(frozen=True)
class AudienceStates:
    """One build: the audience index and what it was built from."""

    audience: AudienceIndex
    version: str
    built_at: datetime
    made: float  # time.monotonic()
    erasure_id: int
    purge_id: int
    #: the learned ranker's view (item audiences) when the run holds a fitted one
    learned: LearnedAudience | None = None


class AudienceService:
    """Builds and keeps the states of the served version (see the module docstring)."""

    def __init__(self, config: AudienceConfig, store: EventStore, refresh_s: float) -> None:
        self.config = config
        self.store = store
        self.refresh_s = refresh_s
        self._states: AudienceStates | None = None
        self._build = threading.Lock()
        self.builds = 0

    def _fresh(self, served: Served, erasure_id: int, purge_id: int) -> AudienceStates | None:
        s = self._states
        if (s is None or s.version != served.version or s.erasure_id != erasure_id or s.purge_id != purge_id
                or time.monotonic() - s.made > self.refresh_s):
            return None
        return s

    def states(self, served: Served) -> AudienceStates:
        """The current states for ``served``, built now if missing or stale."""
        if not is_vector_model(served.run.model):
            raise NoUserVectors(f"the served model ({served.name}) has no user vectors: audiences need a sequence "
                                "model (sasrec or bert4rec)")
        erasure_id, purge_id = self.store.last_erasure_id(), self.store.last_purge_id()
        found = self._fresh(served, erasure_id, purge_id)
        if found is not None:
            return found
        with self._build:
            found = self._fresh(served, erasure_id, purge_id)  # built while we waited?
            if found is not None:
                return found
            # ids read before the events: an erasure in between makes these states look stale, never fresh
            events = self.store.events()
            audience = audience_from_events(self.config, served.run.model, served.run.items, served.event_types,
                                            events, served.run.data_config.dedupe_consecutive)
            ranker = load_ranker(served.run.folder)
            learned = LearnedAudience(ranker, events, served.run.items) if ranker is not None else None
            self._states = AudienceStates(audience, served.version, datetime.now(timezone.utc), time.monotonic(),
                                          erasure_id, purge_id, learned)
            self.builds += 1
            return self._states
