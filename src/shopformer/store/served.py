"""The run every API process serves, as the store names it (``serving_state``
``SERVED_RUN``: JSON ``{"folder", "version"}``).

Publishing is one upsert of that value (atomic: a process reads the old value or the
new one, never half of it); every API worker and replica compares it with what it
serves every ``sync_s`` seconds and loads the named folder
(``RecommendationService.sync``). The API's reload, ``shopformer retrain`` and
``shopformer rollback`` all publish through :func:`publish_run`, so they write exactly
the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .schema import SERVED_RUN

if TYPE_CHECKING:
    from .base import EventStore


def publish_run(store: EventStore, folder: str | Path, version: str, users: Sequence[str]) -> list[int]:
    """Name ``folder`` (version ``version``, training users ``users``) as the run every
    process serves (durable on return). Erasure receipts of customers the run was not
    trained on are then complete; their ids are returned."""
    store.put_state(SERVED_RUN, json.dumps({"folder": str(Path(folder).resolve()), "version": version}))
    return store.settle_erasures(version, users)


def served_run(store: EventStore) -> dict | None:
    """``{"folder", "version"}`` of the published run, None when none was published."""
    raw = store.get_state(SERVED_RUN)
    return None if raw is None else json.loads(raw)
