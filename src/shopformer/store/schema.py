"""SQLAlchemy Core tables of the store, mirroring ``EVENT_SCHEMA`` / ``PRODUCT_SCHEMA``.

``events``
    ``position`` (integer primary key, assigned by the database in arrival order,
    strictly increasing, never reused; SQLite ``AUTOINCREMENT`` / PostgreSQL identity),
    ``event_id`` (unique; the caller's id, or a deterministic one made by the store,
    see :func:`shopformer.store.frames.derive_event_ids`), the other EVENT_SCHEMA
    columns; ``timestamp`` is UTC (PostgreSQL ``timestamptz``; SQLite text
    ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, which sorts chronologically); ``context``
    is JSON text, kept verbatim. Indexes: ``(user_id, timestamp, position)`` for a
    user's history and ``item_id``.
``catalog_changes``
    every catalog write in commit order (``seq``, ``item_id``, ``upsert``/``delete``), for
    processes that keep their own copy of the catalog (search indexes) to catch up.
``serving_state``
    ``name`` -> ``value`` (text): what every API process serving from this store must
    agree on, such as the run folder to serve, the retention policy and the purge lease.
``retention_purges``
    the purge log (:mod:`shopformer.store.retention`): when, the policy and cutoffs,
    events deleted per type, what was done to the bytes.
``erasures``
    one receipt per erasure request (:mod:`shopformer.store.erasure`): the user as a
    SHA-256 of the id (never the raw id), when, rows removed per table, what was done to
    the bytes, and ``pending_retrain`` / ``complete`` with the model version.
``api_keys``
    the API's keys (:mod:`shopformer.store.access`): a public ``key_id``, a name, scopes,
    an optional rate limit, and a SHA-256 of the whole key (never the key itself).
``audit_log``
    one row per admin action (reload, key changes, erasure, export, retention): when,
    who (key id and name, or ``cli``), what, on what (no raw customer ids), outcome.
``impressions``
    what each recommendation / search answer showed (:mod:`shopformer.store.impressions`).
``rules``
    business rules applied at request time (:mod:`shopformer.store.rules`).
``model_versions``
    the runs ``shopformer retrain`` trained, gated and promoted (:mod:`shopformer.store.versions`).
``products``
    keyed by ``item_id``; ``categories`` and ``tags`` are JSON arrays, ``attributes``
    JSON text kept verbatim, ``created_at`` UTC.

The tables are plain definitions (no engine, no connection): a store picks the
PostgreSQL schema (namespace) at run time with ``schema_translate_map``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (and AUTOINCREMENT only
# applies there); PostgreSQL gets a BIGINT identity column.
_POSITION = BigInteger().with_variant(Integer(), "sqlite")
_TS = DateTime(timezone=True)
_JSON_LIST = JSON(none_as_null=True)

events = Table(
    "events",
    metadata,
    Column("position", _POSITION, primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("user_id", Text, nullable=False),
    Column("item_id", Text),
    Column("event_type", String(32), nullable=False),
    Column("timestamp", _TS),
    Column("session_id", Text),
    Column("query", Text),
    Column("value", Double),
    Column("context", Text),
    Index("ix_events_user_time", "user_id", "timestamp", "position"),
    Index("ix_events_item", "item_id"),
    sqlite_autoincrement=True,
)

products = Table(
    "products",
    metadata,
    Column("item_id", Text, primary_key=True),
    Column("title", Text),
    Column("description", Text),
    Column("brand", Text),
    Column("categories", _JSON_LIST),
    Column("price", Double),
    Column("currency", String(16)),
    Column("attributes", Text),
    Column("image_uri", Text),
    Column("created_at", _TS),
    Column("available", Boolean),
    Column("tags", _JSON_LIST),
)

#: Small named values shared by every process serving from this store (e.g. the run
#: folder to serve, which every API worker follows; see RecommendationService.sync).
serving_state = Table(
    "serving_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", _TS, nullable=False),
)

#: ``serving_state`` name of the run every API process serves: JSON ``{"folder", "version"}``
#: (written by RecommendationService.reload(publish=True); read by the privacy requests too)
SERVED_RUN = "served_run"

#: Erasure receipts (see :mod:`shopformer.store.erasure`). ``receipt_id`` increases, so a
#: process that remembers the last one it saw knows when another process erased a user.
#: No raw user id: ``user_hash`` is SHA-256 of it; ``removed``/``storage`` are JSON text.
erasures = Table(
    "erasures",
    metadata,
    Column("receipt_id", _POSITION, primary_key=True, autoincrement=True),
    Column("user_hash", String(64), nullable=False),
    Column("requested_at", _TS, nullable=False),
    Column("removed", Text, nullable=False),
    Column("event_types", Text, nullable=False),
    Column("storage", Text, nullable=False),
    Column("seconds", Double, nullable=False),
    Column("model_version", Text),
    Column("model_saw_user", Boolean),
    Column("status", String(32), nullable=False),
    Column("completed_at", _TS),
    Column("completed_version", Text),
    Index("ix_erasures_user", "user_hash"),
    sqlite_autoincrement=True,
)

#: Retention purges (see :mod:`shopformer.store.retention`), one row each: the policy and
#: cutoffs applied, events deleted per type (kept current batch by batch), what was done to
#: the bytes, ``running`` / ``done`` / ``failed``. JSON as text, as for the receipts.
retention_purges = Table(
    "retention_purges",
    metadata,
    Column("purge_id", _POSITION, primary_key=True, autoincrement=True),
    Column("started_at", _TS, nullable=False),
    Column("finished_at", _TS),
    Column("trigger", String(32), nullable=False),
    Column("holder", Text),
    Column("policy", Text, nullable=False),
    Column("cutoffs", Text, nullable=False),
    Column("event_types", Text, nullable=False),
    Column("deleted", BigInteger, nullable=False),
    Column("batches", Integer, nullable=False),
    Column("storage", Text, nullable=False),
    Column("seconds", Double, nullable=False),
    Column("status", String(16), nullable=False),
    sqlite_autoincrement=True,
)

#: What an answer showed (see :mod:`shopformer.store.impressions`): one row per answer,
#: written in batches off the request path. ``request_id`` is the id the answer carried;
#: ``item_ids`` the items shown, best first (a JSON array: position = index + 1);
#: ``experiment`` / ``variant`` are null outside an A/B experiment; ``model_*`` null for an
#: answer no model ranked (plain search). Customer data: erased and purged with events.
impressions = Table(
    "impressions",
    metadata,
    Column("impression_id", _POSITION, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("shown_at", _TS, nullable=False),
    Column("user_id", Text),
    Column("session_id", Text),
    Column("placement", String(64), nullable=False),
    Column("route", String(32), nullable=False),
    Column("model_name", Text),
    Column("model_version", Text),
    Column("experiment", String(64)),
    Column("variant", String(64)),
    Column("strategy", String(64)),
    Column("item_ids", _JSON_LIST, nullable=False),
    Index("ix_impressions_request", "request_id", unique=True),
    Index("ix_impressions_user", "user_id"),
    Index("ix_impressions_time", "shown_at"),
    sqlite_autoincrement=True,
)

#: Tables holding rows keyed by a customer's ``user_id``: what an erasure deletes from.
USER_TABLES: tuple[Table, ...] = (events, impressions)

#: Every catalog write, in commit order: ``seq`` (increasing), the product, ``upsert`` or
#: ``delete``. Processes that keep their own view of the catalog (each API worker's search
#: index) replay what came after the last ``seq`` they applied.
catalog_changes = Table(
    "catalog_changes",
    metadata,
    Column("seq", _POSITION, primary_key=True, autoincrement=True),
    Column("item_id", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    sqlite_autoincrement=True,
)

#: API keys (see :mod:`shopformer.store.access`). ``key_hash`` is SHA-256 of the whole key:
#: the keys are 256-bit random strings, so a fast hash is enough (nothing to brute-force).
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("scopes", Text, nullable=False),  # comma-separated, sorted
    Column("rate_limit", Text),  # a ``limits`` string such as "100/second", or NULL
    Column("key_hash", String(64), nullable=False),
    Column("created_at", _TS, nullable=False),
    Column("revoked_at", _TS),
)

#: Admin actions, append-only (see :mod:`shopformer.store.access`).
audit_log = Table(
    "audit_log",
    metadata,
    Column("entry_id", _POSITION, primary_key=True, autoincrement=True),
    Column("at", _TS, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text),
    Column("client", Text),
    sqlite_autoincrement=True,
)

#: A/B experiments (see :mod:`shopformer.store.experiments`): a name, its variants as JSON
#: ``[{"name", "run", "version", "share"}]``, ``running`` / ``stopped``. At most one runs at
#: a time; every API process serving from the store follows it (``serving_state``
#: ``experiment`` names it, bumped in the same transaction).
experiments = Table(
    "experiments",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("variants", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", _TS, nullable=False),
    Column("stopped_at", _TS),
    Column("created_by", Text),
)

#: Business rules (see :mod:`shopformer.store.rules`): boost / bury / pin / exclude, what
#: they match and their weight, position, priority and audience as JSON ``spec``, an
#: optional UTC window. Every change bumps ``serving_state`` ``rules_version`` in the same
#: transaction, so every API process reloads them on its sync tick.
rules = Table(
    "rules",
    metadata,
    Column("rule_id", _POSITION, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("spec", Text, nullable=False),
    Column("starts_at", _TS),
    Column("ends_at", _TS),
    Column("created_at", _TS, nullable=False),
    Column("created_by", Text),
    sqlite_autoincrement=True,
)

#: Model versions made by ``shopformer retrain`` (see :mod:`shopformer.store.versions`):
#: the run folder and its ``run_version``, the version it was trained from, how (``warm`` /
#: ``scratch``; ``imported`` for a run trained elsewhere), the gate's numbers as JSON, and
#: ``promoted`` / ``approved`` / ``refused`` / ``rolled_back`` / ``imported``. No customer data.
model_versions = Table(
    "model_versions",
    metadata,
    Column("version_id", _POSITION, primary_key=True, autoincrement=True),
    Column("run_version", Text, nullable=False),
    Column("folder", Text, nullable=False),
    Column("created_at", _TS, nullable=False),
    Column("parent_id", BigInteger),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_at", _TS, nullable=False),
    Column("train_seconds", Double),
    Column("metrics", Text, nullable=False),
    sqlite_autoincrement=True,
)

#: Event columns the caller writes (``position`` is the database's).
EVENT_WRITE_COLUMNS: tuple[str, ...] = tuple(c.name for c in events.columns if c.name != "position")
PRODUCT_COLUMNS: tuple[str, ...] = tuple(c.name for c in products.columns)
