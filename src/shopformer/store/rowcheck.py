"""Plain-Python validation of small event batches (the single-event POST path).

:func:`shopformer.store.frames.validate_events` runs the ingest stage's vectorized Polars
rules, which cost several milliseconds even for one row (one lazy query per step).
:func:`check_event_rows` applies the SAME rules row by row in plain Python for the
inputs whose handling it can reproduce exactly, and gives up (returns ``None``) on
anything else, so that the caller falls back to the vectorized path:

* rows given as mappings (not a DataFrame), at most :data:`MAX_ROWS` of them;
* every cell, after :func:`~shopformer.store.frames._scalar`, is text or null (no
  lists, booleans) and is valid UTF-8 (no lone surrogates);
* ``timestamp`` is null, a ``datetime`` or a ``date`` (text timestamps go through the
  full parser), years 1000..9999;
* ``value`` is null, a finite int / float, or text that is blank or a plain decimal
  number; when the store has to derive the event id from the content, the value's
  text form must be one Polars and Python write alike;
* ``event_type`` is ASCII; no ``position`` is given.

Accept / reject decisions, rejection reasons, examples ``(row, field, value)``, the
warnings and the derived event ids are identical to the vectorized path's
(tests/store/test_rowcheck.py compares the two on generated rows).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..ingest._io import REPLACEMENT
from ..ingest.report import EVENT_REASONS, MAX_EXAMPLES, IngestReport
from ..ingest.validate import EVENT_TYPE_ALIASES
from ..types import EVENT_TYPES, unaddressable
from .frames import _digest, _scalar

#: batches larger than this always take the vectorized path (it is faster there)
MAX_ROWS = 64

_ID_COLS = ("event_id", "user_id", "item_id", "session_id")
_ADDRESSED = ("event_id", "user_id", "item_id")  # ids warned about when not addressable
_INPUT = ("event_id", "user_id", "item_id", "event_type", "timestamp", "session_id", "query", "value", "context")
_QUANTITY_TYPES = ("purchase", "add_to_cart")
_EVENT_TYPES = frozenset(EVENT_TYPES)
#: what Polars' ``str.strip_chars()`` strips (Unicode White_Space; Python's str.strip
#: also strips U+001C..U+001F, Polars does not)
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_TYPE_SEP = re.compile(r"[\t\n\x0b\x0c\r \-]+")  # the ingest rule's [\s\-]+ on ASCII text
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_SEP, _NULL = "\x1f", "\x00"


class _GiveUp(Exception):
    """An input the plain-Python rules do not reproduce exactly: use the vectorized path."""


def _text(v: Any) -> str | None:
    """A cell as the vectorized path sees it (text or null), or give up."""
    v = _scalar(v)
    if v is None:
        return None
    if not isinstance(v, str):
        raise _GiveUp
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise _GiveUp from None
    return v


def _clean(v: str | None) -> str | None:
    """Strip (Polars' whitespace set); blank -> null."""
    if v is None:
        return None
    v = v.strip(_WS)
    return v or None


def _timestamp(v: Any) -> datetime | None:
    """null / datetime / date -> aware UTC datetime (microseconds), as parsed from the
    ISO text the vectorized path makes of it."""
    if v is None:
        return None
    if type(v) is datetime:
        if v.tzinfo is not None:
            v = v.astimezone(timezone.utc)
        ts = v.replace(tzinfo=timezone.utc)
    elif type(v) is date:
        ts = datetime(v.year, v.month, v.day, tzinfo=timezone.utc)
    else:
        raise _GiveUp
    if not 1000 <= ts.year <= 9999:
        raise _GiveUp
    return ts


def _value(v: Any) -> tuple[str | None, float | None]:
    """(raw text as cleaned, parsed float) of a value cell."""
    if v is None:
        return None, None
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise _GiveUp
    if isinstance(v, float) and not math.isfinite(v):
        raise _GiveUp
    raw = _clean(_text(v))
    if raw is None:
        return None, None
    if not _DECIMAL.fullmatch(raw):
        raise _GiveUp
    parsed = float(raw)
    if not math.isfinite(parsed) or (parsed == 0 and math.copysign(1.0, parsed) < 0):
        raise _GiveUp  # -0.0: Polars may tell it from 0.0 when looking for duplicates
    return raw, parsed


def _value_text(v: float) -> str:
    """Polars' text of a Float64 (what the derived id hashes); give up outside the range
    where it equals Python's repr."""
    if v == 0:
        return "0.0"  # -0.0 never gets here (see _value)
    if not 1e-4 <= abs(v) < 1e15:
        raise _GiveUp
    return repr(v)


def _event_type(v: str | None) -> str | None:
    if v is None:
        return None
    if not v.isascii():
        raise _GiveUp
    t = _TYPE_SEP.sub("_", v.lower())
    return EVENT_TYPE_ALIASES.get(t, t)


def check_event_rows(data: Any, source: str = "store") -> tuple[list[dict[str, Any]], IngestReport] | None:
    """Valid events as dicts (EVENT_SCHEMA columns but ``position``; ``event_id`` always
    set, ``timestamp`` aware UTC) and the report, exactly as
    :func:`~shopformer.store.frames.validate_events` gives them; ``None`` when ``data``
    is not a small batch of simple rows (see the module docstring)."""
    if isinstance(data, Mapping):
        rows: Iterable[Any] = [data]
    elif isinstance(data, list | tuple):
        rows = data
    else:
        return None
    if not 0 < len(rows) <= MAX_ROWS or not all(isinstance(r, Mapping) for r in rows):
        return None
    try:
        staged = [_stage(r) for r in rows]
    except _GiveUp:
        return None
    try:
        return _finalize(staged, source)
    except _GiveUp:
        return None


def _stage(row: Mapping[str, Any]) -> dict[str, Any]:
    if row.get("position") is not None:
        raise _GiveUp  # untimed rows keyed by position: the vectorized path
    raw = {c: row.get(c) for c in _INPUT}
    ts = _timestamp(raw["timestamp"])
    val_raw, value = _value(raw["value"])
    event_id = _text(raw["event_id"])
    if ts is None and (event_id is None or not event_id.strip(_WS)):
        # neither an id nor a time: never a duplicate of anything (see _untimed_ids)
        event_id = "u-" + uuid.uuid4().hex
    return {
        "event_id": _clean(event_id),
        "user_id": _clean(_text(raw["user_id"])),
        "item_id": _clean(_text(raw["item_id"])),
        "event_type": _event_type(_text(raw["event_type"])),
        "timestamp": ts,
        "session_id": _clean(_text(raw["session_id"])),
        "query": _clean(_text(raw["query"])),
        "value": value,
        "_val_raw": val_raw,
        "context": _text(raw["context"]),
    }


def _reason(r: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """The first failing rule of a staged row: (reason, field, value shown)."""
    for c in _ID_COLS:
        v = r[c]
        if v is not None and REPLACEMENT in v:
            return "invalid_utf8", c, v
    if r["user_id"] is None:
        return "missing_user_id", "user_id", None
    t = r["event_type"]
    if t is None or t not in _EVENT_TYPES:
        return "unknown_event_type", "event_type", t
    if t == "search":
        if r["query"] is None:
            return "missing_query", "query", None
    elif r["item_id"] is None:
        return "missing_item_id", "item_id", None
    if t in _QUANTITY_TYPES and r["value"] is not None and r["value"] < 0:
        return "negative_quantity", "value", r["_val_raw"]
    return None


def _dup_shown(r: dict[str, Any]) -> str:
    if r["event_id"] is not None:
        return "event_id=" + r["event_id"]
    ts = r["timestamp"]
    return (
        f"user_id={r['user_id']} item_id={r['item_id'] or ''} "
        f"ts={ts.strftime('%Y-%m-%dT%H:%M:%SZ') if ts is not None else ''}"
    )


def _finalize(staged: list[dict[str, Any]], source: str) -> tuple[list[dict[str, Any]], IngestReport]:
    report = IngestReport(source=source, format="store", kind="events")
    report.rows_read = len(staged)
    rejected: dict[str, list[tuple[int, str, str | None]]] = {}
    good: list[dict[str, Any]] = []
    flagged: list[tuple[int, str, str]] = []
    seen: set[tuple] = set()
    for line, r in enumerate(staged, start=1):
        bad = _reason(r)
        if bad is None and (r["event_id"] is not None or r["timestamp"] is not None):
            if r["event_id"] is not None:
                key: tuple = (r["event_id"],)
            else:
                key = (None, r["user_id"], r["item_id"], r["event_type"], r["timestamp"], r["value"],
                       r["session_id"], r["query"], r["context"])
            if key in seen:
                bad = ("duplicate", "row", _dup_shown(r))
            seen.add(key)
        if bad is None:
            good.append(r)
            shown = next(((c, r[c]) for c in _ADDRESSED if r[c] is not None and unaddressable(r[c])), None)
            if shown is not None:
                flagged.append((line, *shown))
        else:
            reason, field, shown = bad
            rejected.setdefault(reason, []).append((line, field, shown))
    for reason in sorted(rejected, key=EVENT_REASONS.index):
        report.rejected[reason] = len(rejected[reason])
        report.examples[reason] = rejected[reason][:MAX_EXAMPLES]
    repaired = sum(1 for r in good if any(r[c] is not None and REPLACEMENT in r[c] for c in ("query", "context")))
    if repaired:
        report.warnings["repaired_utf8"] = repaired
    if flagged:  # kept, with a warning (as ingest.validate does)
        report.warnings["unaddressable_id"] = len(flagged)
        report.examples["unaddressable_id"] = flagged[:MAX_EXAMPLES]
    report.rows_accepted = len(good)
    out = []
    for r in good:
        event_id = r["event_id"]
        if event_id is None:
            event_id = "h-" + _digest(_SEP.join(
                _NULL if v is None else v
                for v in (
                    r["user_id"], r["item_id"], r["event_type"],
                    None if r["timestamp"] is None else str((r["timestamp"] - _EPOCH) // _US),
                    r["session_id"], r["query"],
                    None if r["value"] is None else _value_text(r["value"]),
                    r["context"],
                )
            ))
        out.append({
            "event_id": event_id, "user_id": r["user_id"], "item_id": r["item_id"],
            "event_type": r["event_type"], "timestamp": r["timestamp"], "session_id": r["session_id"],
            "query": r["query"], "value": r["value"], "context": r["context"],
        })
    return out, report
