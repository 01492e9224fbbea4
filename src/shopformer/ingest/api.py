"""Format dispatch and the data-folder API (what the CLI calls)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from ..types import EVENT_SCHEMA, PRODUCT_SCHEMA, conform
from ._io import TABLE_FORMATS, detect_format
from .adapters import (
    read_item2attributes,
    read_items_tsv,
    read_movielens_movies,
    read_movielens_plots,
    read_online_retail,
    read_recbole,
    read_sequences,
)
from .readers import Ingested, read_events, read_products
from .report import IngestError, IngestReport

if TYPE_CHECKING:  # a type only: ingest sits below the privacy package
    from shopformer.privacy.pseudonym import Pseudonymizer

#: Every accepted ``fmt`` value.
FORMATS: tuple[str, ...] = (
    *TABLE_FORMATS,
    "sequence",
    "online-retail",
    "recbole",
    "item2attributes",
    "items-tsv",
    "movielens-movies",
    "movielens-plots",
)
#: Formats that only hold products (a source in one of these is ingested as a catalog).
CATALOG_ONLY_FORMATS: tuple[str, ...] = ("item2attributes", "items-tsv", "movielens-movies", "movielens-plots")

EVENTS_FILE = "events.parquet"
PRODUCTS_FILE = "products.parquet"
REPORT_JSON = "ingest_report.json"
REPORT_MD = "ingest_report.md"
#: present when the folder's customer ids are pseudonyms: ``{"key_fingerprint": ...}``
PSEUDONYMS_FILE = "pseudonyms.json"


def _norm_fmt(fmt: str | None, path: Path) -> str:
    if fmt is None:
        return detect_format(path)
    f = fmt.lower().replace("_", "-")
    f = {"txt": "sequence", "seq": "sequence", "ndjson": "jsonl", "json": "jsonl",
         "uci-online-retail": "online-retail", "movies": "movielens-movies"}.get(f, f)
    if f not in FORMATS:
        raise IngestError(f"{path}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return f


def read(
    source: str | Path,
    fmt: str | None = None,
    mapping: Mapping[str, str | None] | None = None,
    *,
    as_catalog: bool = False,
    event_type: str | None = None,
    timestamp_format: str = "auto",
    timezone: str | None = None,
    position_start: int = 0,
    catalog_ids: pl.Series | None = None,
    existing_events: pl.DataFrame | None = None,
    existing_products: pl.DataFrame | None = None,
    strict: bool = False,
    encoding: str = "utf8",
    separator: str | None = None,
    list_separator: str = "|",
    pseudonyms: Pseudonymizer | None = None,
) -> Ingested:
    """Read one source in any supported format, in memory (no folder involved).

    ``as_catalog`` reads a csv/tsv/jsonl/parquet file as products instead of events.
    ``event_type`` / ``timezone`` default per format (sequence: purchase; recbole: rate
    when there is a rating; csv/...: view; online-retail: Europe/London; others UTC).
    ``pseudonyms``: events' ``user_id`` and ``session_id`` become pseudonyms (see
    :mod:`shopformer.privacy.pseudonym`).
    """
    source = Path(source)
    f = _norm_fmt(fmt, source)
    tz = timezone or "UTC"
    if f in TABLE_FORMATS:
        if as_catalog:
            return read_products(
                source, f, mapping, list_separator=list_separator,
                timestamp_format=timestamp_format, timezone=tz,
                existing=existing_products, strict=strict, separator=separator,
                encoding=encoding,
            )
        return read_events(
            source, f, mapping, event_type=event_type or "view",
            timestamp_format=timestamp_format, timezone=tz, position_start=position_start,
            catalog_ids=catalog_ids, existing=existing_events, strict=strict,
            separator=separator, encoding=encoding, pseudonyms=pseudonyms,
        )
    if f == "sequence":
        return read_sequences(
            source, event_type=event_type or "purchase", position_start=position_start,
            catalog_ids=catalog_ids, strict=strict, encoding=encoding, pseudonyms=pseudonyms,
        )
    if f == "online-retail":
        return read_online_retail(
            source, timezone=timezone or "Europe/London", timestamp_format=timestamp_format,
            position_start=position_start, existing=existing_events,
            existing_products=existing_products, strict=strict, pseudonyms=pseudonyms,
        )
    if f == "recbole":
        return read_recbole(
            source, mapping, event_type=event_type, timestamp_format=timestamp_format,
            timezone=tz, position_start=position_start, catalog_ids=catalog_ids,
            existing=existing_events, existing_products=existing_products, strict=strict,
            pseudonyms=pseudonyms,
        )
    if f == "item2attributes":
        return read_item2attributes(source, existing_products=existing_products, strict=strict)
    if f == "items-tsv":
        return read_items_tsv(source, mapping, existing_products=existing_products, strict=strict)
    if f == "movielens-movies":
        return read_movielens_movies(source, existing_products=existing_products, strict=strict)
    if f == "movielens-plots":
        return read_movielens_plots(source, existing_products=existing_products, strict=strict)
    raise AssertionError(f)  # pragma: no cover


def load_folder(data_dir: str | Path, events: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, products) stored in ``data_dir``; empty frames when absent. ``events``
    False skips reading the events (a catalog-only ingest never needs them, and a large
    folder's may not fit in memory)."""
    d = Path(data_dir)
    ev = d / EVENTS_FILE
    pr = d / PRODUCTS_FILE
    stored = conform(pl.read_parquet(ev), EVENT_SCHEMA) if events and ev.exists() else pl.DataFrame(schema=EVENT_SCHEMA)
    products = (
        conform(pl.read_parquet(pr), PRODUCT_SCHEMA) if pr.exists() else pl.DataFrame(schema=PRODUCT_SCHEMA)
    )
    return stored, products


