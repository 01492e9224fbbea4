"""ServeSettings: everything the HTTP API needs, read from environment variables.

=========================================  =============================================
SHOPFORMER_STORE_URL                       store URL (default ``sqlite:///shopformer.db``;
                                           ``postgresql://...`` for PostgreSQL)
SHOPFORMER_RUN                             trained run folder to serve (optional: without
                                           one the API stores events and catalog updates,
                                           and recommendation routes answer 503 until
                                           ``POST /v1/admin/reload {"run": ...}``)
SHOPFORMER_API_KEY                         a key with every scope (read, write, admin),
                                           sent in ``X-API-Key``; more keys, with scopes
                                           and their own rate limits, are made with
                                           ``shopformer keys create`` (stored hashed). Once
                                           any key exists, customers' data (their events,
                                           recommendations, personalized search) needs a
                                           read key, writes a write key, admin actions
                                           (reload, erasure, export, keys, audit log) an
                                           admin key; see serve/access.py
SHOPFORMER_RATE_LIMIT                      each key's request budget unless the key has its
                                           own, e.g. ``100/second`` or
                                           ``20/second;1000/minute`` (default: none); over
                                           it: 429 with ``Retry-After``
SHOPFORMER_ANON_RATE_LIMIT                 the same per client address, for requests
                                           without a valid key (default: none; behind a
                                           proxy run uvicorn with ``--proxy-headers``)
SHOPFORMER_RATE_LIMIT_STORAGE              where the counts live: ``memory://`` (default:
                                           per process, so N workers allow N times the
                                           budget) or ``redis://host:port`` (shared by every
                                           process and replica)
SHOPFORMER_CORS_ORIGINS                    browser origins allowed to call the API, comma-
                                           separated (``https://shop.example``), or ``*``
                                           (default: none, no CORS headers)
SHOPFORMER_ALLOW_UNAUTHENTICATED_WRITES    ``1`` allows writes with no key (local demos
                                           only). Without it and without an API key,
                                           every write route answers 503 saying so.
SHOPFORMER_HISTORY_LIMIT                   latest events read per user (default 200)
SHOPFORMER_CACHE_TTL_S                     seconds a cached user history / catalog view
                                           lives (default 60; 0 disables caching)
SHOPFORMER_CACHE_SIZE                      users kept in the history cache (default 10000)
SHOPFORMER_MAX_BATCH                       rows accepted per batch write (default 10000)
SHOPFORMER_CACHE_CHECK                     ``1``: a cached history is used only while the
                                           user's newest stored event is the one it was
                                           read with (one indexed query), so events posted
                                           to OTHER processes (workers, replicas) change
                                           the next answer at once (default 0; ``serve
                                           --workers N`` sets it unless
                                           SHOPFORMER_REDIS_URL is set)
SHOPFORMER_SYNC_S                          seconds between checks of the run that the
                                           store says to serve (written by every model
                                           load and reload; each process follows it, so a
                                           reload reaches all workers and replicas;
                                           default 2; 0 disables)
SHOPFORMER_REDIS_URL                       ``redis://host:port/db``: replicas (and
                                           ``serve --workers N``) tell each other at once,
                                           through a Redis pub/sub channel, which users'
                                           cached histories to drop, that a run was
                                           published to serve, that the catalog or the
                                           rules changed, and the events each stored for
                                           the others' stream watch (serve/shared_state.py;
                                           default: none, each follows the store alone)
SHOPFORMER_REDIS_CHANNEL                   the channel's name (default ``shopformer``; one
                                           per shop sharing a Redis)
SHOPFORMER_INDEX                           retrieval for the Transformer models: ``faiss``
                                           (default; exact flat search below 100k items,
                                           HNSW above) or ``exact`` (dense scoring of the
                                           whole catalog). The baselines always score
                                           the whole catalog.
SHOPFORMER_NEW_VISITORS                    what a visitor with no usable history gets:
                                           ``model`` (default: the model's empty-history
                                           scores), ``popular`` or ``trending`` (counts of
                                           the store's recent events; serve/new_visitors.py)
SHOPFORMER_NEW_VISITOR_DAYS                recent window those counts read (default 30;
                                           0 = every event)
SHOPFORMER_NEW_ITEM_SLOTS                  new products guaranteed in every recommendation
                                           answer (default 0: off); with _POLICY ``best``
                                           (default) or ``thompson``, _POSITION (first
                                           reserved slot, default: the last ones), _DAYS
                                           (created within, default 30), _TAG (default
                                           ``new``; empty: tags do not count), _POOL
                                           (see rank/exposure.py, serve/reranking.py)
SHOPFORMER_TRENDING_HALF_LIFE_DAYS         ``trending``: an event's weight halves this
                                           often (default 7)
SHOPFORMER_EXPLAIN_PRECISION               what computes a Transformer's occluded
                                           histories for ``explain=true``: ``float32``,
                                           ``int8`` or ``bfloat16`` (default: the
                                           library's, ``OcclusionConfig.precision``)
SHOPFORMER_SEARCH                          ``1`` (default): build the product search index
                                           at start-up and answer ``/v1/search``; ``0``:
                                           no search
SHOPFORMER_SEARCH_DIR                      folder of the search index's text-vector
                                           cache, optional ``search_config.json`` and
                                           ``reranker/`` (default: ``<db>.search`` beside
                                           a SQLite store, else ``./shopformer-search``)
SHOPFORMER_SEARCH_LEXICAL                  ``tantivy`` (default; embedded, one index per
                                           process) or ``postgres`` (full-text search in
                                           the store's PostgreSQL database)
SHOPFORMER_SEARCH_SEMANTIC                 ``1`` (default): rank with product text vectors
                                           too (needs ``shopformer[text]``); ``0``: lexical
SHOPFORMER_SEARCH_PERSONAL_WEIGHT          weight of the user's model scores in searches
                                           with ``user_id`` (default: the search config's)
SHOPFORMER_SEARCH_IN_HISTORY               ``1`` (default): a user's search events join the
                                           history recommendations read, as views of the
                                           product each query finds first
SHOPFORMER_MAX_BODY_BYTES                  largest request body in bytes (default 1048576,
                                           1 MiB); larger ones get 413 before they are
                                           read (Content-Length) or as soon as the bytes
                                           read pass it (chunked bodies)
SHOPFORMER_MAX_BATCH_BODY_BYTES            the same for the batch writes, ``POST
                                           /v1/events:batch`` and ``PUT /v1/catalog/items``
                                           (default 16777216, 16 MiB)
SHOPFORMER_MAX_CONTEXT_BYTES               largest event ``context``, as UTF-8 JSON (default
                                           16384); larger ones get 422
SHOPFORMER_MAX_ATTRIBUTES_BYTES            largest product ``attributes``, as UTF-8 JSON
                                           (default 65536); larger ones get 422
SHOPFORMER_MIN_EVENT_TIME                  earliest event timestamp accepted, ISO date or
                                           time, naive = UTC (default 1990-01-01)
SHOPFORMER_MAX_FUTURE_S                    how far ahead of the server clock an event
                                           timestamp may be, in seconds (default 86400);
                                           a far-future event would stay a user's latest
SHOPFORMER_PSEUDONYM_KEY                   secret (>= 16 bytes) for pseudonymous customer
                                           ids: every ``user_id`` (paths, queries, event
                                           bodies) and ``session_id`` becomes an HMAC
                                           pseudonym before the store, caches, logs or
                                           metrics see it; callers keep sending raw ids
                                           and answers name the pseudonym. The store
                                           records the key's fingerprint and refuses
                                           another key, or none (default: unset, raw ids;
                                           see privacy/pseudonym.py, serve/pseudonyms.py)
SHOPFORMER_RETENTION_DAYS                  maximum event age in days (or ``forever``): at
                                           start-up it becomes the store's retention
                                           policy, which every process and ``shopformer
                                           retention`` share (default: keep the store's;
                                           none = keep every event)
SHOPFORMER_RETENTION_TYPES                 per event type, overriding it, e.g.
                                           ``purchase=730,view=90,search=30`` (``TYPE=
                                           forever`` keeps that type)
SHOPFORMER_RETENTION_CHECK_S               seconds between purges of expired events
                                           (default 3600; 0: no purges by this process).
                                           Only when the store has a policy; one process at
                                           a time (a lease in the store); see
                                           serve/retention.py
SHOPFORMER_AUDIENCE_REFRESH_S              seconds the customers' states behind audiences
                                           (``/v1/items/{id}/audience``) are used before
                                           a rebuild from the store (default 900; an
                                           erasure or purge rebuilds at once; see
                                           serve/audience.py)
SHOPFORMER_FORECAST_DIR                    folder written by ``shopformer forecast fit``:
                                           the weekly sales forecasts
                                           ``/v1/forecast/items/{id}`` answers (default:
                                           none, the route answers 404)
SHOPFORMER_ANSWERS_DIR                     folder built by ``shopformer answer build``
                                           (product Q&A, vectors, index, models) that
                                           ``POST /v1/answers`` answers from, loaded on
                                           its first request (default: none; the route
                                           answers 404 saying so)
SHOPFORMER_RISK_DIR                        folder written by ``shopformer risk fit``: the
                                           order-risk model ``POST /v1/risk/orders``
                                           scores baskets with, loaded on its first
                                           request (default: none; the route answers 404)
SHOPFORMER_STREAM_WATCH                    ``1`` (default): score each stored event for
                                           unusual behaviour (bursts, bots;
                                           serve/stream_watch.py; with a Redis URL over
                                           all replicas' events); ``0``: off (set it
                                           alike on all replicas)
SHOPFORMER_STOREFRONT                      ``1`` (default): serve the storefront pages at
                                           ``/`` (``src/shopformer/web/``); ``0``: the API
                                           only
SHOPFORMER_CONSOLE                         ``1`` (default): serve the operator console at
                                           ``/console`` (admin key; web/console.py); ``0``:
                                           not
SHOPFORMER_IMPRESSIONS                     ``1`` (default): log what every recommendation
                                           and search answer showed to the store's
                                           ``impressions`` (batched, off the request path;
                                           feedback/impressions.py); ``0``: not (answers
                                           still carry a ``request_id``); an admin key
                                           pauses / resumes it at runtime with
                                           ``PUT /v1/admin/impressions``
SHOPFORMER_IMPRESSIONS_FLUSH_S             the longest an impression waits in memory
                                           before its batch is written (default 0.5)
SHOPFORMER_IMPRESSIONS_BATCH               rows per write (default 1000)
SHOPFORMER_IMPRESSIONS_QUEUE               most impressions waiting; past it new ones are
                                           dropped and counted (default 20000)
SHOPFORMER_IMPRESSIONS_RECENT              recent answers kept in memory to attribute
                                           posted events without a store read (default
                                           20000)
SHOPFORMER_IMPRESSIONS_WRITER              ``process`` (default): a child process with its
                                           own store connection writes the impressions,
                                           the API process only hands rows over (no SQL,
                                           no GIL held for it; a child that dies is
                                           restarted, after 4 deaths in a minute a thread
                                           takes over; feedback/writer_process.py);
                                           ``thread``: a thread of the API process writes
                                           them (an in-memory SQLite store always does)
=========================================  =============================================

Caching: each process caches a user's encoded history and the catalog arrays used by
filters and for the titles in answers (built when a run is loaded). Events and catalog
updates posted to THIS process invalidate them at once; with several processes (``serve
--workers N``, or replicas behind a load balancer) ``SHOPFORMER_CACHE_CHECK=1`` makes an
event posted to any of them change the next answer everywhere, while catalog changes
made through another process are seen after at most ``cache_ttl_s`` seconds (titles are
read from the store while an expired catalog view is rebuilt in the background). An
erasure (``DELETE /v1/users/{id}`` or ``shopformer forget``) leaves the user's newest
stored position changed, so ``SHOPFORMER_CACHE_CHECK=1`` stops every process serving
their cached history at once; each process also empties its history cache and takes the
user's stored queries out of autocomplete within ``SHOPFORMER_SYNC_S`` seconds of a new
receipt in the store. A retention purge is handled the same way: the purging process drops
its history cache and the purged queries at once, the others within ``SHOPFORMER_SYNC_S``
seconds of the purge's entry in the store's purge log (a user whose newest events were
purged is re-read at once everywhere with ``SHOPFORMER_CACHE_CHECK=1``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from shopformer.explain.attribution import PRECISIONS, OcclusionConfig
from shopformer.feedback.impressions import WRITERS, ImpressionLogConfig
from shopformer.privacy.pseudonym import PseudonymConfig
from shopformer.rank.exposure import ExposureConfig
from shopformer.store.retention import RetentionConfig

from .shared_state import SharedStateConfig, check_redis_url

_TRUE = ("1", "true", "yes", "on")
INDEX_KINDS = ("exact", "faiss")
LEXICAL_KINDS = ("tantivy", "postgres")
#: what visitors with no usable history get (see serve/new_visitors.py)
NEW_VISITOR_SOURCES = ("model", "popular", "trending")
_FALSE = ("", "0", "false", "no", "off")


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported when the store opens
        return "<unparsed url>"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {raw!r}")
    return value


def _datetime(env: Mapping[str, str], name: str, default: datetime) -> datetime:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be an ISO date or time such as 1990-01-01, got {raw!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _origins(raw: str) -> tuple[str, ...]:
    """Comma-separated CORS origins: ``*`` or scheme://host[:port] each."""
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for o in origins:
        if o != "*" and not (o.startswith(("http://", "https://")) and "/" not in o.split("://", 1)[1]):
            raise ValueError(f"SHOPFORMER_CORS_ORIGINS: {o!r} is not an origin such as https://shop.example (or *)")
    return origins


