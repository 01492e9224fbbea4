"""A/B experiments kept in the store: what :mod:`shopformer.feedback.experiments` starts,
stops and lists, as rows of ``schema.experiments``.

At most one experiment runs at a time (two overlapping splits of the same customers
would confound each other). Starting or stopping one also sets ``serving_state``
``experiment`` (the running one as JSON, or ``""``) in the same transaction: every API
process serving from the store compares that value on its sync tick and loads or drops
the variants' runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from .engine import as_utc
from .schema import experiments

if TYPE_CHECKING:
    from .base import EventStore

#: ``serving_state`` name of the running experiment (JSON of its row, or "" for none)
RUNNING = "experiment"


class ExperimentError(ValueError):
    """A refused experiment change (name taken, another one running, unknown name)."""


@dataclass(frozen=True)
class ExperimentRow:
    name: str
    variants: list[dict[str, Any]]  # [{"name", "run", "version", "share"}], control first
    status: str  # running | stopped
    started_at: datetime
    stopped_at: datetime | None
    created_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "variants": self.variants, "status": self.status,
                "started_at": self.started_at.isoformat(),
                "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
                "created_by": self.created_by}


def _row(r: Any) -> ExperimentRow:
    return ExperimentRow(r.name, json.loads(r.variants), r.status, as_utc(r.started_at), as_utc(r.stopped_at),
                         r.created_by)


def start(store: EventStore, name: str, variants: list[dict[str, Any]], created_by: str | None = None) -> ExperimentRow:
    """Record ``name`` as the running experiment (durable on return)."""
    now = datetime.now(timezone.utc)
    row = ExperimentRow(name, variants, "running", now, None, created_by)

    def work(conn):  # noqa: ANN001, ANN202
        taken = conn.execute(select(experiments.c.status).where(experiments.c.name == name)).scalar()
        if taken is not None:
            raise ExperimentError(f"an experiment named {name!r} already exists ({taken}); choose another name")
        other = conn.execute(select(experiments.c.name).where(experiments.c.status == "running")).scalar()
        if other is not None:
            raise ExperimentError(f"experiment {other!r} is running; stop it first (one experiment at a time)")
        conn.execute(experiments.insert().values(name=name, variants=json.dumps(variants), status="running",
                                                 started_at=now, created_by=created_by))
        conn.execute(store._state_upsert(RUNNING, json.dumps(row.to_dict()), now))

    store._run_write(work)
    return row


def stop(store: EventStore, name: str) -> ExperimentRow:
    """Stop the running experiment ``name``; its runs stop being served within a sync tick."""
    now = datetime.now(timezone.utc)

    def work(conn):  # noqa: ANN001, ANN202
        status = conn.execute(select(experiments.c.status).where(experiments.c.name == name)).scalar()
        if status is None:
            raise ExperimentError(f"no experiment named {name!r}")
        if status != "running":
            raise ExperimentError(f"experiment {name!r} is already {status}")
        conn.execute(update(experiments).where(experiments.c.name == name).values(status="stopped", stopped_at=now))
        conn.execute(store._state_upsert(RUNNING, "", now))

    store._run_write(work)
    found = get(store, name)
    assert found is not None
    return found


def get(store: EventStore, name: str) -> ExperimentRow | None:
    with store._engine.connect() as conn:
        r = conn.execute(select(experiments).where(experiments.c.name == name)).first()
    return _row(r) if r is not None else None


def all_experiments(store: EventStore) -> list[ExperimentRow]:
    """Every experiment, newest first."""
    with store._engine.connect() as conn:
        return [_row(r) for r in conn.execute(select(experiments).order_by(experiments.c.started_at.desc()))]


def running_state(store: EventStore) -> str:
    """The ``serving_state`` value processes compare on their sync tick ("" = none)."""
    return store.get_state(RUNNING) or ""
