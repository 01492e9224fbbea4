"""Vectorized timestamp parsing to ``Datetime("us", "UTC")``.

``fmt`` is one of:

- ``"auto"``: numbers are Unix time (seconds; values of 1e11 and above are read as
  milliseconds, 1e14 and above as microseconds); text is tried against ISO-8601 forms
  (``2011-06-01``, ``2011-06-01 08:26``, ``2011-06-01T08:26:00.123``, with or without a
  ``Z``/``+02:00`` offset) and then US forms (``6/1/2011 8:26``). Day-first dates
  (``01/06/2011``) are ambiguous: pass an explicit format for those.
- ``"unix"`` / ``"unix_s"``, ``"unix_ms"``, ``"unix_us"``: numbers.
- any strftime format (``"%d/%m/%Y %H:%M"``), as understood by Polars.

Naive times (no offset) are local times of ``timezone`` (default UTC) and are
converted to UTC; a local time that does not exist (a DST gap) is unparseable, an
ambiguous one (DST fold) takes the earlier instant. A value that is present but cannot
be parsed becomes null; callers count it as ``bad_timestamp``.
"""

from __future__ import annotations

import polars as pl

UTC = pl.Datetime("us", "UTC")

_AWARE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
)
_NAIVE_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
)
_UNIX_SCALE = {"unix": 1_000_000, "unix_s": 1_000_000, "unix_ms": 1_000, "unix_us": 1}
_NUMERIC = r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$"


def _unix(s: pl.Series, scale: int | None) -> pl.Series:
    num = s.cast(pl.Float64, strict=False)
    if scale is None:  # auto: seconds, unless the magnitude says ms or us
        a = num.abs()
        us = (
            pl.select(
                pl.when(a < 1e11)
                .then(num * 1e6)
                .when(a < 1e14)
                .then(num * 1e3)
                .otherwise(num)
            )
            .to_series()
        )
    else:
        us = num * scale
    return us.round(0).cast(pl.Int64, strict=False).cast(UTC)


def _localize(naive: pl.Series, timezone: str) -> pl.Series:
    return naive.dt.replace_time_zone(
        timezone, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def _strptime(s: pl.Series, fmt: str, timezone: str) -> pl.Series:
    aware = "%z" in fmt or "%#z" in fmt or "%:z" in fmt or "%Z" in fmt
    out = s.str.to_datetime(fmt, strict=False, exact=True, time_unit="us")
    if aware or out.dtype.time_zone is not None:  # type: ignore[union-attr]
        return out.dt.convert_time_zone("UTC")
    return _localize(out, timezone)


def parse_timestamps(raw: pl.Series, fmt: str = "auto", timezone: str = "UTC") -> pl.Series:
    """Parse ``raw`` (any dtype) into a ``Datetime("us", "UTC")`` Series of equal length.

    Each candidate format only sees the rows that earlier ones could not parse, so a
    uniform column costs one parse.
    """
    fmt = fmt or "auto"
    timezone = timezone or "UTC"
    dt = raw.dtype
    if isinstance(dt, pl.Datetime):
        if dt.time_zone is None:  # type: ignore[union-attr]
            return _localize(raw.cast(pl.Datetime("us")), timezone).alias(raw.name)
        return raw.dt.convert_time_zone("UTC").cast(UTC).alias(raw.name)
    if isinstance(dt, pl.Date):
        return _localize(raw.cast(pl.Datetime("us")), timezone).alias(raw.name)
    if dt.is_numeric():
        return _unix(raw, _UNIX_SCALE.get(fmt)).alias(raw.name)

    s = raw.cast(pl.String).str.strip_chars()
    s = pl.select(pl.when(s.str.len_bytes() > 0).then(s)).to_series()
    if fmt in _UNIX_SCALE:
        return _unix(s, _UNIX_SCALE[fmt]).alias(raw.name)
    if fmt != "auto":
        return _strptime(s, fmt, timezone).alias(raw.name)

    out = pl.Series(raw.name, [None] * len(s), dtype=UTC)
    todo = s.is_not_null()
    if not todo.any():
        return out
    # 1) numbers -> unix time
    numeric = s.str.contains(_NUMERIC).fill_null(False)
    if numeric.any():
        idx = numeric.arg_true()
        out = out.scatter(idx, _unix(s.gather(idx), None))
        todo = todo & ~numeric
    # 2) text: trailing "Z" means UTC
    s = s.str.replace(r"[Zz]$", "+00:00")
    for f in (*_AWARE_FORMATS, *_NAIVE_FORMATS):
        if not todo.any():
            break
        idx = todo.arg_true()
        parsed = _strptime(s.gather(idx), f, timezone)
        ok = parsed.is_not_null()
        if ok.any():
            out = out.scatter(idx.filter(ok), parsed.filter(ok))
            todo = todo.scatter(idx.filter(ok), False)
    return out


def _unix_expr(num: pl.Expr, scale: int | None) -> pl.Expr:
    num = num.cast(pl.Float64, strict=False)
    if scale is None:
        a = num.abs()
        us = pl.when(a < 1e11).then(num * 1e6).when(a < 1e14).then(num * 1e3).otherwise(num)
    else:
        us = num * scale
    return us.round(0).cast(pl.Int64, strict=False).cast(UTC)


def _strptime_expr(s: pl.Expr, fmt: str, timezone: str) -> pl.Expr:
    out = s.str.to_datetime(fmt, strict=False, exact=True, time_unit="us")
    if "%z" in fmt or "%#z" in fmt or "%:z" in fmt or "%Z" in fmt:
        return out.dt.convert_time_zone("UTC")
    return out.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")


def timestamp_expr(column: str, dtype: pl.DataType, fmt: str = "auto", timezone: str = "UTC") -> pl.Expr:
    """The expression form of :func:`parse_timestamps` for a column of ``dtype``, for lazy
    (streaming) frames: the same values, row by row. In ``auto`` mode a text column is
    tried against every format (a coalesce computes them all), so pass an explicit
    ``fmt`` for large text logs: then it is one parse."""
    fmt = fmt or "auto"
    timezone = timezone or "UTC"
    col = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:  # type: ignore[union-attr]
            return col.cast(pl.Datetime("us")).dt.replace_time_zone(
                timezone, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
        return col.dt.convert_time_zone("UTC").cast(UTC)
    if isinstance(dtype, pl.Date):
        return col.cast(pl.Datetime("us")).dt.replace_time_zone(
            timezone, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    if dtype.is_numeric():
        return _unix_expr(col, _UNIX_SCALE.get(fmt))
    s = col.cast(pl.String).str.strip_chars()
    s = pl.when(s.str.len_bytes() > 0).then(s)
    if fmt in _UNIX_SCALE:
        return _unix_expr(s, _UNIX_SCALE[fmt])
    if fmt != "auto":
        return _strptime_expr(s, fmt, timezone)
    numeric = s.str.contains(_NUMERIC).fill_null(False)
    text = s.str.replace(r"[Zz]$", "+00:00")
    parsed = pl.coalesce(*[_strptime_expr(text, f, timezone) for f in (*_AWARE_FORMATS, *_NAIVE_FORMATS)])
    return pl.when(numeric).then(_unix_expr(s, None)).otherwise(parsed)
