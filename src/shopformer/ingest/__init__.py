"""Ingest: read event logs and product catalogs, validate every row, store them.

Entry points
------------
``ingest(source, fmt, data_dir, mapping=None, catalog=None, catalog_format=None,
event_type=None, strict=False, *, catalog_mapping=None, timestamp_format="auto",
timezone=None) -> IngestReport``
    What ``shopformer ingest`` calls. Reads ``source`` (and the optional ``catalog``),
    validates, and appends to ``data_dir/events.parquet`` and ``products.parquet``;
    writes ``ingest_report.json`` and ``ingest_report.md``. ``source=None`` with a
    ``catalog`` ingests the catalog alone. Raises :class:`IngestError` (a ValueError
    with a user-facing message) for a missing column, an unreadable file, or, with
    ``strict=True``, the first bad row (file, line, field, value, reason).

``ingest_to_folder(data_dir, source=None, fmt=None, mapping=None, *, catalog=...,
...)`` is the same with keyword options (encoding, separator, list_separator).

``read(source, fmt=None, mapping=None, *, as_catalog=False, ...) -> Ingested``
    The same readers in memory: ``Ingested(events, products, report)`` with frames
    conformed to ``EVENT_SCHEMA`` / ``PRODUCT_SCHEMA``. ``load_folder(data_dir)`` gives
    back the stored ``(events, products)``.

Formats (``fmt``)
-----------------
``csv``, ``tsv``, ``jsonl``, ``parquet``
    Generic tables (``.gz`` is read compressed); detected from the extension when
    ``fmt`` is None. ``mapping`` is ``{canonical_name: source_column}``, e.g.
    ``{"user_id": "CustomerID", "item_id": "StockCode", "timestamp": "InvoiceDate",
    "value": "Quantity"}``; unmapped canonical names are taken from same-named columns.
    Events when read as a source, products when given as ``catalog``.
``sequence``
    ``user item item ...`` per line (S3-Rec Beauty/LastFM/Scientific, SASRec ml-1m).
``online-retail``
    UCI Online Retail I / II CSV -> purchase/cancel events + a derived GBP catalog.
``recbole``
    RecBole atomic ``.inter`` (events) / ``.item`` (products).
``item2attributes``, ``items-tsv``, ``movielens-movies``, ``movielens-plots``
    Catalog-only formats (S3-Rec attributes JSON, UniSRec item text TSV, movies.dat,
    MeLU movies_extrainfos.dat with plots, director and actors).

Options: ``event_type`` is the type of events whose file has no type column
(default: ``view``; ``purchase`` for sequence files; ``rate`` for RecBole ratings).
``timestamp_format`` is ``"auto"``, ``"unix"`` (seconds), ``"unix_ms"`` or a strftime
format. ``timezone`` is the zone of naive timestamps (default UTC; Europe/London for
Online Retail); stored timestamps are UTC.

Validation
----------
Every row is accepted or counted under exactly one reason (the first that applies):
``invalid_utf8`` (U+FFFD in an id after lossy decoding), ``missing_user_id``,
``unknown_event_type``, ``missing_query`` (search), ``missing_item_id``,
``bad_timestamp``, ``bad_value``, ``negative_quantity`` (purchase / add_to_cart),
``unknown_item`` (only with a catalog), ``duplicate`` (same event_id, or same user,
item, type, timestamp, value, session and query; rows with neither an event_id nor a
timestamp are never duplicates). Products: ``invalid_utf8``, ``missing_item_id``,
``bad_price``, ``bad_timestamp``, ``duplicate``. Kept rows with U+FFFD in text are
counted under ``warnings["repaired_utf8"]``. Kept rows whose event, user or item id
the HTTP API could never look up through a URL path (a ``/``, a control character,
exactly ``.`` or ``..``) are counted, with examples, under
``warnings["unaddressable_id"]``: an offline log keeps its history, the API refuses such
ids on write, and ``strict=True`` stops at the first, naming file, line and field (map
the ids, e.g. replace ``/``, to serve them). ``position`` is the global arrival order:
increasing in file order, continuing after the data already stored.
"""

from .adapters import (
    read_item2attributes,
    read_items_tsv,
    read_movielens_movies,
    read_movielens_plots,
    read_online_retail,
    read_recbole,
    read_sequences,
)
from .api import (
    CATALOG_ONLY_FORMATS,
    FORMATS,
    ingest,
    ingest_to_folder,
    load_folder,
    read,
)
from .readers import Ingested, read_events, read_products
from .report import EVENT_REASONS, PRODUCT_REASONS, IngestError, IngestReport
from .timestamps import parse_timestamps

__all__ = [
    "CATALOG_ONLY_FORMATS",
    "EVENT_REASONS",
    "FORMATS",
    "IngestError",
    "IngestReport",
    "Ingested",
    "PRODUCT_REASONS",
    "ingest",
    "ingest_to_folder",
    "load_folder",
    "parse_timestamps",
    "read",
    "read_events",
    "read_item2attributes",
    "read_items_tsv",
    "read_movielens_movies",
    "read_movielens_plots",
    "read_online_retail",
    "read_products",
    "read_recbole",
    "read_sequences",
]
