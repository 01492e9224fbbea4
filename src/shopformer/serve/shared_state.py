"""What API replicas tell each other at once, through a Redis channel (optional).

Several API processes or hosts serve from one store. The store is the truth, and each
process already follows it on its own (``SHOPFORMER_SYNC_S``: the run to serve, rules,
catalog; ``SHOPFORMER_CACHE_CHECK`` or ``SHOPFORMER_CACHE_TTL_S``: cached histories),
but only after a delay. With ``SHOPFORMER_REDIS_URL`` set, the process that makes a
change also publishes a notice on one Redis pub/sub channel, and every other process
acts on it as it arrives (about a millisecond on a local network):

* ``users``: events of these users were stored (or a user was erased) -> drop their
  cached histories, so the next answer re-reads them from the store;
* ``reload``: a run was published as the one to serve -> load it now (the store's
  record names it; the notice only says "look now");
* ``catalog``: products were upserted or deleted -> rebuild the catalog view and bring
  the search index up to the store's catalog changes;
* ``rules``: business rules were added or removed -> reload them from the store;
* ``events``: events were stored here -> the other replicas' stream watches score them
  too, so a bot spread over replicas is seen whole (serve/stream_watch.py; sent only
  while the watch is on).

Pub/sub delivers only to subscribers connected at the time: a process whose
subscription broke may have missed notices, so every (re)subscription after the first
empties its history cache and re-reads the run, rules and catalog (``reset``). A lost
publish (Redis down at that moment) is covered by the store-side mechanisms above, which
keep running: Redis makes changes reach the other processes sooner, never later.

Messages are JSON ``{"origin", "kind", ...}``; a process ignores its own (``origin``).
The user ids are the ids as the service keys its cache (pseudonyms on a pseudonymous
server), never raw customer ids.

:func:`shared_state` gives :class:`SharedState` (no URL: every method does nothing) or
:class:`RedisSharedState` (redis-py, the client DESIGN.md names for this).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .metrics import Metrics
    from .recommender import RecommendationService
    from .search import SearchService
    from .stream_watch import StreamWatch

log = logging.getLogger("shopformer.serve")

#: URL schemes redis-py's ``Redis.from_url`` accepts
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
KINDS = ("users", "reload", "catalog", "rules", "events")


def check_redis_url(url: str, name: str = "SHOPFORMER_REDIS_URL") -> str:
    """``url`` stripped, or ``ValueError`` naming ``name`` when it is not a Redis URL."""
    url = url.strip()
    if not url.startswith(REDIS_SCHEMES) or url in REDIS_SCHEMES:
        raise ValueError(f"{name} must be a Redis URL such as redis://127.0.0.1:6379/0 "
                         f"({', '.join(REDIS_SCHEMES)}), got {url!r}")
    return url


@dataclass(frozen=True)
class SharedStateConfig:
    """The Redis channel between replicas (``SHOPFORMER_REDIS_URL`` / ``_CHANNEL``)."""

    #: redis://host:port/db (or rediss://, unix://); None: no channel, nothing is shared
    url: str | None = field(default=None, repr=False)  # may hold a password
    #: pub/sub channel name: every replica of one shop uses the same, other shops another
    channel: str = "shopformer"
    #: seconds a publish may take before it is given up (a request waits at most this)
    publish_timeout_s: float = 0.5
    #: after a failed publish, seconds without trying again (requests do not each wait)
    publish_pause_s: float = 1.0
    #: reconnect backoff of the subscriber: first pause, doubled up to the maximum
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0

    def __post_init__(self) -> None:
        if self.url is not None:
            object.__setattr__(self, "url", check_redis_url(self.url, "url"))
        if not self.channel.strip():
            raise ValueError("channel must not be empty")
        for name in ("publish_timeout_s", "backoff_s", "max_backoff_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.publish_pause_s < 0:
            raise ValueError(f"publish_pause_s must be >= 0, got {self.publish_pause_s}")
        if self.max_backoff_s < self.backoff_s:
            raise ValueError(f"max_backoff_s ({self.max_backoff_s}) must be >= backoff_s ({self.backoff_s})")


@dataclass(frozen=True)
class Listeners:
    """What a process does with the notices of the others. ``users`` runs on the
    subscriber thread (it must be quick); the others on one worker thread, in order."""

    users: Callable[[list[str]], None]
    reload: Callable[[str], None]  # the version published
    catalog: Callable[[], None]
    rules: Callable[[], None]
    #: subscribed again after a break: notices may have been missed
    reset: Callable[[], None]
    #: the payload of another replica's ``events`` notice, unchecked (the listener checks
    #: it); runs on the subscriber thread, in order. None: such notices are ignored
    events: Callable[[object], None] | None = None


class SharedState:
    """No channel (no ``SHOPFORMER_REDIS_URL``): publishing and subscribing do nothing;
    replicas follow each other through the store alone."""

    enabled = False

    def publish_users(self, users: Iterable[str]) -> None:
        """Events of ``users`` (ids as the cache keys them) were stored here."""

    def publish_user(self, user: str) -> None:
        self.publish_users([user])

    def publish_reload(self, run: str) -> None:
        """``run`` (its version) was published in the store as the run to serve."""

    def publish_catalog(self) -> None:
        """Products were upserted or deleted here."""

    def publish_rules(self) -> None:
        """Business rules were added or removed here."""

    def publish_events(self, events: list[list]) -> None:
        """Events were stored here: their wire form (serve/stream_watch.py's ``encode_events``)."""

    def start(self, listeners: Listeners) -> None:
        """Begin delivering the other processes' notices to ``listeners``."""

    def close(self) -> None:
        """Stop (the app lifespan's exit)."""


class RedisSharedState(SharedState):
    """Notices through one Redis pub/sub channel, received on a daemon thread."""

    enabled = True

    def __init__(self, config: SharedStateConfig) -> None:
        if config.url is None:
            raise ValueError("RedisSharedState needs a url (use SharedState for none)")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:  # pragma: no cover - redis is a dependency; said clearly if removed
            raise RuntimeError("SHOPFORMER_REDIS_URL needs the redis package: pip install 'shopformer[redis]'") from None
        self.config = config
        self.origin = uuid.uuid4().hex  # this process: its own notices come back and are skipped
        self.client_name = f"shopformer-subscriber-{self.origin[:12]}"  # CLIENT LIST shows whose it is
        self._redis = redis
        # publishing is on the request path: one try, a short timeout, no retries
        self._publisher = redis.Redis.from_url(
            config.url, socket_timeout=config.publish_timeout_s, socket_connect_timeout=config.publish_timeout_s,
            retry=Retry(NoBackoff(), 0))
        self._paused_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: ThreadPoolExecutor | None = None
        self.subscribed = threading.Event()  # set while subscribed (tests wait on it)
        #: counts, for /metrics-style introspection and tests
        self.published = 0
        self.publish_failures = 0
        self.received = 0
        self.resets = 0
        self.reconnects = 0

    # -- publishing -----------------------------------------------------------------------
    def _publish(self, kind: str, **fields: object) -> None:
        if time.monotonic() < self._paused_until:
            return
        message = json.dumps({"origin": self.origin, "kind": kind, **fields}, separators=(",", ":"))
        try:
            self._publisher.publish(self.config.channel, message)
            self.published += 1
        except self._redis.RedisError as exc:  # the change is stored; others see it by the store's way
            self.publish_failures += 1
            self._paused_until = time.monotonic() + self.config.publish_pause_s
            log.warning("could not publish a %s notice on Redis (%s): other replicas see it within "
                        "SHOPFORMER_SYNC_S / the cache TTL", kind, exc)

    def publish_users(self, users: Iterable[str]) -> None:
        users = list(dict.fromkeys(users))
        if users:
            self._publish("users", users=users)

    def publish_reload(self, run: str) -> None:
        self._publish("reload", run=run)

    def publish_catalog(self) -> None:
        self._publish("catalog")

    def publish_rules(self) -> None:
        self._publish("rules")

    def publish_events(self, events: list[list]) -> None:
        if events:
            self._publish("events", events=events)

    # -- receiving ------------------------------------------------------------------------
    def start(self, listeners: Listeners) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopformer-notices")
        self._thread = threading.Thread(target=self._subscribe_loop, args=(listeners,),
                                        name="shopformer-redis-subscriber", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
        self._publisher.close()

    def _subscribe_loop(self, listeners: Listeners) -> None:
        """Subscribe, deliver, and on any connection error reconnect with backoff."""
        backoff = self.config.backoff_s
        first = True  # the first subscription at start-up has missed nothing
        while not self._stop.is_set():
            client = pubsub = None
            try:
                client = self._redis.Redis.from_url(self.config.url, socket_connect_timeout=self.config.publish_timeout_s,
                                                    health_check_interval=5, client_name=self.client_name)
                pubsub = client.pubsub()
                pubsub.subscribe(self.config.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":  # also after redis-py reconnected by itself
                        self.subscribed.set()
                        backoff = self.config.backoff_s
                        if not first:
                            self._reset(listeners)
                        first = False
                    elif message["type"] == "message":
                        self._deliver(message["data"], listeners)
            except (self._redis.RedisError, OSError) as exc:
                self.subscribed.clear()
                self.reconnects += 1
                first = False  # whatever comes next follows a break
                log.warning("Redis channel %s lost (%s): reconnecting in %.1f s", self.config.channel, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.max_backoff_s)
            except Exception:  # noqa: BLE001 - a bug in a listener must not end the subscription
                log.exception("the Redis notice subscriber failed; restarting it")
                self._stop.wait(backoff)
            finally:
                for closable in (pubsub, client):
                    if closable is not None:
                        try:
                            closable.close()
                        except Exception:  # noqa: BLE001 - closing a broken connection
                            pass
        self.subscribed.clear()

    def _reset(self, listeners: Listeners) -> None:
        self.resets += 1
        log.info("subscribed to %s again: dropping cached state, notices may have been missed", self.config.channel)
        self._run(listeners.reset)

    def _deliver(self, data: bytes | str, listeners: Listeners) -> None:
        try:
            notice = json.loads(data)
            origin, kind = notice["origin"], notice["kind"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed notice on %s: %.200r", self.config.channel, data)
            return
        if origin == self.origin:
            return
        self.received += 1
        if kind == "users":
            users = notice.get("users")
            if isinstance(users, list):
                self._call(listeners.users, [str(u) for u in users])
        elif kind == "reload":
            self._run(lambda: listeners.reload(str(notice.get("run", ""))))
        elif kind == "catalog":
            self._run(listeners.catalog)
        elif kind == "rules":
            self._run(listeners.rules)
        elif kind == "events":  # quick (a few microseconds an event): kept on this thread, in order
            if listeners.events is not None:
                self._call(listeners.events, notice.get("events"))
        else:  # a newer replica's kind: nothing this one knows to do
            log.debug("ignored a notice of unknown kind %r", kind)

    @staticmethod
    def _call(fn: Callable, *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - the store-side sync still catches up
            log.exception("acting on a replica notice failed")

    def _run(self, fn: Callable[[], None]) -> None:
        """Slow work (loading a run, reading rules) off the subscriber thread, in order."""
        if self._worker is not None:
            self._worker.submit(self._call, fn)


class NoticeCollector:
    """``/metrics``: the channel's counts, read at scrape time (register it when enabled)."""

    def __init__(self, state: RedisSharedState) -> None:
        self.state = state

    def describe(self) -> list:
        return []

    def collect(self):  # noqa: ANN201
        from prometheus_client.core import CounterMetricFamily

        notices = CounterMetricFamily("shopformer_replica_notices", "notices on the Redis channel between replicas",
                                      labels=["outcome"])
        notices.add_metric(["published"], self.state.published)
        notices.add_metric(["publish_failed"], self.state.publish_failures)
        notices.add_metric(["received"], self.state.received)
        yield notices
        yield CounterMetricFamily("shopformer_replica_channel_breaks", "subscriptions to the channel lost",
                                  value=self.state.reconnects)
        yield CounterMetricFamily("shopformer_replica_channel_resets",
                                  "caches emptied on subscribing again after a break", value=self.state.resets)


def shared_state(config: SharedStateConfig) -> SharedState:
    """The channel ``config`` asks for: Redis with a URL, else the no-op."""
    return RedisSharedState(config) if config.url is not None else SharedState()


def announce_reload(version: str, env: Mapping[str, str] | None = None) -> bool:
    """Tell the API replicas at once that ``version`` was published as the run to serve,
    from a process outside them (``shopformer retrain`` / ``rollback``), when
    ``SHOPFORMER_REDIS_URL`` is set in ``env`` (default: this environment); True when sent.
    Without it, or when Redis does not answer, the replicas follow within ``SHOPFORMER_SYNC_S``."""
    env = os.environ if env is None else env
    url = env.get("SHOPFORMER_REDIS_URL", "").strip()
    if not url:
        return False
    state = RedisSharedState(SharedStateConfig(url=url, channel=env.get("SHOPFORMER_REDIS_CHANNEL", "").strip()
                                               or SharedStateConfig.channel))
    try:
        state.publish_reload(version)
    finally:
        state.close()
    return state.published == 1


def service_listeners(service: RecommendationService, metrics: Metrics,
                      searching: SearchService | None = None, watch: StreamWatch | None = None) -> Listeners:
    """What an API process does with the notices: the same steps as its store follower
    (``serve/app.py``'s sync thread), taken at once and without publishing again; the
    other replicas' events go to ``watch`` (the stream watch, None when off)."""

    def reload(_version: str) -> None:  # the store names the run; the notice says "now"
        try:
            if not service.sync():
                return
        except Exception:
            metrics.reloads.labels("failed").inc()
            raise
        served = service.served
        metrics.reloads.labels("ok").inc()
        metrics.set_model(served.name, served.version)
        log.info("now serving %s (reload notice from another replica)", served.version)

    def catalog() -> None:
        if searching is not None:
            searching.sync()
        service.invalidate_catalog(publish=False)

    def reset() -> None:
        service.invalidate_all()
        for step in (lambda: reload(""), catalog, service.rules.sync):
            try:
                step()
            except Exception:  # noqa: BLE001 - the next step still runs; the store follower retries
                log.exception("catching up after a Redis reconnect failed")

    return Listeners(users=lambda users: service.invalidate_users(users, publish=False), reload=reload,
                     catalog=catalog, rules=service.rules.sync, reset=reset,
                     events=watch.peer if watch is not None else None)


__all__ = ["KINDS", "Listeners", "announce_reload", "NoticeCollector", "RedisSharedState", "SharedState", "SharedStateConfig", "check_redis_url",
           "service_listeners", "shared_state"]
