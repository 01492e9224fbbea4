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
    agree on, such as the run folder to serve.
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

#: Event columns the caller writes (``position`` is the database's).
EVENT_WRITE_COLUMNS: tuple[str, ...] = tuple(c.name for c in events.columns if c.name != "position")
PRODUCT_COLUMNS: tuple[str, ...] = tuple(c.name for c in products.columns)
