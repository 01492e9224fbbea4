"""Calendar context of a moment, as small integers a sequence model embeds: the day of
the year, the days until the next configured holiday, and the time since the previous
event (log buckets, as the model's time gaps).

Holidays are written ``"MM-DD"`` (every year, e.g. ``"12-25"``) or ``"YYYY-MM-DD"`` (one
date, e.g. a moving feast such as ``"2011-04-24"``). Times are UTC epoch seconds; NaN
means unknown and gives 0 (padding, "no context") in every column.
"""

from __future__ import annotations

import re

import numpy as np

#: days to a holiday: 0 = unknown, then 1 + floor(log2(1 + days)) (days <= 366: at most 9)
HOLIDAY_BUCKETS = 9
#: time from the last event to the predicted one: 0 = unknown, then the buckets of
#: ``train.batches.gap_buckets`` (2 + floor(log2(1 + minutes))), capped here (~1 year)
QUERY_GAP_BUCKETS = 21
#: columns of a context row: the event's own day of year and holiday bucket, then the
#: same of the moment its successor is predicted for (the query), and the gap to it
COLUMNS = ("day", "holiday", "query_day", "query_holiday", "query_gap")

_HOLIDAY = re.compile(r"^(?:(\d{4})-)?(\d{2})-(\d{2})$")


def check_holidays(holidays: tuple[str, ...]) -> None:
    """Raise ValueError naming the first holiday that is not MM-DD or YYYY-MM-DD."""
    for h in holidays:
        m = _HOLIDAY.match(str(h))
        ok = m is not None
        if ok:
            try:
                np.datetime64(f"{m.group(1) or '2000'}-{m.group(2)}-{m.group(3)}")  # 2000: a leap year
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(f"holidays: {h!r} is not a date written MM-DD (every year) or YYYY-MM-DD")


def _days(times: np.ndarray) -> np.ndarray:
    """Whole UTC days since the epoch (int64; garbage where times is NaN)."""
    return np.floor(np.nan_to_num(times, nan=0.0) / 86400.0).astype(np.int64)


def day_of_year(times: np.ndarray) -> np.ndarray:
    """1..366 (0 where NaN)."""
    d = _days(times).astype("datetime64[D]")
    doy = (d - d.astype("datetime64[Y]")).astype(np.int64) + 1
    return np.where(np.isnan(times), 0, doy)


def days_to_holiday(times: np.ndarray, holidays: tuple[str, ...]) -> np.ndarray:
    """Days (int64, >= 0) from each time's UTC day to the nearest holiday on or after it,
    capped at 366; 366 where there is no holiday ahead."""
    d = _days(times)
    best = np.full(d.shape, 366, dtype=np.int64)
    year = d.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    for h in holidays:
        y, mm, dd = _HOLIDAY.match(str(h)).groups()
        if y is not None:
            ahead = np.datetime64(f"{y}-{mm}-{dd}").astype(np.int64) - d
            best = np.where(ahead >= 0, np.minimum(best, ahead), best)
            continue
        for dy in (0, 1):  # this year's date, else next year's
            # Feb 29 falls on Mar 1 in other years: datetime arithmetic from month starts
            month = (year + dy - 1970) * 12 + int(mm) - 1
            date = month.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) + int(dd) - 1
            ahead = date - d
            best = np.where(ahead >= 0, np.minimum(best, ahead), best)
    return np.minimum(best, 366)


def holiday_buckets(times: np.ndarray, holidays: tuple[str, ...]) -> np.ndarray:
    """1 + floor(log2(1 + days to the next holiday)) (0 where NaN or no holidays): the
    day itself, the day before, the last 4 days, week, fortnight, month, two months..."""
    if not holidays:
        return np.zeros(times.shape, dtype=np.int64)
    bucket = 1 + np.floor(np.log2(1.0 + days_to_holiday(times, holidays))).astype(np.int64)
    return np.where(np.isnan(times), 0, np.minimum(bucket, HOLIDAY_BUCKETS))


def query_gap_buckets(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Bucket of ``query - times`` (0 where either is NaN): 2 + floor(log2(1 + minutes))."""
    with np.errstate(invalid="ignore"):
        minutes = np.maximum(np.nan_to_num(query - times, nan=0.0), 0.0) / 60.0
    bucket = np.minimum(2 + np.floor(np.log2(1.0 + minutes)).astype(np.int64), QUERY_GAP_BUCKETS)
    return np.where(np.isnan(times) | np.isnan(query), 0, bucket)


def time_context(times: np.ndarray, query: np.ndarray, holidays: tuple[str, ...]) -> np.ndarray:
    """(..., 5) int64 context (see ``COLUMNS``) of events at ``times`` whose successors
    are predicted at ``query`` (same shape; NaN = unknown)."""
    return np.stack([day_of_year(times), holiday_buckets(times, holidays), day_of_year(query),
                     holiday_buckets(query, holidays), query_gap_buckets(times, query)], axis=-1)
