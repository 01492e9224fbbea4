"""Frames in and out of the store: input coercion, validation, event ids, rows -> Polars.

Validation reuses the ingest stage (``stage_events`` / ``finalize_events`` and the
product equivalents), so a row posted to the store is accepted or rejected for exactly
the reasons, and with exactly the same normalization (trimmed ids, event-type aliases,
timestamp parsing to UTC), as a row in an ingested file.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any, Union

import polars as pl

from ..ingest._io import LINE
from ..ingest.readers import stage_events, stage_products
from ..ingest.report import IngestReport
from ..ingest.validate import finalize_events, finalize_products
from ..types import EVENT_SCHEMA, PRODUCT_SCHEMA

#: What the write methods accept: a DataFrame, one row as a mapping, or many rows.
Rows = Union[pl.DataFrame, Mapping[str, Any], Iterable[Mapping[str, Any]]]

_EVENT_INPUT = tuple(c for c in EVENT_SCHEMA if c != "position")
_PRODUCT_INPUT = tuple(PRODUCT_SCHEMA)
_SEP = "\x1f"
_NULL = "\x00"


def _iso_utc(v: datetime) -> str:
    if v.tzinfo is not None:
        v = v.astimezone(timezone.utc).replace(tzinfo=None)
    return v.isoformat(sep=" ")


def _scalar(v: Any) -> Any:
    """One input cell -> what the staging code parses: text, bool, list, or None."""
    if v is None or isinstance(v, str | bool | list | tuple):
        return list(v) if isinstance(v, tuple) else v
    if isinstance(v, Mapping):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, datetime):
        return _iso_utc(v)  # naive datetimes are UTC, like naive text
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # an id 17850.0 is "17850", as in ingested files
    return str(v)  # numbers (ids, prices, values): parsed like text, so 2.5 == "2.5"


def to_frame(data: Rows, columns: Sequence[str]) -> pl.DataFrame:
    """``data`` as a DataFrame with every name in ``columns`` present (absent -> null)
    and a 1-based ``_line`` (the row number reported with rejections)."""
    if isinstance(data, pl.DataFrame):
        df = data
    else:
        rows = [data] if isinstance(data, Mapping) else list(data)
        fixed = [{k: _scalar(v) for k, v in r.items() if k in columns} for r in rows]
        df = pl.DataFrame(fixed, infer_schema_length=None) if fixed else pl.DataFrame()
    missing = [pl.lit(None, dtype=pl.String).alias(c) for c in columns if c not in df.columns]
    if missing:
        df = df.with_columns(missing) if df.width else pl.DataFrame(
            {c: pl.Series(c, [], dtype=pl.String) for c in columns}
        )
    if LINE in df.columns:
        df = df.drop(LINE)
    return df.with_row_index(LINE, offset=1).with_columns(pl.col(LINE).cast(pl.Int64))


def _untimed_ids(df: pl.DataFrame) -> pl.Series:
    """Event ids for rows with neither an event_id nor a timestamp. Such rows are never
    duplicates of each other (a sequence file repeats real interactions), so the id is
    a hash including the caller's ``position`` (stable when the same folder is
    imported again) or, with no position either, a random UUID."""
    blank = lambda c: pl.col(c).cast(pl.String).str.strip_chars().fill_null("") == ""  # noqa: E731
    need = df.select(blank("event_id") & blank("timestamp")).to_series()
    if not need.any():
        return df["event_id"].cast(pl.String)
    key = pl.concat_str(
        [pl.col(c).cast(pl.String).fill_null(_NULL)
         for c in ("user_id", "item_id", "event_type", "session_id", "query", "value",
                   "context", "position")],
        separator=_SEP,
    )
    keys = df.select(pl.when(pl.col("position").is_not_null()).then(key)).to_series()
    ids = [
        None if not n else ("u-" + uuid.uuid4().hex if k is None else "p-" + _digest(k))
        for n, k in zip(need, keys)
    ]
    made = pl.Series("event_id", ids, dtype=pl.String)
    return pl.select(pl.when(need).then(made).otherwise(df["event_id"].cast(pl.String))).to_series()


def _digest(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def derive_event_ids(events: pl.DataFrame) -> pl.DataFrame:
    """Fill null ``event_id`` s with ``"h-" + blake2b`` of (user, item, type, timestamp in
    UTC microseconds, session, query, value, context): the same event posted twice gets
    the same id, so the second post is a no-op."""
    todo = events["event_id"].is_null()
    if not todo.any():
        return events
    key = pl.concat_str(
        [
            pl.col(c).cast(pl.Int64).cast(pl.String).fill_null(_NULL) if c == "timestamp"
            else pl.col(c).cast(pl.String).fill_null(_NULL)
            for c in ("user_id", "item_id", "event_type", "timestamp", "session_id",
                      "query", "value", "context")
        ],
        separator=_SEP,
    )
    keys = events.select(pl.when(todo).then(key)).to_series()
    ids = pl.Series("event_id", [None if k is None else "h-" + _digest(k) for k in keys],
                    dtype=pl.String)
    return events.with_columns(pl.coalesce(pl.col("event_id"), ids).alias("event_id"))


class ValidEvents:
    """Validated events, ready to insert: a frame (EVENT_SCHEMA) from the vectorized
    path, or plain rows from the small-batch path (:mod:`shopformer.store.rowcheck`).
    Converted lazily: the single-event path never builds a DataFrame."""

    __slots__ = ("_frame", "_rows")

    def __init__(self, frame: pl.DataFrame | None = None, rows: list[dict[str, Any]] | None = None) -> None:
        self._frame = frame
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else self._frame.height

    @property
    def event_ids(self) -> list[str]:
        if self._rows is not None:
            return [r["event_id"] for r in self._rows]
        return self._frame["event_id"].to_list()

    @property
    def user_ids(self) -> set[str]:
        if self._rows is not None:
            return {r["user_id"] for r in self._rows}
        return set(self._frame["user_id"].unique().to_list())

    def frame(self) -> pl.DataFrame:
        """As EVENT_SCHEMA (``position`` 0, 1, ...: meaningless, the database assigns it)."""
        if self._frame is None:
            rows = [{**r, "position": i} for i, r in enumerate(self._rows)]
            self._frame = pl.DataFrame(rows, schema=EVENT_SCHEMA) if rows else pl.DataFrame(schema=EVENT_SCHEMA)
        return self._frame

    def chunks(self, size: int, columns: Sequence[str]) -> Iterable[list[dict[str, Any]]]:
        """Rows with ``columns`` as dicts, ``size`` at a time (multi-row INSERTs)."""
        if self._rows is not None:
            for i in range(0, len(self._rows), size):
                yield [{c: r[c] for c in columns} for r in self._rows[i : i + size]]
        else:
            for part in self._frame.select(columns).iter_slices(size):
                yield part.to_dicts()


def check_events(data: Rows, *, source: str = "store") -> tuple[ValidEvents, IngestReport]:
    """:func:`validate_events` without building a frame when it is not needed: small
    batches of simple rows are checked in plain Python (same rules, same report, same
    event ids: see :mod:`shopformer.store.rowcheck`), everything else vectorized."""
    if not isinstance(data, pl.DataFrame):
        if not isinstance(data, Mapping | list | tuple):
            data = list(data)  # an iterator: read it once, whichever path takes it
        from .rowcheck import check_event_rows

        fast = check_event_rows(data, source)
        if fast is not None:
            return ValidEvents(rows=fast[0]), fast[1]
    good, report = validate_events_vectorized(data, source=source)
    return ValidEvents(frame=good), report


def validate_events(data: Rows, *, source: str = "store") -> tuple[pl.DataFrame, IngestReport]:
    """Valid events (EVENT_SCHEMA, ``event_id`` always set, ``position`` meaningless:
    the database assigns it) and the report counting every rejected row by reason.
    Duplicates within the batch (same event_id, or same full row with a timestamp) are
    counted under ``duplicate``."""
    good, report = check_events(data, source=source)
    return good.frame(), report


def validate_events_vectorized(data: Rows, *, source: str = "store") -> tuple[pl.DataFrame, IngestReport]:
    """:func:`validate_events` through the ingest stage's Polars rules, whatever the
    input (the reference the small-batch path is tested against)."""
    df = to_frame(data, (*_EVENT_INPUT, "position"))
    df = df.with_columns(_untimed_ids(df).alias("event_id"))
    cols = {c: c for c in _EVENT_INPUT}
    staged = stage_events(
        df, cols, event_type=None, timestamp_format="auto", timezone="UTC", source=source
    )
    good, report = finalize_events(staged, source=source, fmt="store", fields=cols)
    report.warnings.pop("missing_timestamp", None)
    return derive_event_ids(good), report


def validate_products(data: Rows, *, source: str = "store") -> tuple[pl.DataFrame, IngestReport]:
    """Valid products (PRODUCT_SCHEMA) and the report. When an ``item_id`` repeats
    within the batch the LAST row wins (it is the newest); the others are counted
    under ``duplicate``. Text categories / tags are split on ``|``."""
    df = to_frame(data, _PRODUCT_INPUT)
    cols = {c: c for c in _PRODUCT_INPUT}
    staged = stage_products(df.reverse(), cols, extras_to_attributes=False, source=source)
    good, report = finalize_products(staged, source=source, fmt="store", fields=cols)
    return good.reverse(), report


def _column(name: str, values: list, dtype: pl.DataType) -> pl.Series:
    if isinstance(dtype, pl.Datetime):
        naive = [
            None if v is None
            else v.astimezone(timezone.utc).replace(tzinfo=None) if v.tzinfo else v
            for v in values
        ]
        return pl.Series(name, naive, dtype=pl.Datetime("us")).dt.replace_time_zone("UTC")
    return pl.Series(name, values, dtype=dtype)


def rows_to_frame(rows: Sequence[Sequence[Any]], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Database rows (columns in ``schema`` order) -> a DataFrame with that schema.
    SQLite gives naive datetimes (stored in UTC); PostgreSQL aware ones."""
    cols = list(zip(*rows)) if rows else [() for _ in schema]
    return pl.DataFrame(
        [_column(n, list(v), t) for (n, t), v in zip(schema.items(), cols)]
    )
