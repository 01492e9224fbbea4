"""Erasure and access requests over a store, with the served model's view of the user.

"Did the served model see this user?" is answered by the run's user vocabulary
(``users.json``: exactly the users whose events are in its training data), which is why
an erasure is ``pending_retrain`` while the served run lists the user and ``complete``
once a run that does not is published (see :mod:`shopformer.store.erasure`).
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shopformer.store import ErasureConfig, ErasureReceipt, EventStore
from shopformer.store.erasure import user_hash, with_user
from shopformer.store.schema import SERVED_RUN

#: what an export or receipt cannot vouch for, said with every answer
OUTSIDE = (
    "the served run folder's users.json lists the user id until a run trained without them is published "
    "(status pending_retrain until then)",
    "data folders the store exported (shopformer's snapshots) are cleaned too (storage.exported_folders); "
    "copies made otherwise (ingested source files, backups, copied folders) are the operator's",
    "access logs of the HTTP server and proxies name user ids in request paths",
)


@dataclass(frozen=True)
class ModelView:
    """The served model as privacy requests need it: its version and its training users
    (None when the run's vocabulary could not be read: then nothing is claimed)."""

    version: str
    users: Container[str] | None = None

    def saw(self, user_id: str) -> bool | None:
        """Whether the model's training data held the user's events (None: unknown)."""
        return None if self.users is None else user_id in self.users


def served_model(store: EventStore) -> ModelView | None:
    """The run the store says every API process serves (None when none was published),
    for processes that do not hold the model themselves (the CLI)."""
    raw = store.get_state(SERVED_RUN)
    if raw is None:
        return None
    wanted = json.loads(raw)
    try:
        users: Container[str] | None = set(json.loads((Path(wanted["folder"]) / "users.json").read_text()))
    except (OSError, ValueError):
        users = None
    return ModelView(str(wanted["version"]), users)


def forget(store: EventStore, user_id: str, model: ModelView | None, config: ErasureConfig | None = None) -> ErasureReceipt:
    """Erase ``user_id`` from the store, the receipt stating what ``model`` saw."""
    return store.forget_user(user_id, model.version if model else None, model.saw(user_id) if model else None, config)


def audit_target(user_id: str) -> str:
    """How the audit log names the customer of a privacy request: the SHA-256 of the id,
    as erasure receipts do (never the raw id)."""
    return f"user_sha256:{user_hash(user_id)}"


def erasure_detail(receipt: ErasureReceipt) -> dict[str, Any]:
    """What the audit log keeps of an erasure (the receipt itself is in the store)."""
    return {"receipt_id": receipt.receipt_id, "removed": receipt.removed, "status": receipt.status}


def _context(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # kept verbatim: give it back as stored


def _impressions(store: EventStore, user_id: str) -> list[dict[str, Any]]:
    """The answers shown to the user (what was recommended or found for them), JSON-ready."""
    rows = store.impressions(user_id=user_id).to_dicts()
    for r in rows:
        r.pop("user_id")
        r["shown_at"] = r["shown_at"].isoformat()
    return rows


def export_user(store: EventStore, user_id: str, model: ModelView | None) -> dict[str, Any]:
    """Everything the store holds about ``user_id`` as JSON-ready data: every event with
    every stored field (context decoded from its JSON text), every answer shown to them
    (impressions), the erasure receipts that name the user (matched by hash), and whether
    the served model was trained on them."""
    df = store.user_events(user_id)
    rows = []
    for r in df.iter_rows(named=True):
        ts = r["timestamp"]
        rows.append({"position": r["position"], "event_id": r["event_id"], "item_id": r["item_id"],
                     "type": r["event_type"], "timestamp": ts.isoformat() if ts is not None else None,
                     "session_id": r["session_id"], "query": r["query"], "value": r["value"],
                     "context": _context(r["context"])})
    by_type: dict[str, int] = {}
    for r in rows:
        by_type[r["type"]] = by_type.get(r["type"], 0) + 1
    return {
        "user_id": user_id,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "events": rows,
        "event_counts": by_type,
        "impressions": _impressions(store, user_id),
        "erasures": [with_user(r, user_id).to_dict() for r in store.erasures(user_id=user_id)],
        "model": None if model is None else {"version": model.version, "saw_user": model.saw(user_id)},
        "outside_the_store": list(OUTSIDE),
    }
