"""Data retention in the store: a policy (maximum event age, per event type), purges in
bounded batches with the bytes scrubbed, and a purge log.

Policy
    :class:`RetentionConfig` (``days`` for every event type, ``types`` to override it per
    type, ``None`` = keep forever) lives in the store as the ``serving_state`` row
    ``retention_policy`` (JSON), so every API process, worker, replica and the CLI read the
    same one (:func:`load_policy` / :func:`save_policy`). Ages are measured from the event's
    ``timestamp`` against the wall clock (UTC); untimed events have no age and are kept.

Purge (:func:`purge`)
    Finds the next ``batch_size`` expired events in position order with a READ (no write
    lock: SQLite WAL readers and PostgreSQL readers never block writers), then deletes that
    position range (the expiry condition re-checked) in one short write transaction that
    also adds the batch's counts to the purge log row, so the log always matches what is
    gone even if the process dies half way. Other writers queue behind one batch at a time,
    never behind the whole purge. Positions only grow, so the scan resumes after the last
    batch and reads each row once. Afterwards the bytes are scrubbed as for an erasure
    (:func:`shopformer.store.erasure.scrub`: SQLite zeroes freed space on every connection
    and the WAL is checkpointed and truncated; PostgreSQL VACUUMs the table, VACUUM FULL
    with ``compact``; what PostgreSQL cannot reach is listed in ``storage``).

Lease
    With ``holder`` given, a purge runs under the ``retention_lease`` row: taken in a write
    transaction (writers are serialized, so two processes cannot both take it), renewed by
    every batch, released at the end; a lease left by a dead process expires after
    ``lease_s``. That is what keeps several API processes on one store from purging at the
    same time (:func:`take_lease`).

Impressions
    What answers showed (``impressions``, customer data too) expire at the policy's
    ``days``, the age of every event type without its own entry, measured from
    ``shown_at``: an impression is the answer, not one event type, and outliving the
    events it explains gains nothing. A policy with per-type ages only keeps them. They go
    after the events, in batches the same way; their count is ``PurgeResult.impressions``
    (kept in the log row's ``storage`` JSON, so stores made before impressions need no
    new column).

Log
    ``retention_purges`` keeps one row per purge: when, by whom (host:pid; ``schedule``,
    ``cli`` or ``manual``), the policy and cutoffs, events deleted per type, batches, what
    was done to the bytes, and how it ended (``done``, ``stopped``, ``failed``). :func:`last_purge_id` (the newest finished purge that deleted something) tells
    API processes to drop the caches that may hold purged events.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import Connection, and_, bindparam, false, func, or_, select, true

from ..types import EVENT_TYPES
from .engine import as_utc
from .erasure import ErasureConfig, scrub
from .schema import events, impressions, retention_purges, serving_state

if TYPE_CHECKING:
    from .base import EventStore

#: ``serving_state`` rows: the policy (JSON) and the purge lease (JSON holder + expiry)
POLICY_STATE = "retention_policy"
LEASE_STATE = "retention_lease"
#: the key of the purge log row's ``storage`` JSON that keeps the impressions deleted
IMPRESSIONS_KEY = "impressions_deleted"
#: the longest age a policy may name (about 274 years): beyond it a cutoff leaves datetime's range
MAX_DAYS = 100_000.0
FOREVER = "forever"


def _days(value: Any, name: str) -> float | None:
    """A number of days > 0 (None and "forever": keep forever); errors name the field."""
    if value is None or (isinstance(value, str) and value.strip().lower() == FOREVER):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number of days, got {value!r}")
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of days (or '{FOREVER}'), got {value!r}") from None
    if not math.isfinite(days) or days <= 0 or days > MAX_DAYS:
        raise ValueError(f"{name} must be a number of days > 0 and <= {MAX_DAYS:.0f} (omit it or say "
                         f"'{FOREVER}' to keep those events), got {value!r}")
    return days


@dataclass(frozen=True)
class RetentionConfig:
    """How long events are kept.

    days: maximum age in days of every event type without its own entry (None: keep them).
    types: event type -> maximum age in days, overriding ``days`` (None: keep that type
        forever), e.g. ``{"purchase": 730, "view": 90, "search": 30}``.

    Validated on creation (``ValueError`` naming the field): ages are numbers of days > 0,
    types are known event types (:data:`shopformer.types.EVENT_TYPES`).
    """

    days: float | None = None
    types: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", _days(self.days, "retention days"))
        if not isinstance(self.types, Mapping):
            raise ValueError(f"retention types must map event type -> days, got {self.types!r}")
        clean: dict[str, float | None] = {}
        for t, d in self.types.items():
            if t not in EVENT_TYPES:
                raise ValueError(f"retention types: unknown event type {t!r}; known: {', '.join(EVENT_TYPES)}")
            clean[t] = _days(d, f"retention days of {t!r}")
        object.__setattr__(self, "types", dict(sorted(clean.items())))

    @property
    def active(self) -> bool:
        """True when some events can expire (a policy that keeps everything is no policy)."""
        return self.days is not None or any(d is not None for d in self.types.values())

    def max_age(self, event_type: str) -> float | None:
        return self.types.get(event_type, self.days)

    def cutoffs(self, now: datetime | None = None) -> Cutoffs:
        """The timestamps before which events expire, as of ``now`` (default: the clock)."""
        now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        at = lambda d: None if d is None else now - timedelta(days=d)  # noqa: E731
        return Cutoffs(at(self.days), {t: at(d) for t, d in self.types.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"days": self.days, "types": dict(self.types)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetentionConfig:
        return cls(days=data.get("days"), types=dict(data.get("types") or {}))

    @classmethod
    def parse_types(cls, items: str | list[str] | tuple[str, ...], name: str = "types") -> dict[str, float | None]:
        """``"purchase=730,view=90"`` (or a list of ``TYPE=DAYS``; DAYS may be ``forever``)
        -> ``{"purchase": 730.0, "view": 90.0}``; errors name ``name`` and the item."""
        parts = items.split(",") if isinstance(items, str) else list(items)
        out: dict[str, float | None] = {}
        for part in (p.strip() for p in parts):
            if not part:
                continue
            t, eq, d = part.partition("=")
            if not eq or not t.strip() or not d.strip():
                raise ValueError(f"{name}: {part!r} must look like TYPE=DAYS, e.g. purchase=730 or search=30")
            try:
                out[t.strip()] = cls(types={t.strip(): d.strip()}).types[t.strip()]
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return out

    def __str__(self) -> str:
        fmt = lambda d: FOREVER if d is None else f"{d:g} days"  # noqa: E731
        parts = [f"{t}: {fmt(d)}" for t, d in self.types.items()]
        return ", ".join([f"every type: {fmt(self.days)}", *parts]) if self.active else "keep everything"


@dataclass(frozen=True)
class Cutoffs:
    """Events of a type in ``by_type`` expire before its cutoff (None: never); every other
    type before ``default`` (None: never). Aware UTC datetimes."""

    default: datetime | None
    by_type: Mapping[str, datetime | None] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.default is None and all(c is None for c in self.by_type.values())

    def where(self):  # noqa: ANN201 - a SQLAlchemy condition
        """The SQL condition an expired event meets (SQLite compares UTC text, so the
        cutoffs are UTC, as stored)."""
        clauses = [and_(events.c.event_type == t, events.c.timestamp < c) for t, c in self.by_type.items()
                   if c is not None]
        if self.default is not None:
            others = events.c.event_type.not_in(list(self.by_type)) if self.by_type else true()
            clauses.append(and_(others, events.c.timestamp < self.default))
        return or_(*clauses) if clauses else false()

    def expired(self) -> pl.Expr:
        """The same condition over an EVENT_SCHEMA frame (untimed events never expire)."""
        expr = pl.lit(False)
        for t, c in self.by_type.items():
            if c is not None:
                expr = expr | ((pl.col("event_type") == t) & (pl.col("timestamp") < c))
        if self.default is not None:
            expr = expr | (~pl.col("event_type").is_in(list(self.by_type)) & (pl.col("timestamp") < self.default))
        return expr.fill_null(False)

    def to_dict(self) -> dict[str, str | None]:
        iso = lambda c: None if c is None else c.isoformat()  # noqa: E731
        return {"*": iso(self.default), **{t: iso(c) for t, c in self.by_type.items()}}


def keep(frame: pl.DataFrame, cutoffs: Cutoffs) -> pl.DataFrame:
    """The events of ``frame`` (EVENT_SCHEMA) that the cutoffs keep."""
    return frame if cutoffs.empty else frame.filter(~cutoffs.expired())


@dataclass(frozen=True)
class PurgeConfig:
    """How a purge runs.

    batch_size: events deleted per write transaction: what another writer may wait behind.
    pause_s: sleep between batches (room for other writers on a busy SQLite store).
    compact: rewrite the database afterwards (SQLite VACUUM, PostgreSQL VACUUM FULL; blocks
        writers meanwhile, see :class:`~shopformer.store.erasure.ErasureConfig`).
    lease_s: how long the lease lasts without a renewal (each batch renews it).
    """

    batch_size: int = 5_000
    pause_s: float = 0.0
    compact: bool = False
    lease_s: float = 600.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.pause_s >= 0 and self.lease_s > 0):
            raise ValueError(f"pause_s must be >= 0 and lease_s > 0, got {self.pause_s}, {self.lease_s}")


@dataclass(frozen=True)
class PurgeResult:
    """What a purge deleted (or, ``dry_run``, would delete) per event type, with its log row."""

    purge_id: int | None
    started_at: datetime
    policy: dict[str, Any]
    cutoffs: dict[str, str | None]
    event_types: dict[str, int]
    batches: int = 0
    storage: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    dry_run: bool = False
    trigger: str = "manual"
    holder: str | None = None
    status: str = "done"
    finished_at: datetime | None = None
    #: impressions deleted (or, ``dry_run``, that would be), see the module docstring
    impressions: int = 0

    @property
    def deleted(self) -> int:
        """Events deleted (impressions are counted apart)."""
        return sum(self.event_types.values())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deleted"] = self.deleted
        for k in ("started_at", "finished_at"):
            out[k] = out[k].isoformat() if out[k] is not None else None
        return out

    @classmethod
    def from_row(cls, row: Any) -> PurgeResult:
        storage = json.loads(row["storage"])
        return cls(purge_id=int(row["purge_id"]), started_at=as_utc(row["started_at"]), policy=json.loads(row["policy"]),
                   cutoffs=json.loads(row["cutoffs"]), event_types=json.loads(row["event_types"]),
                   batches=int(row["batches"]), storage=storage, seconds=float(row["seconds"]),
                   trigger=row["trigger"], holder=row["holder"], status=row["status"],
                   finished_at=as_utc(row["finished_at"]), impressions=int(storage.pop(IMPRESSIONS_KEY, 0)))


class LeaseHeld(RuntimeError):
    """Another process holds the purge lease (or lost it to one while purging)."""


# -- policy ---------------------------------------------------------------------------------
def load_policy(store: EventStore) -> RetentionConfig | None:
    """The store's policy; None when none was set (or it was cleared)."""
    raw = store.get_state(POLICY_STATE)
    policy = RetentionConfig.from_dict(json.loads(raw)) if raw else None
    return policy if policy is not None and policy.active else None