def _retention(env: Mapping[str, str]) -> RetentionConfig | None:
    """SHOPFORMER_RETENTION_DAYS / _TYPES as a policy (None when neither is set)."""
    days = env.get("SHOPFORMER_RETENTION_DAYS", "").strip()
    types = env.get("SHOPFORMER_RETENTION_TYPES", "").strip()
    if not days and not types:
        return None
    by_type = RetentionConfig.parse_types(types, "SHOPFORMER_RETENTION_TYPES")
    try:
        return RetentionConfig(days=days or None, types=by_type)
    except ValueError as exc:
        raise ValueError(f"SHOPFORMER_RETENTION_DAYS: {exc}") from None


def _impressions(env: Mapping[str, str]) -> ImpressionLogConfig | None:
    """SHOPFORMER_IMPRESSIONS and its _FLUSH_S / _BATCH / _QUEUE / _RECENT / _WRITER (None: off)."""
    if not _bool_default(env, "SHOPFORMER_IMPRESSIONS", True):
        return None
    d = ImpressionLogConfig()
    flush_s = _float(env, "SHOPFORMER_IMPRESSIONS_FLUSH_S", d.flush_s)
    if flush_s <= 0:
        raise ValueError(f"SHOPFORMER_IMPRESSIONS_FLUSH_S must be > 0, got {flush_s}")
    return ImpressionLogConfig(flush_s=flush_s, batch_size=_int(env, "SHOPFORMER_IMPRESSIONS_BATCH", d.batch_size, 1),
                               queue_size=_int(env, "SHOPFORMER_IMPRESSIONS_QUEUE", d.queue_size, 1),
                               recent=_int(env, "SHOPFORMER_IMPRESSIONS_RECENT", d.recent, 0),
                               writer=_choice(env, "SHOPFORMER_IMPRESSIONS_WRITER", d.writer, WRITERS))


