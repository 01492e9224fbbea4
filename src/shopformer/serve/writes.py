"""Validated, all-or-nothing writes of events and products.

Each batch is validated completely (pydantic first, then the limits that come from the
settings, then the store's own ingest rules, once: the store writes the rows as checked
here) before anything is written; one bad row refuses the whole batch with
:class:`RowErrors`, so a client never has to guess which rows were stored. The store
then writes the batch in one transaction, refusing (:class:`EventConflict`, 409) an
``event_id`` already stored with a different payload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from shopformer.privacy.pseudonym import ForeignPseudonym, Pseudonymizer
from shopformer.store import EventStore
from shopformer.store.fingerprint import EventConflict, differing
from shopformer.store.frames import check_events, validate_products

from .schemas import EventIn, ProductIn
from .settings import ServeSettings


class RowErrors(ValueError):
    """Rows refused (``status`` 422), or whose event_id is stored with another payload
    (409); ``errors`` is in FastAPI's 422 format."""

    def __init__(self, errors: list[dict[str, Any]], batch: bool, status: int = 422) -> None:
        super().__init__(f"{len(errors)} invalid row(s)")
        self.errors = errors
        self.batch = batch
        self.status = status


@dataclass(frozen=True)
class WriteLimits:
    """What a written row must also meet, from the settings (the schemas are static)."""

    max_context_bytes: int = ServeSettings.max_context_bytes
    max_attributes_bytes: int = ServeSettings.max_attributes_bytes
    min_event_time: datetime = ServeSettings.min_event_time
    max_future_s: float = ServeSettings.max_future_s

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> WriteLimits:
        return cls(settings.max_context_bytes, settings.max_attributes_bytes, settings.min_event_time,
                   settings.max_future_s)


def _loc(batch: bool, row: int | None, field: str) -> list[Any]:
    return ["body", row, field] if batch and row is not None else ["body", field]


def _row_errors(report, batch: bool) -> list[dict[str, Any]]:  # noqa: ANN001
    """The store's rejection report -> [{loc, msg, type, input}] (rows 0-based)."""
    out = []
    for reason, count in report.rejected.items():
        if reason == "duplicate":
            continue
        examples = report.examples.get(reason) or [(None, None, None)]
        for row, fld, value in examples:
            where: list[Any] = ["body"]
            if batch and row is not None:
                where.append(int(row) - 1)
            field = "type" if fld == "event_type" else fld
            if field:
                where.append(field)
            msg = f"{reason.replace('_', ' ')}"
            if batch and count > len(examples):
                msg += f" ({count} rows in all; first shown)"
            out.append({"type": f"store.{reason}", "loc": where, "msg": msg, "input": value})
    return out


def _json_text(value: dict[str, Any] | None) -> str | None:
    """JSON as the store keeps it (the same text the store would make of the dict, so
    derived event ids do not change)."""
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _too_large(text: str | None, limit: int, loc: list[Any], setting: str) -> dict[str, Any] | None:
    if text is None or 4 * len(text) <= limit:  # UTF-8 needs at most 4 bytes a character
        return None
    size = len(text.encode("utf-8"))
    if size <= limit:
        return None
    return {"type": "too_large", "loc": loc, "input": None,
            "msg": f"{loc[-1]} is {size:,} bytes as JSON; the limit is {limit:,} ({setting})"}


def _time_error(ts: datetime, now: datetime, limits: WriteLimits, loc: list[Any]) -> dict[str, Any] | None:
    if ts < limits.min_event_time:
        why = f"is before {limits.min_event_time.isoformat()}, the earliest accepted (SHOPFORMER_MIN_EVENT_TIME)"
    elif ts > now + timedelta(seconds=limits.max_future_s):
        why = (f"is more than {limits.max_future_s:g} s ahead of the server clock ({now.isoformat()}; "
               "SHOPFORMER_MAX_FUTURE_S)")
    else:
        return None
    return {"type": "timestamp_out_of_range", "loc": loc, "input": ts.isoformat(), "msg": f"timestamp {why}"}


def _event_errors(events: list[EventIn], rows: list[dict[str, Any]], now: datetime, limits: WriteLimits,
                  batch: bool) -> list[dict[str, Any]]:
    """Limits from the settings, and one event_id given twice in the batch with two payloads."""
    errors = []
    first: dict[str, int] = {}
    for i, (event, row) in enumerate(zip(events, rows)):
        found = _too_large(row["context"], limits.max_context_bytes, _loc(batch, i, "context"),
                           "SHOPFORMER_MAX_CONTEXT_BYTES")
        if found is None and event.timestamp is not None:
            found = _time_error(event.timestamp, now, limits, _loc(batch, i, "timestamp"))
        if found is None and event.event_id is not None:
            j = first.setdefault(event.event_id, i)
            if j != i:
                ignore = ("timestamp",) if event.timestamp is None or events[j].timestamp is None else ()
                fields = differing(row, rows[j], ignore)
                if fields:
                    found = {"type": "event_id_conflict", "loc": _loc(batch, i, "event_id"), "input": event.event_id,
                             "msg": f"event_id also names row {j} of this batch with another payload "
                                    f"(differs in: {', '.join(fields)})"}
        if found is not None:
            errors.append(found)
    return errors