def save_policy(store: EventStore, policy: RetentionConfig | None) -> None:
    """Make ``policy`` the store's (None, or one that keeps everything, clears it)."""
    store.put_state(POLICY_STATE, json.dumps((policy or RetentionConfig()).to_dict()))


# -- lease ----------------------------------------------------------------------------------
def _lease(conn: Connection) -> dict[str, Any] | None:
    raw = conn.execute(select(serving_state.c.value).where(serving_state.c.name == LEASE_STATE)).scalar()
    return json.loads(raw) if raw else None


def _put_lease(store: EventStore, conn: Connection, holder: str, lease_s: float) -> None:
    now = datetime.now(timezone.utc)
    value = json.dumps({"holder": holder, "until": (now + timedelta(seconds=lease_s)).isoformat()})
    conn.execute(store._state_upsert(LEASE_STATE, value, now))


def take_lease(store: EventStore, holder: str, lease_s: float, min_interval_s: float = 0.0) -> dict[str, Any] | None:
    """Take the purge lease for ``holder``: None when taken; else why not (the other
    holder and its expiry, or ``{"recent": started_at}`` when a purge started less than
    ``min_interval_s`` ago, for schedules shared by several processes). One write
    transaction: writers are serialized, so no two processes take it at once."""

    def work(conn: Connection) -> dict[str, Any] | None:
        now = datetime.now(timezone.utc)
        current = _lease(conn)
        if current and current["holder"] != holder and datetime.fromisoformat(current["until"]) > now:
            return current
        if min_interval_s > 0:
            last = as_utc(conn.execute(select(func.max(retention_purges.c.started_at))).scalar())
            if last is not None and (now - last).total_seconds() < min_interval_s:
                return {"recent": last.isoformat()}
        _put_lease(store, conn, holder, lease_s)
        return None

    return store._run_write(work)