#: ExposureConfig field -> environment variable (the server's default exposure of new
#: products; requests may override it)
NEW_ITEM_ENV = {"slots": "SHOPFORMER_NEW_ITEM_SLOTS", "policy": "SHOPFORMER_NEW_ITEM_POLICY",
                "position": "SHOPFORMER_NEW_ITEM_POSITION", "new_days": "SHOPFORMER_NEW_ITEM_DAYS",
                "new_tag": "SHOPFORMER_NEW_ITEM_TAG", "pool": "SHOPFORMER_NEW_ITEM_POOL"}


def _new_items(env: Mapping[str, str]) -> ExposureConfig:
    """``SHOPFORMER_NEW_ITEM_SLOTS``, ``_POLICY``, ``_POSITION``, ``_DAYS``, ``_TAG`` (empty:
    tags do not count), ``_POOL``, as ExposureConfig's fields; a bad value raises
    ValueError naming the variable."""
    kinds = {f.name: f.type for f in fields(ExposureConfig)}
    values: dict = {}
    for name, var in NEW_ITEM_ENV.items():
        raw = env.get(var)
        if raw is None or (raw.strip() == "" and name != "new_tag"):
            continue
        raw = raw.strip()
        try:
            if name in ("policy", "new_tag"):
                values[name] = raw or None
            else:
                values[name] = (int if "int" in str(kinds[name]) else float)(raw)
        except ValueError:
            raise ValueError(f"{var} must be a number, got {raw!r}") from None
    try:
        return ExposureConfig(**values)
    except ValueError as exc:
        raise ValueError(f"SHOPFORMER_NEW_ITEM_*: {exc}") from None