def folder_pseudonym_key(data_dir: str | Path) -> str | None:
    """The fingerprint of the key whose pseudonyms the folder's customer ids are, or
    None when they are raw (no ``pseudonyms.json``)."""
    path = Path(data_dir) / PSEUDONYMS_FILE
    if not path.exists():
        return None
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["key_fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IngestError(f"{path}: unreadable ({exc}); it names the key of the folder's pseudonymous ids") from None


def pseudonyms_marker(fingerprint: str) -> str:
    """The text of ``pseudonyms.json`` for a key fingerprint."""
    return json.dumps({"key_fingerprint": fingerprint, "scheme": "hmac-sha256/v1",
                       "fields": ["user_id", "session_id"]}, indent=2) + "\n"


def _check_pseudonyms(d: Path, old_events: pl.DataFrame, pseudonyms: Pseudonymizer | None) -> None:
    """Refuse to mix raw ids and pseudonyms, or two keys' pseudonyms, in one folder:
    either would split every customer in two."""
    stored = folder_pseudonym_key(d)
    if pseudonyms is None:
        if stored is not None:
            raise IngestError(
                f"{d} holds pseudonymous customer ids (key fingerprint {stored}): ingest with --pseudonymize "
                "and the same SHOPFORMER_PSEUDONYM_KEY")
        return
    if stored is not None:
        if stored != pseudonyms.fingerprint:
            raise IngestError(
                f"{d} holds pseudonyms made with another key (fingerprint {stored}; SHOPFORMER_PSEUDONYM_KEY has "
                f"{pseudonyms.fingerprint}): every customer would be split in two; use the key the folder was "
                "made with, or a new folder")
        return
    if old_events.height and pseudonyms.foreign(old_events["user_id"].unique().to_list()):
        raise IngestError(
            f"{d} already holds events with raw customer ids: pseudonyms beside them would split every customer "
            "in two; --pseudonymize into a new folder (re-ingest the raw files there)")


def _write_atomically(d: Path, payload: dict[str, pl.DataFrame | str]) -> None:
    """Write every file to a temp name first, then ``os.replace`` each into place, so a
    failure while writing leaves the previous files untouched."""
    d.mkdir(parents=True, exist_ok=True)
    tmps: list[tuple[Path, Path]] = []
    try:
        for name, content in payload.items():
            final = d / name
            tmp = d / f".{name}.tmp-{os.getpid()}"
            if isinstance(content, pl.DataFrame):
                content.write_parquet(tmp)
            else:
                tmp.write_text(content, encoding="utf-8")
            tmps.append((tmp, final))
        for tmp, final in tmps:
            os.replace(tmp, final)
    finally:
        for tmp, _ in tmps:
            if tmp.exists():
                tmp.unlink()


def ingest_to_folder(
    data_dir: str | Path,
    source: str | Path | None = None,
    fmt: str | None = None,
    mapping: Mapping[str, str | None] | None = None,
    *,
    catalog: str | Path | None = None,
    catalog_format: str | None = None,
    catalog_mapping: Mapping[str, str | None] | None = None,
    event_type: str | None = None,
    timestamp_format: str = "auto",
    timezone: str | None = None,
    strict: bool = False,
    encoding: str = "utf8",
    separator: str | None = None,
    list_separator: str = "|",
    pseudonyms: Pseudonymizer | None = None,
) -> IngestReport:
    """Ingest ``source`` (events, or products for a catalog-only format) and/or
    ``catalog`` (products) into ``data_dir``.

    ``pseudonyms``: events' ``user_id`` and ``session_id`` are replaced by their
    pseudonyms before anything is written (the report's examples show pseudonyms too),
    and ``pseudonyms.json`` records the key's fingerprint. A folder is all raw or all
    pseudonyms of one key: events into a pseudonymous folder need the same key, and a
    folder of raw events takes no pseudonyms (:class:`IngestError`).

    Existing data is kept: new events are appended with ``position`` continuing after
    the stored maximum, and events equal to stored ones are rejected as ``duplicate``;
    products with a stored ``item_id`` replace the stored row (identical ones are
    duplicates). When a catalog is given, events whose item is in neither that catalog
    nor the stored one are rejected as ``unknown_item``. Files are written atomically:
    nothing is written unless the whole ingest succeeds. Returns the report of
    ``source`` with the catalog's report in ``report.catalog`` (or the catalog's report
    alone when there is no ``source``); the same is written to ``ingest_report.json`` and
    ``ingest_report.md``.
    """
    if source is None and catalog is None:
        raise IngestError("nothing to ingest: give a source file and/or a catalog file")
    t0 = time.perf_counter()
    d = Path(data_dir)
    old_events, old_products = load_folder(d, events=source is not None)
    common = dict(
        timestamp_format=timestamp_format, timezone=timezone, strict=strict,
        encoding=encoding, separator=separator, list_separator=list_separator,
    )

    new_products: list[pl.DataFrame] = []
    cat_report: IngestReport | None = None
    catalog_ids: pl.Series | None = None
    if catalog is not None:
        cfmt = _norm_fmt(catalog_format, Path(catalog))
        if cfmt in ("sequence", "online-retail"):
            raise IngestError(f"{catalog}: format {cfmt!r} does not hold a catalog")
        got = read(catalog, cfmt, catalog_mapping, as_catalog=True,
                   existing_products=old_products, **common)
        cat_report = got.report
        new_products.append(got.products)
        catalog_ids = pl.concat([old_products["item_id"], got.products["item_id"]])

    report: IngestReport
    new_events = pl.DataFrame(schema=EVENT_SCHEMA)
    if source is not None:
        sfmt = _norm_fmt(fmt, Path(source))
        start = int(old_events["position"].max()) + 1 if old_events.height else 0
        got = read(
            source, sfmt, mapping, as_catalog=sfmt in CATALOG_ONLY_FORMATS,
            event_type=event_type, position_start=start, catalog_ids=catalog_ids,
            existing_events=old_events, existing_products=old_products, pseudonyms=pseudonyms, **common,
        )
        report = got.report
        new_events = got.events
        if report.kind == "events":  # before anything is written
            _check_pseudonyms(d, old_events, pseudonyms)
        if got.products.height or got.report.kind == "products":
            new_products.append(got.products)
        if cat_report is not None:
            report.catalog = cat_report
    else:
        assert cat_report is not None
        report = cat_report

    payload: dict[str, pl.DataFrame | str] = {}
    if new_events.height or not (d / EVENTS_FILE).exists():
        payload[EVENTS_FILE] = pl.concat([old_events, new_events])
    if new_products:
        fresh = pl.concat(new_products).unique("item_id", keep="last", maintain_order=True)
        kept = old_products.filter(~pl.col("item_id").is_in(fresh["item_id"].implode()))
        payload[PRODUCTS_FILE] = pl.concat([kept, fresh])
    elif not (d / PRODUCTS_FILE).exists():
        payload[PRODUCTS_FILE] = old_products
    report.seconds = time.perf_counter() - t0
    payload[REPORT_JSON] = report.to_json() + "\n"
    payload[REPORT_MD] = report.to_markdown()
    if pseudonyms is not None and new_events.height:
        payload[PSEUDONYMS_FILE] = pseudonyms_marker(pseudonyms.fingerprint)
    _write_atomically(d, payload)
    return report


def ingest(
    source: Path | None,
    fmt: str | None,
    data_dir: Path,
    mapping: dict[str, str] | None = None,
    catalog: Path | None = None,
    catalog_format: str | None = None,
    event_type: str | None = None,
    strict: bool = False,
    *,
    catalog_mapping: dict[str, str] | None = None,
    timestamp_format: str = "auto",
    timezone: str | None = None,
    pseudonyms: Pseudonymizer | None = None,
) -> IngestReport:
    """The CLI entry point: same as :func:`ingest_to_folder`, arguments in CLI order.

    Raises :class:`IngestError` (a ``ValueError``) with a user-facing message for bad
    input; the CLI should print it and exit non-zero.
    """
    return ingest_to_folder(
        data_dir, source, fmt, mapping, catalog=catalog, catalog_format=catalog_format,
        catalog_mapping=catalog_mapping, event_type=event_type,
        timestamp_format=timestamp_format, timezone=timezone, strict=strict, pseudonyms=pseudonyms,
    )
