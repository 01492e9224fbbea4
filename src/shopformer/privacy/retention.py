"""Retention (issue 17, point 5): events older than the policy's age are purged from the
store on a schedule, and training reads only what is kept.

- The policy (:class:`~shopformer.store.retention.RetentionConfig`) lives in the store, so
  the CLI and every API process agree (``shopformer retention --store URL --days N``,
  or ``SHOPFORMER_RETENTION_DAYS`` / ``SHOPFORMER_RETENTION_TYPES`` for a server).
- :func:`purge_store` applies it under the store's purge lease (one process at a time);
  the API server calls it every ``SHOPFORMER_RETENTION_CHECK_S`` seconds
  (:mod:`shopformer.serve.retention`), the CLI on demand.
- Training reads data folders: :func:`shopformer.store.export_snapshot` leaves expired
  events out even before a purge ran, and :func:`purge_folder` rewrites a folder's
  ``events.parquet`` (atomically) without them, so ``shopformer train`` on it reads only
  what is kept.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from shopformer.ingest.api import EVENTS_FILE, _write_atomically
from shopformer.store import EventStore, PurgeConfig, PurgeResult, RetentionConfig
from shopformer.store.access import record_audit
from shopformer.store.exports import registered as registered_exports
from shopformer.store.retention import LeaseHeld, keep, release_lease, take_lease
from shopformer.types import EVENT_SCHEMA, conform

#: written beside ``events.parquet`` by :func:`purge_folder`: what was applied, when
FOLDER_REPORT = "retention.json"


def holder_name() -> str:
    """Who takes the purge lease: ``host:pid`` (shown in the purge log)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def purge_store(store: EventStore, policy: RetentionConfig | None = None, *, now: datetime | None = None,
                config: PurgeConfig | None = None, dry_run: bool = False, trigger: str = "manual",
                holder: str | None = None, min_interval_s: float = 0.0,
                stop: threading.Event | None = None, actor: str | None = None) -> PurgeResult | None:
    """Apply ``policy`` (default: the store's) to the store now. None when there is no
    policy, or (``min_interval_s`` > 0, the schedule) when another process holds the lease
    or a purge started less than ``min_interval_s`` ago. Raises
    :class:`~shopformer.store.retention.LeaseHeld` when another process is purging and no
    interval was asked for (the CLI says so). A dry run takes no lease and changes nothing.
    ``stop``: ends the purge after the batch under way (a server shutting down).
    A purge (not a dry run) is written to the audit log as ``actor`` (default: the
    trigger and the lease holder)."""
    policy = policy if policy is not None else store.retention_policy()
    if policy is None or not policy.active:
        return None
    config = config or PurgeConfig()
    if dry_run:
        return store.purge_events(policy, now=now, config=config, dry_run=True, trigger=trigger)
    holder = holder or holder_name()
    refused = take_lease(store, holder, config.lease_s, min_interval_s)
    if refused is not None:
        if min_interval_s > 0:
            return None
        raise LeaseHeld(f"another process is purging this store ({refused.get('holder')}, lease until "
                        f"{refused.get('until')}); try again when it is done")
    try:
        result = store.purge_events(policy, now=now, config=config, trigger=trigger, holder=holder, stop=stop)
    except Exception as exc:
        record_audit(store, actor or f"{trigger}:{holder}", "retention_purge", None, "failed",
                     {"policy": policy.to_dict(), "error": str(exc)[:500]})
        raise
    finally:
        release_lease(store, holder)
    folders = purge_exports(store, policy, now)
    record_audit(store, actor or f"{trigger}:{holder}", "retention_purge", f"purge:{result.purge_id}", "ok",
                 {"policy": policy.to_dict(), "deleted": result.deleted, "impressions": result.impressions,
                  "status": result.status, "exported_folders": folders})
    return result


def purge_exports(store: EventStore, policy: RetentionConfig, now: datetime | None = None) -> dict[str, int]:
    """Apply ``policy`` to the data folders the store exported (snapshots that training
    reads: :mod:`shopformer.store.exports`); returns events removed per folder. Folders
    gone since are skipped (an erasure unregisters them)."""
    out = {}
    for folder in registered_exports(store):
        if (Path(folder) / EVENTS_FILE).is_file():
            out[folder] = purge_folder(folder, policy, now=now).deleted
    return out


@dataclass(frozen=True)
class FolderPurge:
    """What :func:`purge_folder` removed from a data folder's ``events.parquet`` (or would)."""

    folder: str
    policy: dict[str, Any]
    cutoffs: dict[str, str | None]
    event_types: dict[str, int]
    kept: int
    dry_run: bool = False
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    @property
    def deleted(self) -> int:
        return sum(self.event_types.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "deleted": self.deleted}


def purge_folder(data_dir: str | Path, policy: RetentionConfig, *, now: datetime | None = None,
                 dry_run: bool = False) -> FolderPurge:
    """Rewrite ``data_dir/events.parquet`` without the events ``policy`` expires as of
    ``now`` (written to a temporary file, then renamed over the old one: a reader sees the
    old file or the new one, never half of one), with ``retention.json`` beside it saying
    what was applied. Nothing is written when nothing expires, or with ``dry_run``. The
    old file's blocks are freed, not overwritten: what the file system keeps of them is
    beyond reach, as are copies of the folder."""
    d = Path(data_dir)
    path = d / EVENTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {EVENTS_FILE} in {d}: not a data folder written by `shopformer ingest`")
    cutoffs = policy.cutoffs(now)
    frame = conform(pl.read_parquet(path), EVENT_SCHEMA)
    kept = keep(frame, cutoffs)
    gone = frame.filter(cutoffs.expired())["event_type"].value_counts()
    counts = {t: int(n) for t, n in sorted(gone.iter_rows())}
    result = FolderPurge(str(d), policy.to_dict(), cutoffs.to_dict(), counts, kept.height, dry_run)
    if counts and not dry_run:
        _write_atomically(d, {EVENTS_FILE: kept, FOLDER_REPORT: json.dumps(result.to_dict(), indent=2) + "\n"})
    return result


__all__ = ["FOLDER_REPORT", "FolderPurge", "LeaseHeld", "holder_name", "purge_folder", "purge_store"]
