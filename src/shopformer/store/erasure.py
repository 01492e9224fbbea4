"""Right to erasure in the store: delete a customer's rows, make the bytes go, keep a receipt.

:meth:`EventStore.forget_user <shopformer.store.base.EventStore.forget_user>` deletes
every row keyed by the user (``schema.USER_TABLES``: every event of every type, so the
``search`` events that are the search query log too, and every answer shown to them, the
impressions; an impression still queued in an API process is never written after it, see
:mod:`shopformer.store.impressions`) in ONE write transaction, records a receipt in the
same transaction (rows removed per table), then makes the deleted bytes unreadable:

SQLite
    Every connection runs ``secure_delete=ON`` (see :mod:`shopformer.store.engine`), so
    deleted cells, freed overflow pages and freelist pages are overwritten with zeros,
    and so is the free space earlier page splits left behind (were it on only for the
    erasure, copies of the user's index entries made by those splits could survive). The
    zeroed pages first go to the WAL; ``PRAGMA wal_checkpoint(TRUNCATE)`` then copies
    them into the main file and truncates the WAL to 0 bytes, so the old frames that
    still held the rows are gone from the WAL file too. The checkpoint waits (busy
    timeout) for readers of older snapshots; if one still holds it, ``wal_truncated`` is
    false in the receipt and the next checkpoint finishes the job. ``compact=True`` adds
    ``VACUUM`` (rewrites the whole file: it also removes residue written before
    ``secure_delete`` was on, e.g. a store created by an older shopformer; it costs time
    in proportion to the database, see ``benchmarks/erasure.py``, and blocks writers
    meanwhile). What the file system or SSD keeps of overwritten blocks is beyond reach.
PostgreSQL
    ``DELETE``, then ``VACUUM`` of the tables (outside a transaction): dead tuples and
    their index entries are removed and the space is reusable, but PostgreSQL does not
    zero the freed space, so the bytes can stay in the table files until overwritten
    (``compact=True`` runs ``VACUUM FULL``: the table is rewritten into new files under
    an exclusive lock, the old files are unlinked); and the rows stay in WAL segments
    until they are recycled, in WAL archives, base backups and physical replicas. Those
    are outside this engine's reach: the operator's retention of them decides when the
    bytes are really gone. The receipt says so (``storage.not_reached``).

The receipt never stores the raw user id: ``user_hash`` is SHA-256 of it (a pseudonym:
whoever holds a candidate id can recompute it, which is how "was X erased?" and the
model check below are answered; it is not anonymous). The caller gets the raw id back
in the receipt it is handed. With pseudonymous ids (``SHOPFORMER_PSEUDONYM_KEY``, see
:mod:`shopformer.privacy.pseudonym`) the id erased IS the pseudonym, so the receipt keys
on it: ``user_hash`` is SHA-256 of the pseudonym, which nobody can recompute from a
candidate raw id without the key, and the receipt's ``user_id`` is the pseudonym.

Status: ``pending_retrain`` while the served model was trained on the user's events,
``complete`` once a model that was not is published. The rule is the run's user
vocabulary: ``users.json`` lists exactly the users with events in its training data
(:func:`shopformer.features.sequences.build_sequences`), so a run whose vocabulary
lacks the user never saw their events (:func:`settle`, called when a run is published,
hashes its vocabulary and completes the pending receipts it does not contain). A request
while no model is served, or whose model cannot be checked, stays pending until then.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from .engine import as_utc
from .schema import USER_TABLES, erasures, events

if TYPE_CHECKING:
    from .base import EventStore

PENDING = "pending_retrain"
COMPLETE = "complete"


def user_hash(user_id: str) -> str:
    """SHA-256 (hex) of the user id: how a receipt names the user without keeping the id."""
    return hashlib.sha256(str(user_id).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ErasureConfig:
    """How far an erasure goes beyond deleting the rows.

    compact: also rewrite the database (SQLite ``VACUUM``, PostgreSQL ``VACUUM FULL`` of
        the user tables). Off by default: with ``secure_delete`` on every connection the
        deleted bytes are already zeroed in a SQLite file, and the rewrite costs time in
        proportion to the whole store (measured in ``benchmarks/erasure.py``).
    """

    compact: bool = False


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure removed, where, when, and whether the served model still knows it.

    user_id: the raw id, only in the receipt handed to the caller (None when read back
    from the store, which keeps ``user_hash`` only). removed: rows deleted per table;
    event_types: the deleted events by type (``search`` ones are the query log).
    storage: what was done to the bytes (backend, secure_delete, WAL checkpoint, VACUUM,
    what is out of reach). model_version / model_saw_user: the model served when the
    request came and whether its training data held the user (None: unknown).
    """

    receipt_id: int
    user_hash: str
    requested_at: datetime
    removed: dict[str, int]
    event_types: dict[str, int]
    storage: dict[str, Any]
    seconds: float
    status: str
    model_version: str | None = None
    model_saw_user: bool | None = None
    completed_at: datetime | None = None
    completed_version: str | None = None
    user_id: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 text."""
        out = asdict(self)
        for k in ("requested_at", "completed_at"):
            out[k] = out[k].isoformat() if out[k] is not None else None
        return out

    @classmethod
    def from_row(cls, row: Any) -> ErasureReceipt:
        return cls(
            receipt_id=int(row["receipt_id"]), user_hash=row["user_hash"], requested_at=as_utc(row["requested_at"]),
            removed=json.loads(row["removed"]), event_types=json.loads(row["event_types"]),
            storage=json.loads(row["storage"]), seconds=float(row["seconds"]), status=row["status"],
            model_version=row["model_version"], model_saw_user=row["model_saw_user"],
            completed_at=as_utc(row["completed_at"]), completed_version=row["completed_version"],
        )


def forget_user(store: EventStore, user_id: str, model_version: str | None, model_saw_user: bool | None,
                config: ErasureConfig) -> ErasureReceipt:
    """The body of :meth:`EventStore.forget_user` (see the module docstring)."""
    t0 = time.perf_counter()
    requested = datetime.now(timezone.utc)
    uhash = user_hash(user_id)
    status = COMPLETE if model_saw_user is False else PENDING

    def work(conn: Connection) -> tuple[int, dict[str, int], dict[str, int]]:
        by_type = {t: int(n) for t, n in conn.execute(
            select(events.c.event_type, func.count()).where(events.c.user_id == user_id).group_by(events.c.event_type))}
        removed = {t.name: int(conn.execute(t.delete().where(t.c.user_id == user_id)).rowcount) for t in USER_TABLES}
        row = dict(user_hash=uhash, requested_at=requested, removed=json.dumps(removed),
                   event_types=json.dumps(by_type, sort_keys=True), storage="{}", seconds=0.0,
                   model_version=model_version, model_saw_user=model_saw_user, status=status,
                   completed_at=requested if status == COMPLETE else None,
                   completed_version=model_version if status == COMPLETE else None)
        rid = conn.execute(erasures.insert().values(**row).returning(erasures.c.receipt_id)).scalar_one()
        return int(rid), removed, by_type

    rid, removed, by_type = store._run_write(work)
    t_delete = time.perf_counter() - t0
    storage = scrub(store, config)
    storage["delete_seconds"] = round(t_delete, 4)
    from . import exports  # a lazy import: exports -> ingest -> store

    storage["exported_folders"] = exports.erase_user(store, user_id)
    seconds = round(time.perf_counter() - t0, 4)
    stmt = erasures.update().where(erasures.c.receipt_id == rid).values(storage=json.dumps(storage), seconds=seconds)
    store._run_write(lambda conn: conn.execute(stmt))
    return ErasureReceipt(
        receipt_id=rid, user_hash=uhash, requested_at=requested, removed=removed, event_types=by_type,
        storage=storage, seconds=seconds, status=status, model_version=model_version,
        model_saw_user=model_saw_user, completed_at=requested if status == COMPLETE else None,
        completed_version=model_version if status == COMPLETE else None, user_id=user_id,
    )


def scrub(store: EventStore, config: ErasureConfig) -> dict[str, Any]:
    """Make the bytes of rows deleted (and committed) just before unreadable; returns
    what was done, for the receipt."""
    t0 = time.perf_counter()
    if store.dialect == "sqlite":
        raw = store._base_engine.raw_connection()  # pysqlite in autocommit mode: VACUUM and checkpoints run
        try:
            cur = raw.cursor()
            secure = cur.execute("PRAGMA secure_delete").fetchone()[0]
            if config.compact:
                cur.execute("VACUUM")
            busy, frames, done = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cur.close()
        finally:
            raw.close()
        return {"backend": "sqlite", "secure_delete": bool(secure), "vacuum": config.compact,
                "wal_checkpoint": {"busy": int(busy), "frames": int(frames), "checkpointed": int(done)},
                "wal_truncated": busy == 0, "scrub_seconds": round(time.perf_counter() - t0, 4)}
    schema = store.config.schema
    prep = store._engine.dialect.identifier_preparer
    verb = "VACUUM FULL" if config.compact else "VACUUM"
    with store._engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses to run in a transaction
        for table in USER_TABLES:
            name = prep.quote(table.name) if not schema else f"{prep.quote_schema(schema)}.{prep.quote(table.name)}"
            conn.exec_driver_sql(f"{verb} {name}")
    return {"backend": "postgresql", "vacuum": verb, "scrub_seconds": round(time.perf_counter() - t0, 4),
            "not_reached": ("freed space in table files until reused (unless VACUUM FULL), WAL segments until "
                            "recycled, WAL archives, base backups and physical replicas")}


def receipts(store: EventStore, status: str | None = None, user_id: str | None = None) -> list[ErasureReceipt]:
    """Stored receipts, oldest first; of one ``status`` and/or one user when given."""
    stmt = select(erasures).order_by(erasures.c.receipt_id)
    if status is not None:
        stmt = stmt.where(erasures.c.status == status)
    if user_id is not None:
        stmt = stmt.where(erasures.c.user_hash == user_hash(user_id))
    with store._engine.connect() as conn:
        return [ErasureReceipt.from_row(r) for r in conn.execute(stmt).mappings()]


def complete(store: EventStore, receipt_ids: Iterable[int], version: str) -> int:
    """Mark pending receipts complete with the model ``version`` that no longer saw them."""
    ids = [int(i) for i in receipt_ids]
    if not ids:
        return 0
    stmt = (erasures.update().where(erasures.c.receipt_id.in_(ids), erasures.c.status == PENDING)
            .values(status=COMPLETE, completed_at=datetime.now(timezone.utc), completed_version=version))
    return int(store._run_write(lambda conn: conn.execute(stmt).rowcount))


def settle(store: EventStore, version: str, users: Iterable[str]) -> list[int]:
    """A run is published: complete every pending receipt whose user is not in the run's
    user vocabulary ``users`` (the run was trained without their events). Returns the
    receipt ids completed. Hashes the vocabulary only when receipts are pending (about
    1 s per million users)."""
    pending = receipts(store, PENDING)
    if not pending:
        return []
    known = {user_hash(u) for u in users}
    done = [r.receipt_id for r in pending if r.user_hash not in known]
    complete(store, done, version)
    return done


def with_user(receipt: ErasureReceipt, user_id: str) -> ErasureReceipt:
    """The receipt with the raw id filled in (for the user's own export)."""
    return replace(receipt, user_id=user_id)