def release_lease(store: EventStore, holder: str) -> None:
    def work(conn: Connection) -> None:
        current = _lease(conn)
        if current and current["holder"] == holder:
            conn.execute(serving_state.delete().where(serving_state.c.name == LEASE_STATE))

    store._run_write(work)


# -- purge ----------------------------------------------------------------------------------
def count_expired(store: EventStore, cutoffs: Cutoffs) -> dict[str, int]:
    """Events that the cutoffs would delete now, by type (what a dry run reports)."""
    if cutoffs.empty:
        return {}
    stmt = select(events.c.event_type, func.count()).where(cutoffs.where()).group_by(events.c.event_type)
    with store._engine.connect() as conn:
        return {t: int(n) for t, n in sorted(conn.execute(stmt).all())}


def count_expired_impressions(store: EventStore, cutoffs: Cutoffs) -> int:
    """Impressions that the cutoffs would delete now (shown before ``cutoffs.default``)."""
    if cutoffs.default is None:
        return 0
    stmt = select(func.count()).select_from(impressions).where(impressions.c.shown_at < cutoffs.default)
    with store._engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def purge(store: EventStore, policy: RetentionConfig, *, now: datetime | None = None,
          config: PurgeConfig | None = None, dry_run: bool = False, trigger: str = "manual",
          holder: str | None = None, stop: threading.Event | None = None) -> PurgeResult:
    """Delete the events ``policy`` expires as of ``now`` (see the module docstring).
    ``holder``: the purge lease is renewed by every batch and checked to be still ours
    (:class:`LeaseHeld` when another process took it over). ``dry_run``: count only.
    ``stop``: once set, the purge ends after the batch under way (status ``stopped``; what
    was deleted is scrubbed and logged; the next purge finds the rest)."""
    config = config or PurgeConfig()
    started = datetime.now(timezone.utc)
    cutoffs = policy.cutoffs(now)
    base = dict(started_at=started, policy=policy.to_dict(), cutoffs=cutoffs.to_dict(), trigger=trigger,
                holder=holder)
    t0 = time.perf_counter()
    if dry_run:
        return PurgeResult(purge_id=None, event_types=count_expired(store, cutoffs), dry_run=True,
                           impressions=count_expired_impressions(store, cutoffs),
                           seconds=round(time.perf_counter() - t0, 4), **base)
    log = retention_purges
    row = dict(started_at=started, trigger=trigger, holder=holder, policy=json.dumps(base["policy"]),
               cutoffs=json.dumps(base["cutoffs"]), event_types="{}", deleted=0, batches=0, storage="{}",
               seconds=0.0, status="running")
    pid = int(store._run_write(lambda conn: conn.execute(log.insert().values(**row).returning(log.c.purge_id))
                               .scalar_one()))
    counts: Counter[str] = Counter()
    shown: Counter[str] = Counter()  # impressions deleted, kept current batch by batch
    batches, status, storage = 0, "failed", {}
    expired = cutoffs.where()
    find = (select(events.c.position).where(events.c.position > bindparam("after"), expired)
            .order_by(events.c.position).limit(config.batch_size))
    try:
        after = 0
        while not cutoffs.empty and not (stop is not None and stop.is_set()):
            with store._engine.connect() as conn:  # a read: no write lock while searching
                found = conn.execute(find, {"after": after}).scalars().all()
            if not found:
                break
            lo, hi = found[0], found[-1]

            def work(conn: Connection, lo: int = lo, hi: int = hi, done: int = batches) -> list[str]:
                _renew(store, conn, holder, config.lease_s)
                gone = conn.execute(events.delete().where(events.c.position.between(lo, hi), expired)
                                    .returning(events.c.event_type)).scalars().all()
                now_counts = counts + Counter(gone)
                conn.execute(log.update().where(log.c.purge_id == pid).values(
                    event_types=json.dumps(dict(sorted(now_counts.items()))), deleted=sum(now_counts.values()),
                    batches=done + 1))
                return gone

            counts.update(store._run_write(work))
            batches += 1
            after = hi
            if len(found) < config.batch_size:
                break
            if config.pause_s:
                time.sleep(config.pause_s)
        if cutoffs.default is not None and not (stop is not None and stop.is_set()):
            _purge_impressions(store, cutoffs.default, pid, config, holder, stop, shown)
        storage = scrub(store, ErasureConfig(compact=config.compact)) if counts or shown else {}
        status = "stopped" if stop is not None and stop.is_set() else "done"
    except BaseException as exc:
        storage = {"error": f"{type(exc).__name__}: {exc}"}
        raise
    finally:  # the log row says how it ended (its counts were kept up to date batch by batch)
        finished = datetime.now(timezone.utc)
        seconds = round(time.perf_counter() - t0, 4)
        kept = json.dumps({**storage, IMPRESSIONS_KEY: shown.total()})
        end = log.update().where(log.c.purge_id == pid).values(status=status, finished_at=finished, storage=kept,
                                                               seconds=seconds)
        store._run_write(lambda conn: conn.execute(end))
    return PurgeResult(purge_id=pid, event_types=dict(sorted(counts.items())), batches=batches, storage=storage,
                       seconds=seconds, status=status, finished_at=finished, impressions=shown.total(), **base)


