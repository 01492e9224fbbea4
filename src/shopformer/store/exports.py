"""Data folders the engine exported from the store, so privacy requests reach them too.

:func:`shopformer.store.snapshot.export_snapshot` writes the store's events into a data
folder (``events.parquet``) that training then reads. Those files are copies of
customers' events outside the database: an erasure that cleaned only the database would
leave them there. Every export therefore registers its folder in the store
(``serving_state['exported_folders']``, a JSON list of absolute paths), and an erasure
rewrites each registered folder's ``events.parquet`` without the customer's rows (a new
file written beside it, then renamed over it; the old file's blocks are freed, what the
file system keeps of them is out of reach as for any deleted file). A folder that was
moved or deleted since is reported as ``missing`` and dropped from the list.
Copies made by other means (``cp``, backups) are the operator's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from .schema import serving_state

if TYPE_CHECKING:
    from .base import EventStore

EXPORTED_FOLDERS = "exported_folders"
EVENTS_FILE = "events.parquet"


def _update(store: EventStore, change) -> list[str]:  # noqa: ANN001 - list[str] -> list[str]
    """Read-modify-write the list in one write transaction (writers are serialized)."""

    def work(conn: Connection) -> list[str]:
        raw = conn.execute(select(serving_state.c.value).where(serving_state.c.name == EXPORTED_FOLDERS)).scalar()
        folders = change(json.loads(raw) if raw else [])
        conn.execute(store._state_upsert(EXPORTED_FOLDERS, json.dumps(folders)))
        return folders

    return store._run_write(work)


def register(store: EventStore, folder: str | Path) -> None:
    path = str(Path(folder).resolve())
    _update(store, lambda folders: folders if path in folders else [*folders, path])


def registered(store: EventStore) -> list[str]:
    raw = store.get_state(EXPORTED_FOLDERS)
    return json.loads(raw) if raw else []


def erase_user(store: EventStore, user_id: str) -> dict[str, Any]:
    """Remove ``user_id``'s rows from every registered folder; returns, per folder, the
    rows removed or ``"missing"`` (then unregistered)."""
    import polars as pl

    from ..ingest.api import _write_atomically

    out: dict[str, Any] = {}
    for folder in registered(store):
        path = Path(folder) / EVENTS_FILE
        if not path.exists():
            out[folder] = "missing"
            continue
        events = pl.read_parquet(path)
        mine = events["user_id"] == user_id
        n = int(mine.sum())
        if n:
            _write_atomically(Path(folder), {EVENTS_FILE: events.filter(~mine)})
        out[folder] = n
    gone = {f for f, n in out.items() if n == "missing"}
    if gone:
        _update(store, lambda folders: [f for f in folders if f not in gone])
    return out
