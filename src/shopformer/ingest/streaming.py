"""Streaming ingest: event logs larger than memory, read and written in bounded memory.

The eager readers (``readers.py``) hold the whole file and its staged copy in memory;
here the same column mapping, staging and row checks run as Polars expressions over a
lazy scan (``pl.scan_parquet`` / ``pl.scan_csv``) and the accepted rows are written with
``sink_parquet`` by the streaming engine, in row groups, so memory stays bounded
whatever the file's size. Two passes over the source: one counts rows by rejection
reason (with the first five examples of each, by line) and the warnings; the second
writes the accepted rows. Nothing is written when strict mode finds a bad row.

What the streaming path does not do, by design (the eager path does):

- duplicates are not looked for (same ``event_id`` or same full row, within the file):
  finding them needs every key of the file in memory at once. Exports that can repeat
  rows should be de-duplicated upstream, or ingested by the eager path;
- it writes a new folder only: appending to stored events would need the same
  cross-file duplicate check, so a folder that already has events is refused;
- no ``--catalog`` in the same call (ingest the catalog alone afterwards), so no
  ``unknown_item``; no ``--pseudonymize``; CSV/TSV must be plain UTF-8 (no gzip);
  JSONL and the public adapters stay eager.

A folder written here is marked large (``large.json``), so ``shopformer train`` prepares
it with the bounded-memory path (``features/sharded.py``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from ..types import EVENT_SCHEMA, UNADDRESSABLE_ID
from ._io import LINE, detect_format
from .readers import _EVENT_ALIASES, _as_str, resolve_mapping, stage_events
from .report import EVENT_REASONS, MAX_EXAMPLES, IngestError, IngestReport
from .timestamps import timestamp_expr
from .validate import (
    _ADDRESSED_EVENT_COLS,
    _EVENT_ID_COLS,
    _EVENT_STAGE,
    _EVENT_TEXT_COLS,
    _field_value,
    row_reason_fields,
    _has_fffd,
    _reason_chain,
    event_cleaning,
    event_conditions,
)

#: Source files at least this large are streamed by ``shopformer ingest`` unless told.
STREAM_THRESHOLD_BYTES = 1 << 30
STREAMABLE_FORMATS = ("csv", "tsv", "parquet")
#: Rows per Parquet row group of the written ``events.parquet``.
ROW_GROUP_ROWS = 512 * 1024
#: Marks a data folder whose events are prepared by the bounded-memory path.
LARGE_MARKER = "large.json"
#: A folder whose events.parquet is at least this large is prepared that way too.
LARGE_EVENTS_BYTES = 1 << 30


def should_stream(source: str | Path, fmt: str | None) -> bool:
    """True when ``source`` is a streamable table (csv / tsv / parquet) of at least
    :data:`STREAM_THRESHOLD_BYTES`."""
    path = Path(source)
    try:
        f = fmt or detect_format(path)
    except IngestError:
        return False
    return f in STREAMABLE_FORMATS and path.is_file() and path.stat().st_size >= STREAM_THRESHOLD_BYTES


def is_large_folder(data_dir: str | Path) -> bool:
    """A folder written by the streaming ingest, or whose events.parquet is at least
    :data:`LARGE_EVENTS_BYTES`."""
    d = Path(data_dir)
    ev = d / "events.parquet"
    return (d / LARGE_MARKER).exists() or (ev.exists() and ev.stat().st_size >= LARGE_EVENTS_BYTES)


def scan_table(path: Path, fmt: str, *, separator: str | None = None, encoding: str = "utf8") -> pl.LazyFrame:
    """A lazy scan of a csv / tsv / parquet file with ``_line`` (as ``read_table``: the
    CSV header is line 1, Parquet rows count from 1); CSV cells are strings, empty = null."""
    if not path.is_file():
        raise IngestError(f"{path}: cannot read file: no such file")
    if fmt == "parquet":
        lf = pl.scan_parquet(path).with_row_index(LINE, offset=1)
        return lf.with_columns(pl.col(LINE).cast(pl.Int64))
    if fmt not in ("csv", "tsv"):
        raise IngestError(f"{path}: format {fmt!r} is not streamed; use one of {', '.join(STREAMABLE_FORMATS)}")
    if encoding.lower().replace("-", "").replace("_", "") not in ("utf8", "utf8lossy"):
        raise IngestError(f"{path}: the streaming ingest reads UTF-8 only (got encoding {encoding!r})")
    with path.open("rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            raise IngestError(f"{path}: a gzip file is not streamed: decompress it first (or ingest without --stream)")
    lf = pl.scan_csv(
        path, separator=separator or ("," if fmt == "csv" else "\t"), quote_char='"' if fmt == "csv" else None,
        infer_schema=False, encoding="utf8-lossy", empty_string_is_null=True,
        row_index_name=LINE, row_index_offset=2,
    )
    names = lf.collect_schema().names()
    renames = {c: c.strip().lstrip("\ufeff") for c in names if c != LINE and c != c.strip().lstrip("\ufeff")}
    return (lf.rename(renames) if renames else lf).with_columns(pl.col(LINE).cast(pl.Int64))


def stage_events_lazy(
    lf: pl.LazyFrame, cols: Mapping[str, str], *, event_type: str | None, timestamp_format: str,
    timezone: str, source: str,
) -> pl.LazyFrame:
    """:func:`readers.stage_events` as expressions over a lazy frame, conformed to the
    staged event columns; its checks (a user id, an item id or query, an event type)
    run on an empty frame of the same schema, so the errors are the eager path's."""
    schema = lf.collect_schema()
    stage_events(pl.DataFrame(schema=schema), cols, event_type=event_type, timestamp_format=timestamp_format,
                 timezone=timezone, source=source)
    exprs: dict[str, pl.Expr] = {LINE: pl.col(LINE)}
    for c in ("event_id", "user_id", "item_id", "session_id", "query", "context"):
        if c in cols:
            exprs[c] = _as_str(cols[c], schema[cols[c]])
    if "event_type" in cols:
        exprs["event_type"] = pl.col(cols["event_type"]).cast(pl.String)
    else:
        exprs["event_type"] = pl.lit(event_type, dtype=pl.String)
    if "value" in cols:
        v = cols["value"]
        exprs["_val_raw"] = pl.col(v).cast(pl.String)
        exprs["value"] = (pl.col(v).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
                          if schema[v] == pl.String else pl.col(v).cast(pl.Float64, strict=False))
    if "timestamp" in cols:
        t = cols["timestamp"]
        exprs["_ts_raw"] = pl.col(t).cast(pl.String)
        exprs["timestamp"] = timestamp_expr(t, schema[t], timestamp_format, timezone)
    return lf.select(
        (exprs[name].cast(dtype) if name in exprs else pl.lit(None, dtype=dtype)).alias(name)
        for name, dtype in _EVENT_STAGE.items()
    )