def _conflicts(exc: EventConflict, events: list[EventIn], batch: bool) -> RowErrors:
    """The store's conflicts as errors naming each row's event_id (409)."""
    rows: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.event_id is not None:
            rows.setdefault(e.event_id, i)
    return RowErrors([
        {"type": "event_id_conflict", "loc": _loc(batch, rows.get(event_id), "event_id"), "input": event_id,
         "msg": f"event_id is already stored with a different payload (differs in: {', '.join(fields)}); "
                "post it again unchanged, or use a new event_id",
         "stored_fingerprint": stored, "fields": fields}
        for event_id, fields, stored in exc.conflicts
    ], batch, status=409)


def _pseudonymize(rows: list[dict[str, Any]], pseudonyms: Pseudonymizer, batch: bool) -> list[dict[str, Any]]:
    """Replace ``user_id`` and ``session_id`` by their pseudonyms in place, before the
    rows are checked (so derived event ids and the store never see a raw id); the
    errors of ids shaped like another key's pseudonyms."""
    errors, seen = [], {}
    for i, row in enumerate(rows):
        for name, kind in (("user_id", "user"), ("session_id", "session")):
            value = row[name]
            if value is None:
                continue
            try:
                if (kind, value) not in seen:  # a batch repeats its users: hash each once
                    seen[kind, value] = pseudonyms.map(kind, value)
                row[name] = seen[kind, value]
            except ForeignPseudonym as exc:
                errors.append({"type": "foreign_pseudonym", "loc": _loc(batch, i, name), "msg": str(exc),
                               "input": value})
    return errors


@dataclass(frozen=True)
class EventsWritten:
    inserted: int
    duplicates: int
    event_ids: list[str]
    user_ids: set[str]


def write_events(store: EventStore, events: list[EventIn], batch: bool,
                 limits: WriteLimits = WriteLimits(), pseudonyms: Pseudonymizer | None = None) -> EventsWritten:
    """Check the rows once, then write them; returns after the commit. Raises
    :class:`RowErrors`: 422 naming row and field when any is refused, 409 (with the
    stored version's fingerprint) when an ``event_id`` is stored with another payload;
    nothing is written then. ``pseudonyms``: customer ids are stored as pseudonyms (the
    answer's ``user_ids`` are the pseudonyms too)."""
    now = datetime.now(timezone.utc)
    rows = [e.to_row(now) for e in events]
    if pseudonyms is not None:
        errors = _pseudonymize(rows, pseudonyms, batch)
        if errors:
            raise RowErrors(errors, batch)
    for row in rows:
        row["context"] = _json_text(row["context"])
    errors = _event_errors(events, rows, now, limits, batch)
    if errors:
        raise RowErrors(errors, batch)
    good, report = check_events(rows)
    errors = _row_errors(report, batch)
    if errors:
        raise RowErrors(errors, batch)
    server_timed = {e.event_id for e in events if e.timestamp is None and e.event_id is not None}
    try:
        result = store.insert_events(good, report, conflicts=True, server_timed=server_timed)
    except EventConflict as exc:
        raise _conflicts(exc, events, batch) from None
    return EventsWritten(
        inserted=result.inserted,
        duplicates=result.duplicates,
        event_ids=good.event_ids,
        user_ids=good.user_ids,
    )


def write_products(store: EventStore, products: list[ProductIn], limits: WriteLimits = WriteLimits()) -> int:
    rows = [p.to_row() for p in products]
    errors = []
    for i, row in enumerate(rows):
        row["attributes"] = _json_text(row["attributes"])
        found = _too_large(row["attributes"], limits.max_attributes_bytes, ["body", i, "attributes"],
                           "SHOPFORMER_MAX_ATTRIBUTES_BYTES")
        if found is not None:
            errors.append(found)
    if errors:
        raise RowErrors(errors, batch=True)
    good, report = validate_products(rows)
    errors = _row_errors(report, batch=True)
    if errors:
        raise RowErrors(errors, batch=True)
    return store.write_products(good)


__all__ = ["EventsWritten", "RowErrors", "WriteLimits", "write_events", "write_products"]
