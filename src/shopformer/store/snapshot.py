"""Bridge between the store and a data folder (``events.parquet`` / ``products.parquet``,
the layout ``shopformer ingest`` writes and ``shopformer.dataset`` reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..ingest.api import (
    EVENTS_FILE,
    PRODUCTS_FILE,
    PSEUDONYMS_FILE,
    _write_atomically,
    folder_pseudonym_key,
    load_folder,
    pseudonyms_marker,
)
from ..types import EVENT_SCHEMA, PRODUCT_SCHEMA, conform
from . import exports, pseudonyms
from .base import AddResult, EventStore
from .retention import RetentionConfig, keep


@dataclass(frozen=True)
class ImportResult:
    events: AddResult
    products: int


def export_snapshot(store: EventStore, data_dir: str | Path, *,
                    retention: bool | RetentionConfig = True) -> tuple[int, int]:
    """Write the store's events and catalog to ``data_dir`` (files replaced atomically);
    returns (events, products) written. ``position`` is the store's. The folder is
    registered in the store, so that an erasure removes the customer's rows from it too
    (:mod:`shopformer.store.exports`).

    ``retention``: True (default) leaves out the events the store's retention policy has
    expired, even if no purge has deleted them yet, so a model trained on the snapshot
    reads only what is kept; a :class:`RetentionConfig` applies that policy instead;
    False exports every stored event."""
    policy = store.retention_policy() if retention is True else (retention or None)
    ev = conform(store.events(), EVENT_SCHEMA)
    if policy is not None:
        ev = keep(ev, policy.cutoffs())
    pr = conform(store.products(), PRODUCT_SCHEMA)
    payload: dict = {EVENTS_FILE: ev, PRODUCTS_FILE: pr}
    key = pseudonyms.stored_key(store)
    if key is not None:  # the folder's ids are pseudonyms: say so, with the key (see ingest)
        payload[PSEUDONYMS_FILE] = pseudonyms_marker(key)
    _write_atomically(Path(data_dir), payload)
    exports.register(store, data_dir)  # erasures reach this copy of the events too
    if key is None:  # the ids are raw now: a marker left from an earlier snapshot would lie
        (Path(data_dir) / PSEUDONYMS_FILE).unlink(missing_ok=True)
    return ev.height, pr.height


def import_folder(store: EventStore, data_dir: str | Path) -> ImportResult:
    """Load an ingested data folder into the store: the catalog is upserted, then the
    events are added in their folder order (one transaction, multi-row inserts of
    ``config.chunk_size`` rows). Importing the same folder again adds nothing: events
    without an ``event_id`` get deterministic ids (untimed ones from their folder
    position). A folder of pseudonymous ids (``pseudonyms.json``) binds a store without
    events to its key, and is refused by a store of raw ids or of another key's
    pseudonyms, as raw ids are by a pseudonymous store (:class:`~shopformer.store.
    pseudonyms.PseudonymMismatch`)."""
    d = Path(data_dir)
    if not (d / EVENTS_FILE).exists() and not (d / PRODUCTS_FILE).exists():
        raise FileNotFoundError(f"no {EVENTS_FILE} or {PRODUCTS_FILE} in {d}: run `shopformer ingest` first")
    events, products = load_folder(d)
    if events.height:
        pseudonyms.bind(store, folder_pseudonym_key(d))
    n_products = store.upsert_products(products) if products.height else 0
    result = store.add_events(events.sort("position")) if events.height else AddResult(0, 0)
    return ImportResult(events=result, products=n_products)