def _checked(staged: pl.LazyFrame, fields: Mapping[str, str]) -> pl.LazyFrame:
    """Staged rows cleaned, with ``_reason`` (null = accepted) and, for rejected rows,
    the field and raw value the report shows (as ``finalize_events`` names them)."""
    df = staged.with_columns(*event_cleaning())
    df = df.with_columns(_reason_chain(event_conditions()))
    f_expr, v_expr = _field_value(row_reason_fields(), fields)
    is_utf8 = pl.col("_reason") == "invalid_utf8"
    utf8_field = pl.coalesce(*[pl.when(_has_fffd(c)).then(pl.lit(fields.get(c, c))) for c in _EVENT_ID_COLS])
    utf8_value = pl.coalesce(*[pl.when(_has_fffd(c)).then(pl.col(c)) for c in _EVENT_ID_COLS])
    return df.with_columns(
        pl.when(is_utf8).then(utf8_field).otherwise(f_expr).alias("_field"),
        pl.when(is_utf8).then(utf8_value).otherwise(v_expr).alias("_value"),
    )


def _count(checked: pl.LazyFrame, fields: Mapping[str, str], report: IngestReport, has_ts: bool,
           strict: bool) -> None:
    """Pass 1: rows read, rejections by reason with their first examples by line, and
    the warnings of accepted rows; strict mode stops at the first bad row."""
    good = pl.col("_reason").is_null()
    unaddressable = pl.any_horizontal(
        *[pl.col(c).str.contains(UNADDRESSABLE_ID).fill_null(False) for c in _ADDRESSED_EVENT_COLS])
    totals = checked.select(
        pl.len().alias("rows"),
        (good & pl.any_horizontal(*[_has_fffd(c) for c in _EVENT_TEXT_COLS])).sum().alias("repaired_utf8"),
        (good & pl.col("timestamp").is_null()).sum().alias("missing_timestamp"),
        (good & unaddressable).sum().alias("unaddressable_id"),
    ).collect(engine="streaming").row(0, named=True)
    rejected = (
        checked.filter(~good)
        .group_by("_reason")
        .agg(pl.len().alias("n"), pl.struct(LINE, "_field", "_value").bottom_k_by(LINE, MAX_EXAMPLES).alias("ex"))
        .collect(engine="streaming")
    )
    report.rows_read = int(totals["rows"])
    order = list(EVENT_REASONS)
    rows = sorted(rejected.iter_rows(named=True), key=lambda r: order.index(r["_reason"]))
    if strict and rows:
        first = min((e for r in rows for e in [(*x.values(), r["_reason"]) for x in r["ex"]]), key=lambda e: e[0])
        raise IngestError(f"{report.source}, line {first[0]}: field {first[1]!r} value {first[2]!r} rejected: "
                          f"{first[3]} (strict mode)")
    for r in rows:
        report.rejected[r["_reason"]] = int(r["n"])
        ex = sorted(r["ex"], key=lambda e: e[LINE])
        report.examples[r["_reason"]] = [(int(e[LINE]), str(e["_field"]), e["_value"]) for e in ex]
    report.rows_accepted = report.rows_read - report.rows_rejected
    if totals["unaddressable_id"]:
        field = pl.coalesce(*[pl.when(pl.col(c).str.contains(UNADDRESSABLE_ID)).then(pl.lit(fields.get(c, c)))
                              for c in _ADDRESSED_EVENT_COLS])
        value = pl.coalesce(*[pl.when(pl.col(c).str.contains(UNADDRESSABLE_ID)).then(pl.col(c))
                              for c in _ADDRESSED_EVENT_COLS])
        ex = checked.filter(good & unaddressable).select(LINE, field, value).head(MAX_EXAMPLES)
        examples = [(int(ln), str(f), v) for ln, f, v in ex.collect(engine="streaming").iter_rows()]
        if strict:
            ln, f, v = examples[0]
            raise IngestError(f"{report.source}, line {ln}: field {f!r} value {v!r} rejected: unaddressable_id "
                              "(the HTTP API could never look it up) (strict mode)")
        report.warnings["unaddressable_id"] = int(totals["unaddressable_id"])
        report.examples["unaddressable_id"] = examples
    if totals["repaired_utf8"]:
        report.warnings["repaired_utf8"] = int(totals["repaired_utf8"])
    if has_ts and totals["missing_timestamp"]:
        report.warnings["missing_timestamp"] = int(totals["missing_timestamp"])


