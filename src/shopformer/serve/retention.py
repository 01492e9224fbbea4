"""The API server's retention schedule and what a purge means for this process's caches.

At start-up a policy given in the environment (``SHOPFORMER_RETENTION_DAYS`` /
``SHOPFORMER_RETENTION_TYPES``) becomes the store's, as ``SHOPFORMER_RUN`` does for the
run: the configured one wins at start-up, and every process and the CLI then read it from
the store. A background thread wakes every ``SHOPFORMER_RETENTION_CHECK_S`` seconds and,
when the store has a policy, purges under the store's lease
(:func:`shopformer.privacy.retention.purge_store`): one process at a time, and at most
about one purge per interval whatever the number of processes (a purge is skipped when
another started less than 0.9 of an interval ago). The policy is read from the store on
every tick, so ``shopformer retention --store URL --days N`` reaches running servers.

Caches: purged events must not be served from memory. The purging process drops its
cached histories and takes the purged queries out of autocomplete as soon as the purge
ends; the others do it on their sync tick (``SHOPFORMER_SYNC_S``) when the store's newest
purge (:meth:`EventStore.last_purge_id`) is one they have not seen. With
``SHOPFORMER_CACHE_CHECK`` a user whose newest events were purged is re-read at once in
every process anyway: their newest stored position changed.
"""

from __future__ import annotations

import logging
import threading
import uuid

from shopformer.privacy.retention import holder_name, purge_store
from shopformer.store.access import record_audit

from .recommender import RecommendationService
from .search import SearchService
from .settings import ServeSettings

log = logging.getLogger("shopformer.serve")

#: a scheduled purge is skipped when another started less than this share of an interval ago
#: (not 1.0: the ticks of one process drift later by each purge's duration)
INTERVAL_SLACK = 0.9


def sync_purges(service: RecommendationService, searching: SearchService | None) -> bool:
    """Drop this process's cached state that a purge (by any process) made stale: the
    history cache and the purged queries' autocomplete counts. True when there was one."""
    latest = service.store.last_purge_id()
    dropped = service.sync_purges(latest)
    if searching is not None:
        searching.sync_purges(latest)
    return dropped


def purge_tick(settings: ServeSettings, service: RecommendationService, searching: SearchService | None,
               holder: str, stop: threading.Event | None = None) -> None:
    """One scheduled check: purge if the store has a policy and it is this process's turn."""
    result = purge_store(service.store, trigger="schedule", holder=holder,
                         min_interval_s=INTERVAL_SLACK * settings.retention_check_s, stop=stop)
    if result is None:
        return
    log.info("retention purge %s: %d events deleted %s in %.2f s", result.purge_id, result.deleted,
             result.event_types, result.seconds)
    if result.deleted:
        sync_purges(service, searching)


def start_retention(settings: ServeSettings, service: RecommendationService, searching: SearchService | None,
                    stop: threading.Event) -> threading.Thread | None:
    """Publish the environment's policy to the store (when given) and start the schedule
    (None when ``retention_check_s`` is 0)."""
    if settings.retention is not None:
        store = service.store
        if store.retention_policy() != settings.retention:  # audited when it changes, not at every start
            store.set_retention_policy(settings.retention)
            record_audit(store, "env:SHOPFORMER_RETENTION_DAYS/TYPES", "set_retention_policy", None, "ok",
                         {"policy": settings.retention.to_dict()})
        log.info("retention policy from the environment: %s", settings.retention)
    if settings.retention_check_s <= 0:
        return None
    holder = f"{holder_name()}:{uuid.uuid4().hex[:6]}"  # unique per app, even with several in a process

    def loop() -> None:
        while True:
            try:
                purge_tick(settings, service, searching, holder, stop)
            except Exception:  # noqa: BLE001 - keep serving; the next tick tries again
                log.exception("retention purge failed")
            if stop.wait(settings.retention_check_s):
                return

    thread = threading.Thread(target=loop, name="shopformer-retention", daemon=True)
    thread.start()
    return thread
