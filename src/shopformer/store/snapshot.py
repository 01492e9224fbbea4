"""Bridge between the store and a data folder (``events.parquet`` / ``products.parquet``,
the layout ``shopformer ingest`` writes and ``shopformer.dataset`` reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..ingest.api import EVENTS_FILE, PRODUCTS_FILE, _write_atomically, load_folder
from ..types import EVENT_SCHEMA, PRODUCT_SCHEMA, conform
from .base import AddResult, EventStore


@dataclass(frozen=True)
class ImportResult:
    events: AddResult
    products: int


def export_snapshot(store: EventStore, data_dir: str | Path) -> tuple[int, int]:
    """Write the store's events and catalog to ``data_dir`` (files replaced atomically);
    returns (events, products) written. ``position`` is the store's."""
    ev = conform(store.events(), EVENT_SCHEMA)
    pr = conform(store.products(), PRODUCT_SCHEMA)
    _write_atomically(Path(data_dir), {EVENTS_FILE: ev, PRODUCTS_FILE: pr})
    return ev.height, pr.height


def import_folder(store: EventStore, data_dir: str | Path) -> ImportResult:
    """Load an ingested data folder into the store: the catalog is upserted, then the
    events are added in their folder order (one transaction, multi-row inserts of
    ``config.chunk_size`` rows). Importing the same folder again adds nothing: events
    without an ``event_id`` get deterministic ids (untimed ones from their folder
    position)."""
    d = Path(data_dir)
    if not (d / EVENTS_FILE).exists() and not (d / PRODUCTS_FILE).exists():
        raise FileNotFoundError(f"no {EVENTS_FILE} or {PRODUCTS_FILE} in {d}: run `shopformer ingest` first")
    events, products = load_folder(d)
    n_products = store.upsert_products(products) if products.height else 0
    result = store.add_events(events.sort("position")) if events.height else AddResult(0, 0)
    return ImportResult(events=result, products=n_products)