def stream_events_to_folder(
    data_dir: str | Path,
    source: str | Path,
    fmt: str | None = None,
    mapping: Mapping[str, str | None] | None = None,
    *,
    event_type: str | None = None,
    timestamp_format: str = "auto",
    timezone: str | None = None,
    strict: bool = False,
    separator: str | None = None,
    encoding: str = "utf8",
    row_group_rows: int = ROW_GROUP_ROWS,
) -> IngestReport:
    """Ingest an event file into a new data folder in bounded memory (see the module
    docstring for what differs from :func:`ingest.api.ingest_to_folder`). Writes
    ``events.parquet`` (row groups of ``row_group_rows``), the report (json + md) and
    ``large.json``; files are moved into place only when everything succeeded."""
    t0 = time.perf_counter()
    d, path = Path(data_dir), Path(source)
    f = (fmt or detect_format(path)).lower()
    if (d / "events.parquet").exists():
        raise IngestError(f"{d} already holds events: the streaming ingest writes a new folder (it does not look "
                          "for duplicates against stored events); use an empty folder or ingest without --stream")
    lf = scan_table(path, f, separator=separator, encoding=encoding)
    try:
        names = lf.collect_schema().names()
    except pl.exceptions.PolarsError as e:
        raise IngestError(f"{path}: cannot read as {f.upper()}: {e}") from e
    cols = resolve_mapping(names, mapping, _EVENT_ALIASES, str(path))
    staged = stage_events_lazy(lf, cols, event_type=event_type or "view", timestamp_format=timestamp_format,
                               timezone=timezone or "UTC", source=str(path))
    checked = _checked(staged, cols)
    report = IngestReport(source=str(path), format=f, kind="events")
    try:
        _count(checked, cols, report, "timestamp" in cols, strict)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".events.parquet.tmp-{os.getpid()}"
        accepted = checked.filter(pl.col("_reason").is_null()).drop("position", strict=False)
        accepted = accepted.with_row_index("position").with_columns(pl.col("position").cast(pl.Int64))
        accepted.select(list(EVENT_SCHEMA)).sink_parquet(tmp, row_group_size=row_group_rows, engine="streaming")
    except pl.exceptions.PolarsError as e:
        raise IngestError(f"{path}: cannot read as {f.upper()}: {e}") from e
    report.seconds = time.perf_counter() - t0
    try:
        (d / "ingest_report.json").write_text(report.to_json() + "\n", encoding="utf-8")
        (d / "ingest_report.md").write_text(report.to_markdown(), encoding="utf-8")
        (d / LARGE_MARKER).write_text(json.dumps({"events": report.rows_accepted, "streamed": True,
                                                  "row_group_rows": row_group_rows}) + "\n", encoding="utf-8")
        os.replace(tmp, d / "events.parquet")
    finally:
        if tmp.exists():
            tmp.unlink()
    return report
