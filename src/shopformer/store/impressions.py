"""Impressions in the store: what each recommendation or search answer showed.

Rows come in batches from each API process's impression log
(:class:`shopformer.feedback.impressions.ImpressionLog`), one write transaction per batch.
``request_id`` is unique: a batch written twice (a retry after an unknown outcome) adds
nothing the second time.

Erasure wins over a queued impression: an impression still waiting in some process's
queue when its customer was erased would otherwise be written after the erasure and
survive it. :func:`add` therefore leaves out, inside its write transaction, every row of
a customer with an erasure receipt requested at or after the row's ``shown_at``
(writers are serialized, so the erasure either committed before, and its receipt is
seen, or commits after, and deletes the row). An answer shown after the erasure is new
data and is kept.

Attribution reads events that name a ``request_id``: the API stores it in the event's
``context`` JSON (``{"request_id": ...}``, see :class:`shopformer.serve.schemas.EventIn`),
so events ingested from files carry it the same way and old stores need no migration.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import Text, cast, func, select
from sqlalchemy.exc import DataError, IntegrityError

from ..types import EVENT_SCHEMA
from .engine import as_utc
from .erasure import user_hash
from .schema import erasures, events, impressions

if TYPE_CHECKING:
    from .base import EventStore

#: The columns an impression row is written with (``impression_id`` is the database's).
COLUMNS: tuple[str, ...] = tuple(c.name for c in impressions.columns if c.name != "impression_id")
#: How impressions read back as a frame: ``item_ids`` a list, best first.
IMPRESSION_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "shown_at": pl.Datetime("us", "UTC"),
    "user_id": pl.String(),
    "session_id": pl.String(),
    "placement": pl.String(),
    "route": pl.String(),
    "model_name": pl.String(),
    "model_version": pl.String(),
    "experiment": pl.String(),
    "variant": pl.String(),
    "strategy": pl.String(),
    "item_ids": pl.List(pl.String()),
}
#: The JSON key of an event's ``context`` that names the answer it came from.
REQUEST_ID = "request_id"


def _erased_after(conn: Any, rows: Sequence[dict[str, Any]]) -> dict[str, datetime]:
    """user_id -> the latest erasure request of that user, for the users of ``rows``."""
    by_hash = {user_hash(r["user_id"]): r["user_id"] for r in rows if r.get("user_id")}
    if not by_hash:
        return {}
    stmt = (select(erasures.c.user_hash, func.max(erasures.c.requested_at))
            .where(erasures.c.user_hash.in_(list(by_hash))).group_by(erasures.c.user_hash))
    return {by_hash[h]: as_utc(t) for h, t in conn.execute(stmt)}


def add(store: EventStore, rows: Sequence[dict[str, Any]]) -> int:
    """Write impression rows (dicts with :data:`COLUMNS`; ``shown_at`` aware) in ONE
    transaction; returns how many were written. Rows of customers erased after they were
    shown, and request ids already stored, are left out (see the module docstring)."""
    if not rows:
        return 0
    sqlite = store.dialect == "sqlite"
    # psycopg's executemany has no row count: PostgreSQL returns the ids it inserted
    stmt = (store._insert(impressions).on_conflict_do_nothing(index_elements=["request_id"])
            .returning(impressions.c.request_id))

    def work(conn: Any) -> int:
        erased = _erased_after(conn, rows)
        keep = [r for r in rows if r.get("user_id") not in erased or r["shown_at"] > erased[r["user_id"]]]
        if not keep:
            return 0
        if sqlite:
            written = 0
            for start in range(0, len(keep), SQLITE_CHUNK_ROWS):
                if start:
                    time.sleep(GIL_HANDOVER_S)  # see SQLITE_CHUNK_ROWS
                chunk = [_sqlite_values(r) for r in keep[start:start + SQLITE_CHUNK_ROWS]]
                written += int(conn.exec_driver_sql(_SQLITE_INSERT, chunk).rowcount)
            return written
        return len(conn.execute(stmt, [{c: r.get(c) for c in COLUMNS} for r in keep]).all())

    return store._run_write(work)


#: SQLite: sqlite3 runs the insert itself (executemany binds each row in C and lets go of
#: the GIL while SQLite works), so the API process's flush thread holds the GIL about a
#: third as long as through SQLAlchemy's per-row type processing; the values are what
#: those types would store (UTC time text, JSON text)
_SQLITE_INSERT = (f"INSERT INTO impressions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
                  "ON CONFLICT (request_id) DO NOTHING")
_AT, _ITEMS = COLUMNS.index("shown_at"), COLUMNS.index("item_ids")
#: SQLite: a batch is inserted in chunks of this many rows, the writer thread sleeping
#: GIL_HANDOVER_S between them (in the same transaction). sqlite3 lets go of the GIL around
#: each row's step but takes it straight back, before a waiting thread has woken, so a
#: request thread that needs the GIL while a batch is written may wait for the whole
#: batch (CPython's convoy effect). Measured in process (results/impression_overhead.md): a
#: thread waking during a flush waited 4.7 ms at p99 for a batch of 250 (max 7.5 ms), 4.9
#: ms for 1,000 (max 12.9 ms); in chunks of 50 with the hand-over 3.4 and 3.9 ms (max 6.5
#: and 7.5 ms), for 8-14% more writer CPU. A real sleep hands the GIL over. It does not bring the HTTP p99 cost of
#: logging under 1 ms (same file): a partial mitigation.
SQLITE_CHUNK_ROWS = 50
GIL_HANDOVER_S = 1e-5


def _sqlite_values(row: dict[str, Any]) -> tuple:
    values = [row.get(c) for c in COLUMNS]
    values[_AT] = row["shown_at"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    values[_ITEMS] = json.dumps(row["item_ids"])
    return tuple(values)


def refused(exc: Exception) -> bool:
    """True when the database refused the rows' data (a value it cannot hold), as opposed
    to failing (unreachable, locked): such rows are dropped, not written again."""
    return isinstance(exc, (DataError, IntegrityError, UnicodeError))


def _columns() -> list:
    return [cast(impressions.c[c], Text).label(c) if c == "item_ids" else impressions.c[c] for c in IMPRESSION_SCHEMA]


def read(store: EventStore, *, request_ids: Sequence[str] | None = None, since: datetime | None = None,
         until: datetime | None = None, user_id: str | None = None, experiment: str | None = None) -> pl.DataFrame:
    """Impressions (:data:`IMPRESSION_SCHEMA`) oldest first: those of ``request_ids``, shown
    at or after ``since`` and before ``until``, of ``user_id``, of ``experiment``, as given."""
    stmt = select(*_columns()).order_by(impressions.c.impression_id)
    if since is not None:
        stmt = stmt.where(impressions.c.shown_at >= since)
    if until is not None:
        stmt = stmt.where(impressions.c.shown_at < until)
    if user_id is not None:
        stmt = stmt.where(impressions.c.user_id == user_id)
    if experiment is not None:
        stmt = stmt.where(impressions.c.experiment == experiment)
    raw = {c: (pl.String() if c == "item_ids" else t) for c, t in IMPRESSION_SCHEMA.items()}
    if request_ids is None:
        df = store._frame(stmt, raw)
    else:
        wanted = list(dict.fromkeys(request_ids))
        parts = [store._frame(stmt.where(impressions.c.request_id.in_(wanted[i: i + 5000])), raw)
                 for i in range(0, len(wanted), 5000)]
        df = pl.concat(parts) if parts else store._frame(stmt.where(impressions.c.request_id.in_([])), raw)
    return df.with_columns(pl.col("item_ids").str.json_decode(IMPRESSION_SCHEMA["item_ids"]))


def get(store: EventStore, request_id: str) -> dict[str, Any] | None:
    """One impression as a plain dict (``item_ids`` a list), or None: the cheap lookup
    that attributes an event posted to a process that did not serve its answer."""
    stmt = select(*(impressions.c[c] for c in IMPRESSION_SCHEMA)).where(impressions.c.request_id == request_id)
    with store._engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["shown_at"] = as_utc(out["shown_at"])
    if isinstance(out["item_ids"], str):  # a driver that hands JSON back as text
        out["item_ids"] = json.loads(out["item_ids"])
    return out


def count(store: EventStore) -> int:
    with store._engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(impressions)).scalar_one())


def attributable_events(store: EventStore, since: datetime | None = None) -> pl.DataFrame:
    """Events (EVENT_SCHEMA) at or after ``since`` whose ``context`` names a request id,
    oldest first, with a ``request_id`` column taken from it: what attribution joins to
    the impressions. (A text match narrows the read; the JSON is parsed here.)"""
    stmt = (select(*(events.c[c] for c in EVENT_SCHEMA)).where(events.c.context.like(f'%"{REQUEST_ID}"%'))
            .order_by(events.c.position))
    if since is not None:
        stmt = stmt.where(events.c.timestamp >= since)
    df = store._frame(stmt, EVENT_SCHEMA)
    return df.with_columns(pl.col("context").str.json_path_match(f"$.{REQUEST_ID}").alias(REQUEST_ID)).filter(
        pl.col(REQUEST_ID).is_not_null())


__all__ = ["COLUMNS", "IMPRESSION_SCHEMA", "REQUEST_ID", "add", "attributable_events", "count", "get", "read",
           "refused"]
