"""Event fingerprints: what tells a harmless re-post of an ``event_id`` from a conflicting one.

An event's payload is everything but its ``event_id`` and ``position``: user, item,
type, timestamp, session, query, value and context. The canonical payload writes the
timestamp as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (naive = UTC, as the store keeps it)
and the context as JSON with sorted keys (text that is not JSON is kept as text); the
fingerprint is ``"sha256:"`` + the SHA-256 of the canonical payload as compact JSON
(``[user_id, item_id, event_type, timestamp, session_id, query, value, context]``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from .engine import StoreError

#: the payload fields, in fingerprint order
PAYLOAD: tuple[str, ...] = ("user_id", "item_id", "event_type", "timestamp", "session_id", "query", "value",
                            "context")


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _context(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def canonical(row: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of an event row (store columns) in canonical form."""
    out = {c: row.get(c) for c in PAYLOAD}
    out["timestamp"] = _time(out["timestamp"])
    out["context"] = _context(out["context"])
    if out["value"] is not None:
        out["value"] = float(out["value"])
    return out


def fingerprint(row: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of the row's canonical payload."""
    payload = canonical(row)
    text = json.dumps([payload[c] for c in PAYLOAD], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def differing(posted: Mapping[str, Any], stored: Mapping[str, Any], ignore: Collection[str] = ()) -> list[str]:
    """The payload fields in which two versions of an event differ (``ignore``: fields
    the poster did not choose, such as a timestamp the server filled in)."""
    a, b = canonical(posted), canonical(stored)
    return [c for c in PAYLOAD if c not in ignore and a[c] != b[c]]


class EventConflict(StoreError):
    """Events whose ``event_id`` is stored with a different payload; nothing of their
    batch was written. ``conflicts``: ``(event_id, differing fields, stored fingerprint)``."""

    def __init__(self, conflicts: list[tuple[str, list[str], str]]) -> None:
        first, fields, _ = conflicts[0]
        super().__init__(
            f"event_id {first!r} is already stored with a different payload (differs in: {', '.join(fields)})"
            + (f", and {len(conflicts) - 1} more" if len(conflicts) > 1 else "")
        )
        self.conflicts = conflicts
