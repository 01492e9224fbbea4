"""Validated, all-or-nothing writes of events and products.

Each batch is validated completely (pydantic first, then the store's own ingest rules,
once: the store writes the rows as checked here) before anything is written; one bad
row refuses the whole batch with :class:`RowErrors`, so a client never has to guess
which rows were stored. The store then writes the batch in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shopformer.store import EventStore
from shopformer.store.frames import check_events, validate_products

from .schemas import EventIn, ProductIn


class RowErrors(ValueError):
    """Rows the store's validation refused; ``errors`` is in FastAPI's 422 format."""

    def __init__(self, errors: list[dict[str, Any]], batch: bool) -> None:
        super().__init__(f"{len(errors)} invalid row(s)")
        self.errors = errors
        self.batch = batch


def _row_errors(report, batch: bool) -> list[dict[str, Any]]:  # noqa: ANN001
    """The store's rejection report -> [{loc, msg, type, input}] (rows 0-based)."""
    out = []
    for reason, count in report.rejected.items():
        if reason == "duplicate":
            continue
        examples = report.examples.get(reason) or [(None, None, None)]
        for row, fld, value in examples:
            where = ["body"]
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


@dataclass(frozen=True)
class EventsWritten:
    inserted: int
    duplicates: int
    event_ids: list[str]
    user_ids: set[str]


def write_events(store: EventStore, events: list[EventIn], batch: bool) -> EventsWritten:
    """Check the rows once with the store's rules (a 422 naming row and field when any
    is refused), then write them; returns after the commit."""
    now = datetime.now(timezone.utc)
    rows = [e.to_row(now) for e in events]
    good, report = check_events(rows)
    errors = _row_errors(report, batch)
    if errors:
        raise RowErrors(errors, batch)
    result = store.insert_events(good, report)
    return EventsWritten(
        inserted=result.inserted,
        duplicates=result.duplicates,
        event_ids=good.event_ids,
        user_ids=good.user_ids,
    )


def write_products(store: EventStore, products: list[ProductIn]) -> int:
    rows = [p.to_row() for p in products]
    good, report = validate_products(rows)
    errors = _row_errors(report, batch=True)
    if errors:
        raise RowErrors(errors, batch=True)
    return store.write_products(good)
