"""Model versions kept in the store: every run ``shopformer retrain`` made (and the run it
started from), with the safety gate's numbers and what became of it.

Statuses:
    ``imported``     a run trained elsewhere (``shopformer train``), recorded when a
                     retrain first starts from it, so that a rollback can return to it;
    ``promoted``     passed the gate and was published (every API process serves it);
    ``approved``     passed the gate, not published (``retrain --no-publish``);
    ``refused``      failed the gate; kept on disk for inspection, never published;
    ``rolled_back``  was served when an operator rolled back to an earlier version.

Which version is served now is not a status: it is the store's ``SERVED_RUN``
(:mod:`shopformer.store.served`), compared by ``run_version``. Nothing here is customer
data: the metrics are aggregate numbers, never user ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from .engine import as_utc
from .schema import model_versions

if TYPE_CHECKING:
    from .base import EventStore

STATUSES = ("imported", "promoted", "approved", "refused", "rolled_back")
MODES = ("warm", "scratch", "imported")


@dataclass(frozen=True)
class ModelVersion:
    version_id: int
    run_version: str  # artifact.run_version of the folder when it was recorded
    folder: str
    created_at: datetime
    parent_id: int | None
    mode: str  # warm | scratch | imported
    status: str
    status_at: datetime
    train_seconds: float | None
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"version_id": self.version_id, "run_version": self.run_version, "folder": self.folder,
                "created_at": self.created_at.isoformat(), "parent_id": self.parent_id, "mode": self.mode,
                "status": self.status, "status_at": self.status_at.isoformat(),
                "train_seconds": self.train_seconds, "metrics": self.metrics}


def _row(r: Any) -> ModelVersion:
    return ModelVersion(int(r.version_id), r.run_version, r.folder, as_utc(r.created_at),
                        None if r.parent_id is None else int(r.parent_id), r.mode, r.status, as_utc(r.status_at),
                        r.train_seconds, json.loads(r.metrics))


def add_version(store: EventStore, run_version: str, folder: str, mode: str, status: str,
                parent_id: int | None = None, train_seconds: float | None = None,
                metrics: dict[str, Any] | None = None) -> ModelVersion:
    """Record a version (durable on return) and return it with its id."""
    if mode not in MODES or status not in STATUSES:
        raise ValueError(f"mode must be one of {MODES} and status one of {STATUSES}, got {mode!r}, {status!r}")
    now = datetime.now(timezone.utc)
    values = dict(run_version=run_version, folder=folder, created_at=now, parent_id=parent_id, mode=mode,
                  status=status, status_at=now, train_seconds=train_seconds,
                  metrics=json.dumps(metrics or {}, sort_keys=True))
    stmt = model_versions.insert().values(**values).returning(model_versions.c.version_id)
    vid = int(store._run_write(lambda conn: conn.execute(stmt).scalar_one()))
    return ModelVersion(vid, run_version, folder, now, parent_id, mode, status, now, train_seconds,
                        json.loads(values["metrics"]))


def set_status(store: EventStore, version_id: int, status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    stmt = (update(model_versions).where(model_versions.c.version_id == version_id)
            .values(status=status, status_at=datetime.now(timezone.utc)))
    store._run_write(lambda conn: conn.execute(stmt))


def list_versions(store: EventStore) -> list[ModelVersion]:
    """Every version, oldest first."""
    with store._engine.connect() as conn:
        return [_row(r) for r in conn.execute(select(model_versions).order_by(model_versions.c.version_id))]


def get_version(store: EventStore, version_id: int) -> ModelVersion | None:
    stmt = select(model_versions).where(model_versions.c.version_id == version_id)
    with store._engine.connect() as conn:
        r = conn.execute(stmt).first()
    return None if r is None else _row(r)


def find_version(store: EventStore, run_version: str) -> ModelVersion | None:
    """The newest version recorded with this ``run_version`` (None when none is)."""
    stmt = (select(model_versions).where(model_versions.c.run_version == run_version)
            .order_by(model_versions.c.version_id.desc()).limit(1))
    with store._engine.connect() as conn:
        r = conn.execute(stmt).first()
    return None if r is None else _row(r)
