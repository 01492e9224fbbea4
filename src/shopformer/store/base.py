"""EventStore: events and the product catalog in SQLite (default) or PostgreSQL.

>>> store = EventStore(StoreConfig("sqlite:///shop.db"))        # doctest: +SKIP
>>> store.add_events([{"user_id": "u1", "item_id": "i1", "event_type": "view",
...                    "timestamp": "2024-05-01T10:00:00Z"}])    # doctest: +SKIP
AddResult(inserted=1, duplicates=0, rejected={}, examples={})

Guarantees
----------
- Durable before acknowledged: every write method returns only after its transaction
  has committed (SQLite ``synchronous=FULL`` in WAL mode; PostgreSQL
  ``synchronous_commit=on``).
- Idempotent events: ``event_id`` is unique; re-posting a stored id is a no-op counted
  under ``duplicates`` (``INSERT ... ON CONFLICT DO NOTHING``). Events posted without
  an id get a deterministic one (see :func:`shopformer.store.frames.derive_event_ids`).
  ``insert_events(..., conflicts=True)`` (the HTTP API) refuses a stored id re-posted
  with a different payload instead: :class:`~shopformer.store.fingerprint.EventConflict`,
  and nothing of the batch is written.
- All-or-nothing batches: invalid rows are rejected by reason (the ingest rules) and the
  rest is written in ONE transaction; a database error rolls the whole batch back.
- ``position`` is assigned by the database in commit order (writers are serialized:
  SQLite ``BEGIN IMMEDIATE``, PostgreSQL a transaction-level advisory lock), so
  ``events(since_position=p)`` never misses an event committed after ``p`` was read.
- Catalog upserts are atomic (``ON CONFLICT DO UPDATE`` in one transaction).

Writers in one process queue on a lock instead of on the database (SQLite's busy
handler sleeps 1, 2, 5, ... 100 ms between tries), and share commits: the writer that
takes the lock writes every batch queued behind it in the same transaction, each batch
in its own SAVEPOINT (a batch that fails is rolled back alone and its caller gets the
error), then commits once and wakes them all. Every call still returns only after the
commit that holds its rows; one fsync serves many concurrent single-event posts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import polars as pl
from sqlalchemy import Connection, Text, cast, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..types import EVENT_SCHEMA, PRODUCT_SCHEMA
from . import erasure, retention
from . import impressions as shown  # the module; EventStore.impressions is a method
from .engine import SQLITE_BEGIN, StoreError, backend_name, create_store_engine
from .erasure import ErasureConfig, ErasureReceipt
from .fingerprint import PAYLOAD as PAYLOAD_COLUMNS
from .fingerprint import EventConflict, differing, fingerprint
from .frames import Rows, ValidEvents, check_events, rows_to_frame, validate_products
from .schema import (
    EVENT_WRITE_COLUMNS,
    PRODUCT_COLUMNS,
    catalog_changes,
    erasures,
    events,
    metadata,
    products,
    serving_state,
)


@dataclass(frozen=True)
class StoreConfig:
    """Where and how the store connects.

    url: ``sqlite:///path.db`` (relative to the working directory; ``sqlite:////abs``
        for an absolute path) or ``postgresql://user:pw@host:5432/db`` (psycopg 3 is
        used whichever ``postgresql`` spelling is given). ``sqlite://`` is an
        in-memory database on one shared connection: for tests, one thread at a time.
    echo: log every SQL statement (SQLAlchemy ``echo``).
    pool_*: SQLAlchemy connection pool settings (ignored for in-memory SQLite).
    busy_timeout_ms: how long a SQLite writer waits for another writer's lock.
    schema: PostgreSQL schema (namespace) holding the tables; created when absent.
    chunk_size: rows per multi-row INSERT (within one transaction).
    """

    url: str = "sqlite:///shopformer.db"
    echo: bool = False
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: int = 1800
    #: test each pooled connection with a round trip before use; None (default): on for
    #: PostgreSQL (a server restart leaves dead connections in the pool), off for
    #: SQLite (a local file: nothing to go stale, and the check costs a query per call)
    pool_pre_ping: bool | None = None
    busy_timeout_ms: int = 30_000
    schema: str | None = None
    chunk_size: int = 5_000

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AddResult:
    """What :meth:`EventStore.add_events` did with a batch.

    inserted: new events stored. duplicates: rows whose ``event_id`` (or, for rows with
    no id, whose full content) was already stored or repeated within the batch.
    rejected: invalid rows by reason (e.g. ``missing_user_id``, ``bad_timestamp``,
    ``unknown_event_type``); examples: up to a few ``(row, field, value)`` per reason,
    rows numbered from 1 in batch order.
    """

    inserted: int
    duplicates: int
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[tuple[int, str, Any]]] = field(default_factory=dict)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())


T = TypeVar("T")


class _Job:
    """One caller's write, run by whichever writer leads the group commit."""

    __slots__ = ("work", "done", "result", "error")

    def __init__(self, work: Callable[[Connection], Any]) -> None:
        self.work = work
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class EventStore:
    """Events + catalog behind one SQLAlchemy engine. Create it explicitly; call
    :meth:`close` (or use it as a context manager) when done. Thread-safe: each call
    takes its own pooled connection."""

    def __init__(self, config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()
        self._base_engine = create_store_engine(self.config)
        self.dialect = backend_name(self.config.url)
        engine = self._base_engine
        if self.config.schema:
            engine = engine.execution_options(schema_translate_map={None: self.config.schema})
        self._engine = engine
        metadata.create_all(self._engine)
        # group commit (see the module docstring)
        self._writers = threading.Condition(threading.Lock())
        self._queue: list[_Job] = []
        self._writing = False
        ins = self._insert(events)
        self._event_insert = ins.on_conflict_do_nothing(index_elements=["event_id"]).returning(events.c.event_id)
        ins = self._insert(products)
        self._product_upsert = ins.on_conflict_do_update(
            index_elements=["item_id"],
            set_={c: ins.excluded[c] for c in PRODUCT_COLUMNS if c != "item_id"},
        )

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        self._base_engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        from .engine import normalize_url

        url = normalize_url(self.config.url).render_as_string(hide_password=True)
        return f"EventStore({url!r}, schema={self.config.schema!r})"

    # -- writes ------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction, committed (durably) on exit, rolled back on error."""
        with self._engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                if self.dialect == "postgresql":
                    key = f"shopformer.events:{self.config.schema or ''}"
                    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
                yield conn

    def _insert(self, table):  # noqa: ANN001, ANN202
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    def _run_write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in a committed write transaction and return its result.

        Writers queue on a lock (no sleeping in SQLite's busy handler); the one that
        gets it writes every queued job in one transaction, each in a SAVEPOINT, and
        commits once. Returns (or raises ``work``'s error) only after the commit."""
        job = _Job(work)
        with self._writers:
            self._queue.append(job)
            while self._writing and not job.done:
                self._writers.wait()
            lead = not job.done
            if lead:  # take everything queued so far
                self._writing = True
                group, self._queue = self._queue, []
        if lead:
            try:
                self._commit_group(group)
            finally:
                with self._writers:
                    self._writing = False
                    self._writers.notify_all()
        if job.error is not None:
            raise job.error
        return job.result

    def _commit_group(self, group: list[_Job]) -> None:
        try:
            with self._write() as conn:
                if len(group) == 1:
                    group[0].result = group[0].work(conn)
                else:
                    for job in group:
                        try:
                            with conn.begin_nested():  # a failing job is rolled back alone
                                job.result = job.work(conn)
                        except Exception as exc:  # noqa: BLE001 - re-raised to that job's caller
                            job.error, job.result = exc, None
        except BaseException as exc:  # noqa: BLE001 - nothing in the group was committed
            for job in group:
                if job.error is None:
                    job.error, job.result = exc, None
        finally:
            for job in group:
                job.done = True

    def add_events(self, data: Rows) -> AddResult:
        """Validate and store a batch of events (a DataFrame, a mapping or an iterable
        of mappings with EVENT_SCHEMA names; timestamps as datetimes, ISO text or Unix
        numbers, naive ones read as UTC; ``context`` as JSON text or a dict). Any
        ``position`` given is only used to tell untimed rows apart; the store assigns
        its own in batch order."""
        good, report = check_events(data)
        return self.insert_events(good, report)

    def insert_events(self, good: ValidEvents, report, *, conflicts: bool = False,  # noqa: ANN001 - an IngestReport
                      server_timed: Collection[str] = ()) -> AddResult:
        """Store events that :func:`~shopformer.store.frames.check_events` accepted
        (``report`` is its report: rejected rows are counted, never written). For
        callers that check a batch themselves before writing it, so it is checked once.

        ``conflicts``: an ``event_id`` already stored with a different payload raises
        :class:`~shopformer.store.fingerprint.EventConflict` and NOTHING of the batch is
        written (checked inside the write transaction, so no concurrent writer slips
        between); the same payload again stays a duplicate. ``server_timed``: event ids
        whose timestamp the caller filled in (not chosen by the poster), compared
        without it."""
        in_batch = report.rejected.get("duplicate", 0)
        rejected = {r: n for r, n in report.rejected.items() if r != "duplicate"}
        examples = {r: ex for r, ex in report.examples.items() if r in rejected}
        inserted = 0
        if len(good):
            stmt, size = self._event_insert, self.config.chunk_size
            loose = frozenset(server_timed)

            def work(conn: Connection) -> int:
                n = 0
                for part in good.chunks(size, EVENT_WRITE_COLUMNS):
                    new = conn.execute(stmt, part[0] if len(part) == 1 else part).all()
                    n += len(new)
                    if conflicts and len(new) < len(part):
                        self._refuse_changed(conn, part, {r[0] for r in new}, loose)
                return n

            inserted = self._run_write(work)
        return AddResult(
            inserted=inserted,
            duplicates=in_batch + len(good) - inserted,
            rejected=rejected,
            examples=examples,
        )

    def _refuse_changed(self, conn: Connection, part: list[dict[str, Any]], inserted: set[str],
                        loose: frozenset[str]) -> None:
        """Raise EventConflict for rows of ``part`` not inserted whose stored version
        (same event_id) has another payload."""
        dup = {r["event_id"]: r for r in part if r["event_id"] not in inserted}
        cols = [events.c.event_id, *(events.c[c] for c in PAYLOAD_COLUMNS)]
        found = []
        for i in range(0, len(dup), 5000):
            ids = list(dup)[i : i + 5000]
            for row in conn.execute(select(*cols).where(events.c.event_id.in_(ids))).mappings():
                posted = dup[row["event_id"]]
                fields = differing(posted, row, ("timestamp",) if row["event_id"] in loose else ())
                if fields:
                    found.append((row["event_id"], fields, fingerprint(row)))
        if found:
            raise EventConflict(found)

    def upsert_products(self, data: Rows) -> int:
        """Insert or replace products (every column of a stored ``item_id`` is replaced)
        in one transaction; returns the number written. When an ``item_id`` repeats in
        the batch the last row wins. Raises :class:`StoreError` and writes NOTHING if any
        row is invalid (``missing_item_id``, ``bad_price``, ``bad_timestamp``)."""
        good, report = validate_products(data)
        bad = {r: n for r, n in report.rejected.items() if r != "duplicate"}
        if bad:
            detail = "; ".join(f"{r}: {n} (e.g. {report.examples.get(r, [])[:1]})" for r, n in bad.items())
            raise StoreError(f"catalog batch rejected, nothing written: {detail}")
        return self.write_products(good)

    def write_products(self, good: pl.DataFrame) -> int:
        """Upsert products that :func:`~shopformer.store.frames.validate_products`
        accepted (its frame), in one transaction; returns the number written."""
        if not good.height:
            return 0
        stmt, size = self._product_upsert, self.config.chunk_size
        log = catalog_changes.insert()

        def work(conn: Connection) -> None:
            for part in good.select(PRODUCT_COLUMNS).iter_slices(size):
                conn.execute(stmt, part.to_dicts())
                conn.execute(log, [{"item_id": i, "kind": "upsert"} for i in part["item_id"].to_list()])

        self._run_write(work)
        return good.height

    # -- reads -------------------------------------------------------------------
    def _frame(self, stmt, schema: dict[str, pl.DataType]) -> pl.DataFrame:  # noqa: ANN001
        parts = []
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=self.config.chunk_size * 10).execute(stmt)
            for rows in result.partitions():
                parts.append(rows_to_frame(rows, schema))
        if not parts:
            return rows_to_frame([], schema)
        return pl.concat(parts)

    def _event_cols(self) -> list:
        return [events.c[c] for c in EVENT_SCHEMA]

    def events(self, since_position: int | None = None) -> pl.DataFrame:
        """Every stored event (after ``since_position`` when given), in position order,
        as one consistent snapshot conformed to EVENT_SCHEMA (what training reads)."""
        stmt = select(*self._event_cols()).order_by(events.c.position)
        if since_position is not None:
            stmt = stmt.where(events.c.position > since_position)
        return self._frame(stmt, EVENT_SCHEMA)

    def user_events(self, user_id: str, limit: int | None = None) -> pl.DataFrame:
        """A user's events oldest first (timestamp, untimed events first, then
        position). With ``limit``, the LAST ``limit`` events, still oldest first."""
        stmt = select(*self._event_cols()).where(events.c.user_id == user_id)
        if limit is None:
            stmt = stmt.order_by(events.c.timestamp.asc().nulls_first(), events.c.position.asc())
            return self._frame(stmt, EVENT_SCHEMA)
        stmt = stmt.order_by(
            events.c.timestamp.desc().nulls_last(), events.c.position.desc()
        ).limit(limit)
        return self._frame(stmt, EVENT_SCHEMA).reverse()

    def user_history(self, user_id: str, limit: int | None = None,
                     queries: bool = False) -> list[tuple[str | None, str, Any]]:
        """``(item_id, event_type, timestamp)`` of a user's events in the order of
        :meth:`user_events` (the latest ``limit`` when given), as plain tuples: the
        serving path encodes one user per request, where building a DataFrame would cost
        more than the query. Timestamps are ``datetime`` (UTC; naive from SQLite) or None.
        ``queries``: each tuple ends with the event's query text too (search events)."""
        cols = (events.c.item_id, events.c.event_type, events.c.timestamp) + ((events.c.query,) if queries else ())
        stmt = select(*cols).where(events.c.user_id == user_id)
        if limit is None:
            stmt = stmt.order_by(events.c.timestamp.asc().nulls_first(), events.c.position.asc())
        else:
            stmt = stmt.order_by(events.c.timestamp.desc().nulls_last(), events.c.position.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(stmt)]
        return rows if limit is None else rows[::-1]

    def latest_position(self, user_id: str) -> int:
        """The position of the user's newest stored event; 0 when there is none. Cheap
        (an index range): it tells whether a cached history is still current."""
        with self._engine.connect() as conn:
            stmt = select(func.max(events.c.position)).where(events.c.user_id == user_id)
            return int(conn.execute(stmt).scalar() or 0)

    def recent_item_events(self, days: float, event_types: Sequence[str] | None = None) -> pl.DataFrame:
        """``item_id`` and ``timestamp`` of the events of the last ``days`` days before the
        newest stored timestamp (0 = every event; untimed events count as recent), of
        ``event_types`` only when given: what new visitors' popularity reads."""
        cols = [events.c.item_id, events.c.timestamp]
        stmt = select(*cols).where(events.c.item_id.is_not(None))
        if event_types is not None:
            stmt = stmt.where(events.c.event_type.in_(list(event_types)))
        if days > 0:
            with self._engine.connect() as conn:
                newest = conn.execute(select(func.max(events.c.timestamp))).scalar()
            if newest is not None:
                since = newest - timedelta(days=days)
                stmt = stmt.where((events.c.timestamp >= since) | events.c.timestamp.is_(None))
        return self._frame(stmt, {"item_id": EVENT_SCHEMA["item_id"], "timestamp": EVENT_SCHEMA["timestamp"]})

    def _state_upsert(self, name: str, value: str, at: datetime | None = None):  # noqa: ANN202 - an Insert
        """The statement that sets a shared serving value, for callers that write it inside
        a transaction of their own."""
        ins = self._insert(serving_state).values(name=name, value=value, updated_at=at or datetime.now(timezone.utc))
        return ins.on_conflict_do_update(index_elements=["name"], set_={"value": ins.excluded.value,
                                                                       "updated_at": ins.excluded.updated_at})

    def put_state(self, name: str, value: str) -> None:
        """Set a shared serving value (durable on return)."""
        stmt = self._state_upsert(name, value)
        self._run_write(lambda conn: conn.execute(stmt))

    def get_state(self, name: str) -> str | None:
        with self._engine.connect() as conn:
            return conn.execute(select(serving_state.c.value).where(serving_state.c.name == name)).scalar()

    def count_events(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    def max_position(self) -> int:
        """The highest stored position; 0 when empty (positions start at 1)."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.max(events.c.position))).scalar() or 0)

    def get_product(self, item_id: str) -> dict[str, Any] | None:
        """One product as a dict with PRODUCT_SCHEMA keys, or None when unknown."""
        df = self.products([item_id])
        return df.row(0, named=True) if df.height else None

    def products(self, ids: Sequence[str] | None = None, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The catalog (PRODUCT_SCHEMA), by item_id; with ``ids``, those products in
        the order given (unknown ids are left out). ``columns``: only these
        PRODUCT_SCHEMA columns (``item_id`` always included), e.g. for a serving view
        of a large catalog (reading fewer columns is much faster)."""
        if columns is None:
            schema = PRODUCT_SCHEMA
        else:
            unknown = [c for c in columns if c not in PRODUCT_SCHEMA]
            if unknown:
                raise ValueError(f"unknown product column(s) {unknown}; known: {', '.join(PRODUCT_SCHEMA)}")
            schema = {c: t for c, t in PRODUCT_SCHEMA.items() if c == "item_id" or c in columns}
        # JSON list columns are read as their JSON text and decoded by Polars in one go
        # (a Python list per row, then a Polars list per row, is ~10x slower)
        lists = [c for c, t in schema.items() if isinstance(t, pl.List)]
        raw = {c: (pl.String() if c in lists else t) for c, t in schema.items()}
        cols = [cast(products.c[c], Text).label(c) if c in lists else products.c[c] for c in schema]

        def read(stmt) -> pl.DataFrame:  # noqa: ANN001
            df = self._frame(stmt, raw)
            return df.with_columns(pl.col(c).str.json_decode(schema[c]) for c in lists) if lists else df

        if ids is None:
            return read(select(*cols).order_by(products.c.item_id))
        wanted = list(dict.fromkeys(str(i) for i in ids))
        parts = [
            read(select(*cols).where(products.c.item_id.in_(wanted[i : i + 5000])))
            for i in range(0, len(wanted), 5000)
        ] or [rows_to_frame([], schema)]
        order = pl.DataFrame({"item_id": wanted}).with_row_index("_o")
        return pl.concat(parts).join(order, on="item_id").sort("_o").drop("_o")

    def count_products(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(products)).scalar_one())

    def delete_products(self, ids: Sequence[str]) -> int:
        """Remove products from the catalog in one transaction; returns how many were
        stored (unknown ids are ignored). Events that name them are kept."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        if not wanted:
            return 0
        stmt = products.delete().where(products.c.item_id.in_(wanted))

        def work(conn: Connection) -> int:
            n = conn.execute(stmt).rowcount
            conn.execute(catalog_changes.insert(), [{"item_id": i, "kind": "delete"} for i in wanted])
            return n

        return self._run_write(work)

    def catalog_seq(self) -> int:
        """The sequence number of the latest catalog write (0 when none)."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.max(catalog_changes.c.seq))).scalar() or 0)

    def catalog_changes(self, since: int, limit: int = 100_000) -> list[tuple[int, str, str]]:
        """``(seq, item_id, "upsert" | "delete")`` of the catalog writes after ``since``,
        in commit order (at most ``limit``)."""
        stmt = (select(catalog_changes.c.seq, catalog_changes.c.item_id, catalog_changes.c.kind)
                .where(catalog_changes.c.seq > since).order_by(catalog_changes.c.seq).limit(limit))
        with self._engine.connect() as conn:
            return [(int(a), b, c) for a, b, c in conn.execute(stmt)]

    def query_counts(self, limit: int | None = None) -> dict[str, int]:
        """How often each query text was searched (``search`` events), the most searched
        first (the ``limit`` most when given): what autocomplete suggests."""
        n = func.count().label("n")
        stmt = (select(events.c.query, n).where(events.c.event_type == "search", events.c.query.is_not(None))
                .group_by(events.c.query).order_by(n.desc(), events.c.query))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._engine.connect() as conn:
            return {q: int(c) for q, c in conn.execute(stmt)}

    def user_query_counts(self, user_id: str) -> dict[str, int]:
        """How often the user searched each query text (their ``search`` events): what an
        erasure takes back out of autocomplete's counts."""
        stmt = (select(events.c.query, func.count()).where(events.c.user_id == user_id, events.c.event_type == "search",
                                                           events.c.query.is_not(None)).group_by(events.c.query))
        with self._engine.connect() as conn:
            return {q: int(n) for q, n in conn.execute(stmt)}

    # -- impressions: what answers showed (see shopformer.store.impressions) ------------
    def add_impressions(self, rows: Sequence[dict[str, Any]]) -> int:
        """Write a batch of impressions in one transaction; returns how many were written
        (request ids already stored, and rows of customers erased since, are left out)."""
        return shown.add(self, rows)

    def impressions(self, *, request_ids: Sequence[str] | None = None, since: datetime | None = None,
                    until: datetime | None = None, user_id: str | None = None,
                    experiment: str | None = None) -> pl.DataFrame:
        """Stored impressions, oldest first (see :func:`shopformer.store.impressions.read`)."""
        return shown.read(self, request_ids=request_ids, since=since, until=until, user_id=user_id,
                          experiment=experiment)

    def impression(self, request_id: str) -> dict[str, Any] | None:
        """One impression by its answer's request id, or None."""
        return shown.get(self, request_id)

    def count_impressions(self) -> int:
        return shown.count(self)

    def attributable_events(self, since: datetime | None = None) -> pl.DataFrame:
        """Events since ``since`` that name the answer they came from (a ``request_id``)."""
        return shown.attributable_events(self, since)

    # -- privacy: erasure receipts (see shopformer.store.erasure) ------------------------
    def forget_user(self, user_id: str, model_version: str | None = None, model_saw_user: bool | None = None,
                    config: ErasureConfig | None = None) -> ErasureReceipt:
        """Erase a customer: every row keyed by ``user_id`` (all their events, search
        queries included) is deleted in one transaction with a receipt recorded beside it
        (the id as SHA-256, never raw), then the bytes are scrubbed from the database file
        and its WAL (SQLite; PostgreSQL: VACUUM, with what it cannot reach listed, see
        :mod:`shopformer.store.erasure`). ``model_version`` / ``model_saw_user``: the
        model served now and whether it was trained on the user's events; the receipt is
        ``complete`` at once when it was not (False), else ``pending_retrain`` until a
        run without the user is published (:meth:`settle_erasures`). Erasing a user with
        nothing stored still gives a receipt (0 rows), so a request is always answered."""
        return erasure.forget_user(self, str(user_id), model_version, model_saw_user, config or ErasureConfig())

    def erasures(self, status: str | None = None, user_id: str | None = None) -> list[ErasureReceipt]:
        """Stored erasure receipts, oldest first (``status``: ``pending_retrain`` or
        ``complete``; ``user_id``: that user's, matched by its hash)."""
        return erasure.receipts(self, status, user_id)

    def last_erasure_id(self) -> int:
        """The newest receipt's id (0 when none): processes that cache per-user state
        compare it with the last they saw to learn that another process erased someone."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.max(erasures.c.receipt_id))).scalar() or 0)

    def settle_erasures(self, version: str, users: Sequence[str]) -> list[int]:
        """A run with user vocabulary ``users`` is now served: complete the pending
        receipts of users it does not contain (ids returned)."""
        return erasure.settle(self, version, users)

    # -- privacy: retention (see shopformer.store.retention) --------------------------------
    def purge_events(self, policy: retention.RetentionConfig, *, now: datetime | None = None,
                     config: retention.PurgeConfig | None = None, dry_run: bool = False, trigger: str = "manual",
                     holder: str | None = None, stop: threading.Event | None = None) -> retention.PurgeResult:
        """Delete the events ``policy`` expires as of ``now`` (default: the clock) in
        batches of ``config.batch_size`` (each its own short write transaction, so other
        writers keep going), count them per type, scrub the bytes as an erasure does and
        log the purge (:meth:`purges`). ``dry_run``: only count what would go. ``holder``
        and ``stop``: see :func:`shopformer.store.retention.purge`."""
        return retention.purge(self, policy, now=now, config=config, dry_run=dry_run, trigger=trigger, holder=holder,
                               stop=stop)

    def retention_policy(self) -> retention.RetentionConfig | None:
        """The retention policy every process on this store applies (None: keep everything)."""
        return retention.load_policy(self)

    def set_retention_policy(self, policy: retention.RetentionConfig | None) -> None:
        retention.save_policy(self, policy)

    def purges(self, limit: int | None = None) -> list[retention.PurgeResult]:
        """The retention purge log, newest first."""
        return retention.purges(self, limit)

    def last_purge_id(self) -> int:
        """The newest finished purge that deleted events (0 when none)."""
        return retention.last_purge_id(self)


__all__ = ["AddResult", "ErasureConfig", "ErasureReceipt", "EventConflict", "EventStore", "StoreConfig", "StoreError"]