def _renew(store: EventStore, conn: Connection, holder: str | None, lease_s: float) -> None:
    """Inside a batch's write transaction: the lease is still ours (else LeaseHeld); renew it."""
    if holder is None:
        return
    current = _lease(conn)
    if current is None or current["holder"] != holder:
        raise LeaseHeld(f"the retention lease was taken over by {current and current['holder']}")
    _put_lease(store, conn, holder, lease_s)


def _purge_impressions(store: EventStore, cutoff: datetime, pid: int, config: PurgeConfig, holder: str | None,
                       stop: threading.Event | None, shown: Counter[str]) -> None:
    """Delete the impressions shown before ``cutoff`` in batches, as :func:`purge` does
    events (each batch renews the lease and keeps the log row's count current); adds
    them to ``shown`` as it goes, so a purge that fails half way logs what went."""
    expired = impressions.c.shown_at < cutoff
    find = (select(impressions.c.impression_id).where(impressions.c.impression_id > bindparam("after"), expired)
            .order_by(impressions.c.impression_id).limit(config.batch_size))
    after = 0
    while not (stop is not None and stop.is_set()):
        with store._engine.connect() as conn:
            found = conn.execute(find, {"after": after}).scalars().all()
        if not found:
            break

        def work(conn: Connection, lo: int = found[0], hi: int = found[-1], done: int = shown.total()) -> int:
            _renew(store, conn, holder, config.lease_s)
            n = int(conn.execute(impressions.delete().where(impressions.c.impression_id.between(lo, hi), expired))
                    .rowcount)
            conn.execute(retention_purges.update().where(retention_purges.c.purge_id == pid)
                         .values(storage=json.dumps({IMPRESSIONS_KEY: done + n})))
            return n

        shown["impressions"] += store._run_write(work)
        after = found[-1]
        if len(found) < config.batch_size:
            break
        if config.pause_s:
            time.sleep(config.pause_s)


# -- log ------------------------------------------------------------------------------------
def purges(store: EventStore, limit: int | None = None) -> list[PurgeResult]:
    """The purge log, newest first (the ``limit`` newest when given)."""
    stmt = select(retention_purges).order_by(retention_purges.c.purge_id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    with store._engine.connect() as conn:
        return [PurgeResult.from_row(r) for r in conn.execute(stmt).mappings()]


def last_purge_id(store: EventStore) -> int:
    """The newest purge that finished having deleted events (0 when none): processes that
    cache events compare it with the last one they saw."""
    log = retention_purges
    stmt = select(func.max(log.c.purge_id)).where(log.c.finished_at.is_not(None), log.c.deleted > 0)
    with store._engine.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)