def _redis_url(env: Mapping[str, str]) -> str | None:
    """SHOPFORMER_REDIS_URL, checked (None when unset or empty)."""
    raw = env.get("SHOPFORMER_REDIS_URL", "").strip()
    return check_redis_url(raw) if raw else None


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name} must be 1/0 (true/false), got {raw!r}")


def _bool_default(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Like :func:`_bool`, with ``default`` when the variable is unset or empty."""
    return _bool(env, name) if env.get(name, "").strip() else default


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class ServeSettings:
    """How the API runs. Build it directly (tests, the CLI) or with :meth:`from_env`."""

    store_url: str = "sqlite:///shopformer.db"
    run: Path | None = None
    api_key: str | None = None
    allow_unauthenticated_writes: bool = False
    #: rate limits (``limits`` strings) and where they are counted (serve/access.py)
    rate_limit: str | None = None
    anon_rate_limit: str | None = None
    rate_limit_storage: str = "memory://"
    #: browser origins allowed by CORS (empty: no CORS headers)
    cors_origins: tuple[str, ...] = ()
    history_limit: int = 200
    cache_ttl_s: float = 60.0
    cache_size: int = 10_000
    max_batch: int = 10_000
    #: "faiss" (FaissIndex kind "auto") or "exact" (dense scoring); see SHOPFORMER_INDEX
    index: str = "faiss"
    #: check cached histories against the store (SHOPFORMER_CACHE_CHECK)
    cache_check: bool = False
    #: seconds between checks of the run the store says to serve (SHOPFORMER_SYNC_S)
    sync_s: float = 2.0
    #: the Redis channel between replicas (SHOPFORMER_REDIS_URL / _CHANNEL); None: none
    redis_url: str | None = None
    redis_channel: str = "shopformer"
    #: what visitors with no usable history get (SHOPFORMER_NEW_VISITORS and the two below)
    new_visitors: str = "model"
    new_visitor_days: float = 30.0
    trending_half_life_days: float = 7.0
    #: explain=true: OcclusionConfig.precision (SHOPFORMER_EXPLAIN_PRECISION)
    explain_precision: str = OcclusionConfig.precision
    #: product search (SHOPFORMER_SEARCH and the SEARCH_* variables)
    search: bool = True
    search_dir: Path | None = None
    search_lexical: str = "tantivy"
    search_semantic: bool = True
    search_personal_weight: float | None = None
    search_in_history: bool = True
    #: request limits: bodies (413) and fields the schemas cannot bound alone (422)
    max_body_bytes: int = 1 << 20
    max_batch_body_bytes: int = 16 << 20
    max_context_bytes: int = 16 << 10
    max_attributes_bytes: int = 64 << 10
    #: the window event timestamps must fall in (SHOPFORMER_MIN_EVENT_TIME / _MAX_FUTURE_S)
    min_event_time: datetime = datetime(1990, 1, 1, tzinfo=UTC)
    max_future_s: float = 86_400.0
    #: pseudonymous customer ids: the key (SHOPFORMER_PSEUDONYM_KEY); None: raw ids
    pseudonyms: PseudonymConfig | None = None
    #: reserved slots for new products, the default of every recommendation (SHOPFORMER_NEW_ITEM_*; rank/exposure.py)
    new_items: ExposureConfig = ExposureConfig()
    #: retention policy published to the store at start-up (None: keep the store's), and
    #: seconds between scheduled purges (SHOPFORMER_RETENTION_*; serve/retention.py)
    retention: RetentionConfig | None = None
    retention_check_s: float = 3600.0
    #: seconds the customers' states behind audiences live before a rebuild (serve/audience.py)
    audience_refresh_s: float = 900.0
    #: the customer-service answers folder (SHOPFORMER_ANSWERS_DIR; answers/, serve/routes/answers.py)
    answers_dir: Path | None = None
    #: the sales forecasts folder (SHOPFORMER_FORECAST_DIR; forecast/, serve/routes/forecast.py)
    forecast_dir: Path | None = None
    #: the order-risk model folder (SHOPFORMER_RISK_DIR; risk/, serve/routes/risk.py)
    risk_dir: Path | None = None
    #: the storefront pages at / (SHOPFORMER_STOREFRONT; web/storefront.py)
    #: score stored events for unusual behaviour (SHOPFORMER_STREAM_WATCH; serve/stream_watch.py)
    stream_watch: bool = True
    storefront: bool = True
    #: the operator console at /console (SHOPFORMER_CONSOLE; web/console.py)
    console: bool = True
    #: the impression log (SHOPFORMER_IMPRESSIONS*; feedback/impressions.py); None: off
    impressions: ImpressionLogConfig | None = ImpressionLogConfig()

    def __post_init__(self) -> None:
        if self.run is not None and not isinstance(self.run, Path):
            object.__setattr__(self, "run", Path(self.run))
        if self.api_key == "":
            object.__setattr__(self, "api_key", None)
        for name in ("rate_limit", "anon_rate_limit"):
            value = getattr(self, name)
            if value is not None:
                from shopformer.store.access import AccessError, check_rate_limit

                try:
                    object.__setattr__(self, name, check_rate_limit(value))
                except AccessError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        if not self.rate_limit_storage.startswith(("memory://", "redis://", "rediss://", "redis+")):
            raise ValueError(f"rate_limit_storage must be memory:// or a redis:// URL, got {self.rate_limit_storage!r}")
        if isinstance(self.cors_origins, str):
            object.__setattr__(self, "cors_origins", _origins(self.cors_origins))
        if self.history_limit < 1:
            raise ValueError(f"history_limit must be >= 1, got {self.history_limit}")
        if self.redis_url is not None:
            object.__setattr__(self, "redis_url", check_redis_url(self.redis_url, "redis_url"))
        if not self.redis_channel.strip():
            raise ValueError("redis_channel must not be empty")
        if self.cache_ttl_s < 0:
            raise ValueError(f"cache_ttl_s must be >= 0, got {self.cache_ttl_s}")
        if self.cache_size < 0 or self.max_batch < 1:
            raise ValueError("cache_size must be >= 0 and max_batch >= 1")
        if self.index not in INDEX_KINDS:
            raise ValueError(f"index must be one of {', '.join(INDEX_KINDS)}, got {self.index!r}")
        if self.explain_precision not in PRECISIONS:
            raise ValueError(f"explain_precision must be one of {', '.join(PRECISIONS)}, got {self.explain_precision!r}")
        if self.search_dir is not None and not isinstance(self.search_dir, Path):
            object.__setattr__(self, "search_dir", Path(self.search_dir))
        if self.search_lexical not in LEXICAL_KINDS:
            raise ValueError(f"search_lexical must be one of {', '.join(LEXICAL_KINDS)}, got {self.search_lexical!r}")
        if self.search_lexical == "postgres" and not self.store_url.startswith("postgresql"):
            raise ValueError("search_lexical 'postgres' needs a PostgreSQL store (SHOPFORMER_STORE_URL)")
        for name in ("max_body_bytes", "max_batch_body_bytes", "max_context_bytes", "max_attributes_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_future_s < 0:
            raise ValueError(f"max_future_s must be >= 0, got {self.max_future_s}")
        if self.min_event_time.tzinfo is None:  # naive = UTC, as everywhere
            object.__setattr__(self, "min_event_time", self.min_event_time.replace(tzinfo=UTC))
        if self.new_visitors not in NEW_VISITOR_SOURCES:
            raise ValueError(f"new_visitors must be one of {', '.join(NEW_VISITOR_SOURCES)}, got {self.new_visitors!r}")
        if self.retention is not None and not isinstance(self.retention, RetentionConfig):
            raise ValueError(f"retention must be a RetentionConfig or None, got {self.retention!r}")
        if not self.retention_check_s >= 0:
            raise ValueError(f"retention_check_s must be >= 0, got {self.retention_check_s}")
        if self.impressions is not None and not isinstance(self.impressions, ImpressionLogConfig):
            raise ValueError(f"impressions must be an ImpressionLogConfig or None, got {self.impressions!r}")

    @property
    def shared_state(self) -> SharedStateConfig:
        """The channel to the other replicas (serve/shared_state.py)."""
        return SharedStateConfig(url=self.redis_url, channel=self.redis_channel)

    @property
    def writes_enabled(self) -> bool:
        return self.api_key is not None or self.allow_unauthenticated_writes

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServeSettings:
        """Read the ``SHOPFORMER_*`` variables (see the module docstring); raises
        ``ValueError`` naming the variable when one is malformed."""
        env = os.environ if env is None else env
        run = env.get("SHOPFORMER_RUN", "").strip()
        return cls(
            store_url=env.get("SHOPFORMER_STORE_URL", "").strip() or cls.store_url,
            run=Path(run) if run else None,
            api_key=env.get("SHOPFORMER_API_KEY") or None,
            allow_unauthenticated_writes=_bool(env, "SHOPFORMER_ALLOW_UNAUTHENTICATED_WRITES"),
            rate_limit=env.get("SHOPFORMER_RATE_LIMIT", "").strip() or None,
            anon_rate_limit=env.get("SHOPFORMER_ANON_RATE_LIMIT", "").strip() or None,
            rate_limit_storage=env.get("SHOPFORMER_RATE_LIMIT_STORAGE", "").strip() or cls.rate_limit_storage,
            cors_origins=_origins(env.get("SHOPFORMER_CORS_ORIGINS", "")),
            history_limit=_int(env, "SHOPFORMER_HISTORY_LIMIT", cls.history_limit, 1),
            cache_ttl_s=_float(env, "SHOPFORMER_CACHE_TTL_S", cls.cache_ttl_s),
            cache_size=_int(env, "SHOPFORMER_CACHE_SIZE", cls.cache_size, 0),
            max_batch=_int(env, "SHOPFORMER_MAX_BATCH", cls.max_batch, 1),
            index=_choice(env, "SHOPFORMER_INDEX", cls.index, INDEX_KINDS),
            cache_check=_bool(env, "SHOPFORMER_CACHE_CHECK"),
            sync_s=_float(env, "SHOPFORMER_SYNC_S", cls.sync_s),
            redis_url=_redis_url(env),
            redis_channel=env.get("SHOPFORMER_REDIS_CHANNEL", "").strip() or cls.redis_channel,
            new_visitors=_choice(env, "SHOPFORMER_NEW_VISITORS", cls.new_visitors, NEW_VISITOR_SOURCES),
            new_visitor_days=_float(env, "SHOPFORMER_NEW_VISITOR_DAYS", cls.new_visitor_days),
            trending_half_life_days=_float(env, "SHOPFORMER_TRENDING_HALF_LIFE_DAYS", cls.trending_half_life_days),
            explain_precision=_choice(env, "SHOPFORMER_EXPLAIN_PRECISION", cls.explain_precision, PRECISIONS),
            search=_bool_default(env, "SHOPFORMER_SEARCH", cls.search),
            search_dir=Path(env["SHOPFORMER_SEARCH_DIR"].strip()) if env.get("SHOPFORMER_SEARCH_DIR", "").strip() else None,
            search_lexical=_choice(env, "SHOPFORMER_SEARCH_LEXICAL", cls.search_lexical, LEXICAL_KINDS),
            search_semantic=_bool_default(env, "SHOPFORMER_SEARCH_SEMANTIC", cls.search_semantic),
            search_personal_weight=(_float(env, "SHOPFORMER_SEARCH_PERSONAL_WEIGHT", 0.0)
                                    if env.get("SHOPFORMER_SEARCH_PERSONAL_WEIGHT", "").strip() else None),
            search_in_history=_bool_default(env, "SHOPFORMER_SEARCH_IN_HISTORY", cls.search_in_history),
            max_body_bytes=_int(env, "SHOPFORMER_MAX_BODY_BYTES", cls.max_body_bytes, 1),
            max_batch_body_bytes=_int(env, "SHOPFORMER_MAX_BATCH_BODY_BYTES", cls.max_batch_body_bytes, 1),
            max_context_bytes=_int(env, "SHOPFORMER_MAX_CONTEXT_BYTES", cls.max_context_bytes, 1),
            max_attributes_bytes=_int(env, "SHOPFORMER_MAX_ATTRIBUTES_BYTES", cls.max_attributes_bytes, 1),
            min_event_time=_datetime(env, "SHOPFORMER_MIN_EVENT_TIME", cls.min_event_time),
            max_future_s=_float(env, "SHOPFORMER_MAX_FUTURE_S", cls.max_future_s),
            pseudonyms=PseudonymConfig.from_env(env),
            new_items=_new_items(env),
            retention=_retention(env),
            retention_check_s=_float(env, "SHOPFORMER_RETENTION_CHECK_S", cls.retention_check_s),
            audience_refresh_s=_float(env, "SHOPFORMER_AUDIENCE_REFRESH_S", cls.audience_refresh_s),
            answers_dir=Path(env["SHOPFORMER_ANSWERS_DIR"].strip()) if env.get("SHOPFORMER_ANSWERS_DIR", "").strip() else None,
            forecast_dir=Path(env["SHOPFORMER_FORECAST_DIR"].strip()) if env.get("SHOPFORMER_FORECAST_DIR", "").strip() else None,
            risk_dir=Path(env["SHOPFORMER_RISK_DIR"].strip()) if env.get("SHOPFORMER_RISK_DIR", "").strip() else None,
            stream_watch=_bool_default(env, "SHOPFORMER_STREAM_WATCH", cls.stream_watch),
            storefront=_bool_default(env, "SHOPFORMER_STOREFRONT", cls.storefront),
            console=_bool_default(env, "SHOPFORMER_CONSOLE", cls.console),
            impressions=_impressions(env),
        )

    def __repr__(self) -> str:  # never print the key
        key = "set" if self.api_key else None
        return (
            f"ServeSettings(store_url={_hide_password(self.store_url)!r}, run={self.run!r}, api_key={key}, "
            f"allow_unauthenticated_writes={self.allow_unauthenticated_writes}, rate_limit={self.rate_limit!r}, "
            f"anon_rate_limit={self.anon_rate_limit!r}, rate_limit_storage={_hide_password(self.rate_limit_storage)!r}, "
            f"cors_origins={self.cors_origins!r}, "
            f"history_limit={self.history_limit}, cache_ttl_s={self.cache_ttl_s}, "
            f"cache_size={self.cache_size}, max_batch={self.max_batch}, index={self.index!r}, "
            f"cache_check={self.cache_check}, sync_s={self.sync_s}, "
            f"redis_url={_hide_password(self.redis_url) if self.redis_url else None!r}, redis_channel={self.redis_channel!r}, "
            f"new_visitors={self.new_visitors!r}, "
            f"new_visitor_days={self.new_visitor_days}, trending_half_life_days={self.trending_half_life_days}, "
            f"explain_precision={self.explain_precision!r}, search={self.search}, search_dir={self.search_dir!r}, "
            f"search_lexical={self.search_lexical!r}, search_semantic={self.search_semantic}, "
            f"search_personal_weight={self.search_personal_weight}, search_in_history={self.search_in_history}, "
            f"max_body_bytes={self.max_body_bytes}, max_batch_body_bytes={self.max_batch_body_bytes}, "
            f"max_context_bytes={self.max_context_bytes}, max_attributes_bytes={self.max_attributes_bytes}, "
            f"min_event_time={self.min_event_time.isoformat()!r}, max_future_s={self.max_future_s}, "
            f"pseudonyms={self.pseudonyms!r}, "
            f"retention={self.retention!r}, retention_check_s={self.retention_check_s}, storefront={self.storefront}, "
            f"console={self.console}, impressions={self.impressions!r})"
        )
